"""A backend that hangs forever: a TCP server that accepts connections and never answers.

Every network sink's client is given timeouts far longer than the test (600 s), so
the only thing that can end a send is the delivery core.  Proves, per sink:
``close()`` returns within ``close_timeout`` (plus a margin for a loaded machine)
with every event in the spool, and a process that exits without closing its
sink leaves the interpreter within ``close_timeout`` too, events spooled.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.harness import BACKENDS, SCHEMA, SID, HangingServer, available_backends
from helpers.waiting import wait_until

from telemetry_sinks import EventLog
from telemetry_sinks.delivery.spool import parse_records

pytestmark = [pytest.mark.integration]

APP = Path(__file__).with_name("emitting_app.py")
CLOSE_TIMEOUT = 1.0
MARGIN = 2.0  # a loaded 2-core CI machine; a hang would be the clients' 600 s


def spooled_seqs(spool: Path) -> list[int]:
    records = [r for f in sorted(spool.glob("*.wal")) for r in parse_records(f.read_bytes()).records]
    return sorted(json.loads(data)["seq"] for _, data in records)


@pytest.fixture
def hanging():
    server = HangingServer().start()
    yield server
    server.stop()


def sink_options(name: str, hanging: HangingServer, spool: Path, tmp_path: Path) -> dict:
    options = BACKENDS[name][0].hanging_options(hanging.url, hanging.port)
    return {**options, "spool_dir": str(spool), "close_timeout": CLOSE_TIMEOUT, "flush_interval": 0.01,
            "retry_initial_backoff": 0.05}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", available_backends())
def test_close_returns_within_close_timeout_and_spools_everything(name, hanging, tmp_path):
    spool = tmp_path / "spool"
    sink = BACKENDS[name][0].sink_class()(**sink_options(name, hanging, spool, tmp_path))
    log = EventLog(handlers=[sink], allowed_schemas=[SID])
    log.register_schema(SCHEMA)
    for seq in range(20):
        log.emit(schema_id=SID, data={"seq": seq})
    wait_until(lambda: hanging.accepted > 0, timeout=20)  # the worker is waiting for an answer
    time.sleep(0.3)
    assert not sink.flush(timeout=0.2)  # nothing is acknowledged, nothing spooled yet
    started = time.monotonic()
    sink.close()
    took = time.monotonic() - started
    assert took < CLOSE_TIMEOUT + MARGIN, f"close() took {took:.2f} s"
    assert spooled_seqs(spool) == list(range(20))
    stats = sink.stats()
    assert stats["spooled"] == 20 and stats["sent"] == 0 and stats["dropped"] == 0, stats
    # After close the application still runs: a new event reopens the sink, never blocks.
    started = time.monotonic()
    log.emit(schema_id=SID, data={"seq": 20})
    assert time.monotonic() - started < 0.5
    assert sink.stats()["dropped"] == 0
    started = time.monotonic()
    sink.close()  # the reopened sink is stuck on the same backend: bounded again, nothing lost
    assert time.monotonic() - started < CLOSE_TIMEOUT + MARGIN
    assert spooled_seqs(spool) == list(range(21))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", available_backends())
def test_interpreter_exit_with_a_live_sink_spools_within_close_timeout(name, hanging, tmp_path):
    spool = tmp_path / "spool"
    config = {"sink": name, "options": sink_options(name, hanging, spool, tmp_path), "schema": SCHEMA,
              "mode": "emit_then_exit", "count": 20, "wait_for_send": True}
    process = subprocess.Popen([sys.executable, str(APP), json.dumps(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        seen = time.time()
        assert line.startswith("exiting"), process.stderr.read()[-3000:] if process.poll() else line
        process.wait(timeout=60)
        exited = time.time()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    stderr = process.stderr.read()
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    took = exited - float(line.split()[1])
    assert took < CLOSE_TIMEOUT + MARGIN, f"the interpreter took {took:.2f} s to exit ({seen=})"
    assert spooled_seqs(spool) == list(range(20))
