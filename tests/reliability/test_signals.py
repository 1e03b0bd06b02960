"""SIGTERM of a plain Python service: ``install_signal_handlers()`` closes the sinks first.

The service (a real subprocess) sends events through an HTTP sink without a spool to
the real collector; its events sit in the sink's queue (``flush_interval`` is long)
when the signal comes.  Python's default SIGTERM action kills the process at once, no
``atexit`` hook runs and the queue is lost; with the hook, the queue is delivered and
then the process ends as the default would (killed by SIGTERM), or as the handler
installed before decides (exit, or go on).  A backend that hangs cannot hold the
process longer than ``close_timeout``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from helpers.harness import SCHEMA, HangingServer

pytestmark = [pytest.mark.integration]

SERVICE = """
import json, signal, sys, time
from telemetry_sinks import EventLog, HTTPSink, install_signal_handlers

options, before, hook, count = json.loads(sys.argv[1])
if before == "exit":
    def own_handler(signum, frame):
        print("own handler ran", flush=True)
        sys.exit(7)
    signal.signal(signal.SIGTERM, own_handler)
elif before == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
sink = HTTPSink(**options)
log = EventLog(handlers=[sink], allowed_schemas=[{schema_id!r}], load_schema_entry_points=False)
log.register_schema({schema!r})
if hook:
    install_signal_handlers()
for seq in range(count):
    log.emit(schema_id={schema_id!r}, data={{"seq": seq}})
print("ready", json.dumps(sink.stats()), flush=True)
if before == "ignore":
    time.sleep(3)  # the signal comes meanwhile: the sinks were closed, the process goes on
    for seq in range(count, count + 50):  # the sink opens again on its next event
        log.emit(schema_id={schema_id!r}, data={{"seq": seq}})
    print("still running", flush=True)
    sys.exit(0)  # the atexit hook delivers these
while True:
    time.sleep(1)
"""


def run_service(options: dict, *, before: str = "default", hook: bool = True, count: int = 200,
                queued: bool = True):
    script = SERVICE.format(schema_id=SCHEMA["$id"], schema=SCHEMA)
    process = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps([options, before, hook, count])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()
    if not line.startswith("ready"):
        process.kill()
        raise AssertionError(f"the service did not start: {line} {process.stderr.read()[-3000:]}")
    stats = json.loads(line.split(" ", 1)[1])
    if queued:  # all waiting in memory when the signal comes
        assert stats["queue_events"] == count and stats["sent"] == 0, stats
    return process


def stop(process: subprocess.Popen, timeout: float = 30) -> tuple[float, str, str]:
    """SIGTERM; (seconds until the process ended, its stdout, its stderr)."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return time.monotonic() - started, stdout, stderr


def seqs(backend) -> list[int]:
    return sorted(payload["seq"] for _, payload in backend.received())


@pytest.fixture
def collector(backend_factory):
    return backend_factory("http")


def sink_options(collector) -> dict:
    return {**collector.sink_options(), "flush_interval": 60.0, "close_timeout": 10.0}


@pytest.mark.timeout(90)
def test_sigterm_with_the_hook_delivers_the_queue_then_dies_by_the_signal(collector):
    process = run_service(sink_options(collector))
    took, _, stderr = stop(process)
    assert process.returncode == -signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert seqs(collector) == list(range(200))
    assert all(event_id for event_id, _ in collector.received())
    print(f"\nSIGTERM: the queue of 200 events delivered, the process ended {took:.2f} s later")


@pytest.mark.timeout(90)
def test_sigterm_without_the_hook_loses_the_queue(collector):
    """What the hook is for: Python's default action runs no atexit hook."""
    process = run_service(sink_options(collector), hook=False)
    stop(process)
    assert process.returncode == -signal.SIGTERM
    time.sleep(1.0)
    assert seqs(collector) == []


@pytest.mark.timeout(90)
def test_the_handler_installed_before_runs_after_the_sinks_are_closed(collector):
    process = run_service(sink_options(collector), before="exit")
    _, stdout, stderr = stop(process)
    assert process.returncode == 7, stderr[-3000:]
    assert "own handler ran" in stdout
    assert seqs(collector) == list(range(200))


@pytest.mark.timeout(90)
def test_an_ignored_sigterm_stays_ignored_and_the_sinks_open_again(collector):
    process = run_service(sink_options(collector), before="ignore")
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)  # ignored: the sinks are closed (delivering), the service goes on
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-3000:]
    assert "still running" in stdout
    assert seqs(collector) == list(range(250))


@pytest.mark.timeout(90)
def test_sigterm_with_a_backend_that_hangs_ends_within_close_timeout():
    hanging = HangingServer().start()
    try:
        options = {"url": hanging.url + "/api/events", "read_timeout": 600.0, "flush_interval": 0.01,
                   "close_timeout": 1.0}
        process = run_service(options, count=20, queued=False)
        deadline = time.monotonic() + 20
        while hanging.accepted == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        took, _, stderr = stop(process)
    finally:
        hanging.stop()
    assert process.returncode == -signal.SIGTERM, stderr[-3000:]
    assert took < 1.0 + 3.0, f"SIGTERM took {took:.2f} s with close_timeout=1"
