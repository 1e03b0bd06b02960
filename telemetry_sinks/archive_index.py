"""The archive format: one ``events-YYYY-MM-DD.jsonl`` file per UTC day plus ``index.jsonl``.

The layout of the public mybinder.org analytics events archive
(archive.analytics.mybinder.org)::

    events-2018-11-03.jsonl     one JSON object per line, sorted by timestamp
    events-2018-11-04.jsonl     (or events-YYYY-MM-DD.jsonl.gz)
    ...
    index.jsonl                 {"name": "events-2018-11-03.jsonl", "date": "2018-11-03", "count": 7057}

This module reads and writes that format (the day files of a directory, the
index, line counts, :func:`rebuild_index`); the sink that writes it is
:class:`telemetry_sinks.sinks.archive.ArchiveSink`.  The mybinder.org indexer
writes ``count`` as a string; this module writes integers and reads both.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from .capsule import whole_number
from .fileio import replace_file

INDEX_NAME = "index.jsonl"
DAY_FILE = re.compile(r"^events-(\d{4}-\d{2}-\d{2})\.jsonl(\.gz)?$")

_log = logging.getLogger("telemetry_sinks.archive")




@dataclass(frozen=True)
class IndexEntry:
    """One line of ``index.jsonl``."""

    name: str
    date: str
    count: int

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "date": self.date, "count": self.count}


def day_files(directory: str | os.PathLike) -> dict[str, str]:
    """``{date: file name}`` of the day files in ``directory``.

    When a day has both ``.jsonl`` and ``.jsonl.gz`` (a compression that was
    interrupted), the plain file is the complete one and is chosen.
    """
    found: dict[str, str] = {}
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return found
    for name in names:
        match = DAY_FILE.match(name)
        if not match:
            continue
        day = match.group(1)
        if day not in found or not match.group(2):
            found[day] = name
    return dict(sorted(found.items()))




def read_index(directory: str | os.PathLike) -> dict[str, IndexEntry]:
    """``{date: IndexEntry}`` from ``index.jsonl``; ``count`` may be an integer or a string.

    Unreadable lines are skipped with a warning; a missing index is empty.
    """
    path = os.path.join(directory, INDEX_NAME)
    entries: dict[str, IndexEntry] = {}
    try:
        stream = open(path, encoding="utf-8")
    except FileNotFoundError:
        return entries
    with stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                date, name, count = obj["date"], obj["name"], whole_number(obj["count"])
                if not (isinstance(date, str) and isinstance(name, str) and count is not None):
                    raise ValueError("date and name must be strings and count a number")
            except (ValueError, KeyError, TypeError) as exc:
                _log.warning("%s, line %d is not an index entry {name, date, count}: %s", path, number, exc)
                continue
            entries[date] = IndexEntry(name, date, count)
    return entries


def write_index(directory: str | os.PathLike, entries: dict[str, IndexEntry]) -> str:
    """Write ``index.jsonl`` (sorted by date, ``count`` as an integer) atomically; return its path."""
    path = os.path.join(directory, INDEX_NAME)
    replace_file(path, [(json.dumps(entries[date].as_json()) + "\n").encode() for date in sorted(entries)])
    return path


def _open_read(path: str) -> tuple[IO[bytes], IO[bytes]]:
    """``(reader, raw)``: lines of ``path`` (decompressed if ``.gz``) and the raw file (for progress)."""
    raw = open(path, "rb")
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw  # type: ignore[return-value]  # a binary file like any
    return raw, raw


def count_lines(path: str, on_progress: Callable[[int], None] | None = None) -> int:
    """Non-blank lines of a day file (``.gz`` decompressed); ``on_progress(bytes)`` as it reads."""
    count = 0
    reader, raw = _open_read(path)
    reported = 0
    with raw, reader:
        for line in reader:
            if line.strip():
                count += 1
            if on_progress is not None and (count & 0x3FF) == 0:
                position = raw.tell()
                if position > reported:
                    on_progress(position - reported)
                    reported = position
        if on_progress is not None:
            size = os.fstat(raw.fileno()).st_size
            if size > reported:
                on_progress(size - reported)
    return count


@dataclass
class RebuildResult:
    """What :func:`rebuild_index` found: the new entries and how they differ from the old index."""

    entries: dict[str, IndexEntry]
    changed: list[tuple[str, IndexEntry | None, IndexEntry | None]]  # (date, old, new)
    both_forms: list[str]  # days with both .jsonl and .jsonl.gz

    @property
    def events(self) -> int:
        return sum(e.count for e in self.entries.values())


def rebuild_index(
    directory: str | os.PathLike,
    write: bool = True,
    on_progress: Callable[[int], None] | None = None,
) -> RebuildResult:
    """Recompute ``index.jsonl`` from the day files (counting lines, reading ``.gz``).

    The old index may hold ``count`` as a string (as mybinder.org's does) or an
    integer; the new one holds integers.  With ``write=False`` nothing is written
    (a check).
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(2, f"no such archive directory: {directory}")
    old = read_index(directory)
    files = day_files(directory)
    both = [day for day, name in files.items()
            if not name.endswith(".gz") and os.path.exists(os.path.join(directory, name + ".gz"))]
    entries = {day: IndexEntry(name, day, count_lines(os.path.join(directory, name), on_progress))
               for day, name in files.items()}
    changed = [(day, old.get(day), entries.get(day)) for day in sorted(set(old) | set(entries))
               if old.get(day) != entries.get(day)]
    if write:
        write_index(directory, entries)
    return RebuildResult(entries, changed, both)


def archive_bytes(directory: str | os.PathLike) -> int:
    """Total size of the day files that :func:`rebuild_index` reads (for a progress bar)."""
    return sum(os.path.getsize(os.path.join(directory, name)) for name in day_files(directory).values())


def iter_lines(path: str) -> Iterator[bytes]:
    """The lines of a day file (``.gz`` decompressed)."""
    reader, raw = _open_read(path)
    with raw, reader:
        yield from reader


__all__ = [
    "DAY_FILE",
    "INDEX_NAME",
    "IndexEntry",
    "RebuildResult",
    "archive_bytes",
    "count_lines",
    "day_files",
    "iter_lines",
    "read_index",
    "rebuild_index",
    "write_index",
]
