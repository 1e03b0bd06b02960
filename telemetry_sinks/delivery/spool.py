"""The disk spool: an append-only, checksummed, segmented write-ahead log with acknowledgement checkpoints.

Every event a sink with a ``spool_dir`` accepts is appended here before ``emit()``
returns, into the page cache, where it survives ``kill -9`` of the process; delivery
then reads it from memory, or from here when memory was full.  What the backend
acknowledged (or what was dead-lettered) is recorded in the same file as
*checkpoints*, so a process that
starts on the spool replays exactly the events after the last checkpoint, oldest
first, under their original event ids (at-least-once: the events acknowledged
after the last checkpoint are sent again, never lost).

Layout
    ``<spool_dir>/<time_ns:020d>-<producer>-<n:06d>.wal``.  File names sort in
    creation order.  A process appends events only to its own *head* segment and
    starts a new one when the head reaches ``segment_bytes``.

Writing
    The C accelerator writes the head through a shared mapping of its file (Linux):
    a record is copied into the page cache, as ``write(2)`` would put it there, but
    without a system call an event, which is most of what the append costs.  The file
    grows a chunk at a time with ``fallocate(2)``, which reserves the blocks: a full
    disk is an error on the write that needs the room (the event is refused, as a
    failed ``write(2)`` is), never a SIGBUS.  Until the head is sealed or closed, when
    it is cut to its records, the file ends in zeros: the reader takes zeros to the end
    for room never written, not for damage, and a process that claims a head left by a
    killed one cuts it first.  Sealed segments, file systems that cannot map files or
    reserve blocks, and installations without the accelerator use ``write(2)``.

Items (integers big-endian); a segment is a sequence of them::

    offset  size  field
    0       4     magic: b"\\x89TSR" (an event) or b"\\x89TSA" (a checkpoint)
    4       4     n: length of the body in bytes (uint32)
    8       4     CRC-32 (zlib.crc32) of the body (uint32)
    12      n     event: event_id (ASCII), b"\\n", the event's JSON line (UTF-8)
                  checkpoint: n = 12, a uint64 byte offset ``o`` in this segment and
                  the uint32 CRC-32 ``c`` of the record that ends there

A checkpoint says: the event record that ends at offset ``o`` (the one whose
checksum is ``c``) and every record before it were acknowledged by the backend or
dead-lettered (events are settled out of order; a checkpoint covers the settled
prefix).  It counts only if that record is there, ending at ``o`` before the
checkpoint, with checksum ``c``, so damage that shifts the bytes (a deleted or
inserted range) voids it rather than settling another event.  The segment's
*settled offset* is the largest ``o`` of the checkpoints that count, 0 without one.
A checkpoint is appended after each delivered batch that moved the prefix, so a
crash re-sends at most the events acknowledged since, and those in flight.

Reading (:func:`parse_records`, a pure function over bytes) keeps every item
whose header and checksum are valid.  Bytes that are not a valid item (a torn
tail after a power loss, a corrupted record) are skipped up to the next valid
item and reported as :class:`SpoolIssue`.

Ownership
    A process writes to (and replays) a segment only while holding an exclusive
    ``flock`` on it.  It holds its own segments until every event in them is
    settled, then deletes them; at ``close()`` it writes a last checkpoint and lets
    them go.  Segments nobody holds (left by an earlier or a dead process) are
    claimed, replayed from their settled offset and deleted once settled.  So
    several processes (or a forked child) can share one directory.

Faults of the directory itself
    A spool directory removed under a running process is created again (with a
    warning); segments this process holds open are read through their open file,
    so their events are still delivered, and rewritten into the directory at
    ``close()``.  Write and read errors are warned about at most once per
    ``WARN_INTERVAL`` seconds per kind of problem; an event that cannot be written
    is refused (:data:`REFUSED`): the engine keeps it in memory if it has room,
    else counts it as dropped.
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
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from ..fileio import write_all
from .envelope import Envelope, producer_id
from .toolkit import split_requests

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process per spool_dir
    fcntl = None  # type: ignore[assignment]  # no fcntl on Windows: the checks below test for None

try:  # the C append (_append.c), built at install where there is a C compiler
    from . import _append as _accelerator
except ImportError:  # pragma: no cover - installed without a compiler: the Python append below
    _accelerator = None  # type: ignore[assignment]  # the checks below test for None

log = logging.getLogger("telemetry_sinks.delivery")

MAGIC = b"\x89TSR"
CHECKPOINT_MAGIC = b"\x89TSA"
_PREFIX = b"\x89TS"  # what both magics start with: where the reader resynchronises
HEADER = struct.Struct(">4sII")
_pack_header = HEADER.pack
_ANCHOR = struct.Struct(">QI")  # a checkpoint's body: offset, checksum of the record ending there
CHECKPOINT_SIZE = HEADER.size + _ANCHOR.size
SUFFIX = ".wal"
#: At most one warning per this many seconds for the same kind of spool problem.
WARN_INTERVAL = 60.0

#: What :meth:`Spool.write` did with an event.
KEPT = "kept"  # on disk, and the caller may hold it in memory too
ON_DISK = "on disk"  # on disk only: it is replayed from there (memory was full)
REFUSED = "refused"  # not written: the spool is full, closed or cannot be written
_SEGMENT = attrgetter("segment")
_KEPT = (KEPT, 0)  # what the usual write returns
#: ``Spool.refusal`` when an event was refused for lack of room (``max_bytes``).
FULL = "spool full"

_fdatasync = getattr(os, "fdatasync", os.fsync)


#: A record's bytes besides the event id and the JSON: the header and the newline between them.
RECORD_OVERHEAD = HEADER.size + 1

#: An append that keeps the GIL and takes longer than this (ns) is slow.  A thread preempted
#: on a busy machine loses the CPU for a few milliseconds; a file system that blocks
#: (writeback throttling, a network file system) for longer, and again and again.
SLOW_WRITE_NS = 10_000_000
#: Two slow appends within this time (ns): the file system blocks ...
SLOW_AGAIN_NS = 1_000_000_000
#: ... and the appends release the GIL for this long (ns), as ``os.write`` does.
RELEASE_AFTER_SLOW_NS = 60 * 1_000_000_000


def _record_size(env: Envelope) -> int:
    """The bytes of ``env``'s record."""
    return RECORD_OVERHEAD + len(env.event_id) + env.size


