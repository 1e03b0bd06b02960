"""The Parquet data-lake layout: typed, documented columns per event schema version.

For analysts: point DuckDB, pandas or pyarrow at the directory (see the README's
"For analysts").  For the code:

- :mod:`~telemetry_sinks.lake.arrow`: the Arrow schema derived from a JSON Schema,
  and how each capsule becomes a row (what does not fit is kept in ``__extra__``);
- :mod:`~telemetry_sinks.lake.store`: the directory (Hive partitions, write-then-rename,
  the journal, manifests, ``_index.jsonl``, recovery);
- :mod:`~telemetry_sinks.lake.writer`: buffering, day closing and compaction, for the
  ``parquet`` sink;
- :mod:`~telemetry_sinks.lake.export`: ``telemetry-sinks archive export`` of a JSONL archive.

Needs pyarrow: ``pip install "telemetry-sinks[parquet]"``.
"""

from __future__ import annotations

from .arrow import EXTRA, EventTable, as_capsule, restore_events
from .export import ExportResult, export_archive, load_schemas
from .store import INDEX_NAME, MANIFEST_NAME, NO_SCHEMA, LakeStore, Partition, partition_path, read_index
from .writer import LakeWriter

__all__ = [
    "EXTRA",
    "INDEX_NAME",
    "MANIFEST_NAME",
    "NO_SCHEMA",
    "EventTable",
    "ExportResult",
    "LakeStore",
    "LakeWriter",
    "Partition",
    "as_capsule",
    "export_archive",
    "load_schemas",
    "partition_path",
    "read_index",
    "restore_events",
]
