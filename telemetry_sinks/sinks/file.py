"""File sinks: one JSON object per line, optionally rotated by size or by time.

Rotation happens between lines, never inside one.  Rotated files can be
gzip-compressed (``compress=True``).  Times are UTC.  With ``max_age`` set, the
sink's files whose last write is older than that are deleted when the sink starts
and at each rotation (:mod:`telemetry_sinks.retention`).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import time
from typing import Any

from traitlets import Bool, CaselessStrEnum, Int, TraitError, Unicode, validate

from ..fileio import write_all
from ..retention import expire_files
from .base import Sink
from .max_age import MaxAge


class FileSink(MaxAge, Sink):
    """Append each payload as a JSON line to ``filename``."""

    sink_name = "file"
    required_options = ("filename",)

    filename = Unicode(None, allow_none=True, help="Path of the JSONL file.").tag(
        config=True, destination=("file", "path")
    )
    delay = Bool(False, help="Open the file on the first event instead of at start.").tag(
        config=True
    )
    flush_each_event = Bool(
        True,
        help="Write every line to the file at once (safe against crashes); False collects "
        "lines in memory and writes them in 64 KiB chunks, on flush() and at close.",
    ).tag(config=True)

    #: Bytes collected before a write when ``flush_each_event`` is False.
    buffer_bytes = 64 * 1024

    # Class defaults: logging.shutdown() may flush/close a sink whose __init__ failed.
    _fd: int | None = None
    _size = 0
    _pending: list[bytes] = []
    _pending_bytes = 0

    def __init__(self, filename: str | os.PathLike | None = None, **options: Any) -> None:
        if filename is not None:
            # A value of the wrong type goes to the trait, which reports it as a SinkConfigError.
            options["filename"] = os.fspath(filename) if isinstance(filename, os.PathLike) else filename
        super().__init__(**options)
        self.filename = os.path.abspath(os.path.expanduser(self.filename))
        self._fd = None
        self._size = 0
        self._pending = []
        self._pending_bytes = 0
        self.delete_expired()
        if not self.delay:
            self._open()

    @property
    def baseFilename(self) -> str:  # the stdlib FileHandler attribute name
        return self.filename

    def _open(self) -> int:
        """Open the file for appending.

        Every line is one ``write(2)`` on an ``O_APPEND`` descriptor: no user-space
        buffer to lose in a crash, and processes sharing the file never interleave.
        """
        directory = os.path.dirname(self.filename)
        if directory:
            os.makedirs(directory, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.filename, flags, 0o644)
        self._size = os.fstat(self._fd).st_size
        return self._fd

    def write_payload(self, payload: dict[str, Any]) -> None:
        self.write_line(self.encode(payload) + "\n")

    def write_line(self, line: str) -> None:
        """Write one encoded line (ending in a newline)."""
        if self._fd is None:
            self._open()  # first, so that before_write() sees the size of an existing file
        data = line.encode("utf-8")
        self.before_write(data)
        if self._fd is None:
            self._open()
        self._size += len(data)
        if self.flush_each_event:
            write_all(self._fd, data)  # type: ignore[arg-type]  # opened above
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= self.buffer_bytes:
            self._write_pending()

    def _write_pending(self) -> None:
        if self._pending and self._fd is not None:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            write_all(self._fd, data)

    def before_write(self, data: bytes) -> None:
        """Hook for rotating subclasses; called before ``data`` (one encoded line) is written."""

    def rotated_files(self) -> list[str]:
        """The rotated files beside ``filename`` (``events.jsonl.1``, ``events.jsonl.2026-11-22.gz``, ...)."""
        directory, base = os.path.split(self.filename)
        pattern = re.compile(re.escape(base) + r"\.\d[\d_.-]*(\.gz)?$")
        try:
            names = os.listdir(directory or ".")
        except FileNotFoundError:
            return []
        return sorted(os.path.join(directory, n) for n in names if pattern.match(n))

    def delete_expired(self) -> list[str]:
        """Delete this sink's files whose last write is older than ``max_age``; return their paths.

        The open file counts only when nothing is waiting to be written to it; it is
        closed first, and the next event opens a new one.
        """
        max_age = self.max_age_seconds
        if max_age is None:
            return []
        candidates = self.rotated_files()
        if not self._pending and os.path.exists(self.filename):
            limit = time.time() - max_age
            if os.stat(self.filename).st_mtime < limit:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                candidates.append(self.filename)
        return expire_files(candidates, max_age)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # Handler.lock is None only before createLock(), run by __init__
            self._write_pending()

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # Handler.lock is None only before createLock(), run by __init__
            self._close_stream()
        super().close()

    def _close_stream(self) -> None:
        """Write what is pending and close the file (before a rotation, or at close)."""
        if self._fd is not None:
            try:
                self._write_pending()
            finally:
                os.close(self._fd)
                self._fd = None


def _gzip_file(path: str) -> str:
    """Compress ``path`` to ``path.gz`` and remove the original."""
    target = path + ".gz"
    with open(path, "rb") as src, gzip.open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.remove(path)
    return target


class RotatingFileSink(FileSink):
    """A file sink that starts a new file when the current one would exceed ``max_bytes``.

    Files are named like the stdlib's: ``events.jsonl``, ``events.jsonl.1`` (newest
    rotated) … ``events.jsonl.<backup_count>``; with ``compress`` they end in ``.gz``.
    """

    sink_name = "rotating_file"
    per_process_options = {"filename": "file"}  # processes rotating one file would clash

    max_bytes = Int(
        10 * 1024 * 1024, help="Rotate before a line would take the file past this size (0: never)."
    ).tag(config=True)
    backup_count = Int(5, help="How many rotated files to keep.").tag(config=True)
    compress = Bool(False, help="gzip rotated files.").tag(config=True)

    @validate("max_bytes", "backup_count")
    def _non_negative(self, proposal: Any) -> int:
        if proposal.value < 0:
            name = proposal.trait.name
            raise TraitError(f"The '{name}' trait must be 0 or more, not {proposal.value}.")
        return proposal.value

    def before_write(self, data: bytes) -> None:
        if (
            self.max_bytes
            and self.backup_count
            and self._size
            and self._size + len(data) > self.max_bytes
        ):
            self.rollover()

    def _rotated_name(self, index: int) -> str:
        return f"{self.filename}.{index}" + (".gz" if self.compress else "")

    def rollover(self) -> None:
        """Close the current file, shift the backups and start a new file."""
        self._close_stream()
        for index in range(self.backup_count - 1, 0, -1):
            src, dst = self._rotated_name(index), self._rotated_name(index + 1)
            if os.path.exists(src):
                os.replace(src, dst)
        if os.path.exists(self.filename):
            first = f"{self.filename}.1"
            os.replace(self.filename, first)
            if self.compress:
                _gzip_file(first)
        self.delete_expired()
        self._open()


_WHEN_SECONDS = {"S": 1, "M": 60, "H": 3600, "D": 86400, "MIDNIGHT": 86400}
_WHEN_SUFFIX = {
    "S": "%Y-%m-%d_%H-%M-%S",
    "M": "%Y-%m-%d_%H-%M",
    "H": "%Y-%m-%d_%H",
    "D": "%Y-%m-%d",
    "MIDNIGHT": "%Y-%m-%d",
}


class TimedRotatingFileSink(FileSink):
    """A file sink that starts a new file at UTC time boundaries.

    ``when`` is ``S``, ``M``, ``H``, ``D``, ``midnight`` or ``W0``-``W6`` (weekly, on
    that weekday, Monday = 0) like the stdlib's; boundaries are aligned to UTC (an
    hourly file holds one whole hour).  The rotated file gets the start of its
    period as suffix: ``events.jsonl.2026-11-22_10``.
    """

    sink_name = "timed_rotating_file"
    per_process_options = {"filename": "file"}

    when = CaselessStrEnum(
        ["S", "M", "H", "D", "midnight", "W0", "W1", "W2", "W3", "W4", "W5", "W6"],
        default_value="midnight",
        help="Unit of the rotation period.",
    ).tag(config=True)
    interval = Int(1, help="Number of units per period.").tag(config=True)
    backup_count = Int(7, help="How many rotated files to keep (0: keep all).").tag(config=True)
    compress = Bool(False, help="gzip rotated files.").tag(config=True)

    @validate("interval")
    def _positive_interval(self, proposal: Any) -> int:
        if proposal.value < 1:
            raise TraitError(f"The 'interval' trait must be 1 or more, not {proposal.value}.")
        return proposal.value

    def __init__(self, filename: str | os.PathLike | None = None, **options: Any) -> None:
        super().__init__(filename, **options)
        start = os.stat(self.filename).st_mtime if os.path.exists(self.filename) else time.time()
        self._period_start = self._period_start_for(start)
        self._rollover_at = self._next_boundary(self._period_start)

    @property
    def _unit(self) -> str:
        return self.when.upper()

    def _period_seconds(self) -> int:
        if self._unit.startswith("W"):
            return 7 * 86400
        return _WHEN_SECONDS[self._unit] * self.interval

    def _period_start_for(self, when: float) -> float:
        seconds = int(when)
        if self._unit.startswith("W"):
            day_start = seconds - seconds % 86400
            weekday = time.gmtime(day_start).tm_wday
            back = (weekday - int(self._unit[1])) % 7
            return float(day_start - back * 86400)
        period = self._period_seconds()
        return float(seconds - seconds % period)

    def _next_boundary(self, period_start: float) -> float:
        return period_start + self._period_seconds()

    def _suffix(self) -> str:
        fmt = "%Y-%m-%d" if self._unit.startswith("W") else _WHEN_SUFFIX[self._unit]
        return time.strftime(fmt, time.gmtime(self._period_start))

    def before_write(self, data: bytes) -> None:
        now = time.time()
        if now >= self._rollover_at:
            self.rollover(now)

    def rollover(self, now: float | None = None) -> None:
        """Close the current file under its period's name and start a new one."""
        now = time.time() if now is None else now
        self._close_stream()
        if os.path.exists(self.filename) and os.path.getsize(self.filename):
            target = f"{self.filename}.{self._suffix()}"
            index = 1
            while os.path.exists(target) or os.path.exists(target + ".gz"):
                target = f"{self.filename}.{self._suffix()}.{index}"
                index += 1
            os.replace(self.filename, target)
            if self.compress:
                _gzip_file(target)
        self._period_start = self._period_start_for(now)
        self._rollover_at = self._next_boundary(self._period_start)
        self._delete_old_files()
        self.delete_expired()
        self._open()

    def rotated_files(self) -> list[str]:
        """Rotated files of this sink, oldest first."""
        directory, base = os.path.split(self.filename)
        pattern = re.compile(re.escape(base) + r"\.(\d{4}-\d{2}-\d{2}[\d_-]*)(\.\d+)?(\.gz)?$")
        found = [(match.group(1), name) for name in os.listdir(directory or ".")
                 if (match := pattern.match(name))]
        return [os.path.join(directory, name) for _, name in sorted(found)]

    def _delete_old_files(self) -> None:
        if self.backup_count <= 0:
            return
        files = self.rotated_files()
        for path in files[: max(0, len(files) - self.backup_count)]:
            os.remove(path)


__all__ = ["FileSink", "RotatingFileSink", "TimedRotatingFileSink"]
