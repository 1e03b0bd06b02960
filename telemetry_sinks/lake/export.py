"""``telemetry-sinks archive export``: a JSONL day-file archive into the Parquet layout.

The archive is the ``archive`` sink's directory or the public mybinder.org
events archive (``events-YYYY-MM-DD.jsonl`` or ``.jsonl.gz``; BinderHub's
``timestamp``/``schema``/``version`` become the capsule's fields).  The output is
the layout the ``parquet`` sink writes (:mod:`telemetry_sinks.lake.store`), from
the same code.

Day files are read one at a time; each partition's rows stream into one file in
row groups of ``row_group_size`` rows, so memory stays bounded whatever the size
of a day.  Exporting a day again replaces that day's partitions in the output
(one journal record per day file: an interrupted export leaves each day as it was
before or as it is after, never half).  Events dated on another day than their
file's are added to their own day.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from ..archive_index import day_files
from ..errors import SchemaError
from ..schema import check_schema, iter_schema_files, load_schema_file
from .arrow import EventTable
from .store import LakeStore, PartFile, Partition
from .writer import compact, route, utc_today

__all__ = ["ExportResult", "export_archive", "load_schemas"]


def load_schemas(paths: Iterable[str | os.PathLike]) -> dict[tuple[str, int], dict[str, Any]]:
    """``{(id, version): JSON Schema}`` from schema files or directories (checked like EventLog's).

    Two files with the same id and version and different content are an error,
    as when registering them.
    """
    found: dict[tuple[str, int], tuple[dict[str, Any], str]] = {}
    for path in paths:
        for file in iter_schema_files(path):
            body = load_schema_file(file)
            key = check_schema(body, str(file))
            if key in found and found[key][0] != body:
                raise SchemaError(
                    f"{file}: schema {key[0]!r} version {key[1]} is also in {found[key][1]} with different "
                    "content; give one file per version."
                )
            found[key] = (body, str(file))
    return {key: body for key, (body, _) in found.items()}


@dataclass
class ExportResult:
    """What an export wrote and what it could not read."""

    days: int = 0
    events: int = 0
    partitions: set[Partition] = field(default_factory=set)
    #: Events per ``(schema id, version)`` whose JSON Schema was not given (properties in ``__extra__``).
    unknown_schemas: dict[tuple[str, int], int] = field(default_factory=dict)
    #: ``(file, line number, reason)`` of lines that are not JSON objects (not exported).
    bad_lines: list[tuple[str, int, str]] = field(default_factory=list)
    bad_line_count: int = 0
    out_dir: str = ""

    def warnings(self) -> list[str]:
        """What an operator should know: schemas not given, lines not exported."""
        lines = [f"no JSON Schema given for {sid!r} version {version} ({count:,} events): their properties "
                 "are in the __extra__ JSON column; pass its schema file with --schema"
                 for (sid, version), count in sorted(self.unknown_schemas.items())]
        lines += [f"{path}, line {number}: {reason}; not exported" for path, number, reason in self.bad_lines]
        if self.bad_line_count:
            lines.append(f"{self.bad_line_count:,} lines were not JSON objects and were not exported")
        return lines

    def summary(self) -> str:
        return (f"exported {self.events:,} events of {self.days} day files into {len(self.partitions)} "
                f"partitions under {self.out_dir}")


def _open_lines(path: str) -> IO[bytes]:
    if path.endswith(".gz"):
        return gzip.GzipFile(path, "rb")  # type: ignore[return-value]  # a binary file like any
    return open(path, "rb")


def export_archive(
    archive_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    schemas: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
    *,
    row_group_size: int = 128 * 1024,
    compression: str = "zstd",
    fsync: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Export every day file of ``archive_dir`` into the lake ``out_dir``.

    ``schemas`` maps ``(id, version)`` to the JSON Schema the columns are derived
    from (:func:`load_schemas`).  ``on_progress(bytes, events)`` is called after each
    day file.  One writing process per output directory.
    """
    archive_dir = os.fspath(archive_dir)
    if not os.path.isdir(archive_dir):
        raise FileNotFoundError(2, f"no such archive directory: {archive_dir}")
    files = day_files(archive_dir)
    if not files:
        raise FileNotFoundError(2, f"{archive_dir} has no events-YYYY-MM-DD.jsonl(.gz) day files")
    schemas = schemas or {}
    store = LakeStore(out_dir, compression=compression, row_group_size=row_group_size, fsync=fsync)
    tables: dict[tuple[str | None, int], EventTable] = {}
    result = ExportResult(out_dir=store.root)

    def table_for(schema_id: str | None, version: int) -> EventTable:
        table = tables.get((schema_id, version))
        if table is None:
            body = schemas.get((schema_id, version)) if schema_id is not None else None
            table = tables[(schema_id, version)] = EventTable(schema_id, version, body)
        return table

    today = utc_today()
    for name in files.values():
        path = os.path.join(archive_dir, name)
        outputs: dict[Partition, tuple[EventTable, PartFile, list[list[Any]]]] = {}
        try:
            events = _export_file(path, today, table_for, store, outputs, result, row_group_size)
            changes: dict[Partition, tuple[list[PartFile], list[str]]] = {}
            for part, (table, file, rows) in outputs.items():
                file.write(table.to_arrow(rows))
                file.finish()
                # The first time this run writes a partition, what it held before is replaced.
                old = [] if part in result.partitions else store.files(part)
                changes[part] = ([file], old)
        except BaseException:
            for _, file, _ in outputs.values():
                file.abandon()
            raise
        store.replace(changes)
        result.partitions.update(changes)
        result.days += 1
        result.events += events
        if on_progress is not None:
            on_progress(os.path.getsize(path), events)
    for part in sorted(result.partitions, key=lambda p: (p.day, p.schema_id or "", p.version)):
        names = store.files(part)
        if len(names) > 1:  # events of this day were also in another day's file
            compact(store, part, table_for(part.schema_id, part.version))
        store.close_partition(part)
    store.write_index()
    return result


def _export_file(
    path: str,
    today: str,
    table_for: Callable[[str | None, int], EventTable],
    store: LakeStore,
    outputs: dict[Partition, tuple[EventTable, PartFile, list[list[Any]]]],
    result: ExportResult,
    row_group_size: int,
) -> int:
    events = 0
    with _open_lines(path) as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                obj, reason = None, f"not JSON: {exc}"
            else:
                reason = "" if isinstance(obj, dict) else f"a JSON {type(obj).__name__}, not an object"
            if reason:
                result.bad_line_count += 1
                if len(result.bad_lines) < 20:
                    result.bad_lines.append((path, number, reason))
                continue
            part, table, row = route(obj, table_for, today)
            if table.body is None and part.schema_id is not None:
                key = (part.schema_id, part.version)
                result.unknown_schemas[key] = result.unknown_schemas.get(key, 0) + 1
            output = outputs.get(part)
            if output is None:
                output = outputs[part] = (table, store.start_file(part, table.arrow), [])
            rows = output[2]
            rows.append(row)
            if len(rows) >= row_group_size:
                output[1].write(table.to_arrow(rows))
                rows.clear()
            events += 1
    return events

