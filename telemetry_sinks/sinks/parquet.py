"""The parquet sink: events in a Hive-partitioned Parquet layout, typed from their JSON Schemas.

``schema=<$id>/version=<n>/date=YYYY-MM-DD/part-*.parquet`` under ``directory``,
one Arrow schema per event schema version, with each field's description and
categories in the file (:mod:`telemetry_sinks.lake`).  DuckDB, pandas, pyarrow,
Spark and Athena read it as it is.

The columns come from the JSON Schemas of ``schema_paths`` and, when the sink is
one of an :class:`~telemetry_sinks.EventLog`'s handlers, from the schemas
registered there.  Events of a schema it does not know are still written: the
capsule's columns are typed and the event's properties are kept in ``__extra__``.

Crash rule (write, then rename; no spool): events are buffered in memory and
written when ``max_buffer_events`` are buffered, every ``flush_interval`` seconds
(a background thread), on ``flush()`` and at ``close()``.  Once ``flush()``
returns, every event handed to the sink before it is in complete files that
survive ``kill -9`` (and a power loss with ``fsync=True``); events still buffered
when the process dies are lost.  Readers never see a partial file.  A restart
finishes what the crash interrupted and continues.  One writing process per
directory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from traitlets import Bool, CaselessStrEnum, Float, Int, List, TraitError, Unicode, validate

from ..errors import SchemaError, SinkConfigError
from ..lake.export import load_schemas
from ..lake.writer import LakeWriter, SchemaLookup
from .base import DirectorySink

__all__ = ["ParquetSink"]

_log = logging.getLogger("telemetry_sinks.sinks.parquet")


class ParquetSink(DirectorySink):
    """Events as Parquet files, one typed table per schema version, partitioned by schema, version and day."""

    sink_name = "parquet"

    directory = Unicode(None, allow_none=True, help="Root directory of the Parquet layout.").tag(
        config=True, destination=("directory", "path")
    )
    schema_paths = List(
        Unicode(),
        help="JSON Schema files or directories to derive the columns from (an EventLog's registered "
        "schemas are used too).",
    ).tag(config=True)
    max_buffer_events = Int(
        10_000, help="Events held in memory before they are written (one file per partition)."
    ).tag(config=True)
    flush_interval = Float(
        60.0, help="Seconds after which buffered events are written by a background thread (0: never)."
    ).tag(config=True)
    row_group_size = Int(128 * 1024, help="Rows per row group of the compacted files.").tag(config=True)
    compression = CaselessStrEnum(
        ["zstd", "snappy", "gzip", "lz4", "brotli", "none"], default_value="zstd", help="Parquet compression."
    ).tag(config=True)
    fsync = Bool(
        False, help="fsync each file and directory before it counts as written (survives power loss)."
    ).tag(config=True)

    @validate("max_buffer_events", "row_group_size")
    def _positive(self, proposal: Any) -> int:
        if proposal.value < 1:
            raise TraitError(f"The '{proposal.trait.name}' trait must be 1 or more, not {proposal.value}.")
        return proposal.value

    @validate("flush_interval")
    def _non_negative(self, proposal: Any) -> float:
        if proposal.value < 0:
            raise TraitError(f"The 'flush_interval' trait must be 0 or more, not {proposal.value}.")
        return proposal.value

    # Class defaults: logging.shutdown() may close a sink whose __init__ failed.
    _writer: LakeWriter | None = None
    _closed = False

    def __init__(self, directory: str | os.PathLike[str] | None = None, **options: Any) -> None:
        super().__init__(directory, **options)
        try:
            self._bodies = load_schemas(self.schema_paths)
        except SchemaError as exc:
            raise SinkConfigError(f"ParquetSink option 'schema_paths': {exc}") from None
        self._lookups: list[SchemaLookup] = []
        self._writer = LakeWriter(
            self.directory,
            self._schema,
            max_buffer_events=self.max_buffer_events,
            row_group_size=self.row_group_size,
            compression=self.compression.lower(),
            fsync=self.fsync,
        )
        self._closed = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._pid = os.getpid()
        self._start_flusher()

    # ------------------------------------------------------------------ schemas

    def use_schemas(self, lookup: SchemaLookup) -> None:
        """Also derive columns from ``lookup(schema id, version)`` (an EventLog's registered schemas)."""
        if lookup not in self._lookups:
            self._lookups.append(lookup)

    def _schema(self, schema_id: str, version: int) -> Mapping[str, Any] | None:
        body: Mapping[str, Any] | None = self._bodies.get((schema_id, version))
        for lookup in self._lookups:
            if body is not None:
                break
            body = lookup(schema_id, version)
        return body

    # ------------------------------------------------------------------ writing

    def write_payload(self, payload: dict[str, Any]) -> None:
        if self._closed:
            raise ValueError("the parquet sink is closed")
        if self._pid != os.getpid():  # a forked child: its own flusher thread
            self._pid = os.getpid()
            self._flusher = None
            self._start_flusher()
        self._writer.add(payload)  # type: ignore[union-attr]  # set by __init__; a closed sink raised above

    @property
    def buffered(self) -> int:
        """Events handed to the sink and not yet written."""
        return self._writer.buffered if self._writer is not None else 0

    def flush(self) -> None:
        """Write every buffered event; when it returns they survive a crash of the process."""
        with self.lock:  # type: ignore[union-attr]  # Handler.lock is None only before createLock(), run by __init__
            if self._writer is not None and not self._closed:
                self._writer.flush()

    def _start_flusher(self) -> None:
        if self.flush_interval > 0:
            self._flusher = threading.Thread(target=self._flush_loop, name="telemetry-sinks-parquet-flush",
                                             daemon=True)
            self._flusher.start()

    def _flush_loop(self) -> None:
        interval = self.flush_interval
        lock = self.lock
        while not self._stop.wait(min(interval, 1.0)):
            writer = self._writer
            if writer is None or not writer.buffered or time.monotonic() - writer.last_flush < interval:
                continue
            # Never wait long for the lock: close() may hold it (logging.shutdown does) and wait for us.
            if not lock.acquire(timeout=0.2):  # type: ignore[union-attr]  # Handler.lock is None only before createLock(), run by __init__
                continue
            try:
                if not self._stop.is_set() and not self._closed:
                    writer.flush()
            except Exception:
                _log.exception("writing buffered events to %s failed; they stay buffered", self.directory)
            finally:
                lock.release()  # type: ignore[union-attr]  # Handler.lock is None only before createLock(), run by __init__

    def close(self) -> None:
        """Write the buffer, compact the partitions written to, close the days that are over."""
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
        flusher = getattr(self, "_flusher", None)
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join(timeout=5)
        with self.lock:  # type: ignore[union-attr]  # Handler.lock is None only before createLock(), run by __init__
            if not self._closed and self._writer is not None:
                self._closed = True
                try:
                    self._writer.close()
                except OSError:
                    _log.exception("closing the parquet layout in %s failed", self.directory)
        super().close()