def encode_record(event_id: str, data: str) -> bytes:
    """One spool record for an event (see the module docstring)."""
    return _record(event_id, data)[0]


def _record(event_id: str, data: str) -> tuple[bytes, int]:
    if not event_id.isascii():
        event_id.encode("ascii")  # raises UnicodeEncodeError: a record's id is ASCII
    body = f"{event_id}\n{data}".encode()
    crc = _crc32(body)
    return _pack_header(MAGIC, len(body), crc) + body, crc


def append_in_python(fd: int, event_id: str, data: str) -> tuple[int, int]:
    """Append an event's record to ``fd``; return (its size, the CRC-32 of its body).

    What the C accelerator's ``append`` does, for an installation without it: the same
    bytes, written with ``os.write``, which releases the GIL.  The accelerator keeps the
    GIL: while a sink's worker waits for the GIL, each release hands it over and the
    emitting thread waits for the worker's work on every event (the convoy effect; the
    durable emit ran at a third of the memory-only one for that reason), and it builds
    the record in C, about a microsecond less an event.  It releases the GIL too, for
    ``RELEASE_AFTER_SLOW_NS``, after two appends within ``SLOW_AGAIN_NS`` that took longer
    than ``SLOW_WRITE_NS`` each (a file system that blocks), so that a slow disk never
    stops the application's other threads for long.
    """
    record, crc = _record(event_id, data)
    write_all(fd, record)
    return len(record), crc


if _accelerator is not None:
    _accelerator.configure(SLOW_WRITE_NS, SLOW_AGAIN_NS, RELEASE_AFTER_SLOW_NS)
    _append, _write, _crc32 = _accelerator.append, _accelerator.write, _accelerator.crc32
else:  # pragma: no cover - installed without a compiler
    _append, _write, _crc32 = append_in_python, write_all, zlib.crc32
#: True if the spool's appends and checkpoints keep the GIL and build records in C (a segment's
#: ``Ledger`` too), and its reader scans segments in C.
ACCELERATED = _accelerator is not None


def encode_checkpoint(offset: int, checksum: int) -> bytes:
    """A checkpoint: the record ending at ``offset`` (CRC-32 ``checksum``) and those before are settled."""
    body = _ANCHOR.pack(offset, checksum)
    return HEADER.pack(CHECKPOINT_MAGIC, len(body), _crc32(body)) + body


@dataclass(frozen=True)
class SpoolIssue:
    """Bytes skipped while reading a segment: ``kind`` is "torn tail" or "corrupted record"."""

    offset: int
    length: int
    kind: str


@dataclass
class ParsedSegment:
    """The valid items of a segment, in order, and what was skipped.

    ``records`` are (event_id, data); ``ends[i]`` is the offset where record ``i``
    ends and ``checksums[i]`` its CRC-32; ``checkpoints`` are (position, offset,
    checksum) triples.  Zero bytes from the end of the last item to the end of the
    segment are room reserved for records never written, not an issue.
    """

    records: list[tuple[str, str]] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    checksums: list[int] = field(default_factory=list)
    checkpoints: list[tuple[int, int, int]] = field(default_factory=list)
    issues: list[SpoolIssue] = field(default_factory=list)
    #: The bytes before the zeros that end a segment still reserved for more records (the head
    #: of a process that was killed), or all of them.
    length: int = 0

    @property
    def settled(self) -> int:
        """The settled offset: records ending at or before it were acknowledged or dead-lettered.

        The largest offset of a checkpoint whose record is there: ending at that offset,
        before the checkpoint, with the checksum it names.
        """
        anchors = dict(zip(self.ends, self.checksums))
        return max(
            (offset for position, offset, checksum in self.checkpoints
             if offset <= position and anchors.get(offset) == checksum),
            default=0,
        )  # fmt: skip

    def unsettled(self) -> list[tuple[str, str, int]]:
        """(event_id, data, end) of every record after the settled offset, in order."""
        settled = self.settled
        return [(i, d, end) for (i, d), end in zip(self.records, self.ends) if end > settled]


