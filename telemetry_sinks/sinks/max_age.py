"""The ``max_age`` option of the sinks that store files (file sinks and the archive)."""

from __future__ import annotations

from typing import Any

from traitlets import TraitError, Unicode, validate
from traitlets.config import Configurable

from ..errors import PolicyError
from ..retention import parse_age


class MaxAge(Configurable):
    """``max_age``: how long the sink's files are kept ("90d", "12h", "1y"; empty: for ever)."""

    max_age = Unicode(
        "",
        help='Delete the sink\'s files once their newest event is older than this ("90d", "12h", "1y"); '
        "empty: keep them. See telemetry_sinks.retention.",
    ).tag(config=True)

    @validate("max_age")
    def _check_max_age(self, proposal: Any) -> str:
        if proposal.value:
            try:
                if parse_age(proposal.value, "max_age") <= 0:
                    raise PolicyError(f"max_age: {proposal.value!r} must be more than 0")
            except PolicyError as exc:
                raise TraitError(f"The 'max_age' trait: {exc}") from None
        return proposal.value

    @property
    def max_age_seconds(self) -> float | None:
        """``max_age`` in seconds, or None when files are kept."""
        return parse_age(self.max_age) if self.max_age else None
