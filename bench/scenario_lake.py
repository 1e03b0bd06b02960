"""Scenario 7: the Parquet layout against the JSONL archive, for the same events.

* write: events/s of ``handle_capsule`` into the ``parquet`` sink and into the
  ``archive`` sink (plain, and with ``compress=True``), ``close()`` included (the
  parquet sink compacts each day, the archive sink sorts, counts and gzips it);
  ``telemetry-sinks archive export`` of the plain archive into Parquet;
* size on disk: the Parquet files, the JSONL day files and the gzip JSONL day files;
* read: a DuckDB query, launches per day and provider, over each layout
  (``read_parquet(..., hive_partitioning=true)`` and ``read_json`` of the
  ``.jsonl`` and ``.jsonl.gz`` files), whose results must be equal.

Events: BinderHub launch v6 (``bench/events.py``), each one distinct, spread over
consecutive days in timestamp order, as an archive receives them.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import (
    ScenarioResult,
    Settings,
    Table,
    Target,
    fmt_bytes,
    fmt_num,
    fmt_s,
    median,
    progress,
    spread,
)
from .events import launch_workload

DAYS = 10
QUERY = ("select date, provider, count(*) as n from {source} where schema = 'binderhub.jupyter.org/launch' "
         "group by all order by all")


def _capsules(count: int) -> list[dict[str, Any]]:
    workload = launch_workload(count=count)  # every event its own (refs are random commit hashes)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    step = dt.timedelta(days=DAYS) / count
    out = []
    for i in range(count):
        when = start + step * i
        event = workload.events[i % len(workload.events)]
        out.append({"__timestamp__": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "__schema__": workload.schema_id,
                    "__schema_version__": 6, "__metadata_version__": 1, **event})
    return out


def _size(directory: Path, suffix: str) -> int:
    return sum(p.stat().st_size for p in directory.rglob(f"*{suffix}"))


def _write(make: Callable[[Path], Any], capsules: list[dict[str, Any]], directory: Path) -> float:
    """Seconds to hand every capsule to a new sink and close it."""
    if directory.exists():
        shutil.rmtree(directory)
    sink = make(directory)
    handle = sink.handle_capsule
    gc.collect()
    start = time.perf_counter()
    for capsule in capsules:
        handle(capsule)
    sink.close()
    return time.perf_counter() - start


def run(settings: Settings) -> ScenarioResult:
    from telemetry_sinks.lake import export_archive, load_schemas
    from telemetry_sinks.sinks.archive import ArchiveSink
    from telemetry_sinks.sinks.parquet import ParquetSink

    from .events import LAUNCH_SCHEMA_FILE

    result = ScenarioResult("lake", "7. Parquet layout against the JSONL archive (same events)")
    count = settings.pick(200_000, 40_000)
    reps = settings.reps
    capsules = _capsules(count)
    work = settings.workdir / "lake"
    schema_file = str(LAUNCH_SCHEMA_FILE)
    sinks: dict[str, tuple[str, Callable[[Path], Any]]] = {
        "parquet": ("parquet sink (zstd)", lambda d: ParquetSink(directory=d, schema_paths=[schema_file],
                                                                 flush_interval=0)),
        "archive": ("archive sink (JSONL)", lambda d: ArchiveSink(directory=d)),
        "archive_gz": ("archive sink (JSONL, compress=True)",
                       lambda d: ArchiveSink(directory=d, compress=True)),
    }
    seconds: dict[str, list[float]] = {key: [] for key in [*sinks, "export"]}
    schemas = load_schemas([schema_file])
    with progress(reps * (len(sinks) + 1), "lake", "runs", settings.progress) as bar:
        for _ in range(reps):
            for key, (_, make) in sinks.items():  # interleaved, so drift hits all alike
                seconds[key].append(_write(make, capsules, work / key))
                bar.update(1)
            exported = work / "exported"
            if exported.exists():
                shutil.rmtree(exported)
            start = time.perf_counter()
            export_archive(work / "archive", exported, schemas)
            seconds["export"].append(time.perf_counter() - start)
            bar.update(1)

    rates = {key: [count / s for s in values] for key, values in seconds.items()}
    writes = Table(f"Writing {count:,} BinderHub launch events over {DAYS} days, events/s (median of {reps}; "
                   "min-max in brackets), close() included",
                   ["writer", "events/s", "time", "vs archive sink (JSONL)"])
    anchor = median(rates["archive"])
    labels = {**{k: v[0] for k, v in sinks.items()}, "export": "archive export JSONL -> Parquet"}
    for key in [*sinks, "export"]:
        writes.add(labels[key], f"{fmt_num(median(rates[key]))} ({spread(rates[key])})",
                   fmt_s(median(seconds[key])), f"{median(rates[key]) / anchor:.2f}x")
    writes.notes.append("handle_capsule on ready capsules (the sink's own cost; EventLog.emit adds the same "
                        "validation and capsule for every sink); parquet: max_buffer_events 10,000, "
                        "flush_interval 0, one compacted file per day at close.")
    result.tables.append(writes)

    sizes = {"parquet": _size(work / "parquet", ".parquet"), "jsonl": _size(work / "archive", ".jsonl"),
             "jsonl_gz": _size(work / "archive_gz", ".jsonl.gz")}
    size_table = Table("Size on disk of the same events", ["layout", "bytes", "bytes/event", "vs JSONL"])
    for key, label in (("parquet", "Parquet (zstd, typed, dictionary-encoded enums)"),
                       ("jsonl", "JSONL day files"), ("jsonl_gz", "gzip JSONL day files")):
        size_table.add(label, fmt_bytes(sizes[key]), f"{sizes[key] / count:.1f}",
                       f"{sizes[key] / sizes['jsonl']:.3f}")
    result.tables.append(size_table)

    import duckdb

    sources = {
        "parquet": f"read_parquet('{work / 'parquet'}/**/*.parquet', hive_partitioning=true, "
                   "union_by_name=true)",
        "jsonl": f"(select *, cast(__timestamp__ as date) as date, __schema__ as schema from read_json("
                 f"'{work / 'archive'}/events-*.jsonl', format='newline_delimited'))",
        "jsonl_gz": f"(select *, cast(__timestamp__ as date) as date, __schema__ as schema from read_json("
                    f"'{work / 'archive_gz'}/events-*.jsonl.gz', format='newline_delimited'))",
    }
    query_times: dict[str, list[float]] = {key: [] for key in sources}
    answers: dict[str, Any] = {}
    for _ in range(reps):
        for key, source in sources.items():
            con = duckdb.connect()  # a fresh connection: no cache between runs
            start = time.perf_counter()
            answers[key] = con.sql(QUERY.format(source=source)).fetchall()
            query_times[key].append(time.perf_counter() - start)
            con.close()
    equal = answers["parquet"] == answers["jsonl"] == answers["jsonl_gz"]
    query_table = Table(f"DuckDB: launches per day and provider (median of {reps}; min-max in brackets)",
                        ["layout", "query time", "vs JSONL", "result rows"])
    for key, label in (("parquet", "Parquet, read_parquet(hive_partitioning)"), ("jsonl", "JSONL, read_json"),
                       ("jsonl_gz", "gzip JSONL, read_json")):
        query_table.add(label, f"{fmt_s(median(query_times[key]))} ({spread(query_times[key])})",
                        f"{median(query_times[key]) / median(query_times['jsonl']):.2f}x", len(answers[key]))
    query_table.notes.append(f"the three answers are {'equal' if equal else 'DIFFERENT'}; the JSONL queries "
                             "derive the day from __timestamp__.")
    result.tables.append(query_table)
    result.targets.append(Target("DuckDB gives the same answer over Parquet and JSONL",
                                 "equal" if equal else "different", "equal", equal))
    result.data = {"events": count, "seconds": seconds, "bytes": sizes, "query_seconds": query_times,
                   "duckdb": duckdb.__version__}
    if os.environ.get("BENCH_KEEP_LAKE") is None:
        shutil.rmtree(work, ignore_errors=True)
    return result