def _item_at(buf: bytes, pos: int) -> tuple[int, str | None, Any, int] | None:
    """The item starting at ``pos`` as (end, event_id, data, checksum) for a record,
    (end, None, offset, checksum) for a checkpoint, or None if there is none."""
    body_start = pos + HEADER.size
    if body_start > len(buf):
        return None
    magic, length, crc = HEADER.unpack_from(buf, pos)
    end = body_start + length
    if end > len(buf):
        return None
    if magic == MAGIC:
        body = buf[body_start:end]
        if _crc32(body) != crc:
            return None
        sep = body.find(b"\n")
        if sep <= 0:
            return None
        try:
            return end, body[:sep].decode("ascii"), body[sep + 1 :].decode("utf-8"), crc
        except UnicodeDecodeError:
            return None
    if magic == CHECKPOINT_MAGIC and length == _ANCHOR.size:
        body = buf[body_start:end]
        if _crc32(body) != crc:
            return None
        return end, None, *_ANCHOR.unpack(body)
    return None


def scan_in_python(
    buf: bytes,
    pos: int,
    records: list[tuple[str, str]],
    ends: list[int],
    checksums: list[int],
    checkpoints: list[tuple[int, int, int]],
) -> int:
    """Read the valid items of ``buf`` from ``pos`` on, up to the first position holding none (or
    the end); return that position.  Records go to ``records``, ``ends`` and ``checksums``,
    checkpoints to ``checkpoints`` as (position, offset, checksum).

    The specification of the C accelerator's ``scan``, which does the same about four times
    faster (a sink reads back from disk what did not fit in memory); the tests check that
    both find the same items in any bytes.
    """
    end = len(buf)
    while pos < end:
        found = _item_at(buf, pos)
        if found is None:
            break
        stop, event_id, value, checksum = found
        if event_id is None:
            checkpoints.append((pos, value, checksum))
        else:
            records.append((event_id, value))
            ends.append(stop)
            checksums.append(checksum)
        pos = stop
    return pos


_scan = _accelerator.scan if _accelerator is not None else scan_in_python


def parse_records(buf: bytes | bytearray | memoryview) -> ParsedSegment:
    """Every valid record and checkpoint in ``buf`` and the byte ranges skipped.  Never raises."""
    return _parse(bytes(buf), _scan)


def _parse(buf: bytes, scan: Any) -> ParsedSegment:
    """``parse_records`` with ``scan`` (the C one or :func:`scan_in_python`) reading the valid runs."""
    parsed = ParsedSegment(length=len(buf))
    pos, end = 0, len(buf)
    while True:
        pos = scan(buf, pos, parsed.records, parsed.ends, parsed.checksums, parsed.checkpoints)
        if pos >= end:
            break
        if buf.count(0, pos) == end - pos:  # the reserved room of a head (see Ledger.map)
            parsed.length = pos
            return parsed
        resync = pos
        while True:
            resync = buf.find(_PREFIX, resync + 1)
            if resync < 0 or _item_at(buf, resync) is not None:
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


def _read_fd(fd: int, offset: int = 0) -> bytes:
    """The content of the file open as ``fd`` from ``offset`` on (also after it was deleted)."""
    chunks = []
    if not hasattr(os, "pread"):  # pragma: no cover - Windows
        os.lseek(fd, offset, os.SEEK_SET)
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


_SUMS = "I" if array("I").itemsize >= 4 else "L"  # CRC-32s: 4 bytes each


