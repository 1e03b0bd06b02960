"""The dead-letter file: events a backend rejected for good, kept as JSON lines with the reason.

Each line is ``{"time", "sink", "event_id", "reason", "payload"}``; ``payload`` is
the event's JSON exactly as it would have been sent.  The file is created with
mode 0600 because payloads may be private.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ..capsule import format_timestamp
from ..fileio import write_all
from .envelope import Envelope

log = logging.getLogger("telemetry_sinks.delivery")


def read_dead_letters(path: str) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """``(line number, record or None if the line is not a dead letter, the line)`` for each line."""
    with open(path, encoding="utf-8", errors="surrogateescape") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict) or not {"sink", "event_id", "payload"} <= record.keys():
                record = None
            yield number, record, line if line.endswith("\n") else line + "\n"


class DeadLetterFile:
    """Append rejected events to ``path``; ``write`` returns False (and warns) if it cannot."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(os.path.expanduser(path))
        self._lock = threading.Lock()

    def write(self, sink: str, rejected: Sequence[tuple[Envelope, str]]) -> bool:
        """Append one line per (envelope, reason)."""
        now = format_timestamp()
        lines = []
        for env, reason in rejected:
            head = json.dumps(
                {"time": now, "sink": sink, "event_id": env.event_id, "reason": reason},
                separators=(",", ":"),
            )
            lines.append(f'{head[:-1]},"payload":{env.data}}}\n')
        data = "".join(lines).encode("utf-8")
        with self._lock:
            try:
                directory = os.path.dirname(self.path)
                if directory:
                    os.makedirs(directory, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    write_all(fd, data)
                finally:
                    os.close(fd)
            except OSError as exc:
                log.warning("dead-letter file %s cannot be written: %s", self.path, exc)
                return False
        return True

    def after_fork_in_child(self) -> None:
        """A fresh lock: the parent's may have been held at fork time."""
        self._lock = threading.Lock()


__all__ = ["DeadLetterFile", "read_dead_letters"]
