"""The disk spool: an append-only, checksummed, segment-based write-ahead log.

Events that cannot be delivered now are appended here and replayed, oldest
first, when the backend is back or when a process starts again with the same
``spool_dir`` (at-least-once: an event can be sent twice, never lost silently).

Layout
    ``<spool_dir>/<time_ns:020d>-<producer>-<n:06d>.wal``.  File names sort in
    creation order.  A process appends only to its own *head* segment and starts a
    new one when the head reaches ``segment_bytes``.

Record format (integers big-endian)::

    offset  size  field
    0       4     magic  b"\\x89TSR"
    4       4     n: length of the body in bytes (uint32)
    8       4     CRC-32 (zlib.crc32) of the body (uint32)
    12      n     body: event_id (ASCII), b"\\n", the event's JSON line (UTF-8)

Reading (:func:`parse_records`, a pure function over bytes) keeps every record
whose header and checksum are valid.  Bytes that are not a valid record (a torn
tail after a power loss or ``kill -9``, a corrupted record) are skipped up to the
next valid record and reported as :class:`SpoolIssue`.

Ownership and acknowledgement
    A process replays a segment only while holding an exclusive ``flock`` on it,
    and holds one on its head while writing, so several processes (or a forked
    child) can share one directory.  A segment is deleted only when every record
    in it was acknowledged by the backend (or dead-lettered).  If the process dies
    before that, the whole segment is replayed again later (duplicates carry the
    same event id).

Faults of the directory itself
    A spool directory removed under a running process is created again (with a
    warning); segments this process holds open are read through their open file,
    so their events are still replayed, and rewritten into the directory at
    ``close()``.  Write and read errors are warned about at most once per
    ``WARN_INTERVAL`` seconds per kind of problem; the events an append could not
    write are returned as refused (the engine counts them as dropped).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..fileio import write_all
from .envelope import Envelope, producer_id
from .toolkit import split_requests

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process per spool_dir
    fcntl = None  # type: ignore[assignment]  # no fcntl on Windows: the checks below test for None

log = logging.getLogger("telemetry_sinks.delivery")

MAGIC = b"\x89TSR"
HEADER = struct.Struct(">4sII")
SUFFIX = ".wal"
#: At most one warning per this many seconds for the same kind of spool problem.
WARN_INTERVAL = 60.0


def encode_record(event_id: str, data: str) -> bytes:
    """One spool record for an event (see the module docstring)."""
    body = event_id.encode("ascii") + b"\n" + data.encode("utf-8")
    return HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body


@dataclass(frozen=True)
class SpoolIssue:
    """Bytes skipped while reading a segment: ``kind`` is "torn tail" or "corrupted record"."""

    offset: int
    length: int
    kind: str


@dataclass
class ParsedSegment:
    """The valid records of a segment, in order, and what was skipped."""

    records: list[tuple[str, str]] = field(default_factory=list)
    issues: list[SpoolIssue] = field(default_factory=list)


def _record_at(buf: bytes, pos: int) -> tuple[int, str, str] | None:
    """The record starting at ``pos`` as (end, event_id, data), or None if there is none."""
    body_start = pos + HEADER.size
    if body_start > len(buf):
        return None
    magic, length, crc = HEADER.unpack_from(buf, pos)
    end = body_start + length
    if magic != MAGIC or end > len(buf):
        return None
    body = buf[body_start:end]
    if zlib.crc32(body) != crc:
        return None
    sep = body.find(b"\n")
    if sep <= 0:
        return None
    try:
        return end, body[:sep].decode("ascii"), body[sep + 1 :].decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_records(buf: bytes | bytearray | memoryview) -> ParsedSegment:
    """Every valid record in ``buf`` and the byte ranges skipped.  Never raises."""
    buf = bytes(buf)
    parsed = ParsedSegment()
    pos, end = 0, len(buf)
    while pos < end:
        found = _record_at(buf, pos)
        if found is not None:
            pos, event_id, data = found
            parsed.records.append((event_id, data))
            continue
        resync = pos
        while True:
            resync = buf.find(MAGIC, resync + 1)
            if resync < 0 or _record_at(buf, resync) is not None:
                break
        if resync < 0:
            parsed.issues.append(SpoolIssue(pos, end - pos, "torn tail"))
            break
        parsed.issues.append(SpoolIssue(pos, resync - pos, "corrupted record"))
        pos = resync
    return parsed


def _unlinked(fd: int) -> bool:
    """True if the file open as ``fd`` was deleted (or cannot be checked)."""
    try:
        return os.fstat(fd).st_nlink == 0
    except OSError:
        return True


def _read_fd(fd: int) -> bytes:
    """The whole content of the file open as ``fd`` (also after it was deleted)."""
    chunks, offset = [], 0
    if not hasattr(os, "pread"):  # pragma: no cover - Windows
        os.lseek(fd, 0, os.SEEK_SET)
    while chunk := (os.pread(fd, 1 << 20, offset) if hasattr(os, "pread") else os.read(fd, 1 << 20)):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _try_lock(fd: int) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@dataclass(eq=False)
class Segment:
    """A segment file this process holds (locked through ``fd``)."""

    path: str
    fd: int
    size: int = 0
    records: list[tuple[str, str]] = field(default_factory=list)
    cursor: int = 0  # next record to hand out for replay
    outstanding: int = 0  # handed out, not yet acknowledged


class Spool:
    """A directory of segments: ``append`` events, replay them with ``next_batch``, ``ack`` them.

    Thread-safe.  ``max_bytes`` bounds the directory: when an append would exceed
    it, the oldest segments are deleted if ``evict_oldest`` (their records are
    counted as dropped), otherwise the new events are refused.
    """

    def __init__(
        self,
        directory: str,
        *,
        max_bytes: int,
        segment_bytes: int,
        fsync: bool = False,
        evict_oldest: bool = False,
    ) -> None:
        self.directory = os.path.abspath(os.path.expanduser(directory))
        os.makedirs(self.directory, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.evict_oldest = evict_oldest
        self._lock = threading.Lock()
        self._head: Segment | None = None
        self._claimed: list[Segment] = []  # segments being replayed, oldest first
        self._candidates: list[str] = []  # segment names not tried yet, oldest first
        self._orphans: list[Segment] = []  # own segments deleted under us, held in memory
        self._warn_after: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        #: The OS error of the last write that failed (None after a successful append).
        self.write_error: str | None = None
        self._write_errno: int | None = None
        self._size = 0
        self._counter = 0
        self._last_ns = 0
        self._closed = False
        self.scan()

    @property
    def size(self) -> int:
        """Bytes of segment files in the directory (as of the last scan, plus own writes)."""
        return self._size

    # ------------------------------------------------------------------ scanning

    def scan(self) -> None:
        """Re-read the directory: segments left by earlier or other processes become replayable."""
        with self._lock:
            if self._closed:
                return
            own = {os.path.basename(s.path) for s in [self._head, *self._claimed] if s}
            names, total = [], 0
            try:
                self._ensure_directory_locked()
                entries = list(os.scandir(self.directory))
            except OSError as exc:
                self._warn_locked("scan", "spool %s cannot be read (%s); retrying later",
                                  self.directory, str(exc))
                return
            for entry in entries:
                if not entry.name.endswith(SUFFIX):
                    continue
                try:
                    total += entry.stat().st_size
                except OSError:
                    continue
                if entry.name not in own:
                    names.append(entry.name)
                stamp = entry.name[:20]
                if stamp.isdigit():  # new segments sort after these, even if the clock went back
                    self._last_ns = max(self._last_ns, int(stamp))
            names.sort()
            self._candidates = names
            self._size = total

    def has_backlog(self) -> bool:
        """True if there may be records to replay."""
        with self._lock:
            return bool(
                self._candidates
                or self._orphans
                or (self._head is not None and self._head.size > 0)
                or (self._claimed and self._claimed[-1].cursor < len(self._claimed[-1].records))
            )

    # ------------------------------------------------------------------ writing

    def append(self, envelopes: Sequence[Envelope]) -> tuple[list[Envelope], int]:
        """Write ``envelopes`` in order; return (the ones refused, the count of evicted records)."""
        with self._lock:
            if self._closed:
                return list(envelopes), 0
            self.write_error = None
            evicted = 0
            buf = bytearray()
            first = 0  # index of the first envelope in ``buf``
            refused_from = len(envelopes)
            for index, env in enumerate(envelopes):
                record = encode_record(env.event_id, env.data)
                over = self._size + len(buf) + len(record) - self.max_bytes
                if over > 0 and self.evict_oldest:
                    evicted += self._evict_locked(over)
                    over = self._size + len(buf) + len(record) - self.max_bytes
                if over > 0:
                    refused_from = index
                    break
                used = (self._head.size if self._head else 0) + len(buf)
                if used and used + len(record) > self.segment_bytes:
                    written, freed = self._write_evicting_locked(buf)
                    evicted += freed
                    if not written:
                        return list(envelopes[first:]), evicted
                    buf.clear()
                    first = index
                    self._roll_locked()
                buf += record
            written, freed = self._write_evicting_locked(buf)
            evicted += freed
            if not written:
                return list(envelopes[first:]), evicted
            return list(envelopes[refused_from:]), evicted

    def _write_evicting_locked(self, buf: bytearray) -> tuple[bool, int]:
        """Write ``buf``; on a full disk with ``evict_oldest``, delete old segments and retry once.

        Returns (written, records evicted).
        """
        if self._write_locked(buf):
            return True, 0
        if not (self.evict_oldest and self._write_errno == errno.ENOSPC):
            return False, 0
        evicted = self._evict_locked(len(buf))
        return (self._write_locked(buf) if evicted else False), evicted

    def _write_locked(self, buf: bytearray) -> bool:
        if not buf:
            return True
        try:
            if self._head is not None and _unlinked(self._head.fd):
                self._roll_locked()  # deleted under us: kept in memory, a new file takes over
            head = self._head or self._new_head_locked()
            # A copy: a traceback kept alive (e.g. by a log handler holding the record) must
            # not pin a memoryview export of the caller's bytearray, which append() clears.
            written = write_all(head.fd, bytes(buf))
            head.size += written
            self._size += written
            if self.fsync:
                os.fsync(head.fd)
        except OSError as exc:
            self.write_error = exc.strerror or str(exc)
            self._write_errno = exc.errno
            self._warn_locked("write", "spool %s: cannot write (%s); events refused",
                              self.directory, str(exc))
            if self._head is not None:
                self._roll_locked()  # never append after a partial record
            return False
        return True

    def _warn_locked(self, kind: str, message: str, *args: object) -> None:
        """Log a warning, at most once per ``WARN_INTERVAL`` seconds for each ``kind``."""
        now = time.monotonic()
        if now < self._warn_after.get(kind, 0.0):
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._warn_after[kind] = now + WARN_INTERVAL
        suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += " (%d more like this since the last warning)"
            args = (*args, suppressed)
        log.warning(message, *args)

    def _ensure_directory_locked(self) -> None:
        """Create the spool directory again if it was removed under us."""
        if os.path.isdir(self.directory):
            return
        if os.path.lexists(self.directory):
            raise NotADirectoryError(errno.ENOTDIR, "the spool path is not a directory", self.directory)
        os.makedirs(self.directory, exist_ok=True)
        self._size = 0
        self._warn_locked(
            "removed",
            "spool directory %s was removed; created it again (events only in its files are lost)",
            self.directory,
        )

    def _new_head_locked(self) -> Segment:
        self._ensure_directory_locked()
        self._counter += 1
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        name = f"{self._last_ns:020d}-{producer_id()}-{self._counter:06d}{SUFFIX}"
        path = os.path.join(self.directory, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        _try_lock(fd)
        if self.fsync:
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._head = Segment(path, fd)
        return self._head

    def _roll_locked(self) -> None:
        """Seal the head: close it (releasing its lock) and make it replayable."""
        head, self._head = self._head, None
        if head is None:
            return
        if not self._closed and head.size and _unlinked(head.fd):
            segment = self._load(head.path, head.fd)  # deleted under us: replay it from memory
            if segment is not None:
                self._orphans.append(segment)
            return
        if self.fsync:
            try:
                os.fsync(head.fd)
            except OSError:
                pass
        os.close(head.fd)
        self._candidates.append(os.path.basename(head.path))

    def _evict_locked(self, need: int) -> int:
        """Delete the oldest unclaimed segments until ``need`` bytes are free; return records lost."""
        freed = lost = 0
        for name in list(self._candidates):
            if freed >= need:
                break
            segment = self._claim_locked(name)
            if segment is None:
                continue
            lost += len(segment.records)
            freed += segment.size
            self._delete_locked(segment)
        return lost

    # ------------------------------------------------------------------ replaying

    def next_batch(self, max_events: int, max_bytes: int) -> list[Envelope]:
        """The next records to replay (from one segment, in order); [] if there are none."""
        with self._lock:
            if self._closed:
                return []
            segment = self._claimed[-1] if self._claimed else None
            if segment is None or segment.cursor >= len(segment.records):
                segment = self._claim_next_locked()
                if segment is None:
                    return []
                self._claimed.append(segment)
            records = itertools.islice(segment.records, segment.cursor, None)
            envelopes = (Envelope(event_id, data, segment=segment) for event_id, data in records)
            batch = next(split_requests(envelopes, max_events, max_bytes), [])
            segment.cursor += len(batch)
            segment.outstanding += len(batch)
            return batch

    def ack(self, envelopes: Sequence[Envelope]) -> None:
        """Mark replayed records as delivered; delete segments with nothing left to deliver."""
        with self._lock:
            touched: list[Segment] = []
            for env in envelopes:
                segment = env.segment
                segment.outstanding -= 1
                if not touched or touched[-1] is not segment:
                    touched.append(segment)
            if self._closed:
                return
            for segment in touched:
                # ``in self._claimed``: not a segment of before a close() (its file is closed).
                done = segment.outstanding <= 0 and segment.cursor >= len(segment.records)
                if done and segment in self._claimed:
                    self._delete_locked(segment)

    def _claim_next_locked(self) -> Segment | None:
        segment: Segment | None
        while self._orphans:
            segment = self._orphans.pop(0)
            if segment.records:
                return segment
            self._delete_locked(segment)
        while self._candidates:
            segment = self._claim_locked(self._candidates[0])
            if segment is not None:
                if segment.records:
                    return segment
                self._delete_locked(segment)
        head = self._head
        if head is not None and head.size:
            self._head = None  # sealed: new events go to a new head
            segment = self._load(head.path, head.fd)
            if segment is not None and not segment.records:
                self._delete_locked(segment)
                return None
            return segment
        return None

    def _claim_locked(self, name: str) -> Segment | None:
        """Lock and read segment ``name`` unless another process holds it or it is gone."""
        self._candidates.remove(name)
        path = os.path.join(self.directory, name)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        if not _try_lock(fd) or os.fstat(fd).st_nlink == 0:
            os.close(fd)
            return None
        return self._load(path, fd)

    def _load(self, path: str, fd: int) -> Segment | None:
        """Read a locked segment through its descriptor; None (lock released) if it cannot be read."""
        try:
            buf = _read_fd(fd)
        except OSError as exc:
            self._warn_locked("read", "spool segment %s cannot be read (%s); it is kept", path, str(exc))
            os.close(fd)
            return None
        parsed = parse_records(buf)
        for issue in parsed.issues:
            log.warning(
                "spool segment %s: skipped %d bytes at offset %d (%s); the other records replay",
                path,
                issue.length,
                issue.offset,
                issue.kind,
            )
        return Segment(path, fd, size=len(buf), records=parsed.records)

    def _delete_locked(self, segment: Segment) -> None:
        removed = False  # ``_size`` counts bytes on disk: a file that was not there is not counted
        try:
            os.unlink(segment.path)  # while still locked: no other process can claim it
            removed = True
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._warn_locked("delete", "spool segment %s cannot be deleted (%s); its events will be "
                              "replayed again", segment.path, str(exc))
        os.close(segment.fd)
        if removed:
            self._size = max(0, self._size - segment.size)
        if segment in self._claimed:
            self._claimed.remove(segment)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the files (releasing their locks); unacknowledged records stay on disk."""
        with self._lock:
            if self._closed:
                return
            # Segments deleted under us exist only in memory now: write them to the directory.
            rescue: list[tuple[str, str]] = []
            head = self._head
            if head is not None and head.size and _unlinked(head.fd):
                rescue += parse_records(_read_fd(head.fd)).records
            for segment in [*self._orphans, *self._claimed]:
                if segment in self._orphans or _unlinked(segment.fd):
                    rescue += segment.records
            self._closed = True
            if head is not None:
                self._roll_locked()
            for segment in [*self._orphans, *self._claimed]:
                os.close(segment.fd)
            self._claimed, self._orphans = [], []
            if rescue:
                self._rescue_locked(rescue)

    def _rescue_locked(self, records: list[tuple[str, str]]) -> None:
        """Write ``records`` into a new segment (at close, for segments deleted under us)."""
        try:
            self._new_head_locked()
            assert self._head is not None
            write_all(self._head.fd, b"".join(encode_record(i, d) for i, d in records))
        except OSError as exc:
            log.warning("spool %s: %d events of segments deleted under this process cannot be "
                        "written again (%s); they are lost", self.directory, len(records), str(exc))
        finally:
            head, self._head = self._head, None
            if head is not None:
                os.close(head.fd)

    def reopen(self) -> None:
        """Open again after :meth:`close`: the segments in the directory become replayable."""
        with self._lock:
            self._closed = False
        self.scan()

    def after_fork_in_child(self) -> None:
        """Forget the parent's files.  Closing our copies keeps the parent's locks held."""
        self._lock = threading.Lock()
        for segment in [self._head, *self._claimed, *self._orphans]:
            if segment is not None:
                try:
                    os.close(segment.fd)
                except OSError:
                    pass
        self._head, self._claimed, self._orphans = None, [], []
        self._candidates = []
        if not self._closed:
            self.scan()


__all__ = [
    "HEADER",
    "MAGIC",
    "ParsedSegment",
    "Spool",
    "SpoolIssue",
    "encode_record",
    "parse_records",
]
