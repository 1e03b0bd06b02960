"""End to end: application EventLog -> HTTPSink -> collector (a real process) -> rotating files.

Delivery is at-least-once, with duplicates identified by event id: each event
carries ``__event_id__`` (``<producer>-<sequence>``) from the application's sink
to the collector's files.  The collector drops ids it has seen recently, so
duplicates are rare, but a collector that is killed after writing an event and
before answering forgets that it did; the retry then writes the event again
with the same id.  These tests prove: nothing is lost, every duplicate has the
same id and the same content, and after removing duplicates the events are in
emission order per producer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers.collector_process import SCHEMA, CollectorProcess
from helpers.servers import assert_never_blocked, free_port, wait_delivered, wait_for_port

from telemetry_sinks import EventLog, HTTPSink

pytestmark = pytest.mark.integration
SID = SCHEMA["$id"]


def check_at_least_once(received: list[dict], expected_seqs: list[int]) -> int:
    """Assert no loss, identical duplicates, and emission order; return the duplicate count."""
    first: dict[str, dict] = {}
    order: list[str] = []
    for event in received:
        event_id = event["__event_id__"]
        if event_id in first:
            assert event == first[event_id], "a duplicate must be the same event"
            continue
        first[event_id] = event
        order.append(event_id)
    unique = [first[i] for i in order]
    assert sorted(e["seq"] for e in unique) == sorted(expected_seqs), "lost or extra events"
    by_producer: dict[str, list[int]] = {}
    for event in unique:
        producer, sequence = event["__event_id__"].rsplit("-", 1)
        by_producer.setdefault(producer, []).append(int(sequence))
    for sequences in by_producer.values():
        assert sequences == sorted(sequences), "events out of emission order"
    return len(received) - len(unique)


def test_collector_killed_mid_stream_and_restarted(tmp_path):
    collector = CollectorProcess(tmp_path / "collector").start()
    sink = HTTPSink(
        url=collector.url,
        spool_dir=str(tmp_path / "spool"),
        flush_interval=0.02,
        max_batch_events=50,
        retry_initial_backoff=0.05,
        retry_max_backoff=0.5,
        connect_timeout=1,
        read_timeout=5,
    )
    log = EventLog(handlers=[sink], allowed_schemas=[SID])
    log.register_schema(SCHEMA)
    latencies = []
    try:
        for seq in range(3000):
            start = time.perf_counter()
            log.emit(schema_id=SID, data={"seq": seq})
            latencies.append(time.perf_counter() - start)
            if seq == 1000:
                collector.stop()  # SIGKILL, mid-stream
                down_since = time.monotonic()
            if seq == 2000:
                time.sleep(max(0.0, 3.0 - (time.monotonic() - down_since)))  # several seconds down
                collector.start()
            if seq % 20 == 0:
                time.sleep(0.002)  # a steady stream, not one burst
        stats = wait_delivered(sink, 90)
    finally:
        sink.close()
        collector.stop()
    assert_never_blocked(latencies)
    assert stats["dropped"] == 0 and stats["dead_lettered"] == 0, stats
    assert stats["spooled"] > 0  # the outage went through the spool
    duplicates = check_at_least_once(collector.received(), list(range(3000)))
    assert duplicates <= stats["retried"] + stats["replayed"]


APP = textwrap.dedent(
    """
    import json, sys
    from telemetry_sinks import EventLog, HTTPSink
    schema, url, spool = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    start, count = int(sys.argv[4]), int(sys.argv[5])
    sink = HTTPSink(url=url, spool_dir=spool, flush_interval=0.02, retry_initial_backoff=0.05,
                    retry_max_backoff=0.2, connect_timeout=0.5)
    log = EventLog(handlers=[sink], allowed_schemas=[schema["$id"]])
    log.register_schema(schema)
    for seq in range(start, start + count):
        log.emit(schema_id=schema["$id"], data={"seq": seq, "producer": "app"})
    if count:  # no flush: everything emit() accepted is on disk already
        print("spooled", sink.stats()["spooled"], flush=True)
    else:
        import time
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sink.flush(timeout=1)
            s = sink.stats()
            if s["queue_events"] == 0 and s["spool_bytes"] == 0:
                break
            time.sleep(0.1)
        print("drained", json.dumps(sink.stats()), flush=True)
        sink.close()
        sys.exit(0)
    sys.stdout.flush()
    import time
    time.sleep(3600)  # killed by the test
    """
)


def test_application_killed_while_backend_down_replays_from_the_spool(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/events"
    spool = str(tmp_path / "spool")
    argv = [sys.executable, "-c", APP, json.dumps(SCHEMA), url, spool]
    app = subprocess.Popen([*argv, "0", "500"], stdout=subprocess.PIPE, text=True)
    try:
        line = app.stdout.readline()
        assert line.startswith("spooled"), line
        assert int(line.split()[1]) == 500
        os.kill(app.pid, signal.SIGKILL)
        app.wait(10)
    finally:
        if app.poll() is None:
            app.kill()
    collector = CollectorProcess(tmp_path / "collector", port=port).start()
    try:
        wait_for_port(port)
        result = subprocess.run([*argv, "0", "0"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        stats = json.loads(result.stdout.split("drained", 1)[1])
        assert stats["replayed"] == 500, stats
        duplicates = check_at_least_once(collector.received(), list(range(500)))
        assert duplicates == 0
    finally:
        collector.stop()
