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
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from .envelope import Envelope, producer_id

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process per spool_dir
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("telemetry_sinks.delivery")

MAGIC = b"\x89TSR"
HEADER = struct.Struct(">4sII")
SUFFIX = ".wal"


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
            for entry in os.scandir(self.directory):
                if not entry.name.endswith(SUFFIX):
                    continue
                try:
                    total += entry.stat().st_size
                except OSError:
                    continue
                if entry.name not in own:
                    names.append(entry.name)
            names.sort()
            self._candidates = names
            self._size = total

    def has_backlog(self) -> bool:
        """True if there may be records to replay."""
        with self._lock:
            return bool(
                self._candidates
                or (self._head is not None and self._head.size > 0)
                or (self._claimed and self._claimed[-1].cursor < len(self._claimed[-1].records))
            )

    # ------------------------------------------------------------------ writing

    def append(self, envelopes: Sequence[Envelope]) -> tuple[list[Envelope], int]:
        """Write ``envelopes`` in order; return (the ones refused, the count of evicted records)."""
        with self._lock:
            if self._closed:
                return list(envelopes), 0
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
                    if not self._write_locked(buf):
                        return list(envelopes[first:]), evicted
                    buf.clear()
                    first = index
                    self._roll_locked()
                buf += record
            if not self._write_locked(buf):
                return list(envelopes[first:]), evicted
            return list(envelopes[refused_from:]), evicted

    def _write_locked(self, buf: bytearray) -> bool:
        if not buf:
            return True
        try:
            head = self._head or self._new_head_locked()
            view = memoryview(buf)
            while view:
                written = os.write(head.fd, view)
                view = view[written:]
                head.size += written
                self._size += written
            if self.fsync:
                os.fsync(head.fd)
        except OSError as exc:
            log.warning("spool %s: cannot write (%s); events refused", self.directory, exc)
            if self._head is not None:
                self._roll_locked()  # never append after a partial record
            return False
        return True

    def _new_head_locked(self) -> Segment:
        self._counter += 1
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        name = f"{self._last_ns:020d}-{producer_id()}-{self._counter:06d}{SUFFIX}"
        path = os.path.join(self.directory, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
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
            batch: list[Envelope] = []
            size = 0
            for event_id, data in itertools.islice(segment.records, segment.cursor, None):
                env = Envelope(event_id, data, segment=segment)
                if batch and (len(batch) >= max_events or size + env.size > max_bytes):
                    break
                batch.append(env)
                size += env.size
            segment.cursor += len(batch)
            segment.outstanding += len(batch)
            return batch

    def ack(self, envelopes: Sequence[Envelope]) -> None:
        """Mark replayed records as delivered; delete segments with nothing left to deliver."""
        with self._lock:
            touched = []
            for env in envelopes:
                segment = env.segment
                segment.outstanding -= 1
                if not touched or touched[-1] is not segment:
                    touched.append(segment)
            if self._closed:
                return
            for segment in touched:
                if segment.outstanding <= 0 and segment.cursor >= len(segment.records):
                    self._delete_locked(segment)

    def _claim_next_locked(self) -> Segment | None:
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
        """Read a locked segment; None (and the lock released) if it cannot be read."""
        try:
            with open(path, "rb") as file:
                buf = file.read()
        except OSError as exc:
            log.warning("spool segment %s cannot be read (%s); it is kept", path, exc)
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
        try:
            os.unlink(segment.path)  # while still locked: no other process can claim it
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("spool segment %s cannot be deleted: %s", segment.path, exc)
        os.close(segment.fd)
        self._size = max(0, self._size - segment.size)
        if segment in self._claimed:
            self._claimed.remove(segment)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the files (releasing their locks); unacknowledged records stay on disk."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._head is not None:
                self._roll_locked()
            for segment in self._claimed:
                os.close(segment.fd)
            self._claimed = []

    def after_fork_in_child(self) -> None:
        """Forget the parent's files.  Closing our copies keeps the parent's locks held."""
        self._lock = threading.Lock()
        for segment in [self._head, *self._claimed]:
            if segment is not None:
                try:
                    os.close(segment.fd)
                except OSError:
                    pass
        self._head, self._claimed = None, []
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
