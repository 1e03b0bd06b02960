"""The archive sink: one JSONL file per UTC day plus an index, the mybinder.org archive format.

``ArchiveSink`` writes the layout described in :mod:`telemetry_sinks.archive_index`
(``events-YYYY-MM-DD.jsonl`` files and ``index.jsonl``), so
``pandas.read_json(path, lines=True)`` reads a day directly and ``index.jsonl``
lists the days.

How it works
------------

- Each event goes to the file of the UTC day of its ``__timestamp__`` (a capsule),
  or of its ``timestamp`` (a plain log record or a mybinder.org line); an event
  without a readable timestamp goes to today's file.
- Lines are written at once, one ``write(2)`` each on an ``O_APPEND`` descriptor, as
  the file sinks do: nothing is held in memory and a crash loses nothing.
- **Order.**  Events arrive mostly in order.  The open day's file is checked when the
  day *closes* and, only if some line arrived out of order, sorted by timestamp
  (a stable sort; lines without a timestamp keep their place after their
  predecessor) and replaced atomically.  So a closed day is always sorted; the open
  day is in arrival order until it closes.  Sorting holds one day in memory, and
  only for a day that needs it.
- **Closing a day.**  A day closes when an event of a later day arrives (a day that
  is not in the future of the UTC clock: an event dated in the future, from a
  client whose clock is ahead, goes to its own day's file without closing the
  current one), and at :meth:`close`.  Closing
  counts the lines, sorts if needed, gzips the file when ``compress`` is set and the
  day is over (``events-YYYY-MM-DD.jsonl.gz``; the open day stays plain while it
  can still receive events), and updates ``index.jsonl`` (rewritten atomically,
  sorted by date).
- **Late events** for a day that is already closed are appended to that day's file
  (to a ``.gz`` as one more gzip member, which every gzip reader reads on) and that
  day is sorted, recounted and re-indexed at the next day close or at ``close()``.
- **Restarts.**  At start, every day file changed after ``index.jsonl`` was last
  written, or missing from it, is sorted, counted, indexed (and compressed when its
  day is over): this repairs what a crash left.  An existing file for the day the
  first events belong to is continued (a ``.gz`` is decompressed first).
- **Duplicates.**  An event that carries an ``__event_id__`` already written (among
  the last ``dedup_window`` ids; the newest day file's last lines are read back at
  start) is skipped and counted in ``duplicates``: a relay that delivers its last
  round again after a crash, or a retrying client, writes each event once.
- One writing process per directory.
- **Retention** (:mod:`telemetry_sinks.retention`): with ``max_age`` set, day files
  whose day ended longer ago are deleted; with retention stages in the EventLog's
  policy, the personal fields of days old enough are removed or replaced.  Both at
  start and at each day close.

``telemetry-sinks archive rebuild DIR`` recomputes ``index.jsonl`` from the files
(:func:`telemetry_sinks.archive_index.rebuild_index`).
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import logging
import os
import re
from typing import Any

from traitlets import Bool, Int, Unicode

from ..archive_index import INDEX_NAME, IndexEntry, day_files, iter_lines, read_index, write_index
from ..capsule import event_time, event_timestamp, parse_timestamp
from ..dedup import RecentIds
from ..delivery.envelope import EVENT_ID_FIELD
from ..fileio import replace_file, write_all
from ..retention import RetentionRules, purge_archive
from .base import DirectorySink
from .max_age import MaxAge

__all__ = ["ArchiveSink"]

#: At most this much of the newest day file is read at start for the ids of its last lines.
_TAIL_BYTES = 16 * 1024 * 1024

_log = logging.getLogger("telemetry_sinks.sinks.archive")
_UTC = _dt.timezone.utc
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_TS_FIELD = re.compile(rb'"(?:__timestamp__|timestamp)"\s*:\s*"([^"\\]{1,64})"')
_MIN = _dt.datetime.min.replace(tzinfo=_UTC)


# --------------------------------------------------------------------------- timestamps


def _payload_day(payload: Any) -> str | None:
    """The UTC day (``YYYY-MM-DD``) of a payload's ``__timestamp__`` or ``timestamp``."""
    text = event_timestamp(payload)
    if isinstance(text, str) and (text.endswith("Z") or text.endswith("+00:00")) and _DATE.match(text):
        return text[:10]  # the common case, already UTC
    when = event_time(payload)
    return when.date().isoformat() if when else None


def _line_key(line: bytes) -> _dt.datetime | None:
    match = _TS_FIELD.search(line, 0, 512)
    if match:
        when = parse_timestamp(match.group(1).decode("ascii", "replace"))
        if when is not None:
            return when
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return event_time(obj)


def _utc_today() -> str:
    return _dt.datetime.now(_UTC).date().isoformat()


# --------------------------------------------------------------------------- the sink


