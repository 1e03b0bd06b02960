"""An example third-party sink for telemetry-sinks (a template to copy)."""

from __future__ import annotations

import json
import os
from typing import IO, Any

from traitlets import Int, TraitError, Unicode, validate

from telemetry_sinks.sinks.base import Sink

__all__ = ["SequencedFileSink"]
__version__ = "0.1.0"


class SequencedFileSink(Sink):
    """Append each payload to a JSONL file with a sequence number field added in front."""

    sink_name = "example"
    required_options = ("filename",)

    filename = Unicode(None, allow_none=True, help="Path of the JSONL file.").tag(config=True)
    seq_field = Unicode("__seq__", help="Name of the sequence number field.").tag(config=True)
    start = Int(1, help="The first sequence number of a new file.").tag(config=True)

    # Class-level defaults, so that close() works even if __init__ failed.
    _file: IO[str] | None = None
    _next = 0

    @validate("seq_field")
    def _check_seq_field(self, proposal: Any) -> str:
        if not proposal.value:
            raise TraitError("The 'seq_field' trait must not be empty.")
        return proposal.value

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filename = os.path.abspath(os.path.expanduser(self.filename))
        directory = os.path.dirname(self.filename)
        os.makedirs(directory, exist_ok=True)
        self._next = self._resume()
        self._file = open(self.filename, "a", encoding="utf-8")  # noqa: SIM115

    def _resume(self) -> int:
        """The number after the last line's, or ``start`` for a new or unreadable file."""
        last = ""
        if os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line.strip():
                        last = line
        try:
            return int(json.loads(last)[self.seq_field]) + 1
        except (ValueError, KeyError, TypeError):
            return self.start

    def write_payload(self, payload: dict[str, Any]) -> None:
        if self._file is None:
            raise ValueError(f"{type(self).__name__} for {self.filename} is closed.")
        line = {self.seq_field: self._next}
        line.update((k, v) for k, v in payload.items() if k != self.seq_field)
        self._file.write(self.encode(line) + "\n")
        self._file.flush()
        self._next += 1

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._file is not None:
                self._file.close()
                self._file = None
        super().close()
