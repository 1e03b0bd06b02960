"""The lake writer: capsules buffered in memory, written as Parquet files, days compacted when they close.

Used by the ``parquet`` sink (:class:`telemetry_sinks.sinks.parquet.ParquetSink`).

- Each capsule is fitted at once to the table of its schema version
  (:class:`~telemetry_sinks.lake.arrow.EventTable`) and buffered as a row of its
  partition (schema, version, UTC day of ``__timestamp__``; today when it has none).
- The buffer is written when it holds ``max_buffer_events`` events, on
  :meth:`LakeWriter.flush` and at :meth:`LakeWriter.close`: one new Parquet file
  per partition, written whole under a hidden name and then renamed in, so
  readers see it complete or not at all (:mod:`telemetry_sinks.lake.store`).
- **Acknowledged** means written by a flush: what was added before
  :meth:`~LakeWriter.flush` returned is in complete, renamed files and survives
  ``kill -9`` (a power loss too with ``fsync=True``).  What is still in the buffer
  when the process dies is lost: at most ``max_buffer_events`` events, and at most
  ``flush_interval`` seconds of them when the sink's flusher runs.
- **Closing a day.**  When an event of a later day arrives (not a day in the
  future of the UTC clock), the earlier days are closed: flushed, their small
  files compacted into one file per partition (row groups of ``row_group_size``
  rows), their manifests marked ``closed``.  A late event for a closed day is
  written to that day, which is compacted and closed again with the next day or
  at close.  :meth:`~LakeWriter.close` compacts every partition written to and
  closes the days that are over.
- **Restart.**  The store finishes what a crash interrupted; partitions left open
  on days that are over are compacted and closed; today's are continued.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..capsule import whole_number
from .arrow import EventTable, as_capsule, restore_events
from .store import LakeStore, Partition

__all__ = ["LakeWriter", "SchemaLookup", "compact", "route"]

#: ``(schema id, version) -> JSON Schema`` (or None when it is not known).
SchemaLookup = Callable[[str, int], "Mapping[str, Any] | None"]

_log = logging.getLogger("telemetry_sinks.lake")


_today: tuple[int, str] = (-1, "")


def utc_today() -> str:
    """Today's UTC date, ``YYYY-MM-DD`` (worked out once a second)."""
    global _today
    second = int(time.time())
    if second != _today[0]:
        _today = (second, time.strftime("%Y-%m-%d", time.gmtime(second)))
    return _today[1]


def route(
    payload: Mapping[str, Any], table_for: Callable[[str | None, int], EventTable], today: str
) -> tuple[Partition, EventTable, list[Any]]:
    """The partition, table and row of one payload (a capsule, a BinderHub event or a log payload).

    The day is the UTC day of ``__timestamp__``, or ``today`` when it has no readable one.
    """
    capsule = as_capsule(payload)
    schema_id = capsule.get("__schema__")
    if isinstance(schema_id, str):
        version = capsule.get("__schema_version__")
        if type(version) is not int:
            version = whole_number(version)
            version = 0 if version is None else version
    else:
        schema_id, version = None, 0
    table = table_for(schema_id, version)
    row = table.fit(capsule)
    stamp = row[0]  # __timestamp__, in canonical form
    return Partition(stamp[:10] if stamp else today, schema_id, version), table, row