class Budget:
    """The bytes a spool directory holds (``used``) and may hold (``limit``): what every segment's
    :meth:`Ledger.write` checks and counts."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int, used: int = 0) -> None:
        self.limit = limit
        self.used = used


class Ledger:
    """A segment's file (``fd``), its size in bytes, and its records not settled yet, oldest first:
    their end offsets and checksums.

    :meth:`write` is the spool's usual append in one call: the room check (``limit``, the
    segment's, and the spool's :class:`Budget`), the record, its ``write(2)`` (or the copy into
    the mapped file, see :meth:`map`) and the
    bookkeeping; the C accelerator's ``Ledger`` does the same without a Python frame (the
    tests check that both behave alike).  The records are two flat arrays and a read index
    (12 bytes a record) rather than Python ints in deques (about 80): a spool that holds a
    long outage's events on disk holds this for each of them in memory.
    """

    __slots__ = ("fd", "size", "limit", "_ends", "_sums", "_first")

    def __init__(
        self,
        fd: int = -1,
        size: int = 0,
        limit: int = 2**63 - 1,
        ends: Iterable[int] = (),
        sums: Iterable[int] = (),
    ) -> None:
        self.fd = fd
        self.size = size
        self.limit = limit
        self._ends = array("Q", ends)
        self._sums = array(_SUMS, sums)
        if len(self._ends) != len(self._sums):
            raise ValueError("Ledger(): as many ends as sums")
        self._first = 0

    def __len__(self) -> int:
        return len(self._ends) - self._first

    def __bool__(self) -> bool:
        return len(self._ends) > self._first

    def __iter__(self) -> Iterator[int]:
        """The end offsets, oldest first."""
        return itertools.islice(self._ends, self._first, None)

    def append(self, end: int, checksum: int) -> None:
        """A record ending at ``end`` (with CRC-32 ``checksum``) was written."""
        self._ends.append(end)
        self._sums.append(checksum)

    def write(self, event_id: str, data: str, budget: Budget) -> int:
        """Append the event's record to ``fd`` if it fits under ``limit`` and the ``budget``; return
        where it ends (0: it does not fit, nothing written).  Raises what ``_append`` raises."""
        size = RECORD_OVERHEAD + len(event_id) + (len(data) if data.isascii() else len(data.encode("utf-8")))
        if self.size + size > self.limit or budget.used + size > budget.limit:
            return 0
        written, checksum = _append(self.fd, event_id, data)
        end = self.size = self.size + written
        budget.used += written
        self.append(end, checksum)
        return end

    def put(self, data: bytes) -> int:
        """Append ``data`` (a checkpoint, records written again) at ``size``; return its length."""
        _write(self.fd, data)
        self.size += len(data)
        return len(data)

    @property
    def mapped(self) -> bool:
        """Always False: only the C ``Ledger`` maps its segment (:meth:`map`)."""
        return False

    def map(self) -> bool:
        """Write through a shared mapping of the file from now on: the C ``Ledger`` does where it can
        (a record is then a copy into the page cache, without a system call); here, False."""
        return False

    def release(self) -> None:
        """Unmap the file and cut it to ``size`` (after :meth:`map`); nothing to do here."""

    def first(self) -> int:
        """The end offset of the oldest record (IndexError if there is none)."""
        if self._first >= len(self._ends):
            raise IndexError("the ledger holds no unsettled record")
        return self._ends[self._first]

    def pop_first(self) -> tuple[int, int]:
        """Remove the oldest record; return its (end offset, checksum)."""
        i = self._first
        if i >= len(self._ends):
            raise IndexError("the ledger holds no unsettled record")
        popped = self._ends[i], self._sums[i]
        self._advance(i + 1)
        return popped

    def pop_run(self, ends: Iterable[int]) -> tuple[int, int, int]:
        """Remove the oldest records while they are ``ends``, in order (a batch acknowledged as it
        was written); return (how many, end offset and checksum of the last one removed)."""
        stored, first = self._ends, self._first
        i, stop = first, len(stored)
        for end in ends:
            if i == stop or stored[i] != end:
                break
            i += 1
        if i == first:
            return 0, 0, 0
        last = stored[i - 1], self._sums[i - 1]
        self._advance(i)
        return i - first, *last

    def _advance(self, i: int) -> None:
        if i >= 4096 and i * 2 >= len(self._ends):  # drop the settled half now and then
            del self._ends[:i]
            del self._sums[:i]
            i = 0
        self._first = i

    def clear(self) -> None:
        """Forget every unsettled record."""
        self._ends = array("Q")
        self._sums = array(_SUMS)
        self._first = 0


if _accelerator is not None:
    _Ledger: Any = _accelerator.Ledger
    _Budget: Any = _accelerator.Budget
else:  # pragma: no cover - installed without a compiler
    _Ledger, _Budget = Ledger, Budget


@dataclass(eq=False)
class Segment:
    """A segment file this process holds (locked through ``fd``), and which of its events are settled.

    ``ledger`` holds its size and the end offsets of the records not settled yet, in
    file order, with their checksums; ``early`` those settled before an earlier
    record was; ``settled`` is the end of the settled prefix (``settled_sum`` the
    checksum of the record ending there) and ``checkpointed`` the offset of the
    last checkpoint written.  ``disk_from`` (own segments): where the records that are
    only on disk start (memory was full), None if there are none left to load.
    ``replay`` holds the records loaded to be handed out again, from ``cursor``.
    """

    path: str
    fd: int
    ledger: Any = None  # a Ledger (the C one when built) on ``fd``
    sealed: bool = False
    early: set[int] = field(default_factory=set)
    settled: int = 0
    settled_sum: int = 0
    checkpointed: int = 0
    disk_from: int | None = None
    replay: list[tuple[str, str, int]] = field(default_factory=list)
    cursor: int = 0
    closed: bool = False

    def __post_init__(self) -> None:
        if self.ledger is None:
            self.ledger = _Ledger(self.fd)

    @property
    def size(self) -> int:
        """Bytes of the segment's items (its file is longer while it is a mapped head: zeros)."""
        return int(self.ledger.size)

    @size.setter
    def size(self, value: int) -> None:
        self.ledger.size = value

    def settle(self, end: int) -> None:
        """The record ending at ``end`` was acknowledged or dead-lettered."""
        pending = self.ledger
        if not pending or end < pending.first():
            return  # settled before (a duplicate), or not tracked
        if end != pending.first():
            self.early.add(end)
            return
        self.settled, self.settled_sum = pending.pop_first()
        self._settle_early()

    def settle_all(self, ends: list[int]) -> None:
        """``settle`` each of ``ends``; the usual case (the oldest records, in order) at once."""
        count, end, checksum = self.ledger.pop_run(ends)
        if count:
            self.settled, self.settled_sum = end, checksum
            self._settle_early()
        for end in itertools.islice(ends, count, None):
            self.settle(end)

    def _settle_early(self) -> None:
        """Move the settled prefix over the records that were settled before it reached them."""
        pending, early = self.ledger, self.early
        while early and pending and pending.first() in early:
            early.discard(pending.first())
            self.settled, self.settled_sum = pending.pop_first()

    def unsettled_records(self, buf: bytes, base: int = 0) -> list[tuple[str, str, int]]:
        """The records of ``buf`` (this segment's bytes from ``base``) that are still pending."""
        waiting = set(self.ledger) - self.early
        parsed = parse_records(buf)
        return [(i, d, base + end) for (i, d), end in zip(parsed.records, parsed.ends)
                if base + end in waiting]  # fmt: skip


