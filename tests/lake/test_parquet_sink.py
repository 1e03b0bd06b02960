"""The ``parquet`` sink: typed from the EventLog's schemas, buffered, days compacted, restarts continued.

Real schemas and events: BinderHub's launch schema v1-v6 and the mybinder.org lines,
emitted through ``telemetry-sinks emit`` and through an EventLog.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from lake_helpers import BINDER, later_version_lines, launch_schema_paths, mybinder_lines, read_lake

from telemetry_sinks import EventLog, get_sink
from telemetry_sinks.errors import SinkConfigError
from telemetry_sinks.lake import read_index
from telemetry_sinks.registry import available_sinks

pytestmark = pytest.mark.timeout(120)

META = ("timestamp", "schema", "version")


def eventlog(fixtures_dir, *sinks) -> EventLog:
    log = EventLog(handlers=list(sinks), allowed_schemas=[BINDER], load_schema_entry_points=False)
    for path in launch_schema_paths(fixtures_dir):
        log.register_schema_file(path)
    return log


def emit_lines(log: EventLog, lines: list[dict]) -> None:
    for line in lines:
        log.emit(schema_id=line["schema"], version=line["version"], timestamp_override=line["timestamp"],
                 data={k: v for k, v in line.items() if k not in META})


def parts(lake) -> dict[str, list[str]]:
    """``{partition path: [part file names]}``."""
    found: dict[str, list[str]] = {}
    for path in sorted(lake.rglob("*.parquet")):
        found.setdefault(str(path.parent.relative_to(lake)), []).append(path.name)
    return found


def capsule(day: str, seq: int, schema: str = "https://events.example.org/app", **fields) -> dict:
    return {"__timestamp__": f"{day}T10:00:{seq % 60:02d}.000000Z", "__schema__": schema,
            "__schema_version__": 1, "__metadata_version__": 1, "seq": seq, **fields}


def test_emit_command_into_the_parquet_sink_typed_from_the_eventlog_schemas(fixtures_dir, tmp_path):
    """`telemetry-sinks emit` with c.EventLog.sinks = ['parquet']: no schema_paths on the sink itself."""
    lines = mybinder_lines(fixtures_dir) + later_version_lines(fixtures_dir, count=9)
    lake = tmp_path / "lake"
    config = tmp_path / "config.py"
    config.write_text(
        f"c.EventLog.schema_paths = {launch_schema_paths(fixtures_dir)!r}\n"
        f"c.EventLog.allowed_schemas = [{BINDER!r}]\n"
        "c.EventLog.sinks = ['parquet']\n"
        f"c.ParquetSink.directory = {str(lake)!r}\n"
    )
    bodies = [json.dumps({"schema_id": e["schema"], "version": e["version"], "timestamp": e["timestamp"],
                          "data": {k: v for k, v in e.items() if k not in META}}) for e in lines]
    result = subprocess.run([sys.executable, "-m", "telemetry_sinks", "emit", "--config", str(config)],
                            input="\n".join(bodies) + "\n", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = read_lake(lake)
    lines.sort(key=lambda e: (e["timestamp"], e["spec"]))
    assert len(rows) == len(lines)
    for row, line in zip(rows, lines):
        assert row["__timestamp__"] == dt.datetime.fromisoformat(line["timestamp"])
        assert (row["schema"], row["version"], row["__metadata_version__"]) == (BINDER, line["version"], 1)
        fields = {k: v for k, v in line.items() if k not in META}
        assert {k: row.get(k) for k in fields} == fields
        assert row["__extra__"] is None  # typed from the EventLog's registered schemas
    file = next(lake.rglob("version=6/*/*.parquet"))
    assert pq.read_schema(file).field("request_origin").metadata[b"description"].startswith(b"Origin header")
    index = read_index(lake)
    assert sum(e["count"] for e in index) == len(lines) and all(e["closed"] for e in index)  # days are over


def test_the_sink_and_archive_export_write_the_same_tables(fixtures_dir, tmp_path):
    lines = mybinder_lines(fixtures_dir) + later_version_lines(fixtures_dir)
    lake, archive = tmp_path / "lake", tmp_path / "archive"
    sinks = [get_sink("parquet", directory=lake), get_sink("archive", directory=archive)]
    log = eventlog(fixtures_dir, *sinks)
    emit_lines(log, sorted(lines, key=lambda e: e["timestamp"]))
    for sink in sinks:
        sink.close()
    exported = tmp_path / "exported"
    schemas = [a for p in launch_schema_paths(fixtures_dir) for a in ("--schema", p)]
    result = subprocess.run([sys.executable, "-m", "telemetry_sinks", "archive", "export", str(archive),
                             str(exported), *schemas], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert read_lake(lake) == read_lake(exported) and len(read_lake(lake)) == len(lines)
    assert [{k: e[k] for k in ("date", "version", "count")} for e in read_index(lake)] == [
        {k: e[k] for k in ("date", "version", "count")} for e in read_index(exported)]
    mine, theirs = parts(lake), parts(exported)
    assert list(mine) == list(theirs)
    for path, names in mine.items():
        assert len(names) == len(theirs[path]) == 1
        ours = pq.read_schema(lake / path / names[0])
        assert ours.equals(pq.read_schema(exported / path / theirs[path][0]), check_metadata=True)


def test_events_are_buffered_up_to_the_bound_and_written_on_flush(tmp_path):
    lake = tmp_path / "lake"
    sink = get_sink("parquet", directory=lake, max_buffer_events=5, flush_interval=0, fsync=True)
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    for seq in range(12):
        sink.handle_capsule(capsule(today, seq))
    assert sink.buffered == 2
    written = [json.loads(r["__extra__"])["seq"] for r in read_lake(lake, order="__timestamp__")]
    assert sorted(written) == list(range(10))
    sink.flush()
    assert sink.buffered == 0 and len(next(iter(parts(lake).values()))) == 3
    manifest = json.loads(next(lake.rglob("_manifest.json")).read_text())
    assert manifest["count"] == 12 and manifest["closed"] is False and len(manifest["files"]) == 3
    sink.close()  # today stays open, its files compacted
    manifest = json.loads(next(lake.rglob("_manifest.json")).read_text())
    assert list(parts(lake).values()) == [list(manifest["files"])] and manifest["closed"] is False
    assert [e["count"] for e in read_index(lake)] == [12]


def test_a_day_is_compacted_and_closed_when_the_next_begins_and_late_events_reopen_it(tmp_path):
    lake = tmp_path / "lake"
    sink = get_sink("parquet", directory=lake, max_buffer_events=4, flush_interval=0)
    for seq in range(10):
        sink.handle_capsule(capsule("2026-01-01", seq))
    sink.flush()
    day1 = "schema=https%3A%2F%2Fevents.example.org%2Fapp/version=1/date=2026-01-01"
    assert len(parts(lake)[day1]) == 3
    sink.handle_capsule(capsule("2026-01-02", 10))
    assert len(parts(lake)[day1]) == 1
    index = {e["date"]: e for e in read_index(lake)}
    assert index["2026-01-01"]["closed"] and index["2026-01-01"]["count"] == 10
    sink.handle_capsule(capsule("2026-01-01", 11))  # late
    sink.flush()
    assert len(parts(lake)[day1]) == 2
    assert {e["date"]: e["closed"] for e in read_index(lake)} == {"2026-01-01": False, "2026-01-02": False}
    sink.close()
    assert {e["date"]: (e["count"], e["files"], e["closed"]) for e in read_index(lake)} == {
        "2026-01-01": (11, 1, True), "2026-01-02": (1, 1, True)}
    seqs = [json.loads(r["__extra__"])["seq"] for r in read_lake(lake, order="__timestamp__")]
    assert sorted(seqs) == list(range(12))


def test_a_restart_continues_and_types_files_of_a_schema_it_learnt(tmp_path):
    """A sink that dies without close(); a new one on the same directory, now with the schema."""
    lake = tmp_path / "lake"
    schema_file = tmp_path / "app.json"
    schema_file.write_text(json.dumps({"$id": "https://events.example.org/app", "version": 1,
                                       "type": "object",
                                       "properties": {"seq": {"type": "integer", "description": "counter"}}}))
    first = get_sink("parquet", directory=lake, flush_interval=0)
    for seq in range(5):
        first.handle_capsule(capsule("2026-01-01", seq))
    first.flush()
    first.handle_capsule(capsule("2026-01-01", 99))  # buffered, never flushed: lost with the process
    del first
    second = get_sink("parquet", directory=lake, flush_interval=0, schema_paths=[str(schema_file)])
    # Its day is over: compacted and closed at start, fitted to the schema the new sink knows.
    rows = read_lake(lake, order="__timestamp__")
    assert [r["seq"] for r in rows] == list(range(5)) and all(r["__extra__"] is None for r in rows)
    assert read_index(lake)[0]["closed"] is True
    for seq in range(5, 8):
        second.handle_capsule(capsule("2026-01-01", seq))
    second.close()
    assert [r["seq"] for r in read_lake(lake, order="seq")] == list(range(8))
    file = next(lake.rglob("*.parquet"))
    assert pq.read_schema(file).field("seq").metadata == {b"description": b"counter"}


def test_the_background_flusher_writes_a_quiet_buffer(tmp_path):
    lake = tmp_path / "lake"
    sink = get_sink("parquet", directory=lake, flush_interval=0.3)
    try:
        sink.handle_capsule(capsule("2026-01-01", 1))
        deadline = time.monotonic() + 10
        while sink.buffered and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.buffered == 0
        assert len(read_lake(lake, order="__timestamp__")) == 1
    finally:
        sink.close()


def test_log_records_and_unknown_schemas_are_kept(tmp_path):
    import logging

    lake = tmp_path / "lake"
    sink = get_sink("parquet", directory=lake, flush_interval=0)
    logger = logging.getLogger("test_parquet_sink.records")
    logger.addHandler(sink)
    logger.propagate = False
    try:
        logger.warning("disk %s is full", "/srv", extra={"device": "sda"})
        sink.handle_capsule(capsule("2026-01-01", 1, schema="https://events.example.org/other",
                                    nested={"a": [1]}))
    finally:
        logger.removeHandler(sink)
        sink.close()
    rows = read_lake(lake, order="schema")
    assert rows[0]["schema"] == "(none)" and rows[0]["version"] == 0
    assert json.loads(rows[0]["__extra__"])["message"] == "disk /srv is full"
    assert json.loads(rows[0]["__extra__"])["device"] == "sda"
    assert rows[1]["schema"] == "https://events.example.org/other"
    assert json.loads(rows[1]["__extra__"]) == {"seq": 1, "nested": {"a": [1]}}


def test_options_are_checked_and_the_registry_names_the_extra(tmp_path, fixtures_dir):
    with pytest.raises(SinkConfigError, match="directory"):
        get_sink("parquet")
    with pytest.raises(SinkConfigError, match="'max_buffer_events' trait must be 1 or more"):
        get_sink("parquet", directory=tmp_path, max_buffer_events=0)
    with pytest.raises(SinkConfigError, match="Did you mean 'compression'"):
        get_sink("parquet", directory=tmp_path, compresion="zstd")
    history = fixtures_dir / "binderhub" / "launch-history"
    with pytest.raises(SinkConfigError, match="schema_paths.*version 1 is also in"):
        get_sink("parquet", directory=tmp_path, schema_paths=[str(history)])
    row = next(r for r in available_sinks() if r.name == "parquet")
    assert row.importable and row.install_command == 'pip install "telemetry-sinks[parquet]"'
    # Without pyarrow the error names the extra.
    code = ("import sys; sys.modules['pyarrow'] = None\n"
            "from telemetry_sinks import get_sink\n"
            f"get_sink('parquet', directory={str(tmp_path)!r})\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and 'pip install "telemetry-sinks[parquet]"' in result.stderr


def test_a_damaged_file_is_moved_aside_at_restart_so_readers_do_not_fail(tmp_path, caplog):
    lake = tmp_path / "lake"
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    sink = get_sink("parquet", directory=lake, flush_interval=0)
    for seq in range(3):
        sink.handle_capsule(capsule(today, seq))
        sink.flush()
    sink.close()  # today stays open: checked again at the next start
    (path,) = lake.rglob("*.parquet")
    path.write_bytes(path.read_bytes()[:100])  # damaged by something else (a disk, a copy tool)
    with caplog.at_level("WARNING", logger="telemetry_sinks.lake"):
        get_sink("parquet", directory=lake, flush_interval=0).close()
    assert "is not a readable Parquet file" in caplog.text
    assert not list(lake.rglob("*.parquet")) and list((lake / "_quarantine").rglob("*.parquet.damaged"))
    assert read_index(lake) == []  # nothing counted that a reader cannot read


def test_close_with_the_lock_held_does_not_wait_for_the_flusher(tmp_path):
    """logging.shutdown() calls close() holding the handler's lock, maybe while the flusher wants it."""
    lake = tmp_path / "lake"
    sink = get_sink("parquet", directory=lake, flush_interval=0.2)
    sink.handle_capsule(capsule(dt.datetime.now(dt.timezone.utc).date().isoformat(), 1))
    sink.acquire()
    try:
        time.sleep(1.5)  # the flusher's interval has passed: it is asking for the lock
        start = time.monotonic()
        sink.close()
        took = time.monotonic() - start
    finally:
        sink.release()
    assert took < 2, f"close() waited {took:.1f} s for the flusher thread"
    assert len(read_lake(lake, order="__timestamp__")) == 1