class ArchiveSink(MaxAge, DirectorySink):
    """Events in one ``events-YYYY-MM-DD.jsonl`` file per UTC day, with an ``index.jsonl``.

    The layout of the mybinder.org events archive; see the module documentation
    for ordering, day closing, late events and restarts.
    """

    sink_name = "archive"

    directory = Unicode(None, allow_none=True, help="Directory of the day files and index.jsonl.").tag(
        config=True, destination=("directory", "path")
    )
    compress = Bool(
        False,
        help="gzip each day's file once the day is over (events-YYYY-MM-DD.jsonl.gz; the index names it).",
    ).tag(config=True)
    dedup_window = Int(
        10_000,
        help="How many recent event ids (__event_id__) are remembered: an event whose id was written "
        "already (delivered again by a relay or a retrying client) is not written twice. At start the "
        "ids of the newest day file's last lines are read back. 0: no deduplication.",
    ).tag(config=True)

    # Class defaults: logging.shutdown() may close a sink whose __init__ failed.
    _fd: int | None = None
    _day: str | None = None
    _closed = False

    def __init__(self, directory: str | os.PathLike[str] | None = None, **options: Any) -> None:
        super().__init__(directory, **options)
        os.makedirs(self.directory, exist_ok=True)
        self._fd = None
        self._day = None
        self._dirty: set[str] = set()
        self._closed = False
        self._index = read_index(self.directory)
        self._retention: RetentionRules | None = None
        self._recover()
        self._recent = RecentIds(self.dedup_window)
        self.duplicates = 0  # events not written because their id was written already
        self._remember_last_ids()
        self.apply_retention()

    # ------------------------------------------------------------------ paths

    def _plain(self, day: str) -> str:
        return os.path.join(self.directory, f"events-{day}.jsonl")

    def path_for(self, day: str) -> str:
        """The current file of ``day`` (``.jsonl``, or ``.jsonl.gz`` once compressed)."""
        plain = self._plain(day)
        return plain if os.path.exists(plain) or not os.path.exists(plain + ".gz") else plain + ".gz"

    @property
    def index(self) -> list[IndexEntry]:
        """The index entries, by date."""
        return [self._index[d] for d in sorted(self._index)]

    # ------------------------------------------------------------------ start

    def _recover(self) -> None:
        """Finalize the day files changed after the index was written, or missing from it."""
        index_path = os.path.join(self.directory, INDEX_NAME)
        try:
            index_mtime = os.stat(index_path).st_mtime_ns
        except FileNotFoundError:
            index_mtime = -1
        today = _utc_today()
        stale = []
        for day, name in day_files(self.directory).items():
            entry = self._index.get(day)
            mtime = os.stat(os.path.join(self.directory, name)).st_mtime_ns
            if entry is None or entry.name != name or mtime > index_mtime:
                stale.append(day)
        for day in stale:
            self._finalize(day, over=day < today)
        if stale:
            write_index(self.directory, self._index)

    # ------------------------------------------------------------------ writing

    def _remember_last_ids(self) -> None:
        """Read the ids of the newest day file's last ``dedup_window`` lines (a restart's memory)."""
        days = sorted(day_files(self.directory).items())
        if not self._recent.capacity or not days:
            return
        path = os.path.join(self.directory, days[-1][1])
        if path.endswith(".gz"):
            return  # a closed day: what is delivered again goes to the open one
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            file.seek(max(0, size - _TAIL_BYTES))
            lines = file.read().splitlines()[-self._recent.capacity :]
        for line in lines:
            try:
                event_id = json.loads(line).get(EVENT_ID_FIELD)
            except (ValueError, AttributeError):
                continue  # a partial first line, or not an object
            if isinstance(event_id, str):
                self._recent.add(event_id)

    def write_payload(self, payload: dict[str, Any]) -> None:
        if self._closed:
            raise ValueError("the archive sink is closed")
        event_id = payload.get(EVENT_ID_FIELD)
        if isinstance(event_id, str) and self._recent.capacity:
            if self._recent.seen(event_id):
                self.duplicates += 1
                return
            self._write_payload(payload)
            self._recent.add(event_id)  # only once it is written
            return
        self._write_payload(payload)

    def _write_payload(self, payload: dict[str, Any]) -> None:
        line = (self.encode(payload) + "\n").encode("utf-8")
        day = _payload_day(payload) or _utc_today()
        if day != self._day:
            if (self._day is not None and day < self._day) or day > _utc_today():
                self._append_other(day, line)  # a late event, or one dated in the future
                return
            self._switch(day)
        write_all(self._fd, line)  # type: ignore[arg-type]  # _switch() opened the day

    def _open_day(self, day: str) -> None:
        plain = self._plain(day)
        if not os.path.exists(plain) and os.path.exists(plain + ".gz"):
            # The day was compressed (closed earlier) and receives events again: continue it plain.
            replace_file(plain, iter_lines(plain + ".gz"), gz=False)
            os.remove(plain + ".gz")
            self._dirty.add(day)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(plain, flags, 0o644)
        self._day = day

    def _switch(self, day: str) -> None:
        """Close the open day (if any) and open ``day``."""
        previous = self._day
        self._close_fd()
        self._open_day(day)
        if previous is not None:
            self._dirty.add(previous)
            self._finalize_dirty()
            self.apply_retention()

    def _append_other(self, day: str, line: bytes) -> None:
        """Append ``line`` to the file of ``day``, which is not the open day."""
        plain = self._plain(day)
        if not os.path.exists(plain) and os.path.exists(plain + ".gz"):
            with open(plain + ".gz", "ab") as out:
                out.write(gzip.compress(line, mtime=0))  # one more gzip member
        else:
            with open(plain, "ab") as out:
                out.write(line)
        self._dirty.add(day)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # ------------------------------------------------------------------ closing days

    def _over(self, day: str) -> bool:
        """Whether ``day`` can be compressed: before the open day and before today (UTC)."""
        if self._day is not None and day >= self._day and self._fd is not None:
            return False
        return day < _utc_today()

    def _finalize_dirty(self) -> None:
        for day in sorted(self._dirty):
            if day == self._day and self._fd is not None:
                continue  # the open day is finalized when it closes
            self._finalize(day, over=self._over(day))
            self._dirty.discard(day)
        write_index(self.directory, self._index)

    def _finalize(self, day: str, over: bool) -> None:
        """Sort (if needed), count, compress (if ``compress`` and ``over``) and index ``day``."""
        plain = self._plain(day)
        source = plain if os.path.exists(plain) else plain + ".gz"
        if not os.path.exists(source):
            self._index.pop(day, None)
            return
        count, in_order, clean = 0, True, True
        previous = _MIN
        for line in iter_lines(source):
            if not line.strip() or not line.endswith(b"\n"):
                clean = False
                if not line.strip():
                    continue
            key = _line_key(line)
            if key is not None:
                if key < previous:
                    in_order = False
                previous = key
            count += 1
        gz_wanted = self.compress and over
        target = plain + ".gz" if gz_wanted or source.endswith(".gz") else plain
        if not in_order or not clean:
            lines = self._sorted_lines(source)
            replace_file(target, lines, gz=target.endswith(".gz"))
        elif target != source:
            replace_file(target, iter_lines(source), gz=target.endswith(".gz"))
        if target != source or (source == plain and os.path.exists(plain + ".gz")):
            stale = plain if target.endswith(".gz") else plain + ".gz"
            if os.path.exists(stale):
                os.remove(stale)  # the other form: the source just rewritten, or an interrupted gzip
        self._index[day] = IndexEntry(os.path.basename(target), day, count)

    @staticmethod
    def _sorted_lines(source: str) -> list[bytes]:
        """The lines of ``source`` in timestamp order (stable; untimed lines follow their predecessor)."""
        keyed: list[tuple[_dt.datetime, int, bytes]] = []
        previous = _MIN
        for line in iter_lines(source):
            if not line.strip():
                continue
            if not line.endswith(b"\n"):
                line += b"\n"
            key = _line_key(line)
            previous = key if key is not None else previous
            keyed.append((previous, len(keyed), line))
        keyed.sort(key=lambda item: (item[0], item[1]))
        return [line for _, _, line in keyed]

    # ------------------------------------------------------------------ retention

    def set_retention(self, rules: RetentionRules | None) -> None:
        """Hook of the EventLog: the retention stages of its policy, applied now and at each day close."""
        with self.lock:  # type: ignore[union-attr]  # Handler.lock is None only before createLock(), run by __init__
            self._retention = rules
            if not self._closed:
                self.apply_retention()

    def apply_retention(self) -> None:
        """Delete the days older than ``max_age`` and apply the retention stages due (never the open day)."""
        if not self.max_age and not self._retention:
            return
        try:
            report = purge_archive(self.directory, self._retention, self.max_age_seconds,
                                   skip_days=[self._day] if self._day and self._fd is not None else [])
        except OSError:
            _log.exception("retention in the archive %s failed; it is tried again at the next day close",
                           self.directory)
            return
        if report.changes:
            self._index = read_index(self.directory)

    # ------------------------------------------------------------------ lifecycle

    def flush(self) -> None:
        """Nothing is buffered: every line is written when it arrives."""

    def close(self) -> None:
        """Close the open day (sorted, counted, indexed; compressed if its day is over)."""
        with self.lock:  # type: ignore[union-attr]  # Handler.lock is None only before createLock(), run by __init__
            if not self._closed and getattr(self, "_index", None) is not None:
                self._closed = True
                if self._day is not None:
                    self._dirty.add(self._day)
                self._close_fd()
                try:
                    self._finalize_dirty()
                    self.apply_retention()
                except OSError:
                    _log.exception("closing the archive in %s failed", self.directory)
        super().close()
