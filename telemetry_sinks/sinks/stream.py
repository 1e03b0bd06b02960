"""Stream sink: JSON lines to stdout, stderr or any text stream."""

from __future__ import annotations

import sys
from typing import IO, Any

from traitlets import Any as AnyTrait
from traitlets import TraitError, validate

from .base import Sink


class StreamSink(Sink):
    """Write each payload as a JSON line to ``stream`` (``"stdout"``, ``"stderr"`` or a file object)."""

    sink_name = "stream"

    stream = AnyTrait(
        "stderr", help='"stdout", "stderr", or (from Python) any object with write().'
    ).tag(config=True, destination=("stream", "text"))

    @validate("stream")
    def _check_stream(self, proposal: Any) -> Any:
        value = proposal.value
        if isinstance(value, str):
            if value not in ("stdout", "stderr"):
                raise TraitError(
                    f"The 'stream' trait of a StreamSink must be 'stdout' or 'stderr', not {value!r}."
                )
        elif not hasattr(value, "write"):
            raise TraitError("The 'stream' trait of a StreamSink needs an object with write().")
        return value

    def _target(self) -> IO[str]:
        stream = self.stream
        if stream == "stdout":
            return sys.stdout
        if stream == "stderr":
            return sys.stderr
        return stream

    def write_payload(self, payload: dict[str, Any]) -> None:
        target = self._target()
        target.write(self.encode(payload) + "\n")
        flush = getattr(target, "flush", None)
        if flush is not None:
            flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # Handler.lock is None only before createLock(), run by __init__
            flush = getattr(self._target(), "flush", None)
            if flush is not None:
                flush()