def test_an_event_dated_in_the_future_does_not_stop_days_from_closing(tmp_path):
    lake = tmp_path / "lake"
    sink = get_sink("parquet", directory=lake, flush_interval=0)
    sink.handle_capsule(capsule("2999-01-01", 0))  # a client whose clock is far ahead
    sink.handle_capsule(capsule("2026-01-01", 1))
    sink.flush()
    sink.handle_capsule(capsule("2026-01-02", 2))
    closed = {e["date"]: e["closed"] for e in read_index(lake)}
    assert closed["2026-01-01"] is True and closed["2999-01-01"] is False
    sink.close()


def test_inside_jupyter_events_eventlogger_with_jupyter_server_schemas(fixtures_dir, tmp_path):
    """The real EventLogger hands the sink its capsules (``+00:00Z`` timestamps, string versions)."""
    from jupyter_events.logger import EventLogger

    schemas = fixtures_dir / "jupyter_server" / "head-9a4d6ee" / "jupyter_server" / "event_schemas"
    kernel_actions = schemas / "kernel_actions" / "v1.yaml"
    lake = tmp_path / "lake"
    sink = get_sink("parquet", directory=lake, schema_paths=[str(kernel_actions)], flush_interval=0)
    logger = EventLogger(handlers=[sink])
    logger.register_event_schema(kernel_actions)
    kernel_id = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
    events = [{"action": "start", "msg": "Kernel started", "kernel_id": "k-1", "kernel_name": "python3"},
              {"action": "start", "status": "error", "msg": "No such kernel", "status_code": 404}]
    capsules = [logger.emit(schema_id=kernel_id, data=e) for e in events]
    sink.close()
    rows = read_lake(lake, order="__timestamp__")
    assert [r["__timestamp__"] for r in rows] == [dt.datetime.fromisoformat(c["__timestamp__"][:-1])
                                                  for c in capsules]
    assert [(r["schema"], r["version"], r["__schema_version__"]) for r in rows] == [(kernel_id, 1, 1)] * 2
    assert [(r["action"], r["kernel_id"], r["status_code"]) for r in rows] == [("start", "k-1", None),
                                                                               ("start", None, 404)]
    assert all(r["__extra__"] is None for r in rows)
    schema = pq.read_schema(next(lake.rglob("*.parquet")))
    assert schema.field("status_code").type == "double"  # type: number
    assert schema.field("action").type.value_type == "string"  # an enum