class LakeWriter:
    """Write capsules into a lake directory; see the module documentation."""

    def __init__(
        self,
        root: str | os.PathLike,
        schemas: SchemaLookup | None = None,
        *,
        max_buffer_events: int = 10_000,
        row_group_size: int = 128 * 1024,
        compression: str = "zstd",
        fsync: bool = False,
    ) -> None:
        self.store = LakeStore(root, compression=compression, row_group_size=row_group_size, fsync=fsync)
        self.schemas = schemas
        self.max_buffer_events = max_buffer_events
        self._tables: dict[tuple[str | None, int], EventTable] = {}
        self._buffers: dict[Partition, tuple[EventTable, list[list[Any]]]] = {}
        self._buffered = 0
        self._day: str | None = None
        self.last_flush = time.monotonic()
        today = utc_today()
        self._close(lambda day: day < today)
        self.store.write_index()

    @property
    def root(self) -> str:
        return self.store.root

    @property
    def buffered(self) -> int:
        """Events added and not yet written."""
        return self._buffered

    # ------------------------------------------------------------------ tables

    def table(self, schema_id: str | None, version: int) -> EventTable:
        """The table of a schema version (derived once; again once its JSON Schema becomes known)."""
        key = (schema_id, version)
        table = self._tables.get(key)
        if table is None or (table.body is None and schema_id is not None):
            body = self.schemas(schema_id, version) if self.schemas and schema_id is not None else None
            if table is None or body is not None:
                table = EventTable(schema_id, version, body)
                self._tables[key] = table
        return table

    # ------------------------------------------------------------------ writing

    def add(self, payload: Mapping[str, Any]) -> None:
        """Buffer one capsule (or BinderHub event, or log payload); write the buffer when it is full."""
        today = utc_today()
        part, table, row = route(payload, self.table, today)
        day = part.day
        buffer = self._buffers.get(part)
        if buffer is None or buffer[0] is not table:
            if buffer is not None:
                self._write(part)  # rows of the table the schema had before it became known
            buffer = self._buffers[part] = (table, [])
        buffer[1].append(row)
        self._buffered += 1
        if day <= today and (self._day is None or day > self._day):  # a future day closes nothing
            previous, self._day = self._day, day
            if previous is not None:
                self._close(lambda d: d < day)
        if self._buffered >= self.max_buffer_events:
            self.flush()

    def _write(self, part: Partition) -> None:
        table, rows = self._buffers.pop(part)
        if not rows:
            return
        file = self.store.start_file(part, table.arrow)
        try:
            file.write(table.to_arrow(rows))
            file.finish()
        except BaseException:
            file.abandon()
            self._buffers[part] = (table, rows)
            raise
        self.store.publish(part, file)
        self._buffered -= len(rows)

    def flush(self) -> None:
        """Write every buffered event (one file per partition) and the index."""
        for part in sorted(self._buffers, key=lambda p: (p.day, p.schema_id or "", p.version)):
            self._write(part)
        self.last_flush = time.monotonic()
        self.store.write_index()

    # ------------------------------------------------------------------ days

    def _close(self, over: Callable[[str], bool]) -> None:
        """Flush, compact and close the open partitions whose day is ``over``."""
        parts = [p for p in self.store.open_partitions if over(p.day)]
        parts += [p for p in self._buffers if over(p.day) and p not in parts]
        if not parts:
            return
        for part in parts:
            if part in self._buffers:
                self._write(part)
        for part in parts:
            self.compact(part)
            self.store.close_partition(part)
        self.store.write_index()

    def compact(self, part: Partition) -> None:
        """Merge the files of ``part`` into one, if it has several (:func:`compact`)."""
        compact(self.store, part, self.table(part.schema_id, part.version))

    def close(self) -> None:
        """Write the buffer, compact every partition written to, close the days that are over."""
        self.flush()
        today = utc_today()
        for part in self.store.open_partitions:
            if part.day >= today:
                self.compact(part)
        self._close(lambda day: day < today)
        self.store.write_index()


def compact(store: LakeStore, part: Partition, table: EventTable) -> None:
    """Merge the files of ``part`` into one file (row groups of the store's ``row_group_size``).

    A partition of one file is left as it is, unless it has other columns than ``table``.
    When ``table`` has no JSON Schema, the one a file of the partition was written
    with (its ``telemetry_sinks.schema.json_schema`` metadata) is used, so that a
    writer that does not know the schema (yet) never makes typed columns untyped.

    Files written with another table of the schema version (before its JSON
    Schema was known) are read back as events and fitted to ``table``.
    """
    names = store.files(part)
    directory = store.directory(part)
    if table.body is None and part.schema_id is not None:
        table = embedded_table(part, [os.path.join(directory, n) for n in names]) or table
    if not names:
        return
    if len(names) == 1 and table.same_columns(pq.read_schema(os.path.join(directory, names[0]))):
        return
    out = store.start_file(part, table.arrow)
    try:
        for name in names:
            source = pq.ParquetFile(os.path.join(directory, name))
            same = table.same_columns(source.schema_arrow)
            for batch in source.iter_batches(batch_size=store.row_group_size):
                chunk = pa.Table.from_batches([batch])
                if same:
                    out.write(chunk.cast(table.arrow))
                else:
                    out.write(table.to_arrow([table.fit(e) for e in restore_events(chunk)]))
        out.finish()
    except BaseException:
        out.abandon()
        raise
    store.replace({part: ([out], names)})


def embedded_table(part: Partition, paths: list[str]) -> EventTable | None:
    """The table of the JSON Schema stored in the newest of ``paths`` that has one."""
    for path in sorted(paths, reverse=True):
        meta = pq.read_schema(path).metadata or {}
        text = meta.get(b"telemetry_sinks.schema.json_schema")
        if text:
            return EventTable(part.schema_id, part.version, json.loads(text))
    return None