class Spool:
    """A directory of segments: ``write`` events, replay with ``next_batch``, ``ack`` what was settled.

    Thread-safe.  ``max_bytes`` bounds the directory: when a write would exceed
    it, the oldest segments are deleted if ``evict_oldest`` (their events that are
    only on disk are counted as lost), otherwise the new event is refused.
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
        self._budget = _Budget(max_bytes)  # the bytes in the directory, and max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.evict_oldest = evict_oldest
        self._lock = threading.RLock()  # see DeliveryEngine._reset_state
        self._head: Segment | None = None
        self._sealed: list[Segment] = []  # own segments no longer written to, oldest first
        self._claimed: list[Segment] = []  # segments of other (earlier, dead) processes
        self._replaying: Segment | None = None  # the segment next_batch hands records from
        #: Some own events are on disk only (not loaded yet): new ones go there too, in order.
        self._spilling = False
        self._candidates: list[str] = []  # segment names not tried yet, oldest first
        self._warn_after: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        #: Why the last refused write was refused: FULL, or the OS error.
        self.refusal: str | None = None
        #: The OS error of the last write that failed (None after a successful write).
        self.write_error: str | None = None
        self._counter = 0
        self._last_ns = 0
        self._closed = False
        self.scan()

    @property
    def size(self) -> int:
        """Bytes of segment files in the directory (as of the last scan, plus own writes)."""
        return int(self._budget.used)

    @property
    def max_bytes(self) -> int:
        """The most bytes of segment files the directory may hold."""
        return int(self._budget.limit)

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        self._budget.limit = value

    # ------------------------------------------------------------------ scanning

    def _held_locked(self) -> list[Segment]:
        return [*self._sealed, *([self._head] if self._head else []), *self._claimed]

    def scan(self) -> None:
        """Re-read the directory: segments left by earlier or other processes become replayable."""
        with self._lock:
            if self._closed:
                return
            held = {os.path.basename(s.path): s for s in self._held_locked()}
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
                segment = held.get(entry.name)
                if segment is not None:  # its file may be longer: room reserved for its next records
                    total += segment.size
                    continue
                try:
                    total += entry.stat().st_size
                except OSError:
                    continue
                names.append(entry.name)
                stamp = entry.name[:20]
                if stamp.isdigit():  # new segments sort after these, even if the clock went back
                    self._last_ns = max(self._last_ns, int(stamp))
            names.sort()
            self._candidates = names
            # Own segments deleted under us are not in the directory but still held.
            self._budget.used = total + sum(s.size for s in self._held_locked() if _unlinked(s.fd))

    def check_directory(self) -> None:
        """Create the directory again if it was removed; move on from a head deleted under us."""
        with self._lock:
            if self._closed:
                return
            try:
                self._ensure_directory_locked()
            except OSError as exc:
                self._warn_locked("scan", "spool %s cannot be used (%s); retrying later",
                                  self.directory, str(exc))
            head = self._head
            if head is not None and _unlinked(head.fd):
                self._seal_head_locked()  # its events stay readable through the open file

    def has_backlog(self) -> bool:
        """True if records older than the events held in memory wait: a replay under way, or
        segments of earlier (or other) processes."""
        with self._lock:
            replaying = self._replaying
            return bool((replaying is not None and replaying.cursor < len(replaying.replay))
                        or self._candidates)  # fmt: skip

    def has_spilled(self) -> bool:
        """True if own events newer than those held in memory wait on disk only."""
        return self._spilling

    def _update_spilling_locked(self) -> None:
        head = self._head
        self._spilling = (head is not None and head.disk_from is not None) or any(
            s.disk_from is not None for s in self._sealed
        )

    # ------------------------------------------------------------------ writing

    def write(self, env: Envelope, keep: bool = True) -> tuple[str, int]:
        """Append ``env``; return (KEPT, ON_DISK or REFUSED, records evicted).

        ``keep``: the caller has room to hold the event in memory.  Once an event is
        on disk only, the later ones are too until the worker reads them back, so
        that they keep their order.  Sets ``env.segment`` and ``env.end`` when written.
        """
        with self._lock:
            head = self._head
            # The usual case (a head with room, memory has room, no fsync, no error to clear):
            # one call to the head's ledger checks the room, writes and keeps the books.
            if head is not None and keep and not (self._spilling or self.fsync or self.write_error):
                try:
                    end = head.ledger.write(env.event_id, env.data, self._budget)
                except OSError as exc:
                    return self._retry_locked(env, exc, 0, keep)
                if end:
                    env.segment = head
                    env.end = end
                    return _KEPT
            return self._write_locked(env, keep)

    def _write_locked(self, env: Envelope, keep: bool) -> tuple[str, int]:
        """``write`` when the head may need sealing or making, room evicting, or state updating."""
        size = _record_size(env)
        room, evicted = self._room_locked(size)
        if not room:
            return REFUSED, evicted
        try:
            head = self._head if self._head is not None else self._new_head_locked()
            start, end = head.size, self._write_record_locked(head, env, size)
        except OSError as exc:
            return self._retry_locked(env, exc, evicted, keep)
        return self._written_locked(env, head, start, end, evicted, keep)

    def _retry_locked(self, env: Envelope, exc: OSError, evicted: int, keep: bool) -> tuple[str, int]:
        """A write failed: on a full disk, evict (if allowed) and write once more into a new head."""
        size = _record_size(env)
        freed = self._evict_after_locked(exc, size)
        evicted += freed
        try:
            if not freed:
                raise exc
            head = self._new_head_locked()
            start, end = head.size, self._write_record_locked(head, env, size)
        except OSError as error:
            self._write_failed_locked(error)
            return REFUSED, evicted
        return self._written_locked(env, head, start, end, evicted, keep)

    def _write_record_locked(self, head: Segment, env: Envelope, size: int) -> int:
        """Append ``env``'s record (``size`` bytes) to ``head`` through its ledger, for which the room
        was made; return where it ends."""
        if not head.size:  # a segment holds at least one record, however large
            head.ledger.limit = max(self.segment_bytes, size)
        end = int(head.ledger.write(env.event_id, env.data, self._budget))
        if not end:  # pragma: no cover - the room was made: _room_locked counts as the ledger does
            raise OSError(errno.ENOSPC, "no room in the spool segment")
        return end

    def _written_locked(
        self, env: Envelope, head: Segment, start: int, end: int, evicted: int, keep: bool
    ) -> tuple[str, int]:
        """What follows a record written from ``start`` to ``end`` in ``head`` off the usual path."""
        self.write_error = None
        if self.fsync:
            self._fsync_locked(head)
        env.segment = head
        env.end = end
        if keep and not self._spilling:
            return KEPT, evicted
        if head.disk_from is None:
            head.disk_from = start
        self._spilling = True
        return ON_DISK, evicted

    def _room_locked(self, size: int) -> tuple[bool, int]:
        """Make room for ``size`` bytes: evict (if allowed) when the directory is full, seal a full
        head; return (whether the event may be written, records evicted); ``refusal`` says why not."""
        if self._closed:
            self.refusal = "the spool is closed"
            return False, 0
        evicted = 0
        over = self._budget.used + size - self.max_bytes
        if over > 0 and self.evict_oldest:
            evicted = self._evict_locked(over)
            over = self._budget.used + size - self.max_bytes
        if over > 0:
            self.refusal = FULL
            return False, evicted
        head = self._head
        if head is not None and head.size and head.size + size > self.segment_bytes:
            self._seal_head_locked()
        return True, evicted

    def _evict_after_locked(self, exc: OSError, size: int) -> int:
        """A write of ``size`` bytes failed: on a full disk, seal the head and evict (if allowed);
        return the records evicted (0: do not write again)."""
        if exc.errno != errno.ENOSPC or not self.evict_oldest:
            return 0
        self._seal_head_locked()  # never append after a partial record
        return self._evict_locked(size)

    def _fsync_locked(self, head: Segment) -> None:
        try:
            _fdatasync(head.fd)
        except OSError as exc:
            self._warn_locked("fsync", "spool %s: fsync failed (%s); events may not survive a "
                              "power loss", self.directory, str(exc))

    def _write_failed_locked(self, exc: OSError) -> None:
        self.write_error = self.refusal = exc.strerror or str(exc)
        self._warn_locked("write", "spool %s: cannot write (%s); events refused", self.directory, str(exc))
        if self._head is not None:
            self._seal_head_locked()  # never append after a partial record

    def append(self, envelopes: Sequence[Envelope]) -> tuple[list[Envelope], int]:
        """Write ``envelopes`` to be replayed from disk; return (those refused, records evicted)."""
        refused: list[Envelope] = []
        evicted = 0
        for env in envelopes:
            outcome, lost = self.write(env, keep=False)
            evicted += lost
            if outcome == REFUSED:
                refused.append(env)
        return refused, evicted

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
        self._budget.used = sum(s.size for s in self._held_locked())
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
        self._head = Segment(path, fd, _Ledger(fd, 0, self.segment_bytes))
        self._head.ledger.map()  # records copied into the page cache (where the file can be mapped)
        return self._head

    def _release_locked(self, segment: Segment) -> None:
        """Unmap a head's file and cut it to its records (see ``Ledger.map``); then appends use write(2)."""
        try:
            segment.ledger.release()
        except OSError as exc:
            self._warn_locked("truncate", "spool segment %s cannot be cut to its length (%s); its "
                              "records still replay", segment.path, str(exc))

    def _seal_head_locked(self) -> None:
        """No more events go to the head: it is kept (locked) until its events are settled."""
        head, self._head = self._head, None
        if head is None:
            return
        self._release_locked(head)
        head.sealed = True
        if not head.ledger and head.disk_from is None:
            self._delete_locked(head)
            return
        if self.fsync:
            try:
                os.fsync(head.fd)
            except OSError:
                pass
        self._sealed.append(head)

    def _evict_locked(self, need: int) -> int:
        """Delete the oldest segments until ``need`` bytes are free; return the events lost.

        Segments of other processes go first, then own sealed ones (their events held
        in memory are still delivered; those only on disk are lost), never the head.
        """
        freed = lost = 0
        for name in list(self._candidates):
            if freed >= need:
                return lost
            segment = self._claim_locked(name)
            if segment is None:
                continue
            lost += len(segment.ledger)
            freed += segment.size
            self._delete_locked(segment)
        for segment in list(self._sealed):
            if freed >= need:
                break
            if segment is self._replaying:
                continue
            start = segment.disk_from
            if start is not None:
                lost += sum(1 for end in segment.ledger if end > start and end not in segment.early)
            freed += segment.size
            self._delete_locked(segment)
        return lost

    # ------------------------------------------------------------------ replaying

    def next_batch(self, max_events: int, max_bytes: int) -> list[Envelope]:
        """The next records to replay (from one segment, in order); [] if there are none."""
        with self._lock:
            if self._closed:
                return []
            segment = self._replaying
            if segment is None or segment.cursor >= len(segment.replay):
                segment = self._next_replay_locked()
                if segment is None:
                    return []
            records = itertools.islice(segment.replay, segment.cursor, None)
            batch = next(split_requests((_envelope(r, segment) for r in records), max_events, max_bytes), [])
            segment.cursor += len(batch)
            return batch

    def _next_replay_locked(self) -> Segment | None:
        """Load the next segment with records to replay: others' first, then own ones, oldest first."""
        done = self._replaying
        if done is not None:  # every record of it handed out: they are tracked by its ``ledger``
            done.replay, done.cursor = [], 0
        self._replaying = None
        while self._candidates:
            segment = self._claim_locked(self._candidates[0])
            if segment is None:
                continue
            if segment.replay:
                self._replaying = segment
                return segment
            self._delete_locked(segment)
        while True:
            segment = next((s for s in self._sealed if s.disk_from is not None), None)
            if segment is None:
                head = self._head
                if head is None or head.disk_from is None:
                    return None
                self._seal_head_locked()  # new events go to a new head, in memory again
                segment = head
            if self._load_own_locked(segment):
                self._replaying = segment
                return segment

    def _load_own_locked(self, segment: Segment) -> bool:
        """Read the records of an own segment that are only on disk; False if there are none."""
        start, segment.disk_from = segment.disk_from, None
        self._update_spilling_locked()
        try:
            buf = _read_fd(segment.fd, start or 0)
        except OSError as exc:
            self._warn_locked("read", "spool segment %s cannot be read (%s); its events stay on disk",
                              segment.path, str(exc))
            return False
        segment.replay = segment.unsettled_records(buf, start or 0)
        segment.cursor = 0
        if not segment.replay and not segment.ledger and segment.sealed:
            self._delete_locked(segment)
        return bool(segment.replay)

    def ack(self, envelopes: Sequence[Envelope]) -> None:
        """Mark events as settled (acknowledged or dead-lettered); checkpoint or delete their segments."""
        with self._lock:
            if self._closed:
                return
            touched: list[Segment] = []
            for segment, group in itertools.groupby(envelopes, _SEGMENT):
                if segment is None or segment.closed:
                    continue
                segment.settle_all([env.end for env in group])
                touched.append(segment)
            for segment in dict.fromkeys(touched):
                if segment.closed:
                    continue
                if segment.sealed and not segment.ledger:
                    self._delete_locked(segment)
                elif segment.settled > segment.checkpointed:
                    self._checkpoint_locked(segment)

    def _checkpoint_locked(self, segment: Segment) -> None:
        try:
            segment.ledger.put(encode_checkpoint(segment.settled, segment.settled_sum))
        except OSError as exc:
            self._warn_locked("checkpoint", "spool segment %s: cannot record what was delivered (%s); "
                              "its delivered events may be sent again after a restart", segment.path,
                              str(exc))
            return
        segment.checkpointed = segment.settled
        self._budget.used += CHECKPOINT_SIZE

    def marks(self) -> list[tuple[Segment, int]]:
        """Where this process's segments end now (``unsettled(marks)`` is what flush waits for)."""
        with self._lock:
            held = [*self._sealed, *([self._head] if self._head else [])]
            return [(s, s.size) for s in held]

    def unsettled(self, marks: list[tuple[Segment, int]]) -> bool:
        """True while a record written before ``marks`` were taken is neither acknowledged nor
        dead-lettered."""
        with self._lock:
            return any(s.ledger and s.ledger.first() <= position for s, position in marks)

    def idle_head(self) -> bool:
        """True if the head holds only settled events (it can be deleted)."""
        head = self._head
        return head is not None and not head.ledger and head.disk_from is None and not self._closed

    def retire_head(self) -> None:
        """Delete the head if every event in it is settled (the next write starts a new one)."""
        with self._lock:
            head = self._head
            if head is not None and not head.ledger and head.disk_from is None and not self._closed:
                self._head = None
                self._delete_locked(head)

    def _claim_locked(self, name: str) -> Segment | None:
        """Lock and read segment ``name`` unless another process holds it or it is gone."""
        self._candidates.remove(name)
        path = os.path.join(self.directory, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            return None
        except OSError:
            try:  # a read-only spool: replayable, but its checkpoints cannot be written
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                return None
        if not _try_lock(fd) or os.fstat(fd).st_nlink == 0:
            os.close(fd)
            return None
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
        size = len(buf)
        if parsed.length < size:  # the reserved room of a head whose process was killed
            try:
                os.ftruncate(fd, parsed.length)
            except OSError:  # read-only: nothing is appended to it
                pass
            else:  # the scan counted the file's length
                self._budget.used = max(0, self._budget.used - (size - parsed.length))
                size = parsed.length
        settled = parsed.settled
        replay = parsed.unsettled()
        sums = [c for c, end in zip(parsed.checksums, parsed.ends) if end > settled]
        ledger = _Ledger(fd, size, 2**63 - 1, [end for _, _, end in replay], sums)
        segment = Segment(path, fd, ledger, sealed=True, settled=settled, checkpointed=settled,
                          replay=replay)  # fmt: skip
        self._claimed.append(segment)
        return segment

    def _delete_locked(self, segment: Segment) -> None:
        removed = False  # the budget counts bytes on disk: a file that was not there is not counted
        try:
            if not _unlinked(segment.fd):
                os.unlink(segment.path)  # while still locked: no other process can claim it
                removed = True
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._warn_locked("delete", "spool segment %s cannot be deleted (%s); its events will be "
                              "replayed again", segment.path, str(exc))
        self._release_locked(segment)
        os.close(segment.fd)
        segment.closed = True
        segment.ledger.clear()
        segment.replay = []
        if segment.disk_from is not None:  # evicted before its events were read back
            segment.disk_from = None
            self._update_spilling_locked()
        if removed:
            self._budget.used = max(0, self._budget.used - segment.size)
        for held in (self._sealed, self._claimed):
            if segment in held:
                held.remove(segment)
        if segment is self._replaying:
            self._replaying = None
        if segment is self._head:
            self._head = None

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Checkpoint and close the files (releasing their locks); unsettled events stay on disk."""
        with self._lock:
            if self._closed:
                return
            rescue: list[tuple[str, str, int]] = []
            head = self._head
            for segment in self._held_locked():
                if segment.closed:
                    continue
                if not segment.ledger and (segment is head or segment.sealed):
                    self._delete_locked(segment)
                elif _unlinked(segment.fd):  # deleted under us: its events exist only here now
                    try:
                        rescue += segment.unsettled_records(_read_fd(segment.fd))
                    except OSError:
                        pass
                elif segment.settled > segment.checkpointed:
                    self._checkpoint_locked(segment)
            self._closed = True
            for segment in self._held_locked():
                if not segment.closed:
                    self._release_locked(segment)
                    os.close(segment.fd)
                    segment.closed = True
            self._head, self._sealed, self._claimed, self._replaying = None, [], [], None
            self._spilling = False
            if rescue:
                self._rescue_locked(rescue)

    def _rescue_locked(self, records: list[tuple[str, str, int]]) -> None:
        """Write ``records`` into a new segment (at close, for segments deleted under us)."""
        try:
            self._new_head_locked()
            assert self._head is not None
            self._head.ledger.put(b"".join(encode_record(i, d) for i, d, _ in records))
        except OSError as exc:
            log.warning("spool %s: %d events of segments deleted under this process cannot be "
                        "written again (%s); they are lost", self.directory, len(records), str(exc))
        finally:
            head, self._head = self._head, None
            if head is not None:
                self._release_locked(head)
                os.close(head.fd)
                head.closed = True

    def reopen(self) -> None:
        """Open again after :meth:`close`: the segments in the directory become replayable."""
        with self._lock:
            self._closed = False
        self.scan()

    def after_fork_in_child(self) -> None:
        """Forget the parent's files.  Closing our copies keeps the parent's locks held."""
        self._lock = threading.RLock()  # see DeliveryEngine._reset_state
        for segment in self._held_locked():
            # Closed for this process: nothing it still holds (an acknowledged envelope) may write to
            # the parent's file, whose head this process sees mapped too.
            segment.closed = True
            try:
                os.close(segment.fd)
            except OSError:
                pass
        self._head, self._sealed, self._claimed, self._replaying = None, [], [], None
        self._candidates = []
        self._spilling = False
        if not self._closed:
            self.scan()


def _envelope(record: tuple[str, str, int], segment: Segment) -> Envelope:
    event_id, data, end = record
    env = Envelope(event_id, data, segment=segment)
    env.end = end
    return env


__all__ = [
    "ACCELERATED",
    "CHECKPOINT_MAGIC",
    "CHECKPOINT_SIZE",
    "FULL",
    "HEADER",
    "KEPT",
    "MAGIC",
    "ON_DISK",
    "REFUSED",
    "ParsedSegment",
    "Budget",
    "Ledger",
    "Segment",
    "Spool",
    "SpoolIssue",
    "encode_checkpoint",
    "append_in_python",
    "encode_record",
    "parse_records",
    "scan_in_python",
]
