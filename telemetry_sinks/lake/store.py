"""The lake directory: Hive partitions of Parquet files, their manifests, the index and the journal.

Layout::

    ROOT/
      schema=binderhub.jupyter.org%2Flaunch/     the schema's $id, percent-encoded
        version=6/
          date=2026-11-22/                       the UTC day of __timestamp__
            part-1795000000000-1a2b3c4d.parquet  complete files only
            _manifest.json                       {"count", "closed", "files": {name: rows}, ...}
      _index.jsonl                               one line per day, schema and version
      _journal/                                  the writer's own bookkeeping

DuckDB and pyarrow decode the percent-encoding, so the partition column ``schema``
holds the ``$id`` itself.  Payloads without a schema (plain log records) are in
``schema=%28none%29/version=0``.  Readers skip names starting with ``_`` or ``.``
and read only ``*.parquet``, so manifests, the index, the journal and files being
written (``.part-….parquet.tmp``) are never taken for data.

Crash rule: write, then rename
------------------------------

A Parquet file is written under a hidden temporary name and renamed into place
once complete (``fsync=True`` also syncs it and its directory first, which
surviving a power loss needs; a killed process needs nothing more).  So a reader
only ever sees complete files.  Replacing files (compacting a day, exporting a day
again) is one journal record ``_journal/replace-*.json`` written after the new
files are complete and before any is renamed: a restart finds the record and
finishes the renames and removals.  ``_journal/open.json`` lists the partitions
written to since they were last closed, so that a restart checks only those: their
manifests are brought in line with the files (a file renamed in just before the
crash is counted from its footer; a leftover temporary file, never acknowledged,
is removed).  A file that cannot be read (damaged outside the writer) is moved to
``_quarantine/`` (as ``….parquet.damaged``) with a warning, so that readers never fail on it.

Between the rename of a compacted file and the removal of the small files it
replaces, a reader listing the directory can see both (a few microseconds; after
a crash, until the restart): the manifest and the index always name the exact
set of files.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "INDEX_NAME",
    "MANIFEST_NAME",
    "NO_SCHEMA",
    "LakeStore",
    "PartFile",
    "Partition",
    "partition_path",
    "read_index",
]

INDEX_NAME = "_index.jsonl"
MANIFEST_NAME = "_manifest.json"
JOURNAL_DIR = "_journal"
QUARANTINE_DIR = "_quarantine"
OPEN_NAME = "open.json"
#: The partition value of payloads that name no schema.
NO_SCHEMA = "(none)"
_MAX_SEGMENT = 200

_log = logging.getLogger("telemetry_sinks.lake")


def _segment_value(schema_id: str | None) -> str:
    value = quote(NO_SCHEMA if schema_id is None else schema_id, safe="")
    if len(value) > _MAX_SEGMENT:  # a path component has at most 255 bytes
        digest = hashlib.sha256(value.encode()).hexdigest()[:16]
        value = f"{value[:_MAX_SEGMENT - 17]}~{digest}"
    return value


@dataclass(frozen=True)
class Partition:
    """One Hive partition: a day of one schema version."""

    day: str
    schema_id: str | None
    version: int

    @property
    def relpath(self) -> str:
        return os.path.join(f"schema={_segment_value(self.schema_id)}", f"version={self.version}",
                            f"date={self.day}")

    def as_json(self) -> dict[str, Any]:
        return {"date": self.day, "schema": self.schema_id, "version": self.version}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Partition:
        return cls(obj["date"], obj["schema"], int(obj["version"]))


def partition_path(root: str | os.PathLike, schema_id: str | None, version: int | None = None) -> str:
    """The directory of a schema (and version) in a lake, for readers that take one directory.

    ``pandas.read_parquet(partition_path("lake", "binderhub.jupyter.org/launch", 6))``
    """
    path = os.path.join(os.fspath(root), f"schema={_segment_value(schema_id)}")
    return path if version is None else os.path.join(path, f"version={version}")


def _write_json_atomic(path: str, data: Any, fsync: bool, lines: bool = False) -> None:
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")  # hidden, and removed by recover()
    with open(tmp, "w", encoding="utf-8") as out:
        if lines:
            out.writelines(json.dumps(item) + "\n" for item in data)
        else:
            json.dump(data, out)
        if fsync:
            out.flush()
            os.fsync(out.fileno())
    os.replace(tmp, path)


def _fsync(path: str) -> None:
    """fsync a file or a directory (after a rename into it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_index(root: str | os.PathLike) -> list[dict[str, Any]]:
    """The lines of a lake's ``_index.jsonl``: ``{date, schema, version, count, files, closed}``."""
    path = os.path.join(os.fspath(root), INDEX_NAME)
    try:
        with open(path, encoding="utf-8") as stream:
            return [json.loads(line) for line in stream if line.strip()]
    except FileNotFoundError:
        return []


class PartFile:
    """A Parquet file being written under a hidden name; :meth:`finish` makes it complete.

    Tables are buffered up to ``row_group_size`` rows and written as one row group.
    """

    def __init__(self, directory: str, schema: pa.Schema, compression: str, row_group_size: int,
                 fsync: bool) -> None:
        stamp = time.time_ns() // 1_000_000
        self.name = f"part-{stamp:013d}-{secrets.token_hex(4)}.parquet"
        self.directory = directory
        self.tmp = os.path.join(directory, f".{self.name}.tmp")
        self.schema = schema
        self.rows = 0
        self._fsync = fsync
        self._row_group_size = row_group_size
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        os.makedirs(directory, exist_ok=True)
        self._writer = pq.ParquetWriter(self.tmp, schema, compression=compression)

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self._row_group_size:
            self._write_pending()

    def _write_pending(self) -> None:
        if self._pending:
            table = pa.concat_tables(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._writer.write_table(table, row_group_size=self._row_group_size)
            self.rows += table.num_rows
            self._pending, self._pending_rows = [], 0

    def finish(self) -> PartFile:
        """Write what is pending and the footer; the file is complete (still hidden)."""
        self._write_pending()
        self._writer.close()
        if self._fsync:
            _fsync(self.tmp)
        return self

    def abandon(self) -> None:
        try:
            self._writer.close()
        finally:
            if os.path.exists(self.tmp):
                os.remove(self.tmp)


class LakeStore:
    """The files of a lake directory: writing, replacing, manifests, the index and recovery.

    One writing process per directory.
    """

    def __init__(self, root: str | os.PathLike, compression: str = "zstd", row_group_size: int = 128 * 1024,
                 fsync: bool = False) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.compression = compression
        self.row_group_size = row_group_size
        self.fsync = fsync
        self.journal = os.path.join(self.root, JOURNAL_DIR)
        os.makedirs(self.journal, exist_ok=True)
        self._manifests: dict[Partition, dict[str, Any]] = {}
        self._open: set[Partition] = set()
        self._index_stale = False
        self.recover()

    # ------------------------------------------------------------------ paths

    def directory(self, part: Partition) -> str:
        return os.path.join(self.root, part.relpath)

    def partitions(self) -> list[Partition]:
        """Every partition with a manifest, sorted by day, schema and version."""
        return sorted(self._manifests, key=_sort_key)

    def manifest(self, part: Partition) -> dict[str, Any]:
        found = self._manifests.get(part)
        if found is None:
            found = {**part.as_json(), "count": 0, "closed": False, "files": {}}
        return found

    def files(self, part: Partition) -> list[str]:
        return sorted(self.manifest(part)["files"])

    # ------------------------------------------------------------------ writing

    def start_file(self, part: Partition, schema: pa.Schema) -> PartFile:
        """A new hidden file in ``part`` (recorded as open first, so that a restart cleans it up)."""
        self.mark_open(part)
        return PartFile(self.directory(part), schema, self.compression, self.row_group_size, self.fsync)

    def publish(self, part: Partition, file: PartFile) -> None:
        """Rename a finished file into place and count it in its manifest."""
        self.mark_open(part)
        os.replace(file.tmp, os.path.join(file.directory, file.name))
        if self.fsync:
            _fsync(file.directory)
        manifest = self.manifest(part)
        manifest["files"][file.name] = file.rows
        self._save_manifest(part, manifest, closed=False)

    def replace(self, changes: dict[Partition, tuple[list[PartFile], list[str]]]) -> None:
        """For each partition, rename in the finished ``add`` files and remove the ``remove`` files.

        One journal record makes the whole replacement happen even if the process
        dies part way: a restart finishes it.
        """
        record = {
            "op": "replace",
            "changes": [{**part.as_json(), "add": [f.name for f in add], "remove": remove}
                        for part, (add, remove) in changes.items()],
        }
        for part in changes:
            self.mark_open(part)
        path = os.path.join(self.journal, f"replace-{time.time_ns():020d}-{secrets.token_hex(4)}.json")
        _write_json_atomic(path, record, self.fsync)
        self._apply_replace(record)
        os.remove(path)

    def _apply_replace(self, record: dict[str, Any]) -> None:
        for change in record["changes"]:
            part = Partition.from_json(change)
            directory = self.directory(part)
            manifest = self.manifest(part)
            for name in change["add"]:
                tmp = os.path.join(directory, f".{name}.tmp")
                if os.path.exists(tmp):
                    os.replace(tmp, os.path.join(directory, name))
            if self.fsync and os.path.isdir(directory):
                _fsync(directory)
            for name in change["remove"]:
                if name not in change["add"]:
                    try:
                        os.remove(os.path.join(directory, name))
                    except FileNotFoundError:
                        pass
                    manifest["files"].pop(name, None)
            for name in change["add"]:
                rows = self._rows(directory, name)
                if rows is not None:
                    manifest["files"][name] = rows
            self._save_manifest(part, manifest, closed=False)

    def close_partition(self, part: Partition) -> None:
        """Mark a partition closed (its day is complete) and forget it in the open set."""
        manifest = self.manifest(part)
        if manifest["files"]:
            self._save_manifest(part, manifest, closed=True)
        self._open.discard(part)
        self._save_open()

    def _save_manifest(self, part: Partition, manifest: dict[str, Any], closed: bool) -> None:
        manifest["count"] = sum(manifest["files"].values())
        manifest["closed"] = closed
        manifest["updated"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        directory = self.directory(part)
        if not manifest["files"]:
            self._manifests.pop(part, None)
            try:
                os.remove(os.path.join(directory, MANIFEST_NAME))
            except FileNotFoundError:
                pass
            self._remove_empty_dirs(directory)
        else:
            os.makedirs(directory, exist_ok=True)
            _write_json_atomic(os.path.join(directory, MANIFEST_NAME), manifest, self.fsync)
            self._manifests[part] = manifest
        self._index_stale = True

    def _remove_empty_dirs(self, directory: str) -> None:
        for _ in range(3):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)

    def mark_open(self, part: Partition) -> None:
        """Record that ``part`` is being written, so that a restart checks it."""
        if part not in self._open:
            self._open.add(part)
            self._save_open()

    def _save_open(self) -> None:
        _write_json_atomic(os.path.join(self.journal, OPEN_NAME),
                           [p.as_json() for p in sorted(self._open, key=_sort_key)], self.fsync)

    @property
    def open_partitions(self) -> list[Partition]:
        return sorted(self._open, key=_sort_key)

    # ------------------------------------------------------------------ index

    def index(self) -> list[dict[str, Any]]:
        """One entry per partition: ``{date, schema, version, count, files, closed}``."""
        return [{**part.as_json(), "count": m["count"], "files": len(m["files"]), "closed": m["closed"]}
                for part, m in sorted(self._manifests.items(), key=lambda item: _sort_key(item[0]))]

    def write_index(self) -> str:
        """Write ``_index.jsonl`` (atomically) if anything changed since it was last written."""
        path = os.path.join(self.root, INDEX_NAME)
        if self._index_stale or not os.path.exists(path):
            _write_json_atomic(path, self.index(), self.fsync, lines=True)
            self._index_stale = False
        return path

    # ------------------------------------------------------------------ recovery

    def _rows(self, directory: str, name: str) -> int | None:
        """Rows of a part file from its footer; a file that cannot be read is quarantined."""
        path = os.path.join(directory, name)
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except FileNotFoundError:
            return None
        except Exception as exc:
            # Not *.parquet any more: a glob such as lake/**/*.parquet must not find it.
            target = os.path.join(self.root, QUARANTINE_DIR, os.path.relpath(path, self.root) + ".damaged")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(path, target)
            _log.warning("%s is not a readable Parquet file (%s); moved to %s so that readers do not "
                         "fail on it", path, exc, target)
            return None

    def _scan(self) -> Iterator[tuple[Partition, str]]:
        """Every partition directory under the root (``schema=*/version=*/date=*``)."""
        for schema_dir in _subdirs(self.root, "schema="):
            value = unquote(schema_dir.name[len("schema="):])
            schema_id = None if value == NO_SCHEMA else value
            for version_dir in _subdirs(schema_dir.path, "version="):
                try:
                    version = int(version_dir.name[len("version="):])
                except ValueError:
                    continue
                for date_dir in _subdirs(version_dir.path, "date="):
                    yield Partition(date_dir.name[len("date="):], schema_id, version), date_dir.path

    def recover(self) -> None:
        """Finish interrupted replacements, drop unfinished files, bring manifests in line with files."""
        self._manifests.clear()
        try:
            with open(os.path.join(self.journal, OPEN_NAME), encoding="utf-8") as stream:
                self._open = {Partition.from_json(p) for p in json.load(stream)}
        except (FileNotFoundError, ValueError):
            self._open = set()
        directories = dict(self._scan())
        for part, directory in directories.items():
            try:
                with open(os.path.join(directory, MANIFEST_NAME), encoding="utf-8") as stream:
                    self._manifests[part] = json.load(stream)
            except (FileNotFoundError, ValueError):
                self._open.add(part)  # files without a manifest: count them
        names = os.listdir(self.journal)
        for name in sorted(n for n in names if n.startswith("replace-") and n.endswith(".json")):
            path = os.path.join(self.journal, name)
            with open(path, encoding="utf-8") as stream:
                record = json.load(stream)
            self._apply_replace(record)
            os.remove(path)
            self._open.update(Partition.from_json(c) for c in record["changes"])
        for part in sorted(self._open, key=_sort_key):
            directory = self.directory(part)
            if os.path.isdir(directory):
                self._reconcile(part, directory)
        for directory in (self.journal, self.root):
            for name in os.listdir(directory):
                if name.startswith(".") and name.endswith(".tmp"):
                    os.remove(os.path.join(directory, name))
        self._save_open()
        self._index_stale = True

    def _reconcile(self, part: Partition, directory: str) -> None:
        manifest = self.manifest(part)
        present = set()
        for entry in os.scandir(directory):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                os.remove(entry.path)  # never renamed in: never acknowledged
            elif entry.name.endswith(".parquet"):
                present.add(entry.name)
        files = manifest["files"]
        files.clear()
        for name in sorted(present):  # every footer: a file damaged since it was written is moved aside
            rows = self._rows(directory, name)
            if rows is not None:
                files[name] = rows
        self._save_manifest(part, manifest, closed=bool(manifest.get("closed")) and part not in self._open)


def _subdirs(path: str, prefix: str) -> list[os.DirEntry]:
    try:
        return [e for e in os.scandir(path) if e.is_dir() and e.name.startswith(prefix)]
    except FileNotFoundError:
        return []


def _sort_key(part: Partition) -> tuple[str, str, int]:
    return (part.day, part.schema_id or "", part.version)
