"""SIGKILL of the emitting process at random moments, then a restart with the same spool.

The application (``emitting_app.py``, a real subprocess) emits in rounds and
reports each round it has flushed (acknowledged or spooled).  While it runs the
backend goes down and up, so at the kill some events are in flight, some in the
queue and some in the spool.  A new process with the same ``spool_dir`` must
deliver every event the first one had flushed; duplicates carry the same event id.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.harness import FAST, SCHEMA, CollectorServer, check_at_least_once, free_port

from telemetry_sinks.delivery.spool import HEADER, parse_records

pytestmark = [pytest.mark.integration]

APP = Path(__file__).with_name("emitting_app.py")


class App:
    """``emitting_app.py`` as a subprocess; its stdout lines are collected by a thread."""

    def __init__(self, config: dict) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(APP), json.dumps(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def wait_line(self, predicate, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if predicate(line):
                    return line
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.01)
        raise AssertionError(f"no such line from the app; stderr: {self.stderr()[-3000:]}")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self._reader.join(10)

    def stderr(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def flushed_up_to(self) -> int:
        """The last seq the app reported as flushed (-1: none)."""
        done = [int(line.split()[1]) for line in self.lines if line.startswith("flushed ")]
        return max(done, default=-1)


def drain(name: str, options: dict, timeout: float = 90) -> tuple[dict, str]:
    config = {"sink": name, "options": options, "mode": "drain", "schema": SCHEMA, "timeout": timeout - 10}
    result = subprocess.run([sys.executable, str(APP), json.dumps(config)], capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def check_duplicates(received: list[tuple[str | None, dict]]) -> int:
    """Every copy of an event id is identical, no seq under two ids; return the duplicate count."""
    unique = {payload["seq"]: payload for _, payload in received}
    return check_at_least_once(received, list(unique.values()), by_event_id=True)


def spooled_records(spool: Path) -> list[tuple[str, str]]:
    return [r for f in sorted(spool.glob("*.wal")) for r in parse_records(f.read_bytes()).records]


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    "name, seed, at_kill",
    [("http", 1, "down"), ("http", 2, "up"), ("http", 3, "down"), ("kafka", 4, "down"), ("kafka", 5, "up")],
)
def test_sigkill_at_a_random_moment_then_a_restart_delivers_everything_flushed(
    name, seed, at_kill, backend_factory, tmp_path
):
    """``at_kill``: the backend's state when the kill comes (down: events failing and spooling)."""
    rng = random.Random(seed)
    backend = backend_factory(name)
    spool = tmp_path / "spool"
    options = {**FAST, **backend.sink_options(), "spool_dir": str(spool), "spool_segment_bytes": 8192,
               "max_queue_events": 200, "max_batch_events": 50}
    app = App({"sink": name, "options": options, "mode": "stream", "schema": SCHEMA, "round": 20})
    up = True
    try:
        app.wait_line(lambda line: line == "ready")
        app.wait_line(lambda line: line.startswith("flushed"))
        for _ in range(rng.randint(1, 4)):  # the backend flaps while the app streams
            time.sleep(rng.uniform(0.2, 0.7))
            (backend.down if up else backend.up)()
            up = not up
        if up != (at_kill == "up"):
            time.sleep(rng.uniform(0.2, 0.7))
            (backend.down if up else backend.up)()
            up = not up
        time.sleep(rng.uniform(0.05, 0.6))
    finally:
        app.kill()
    if not up:
        backend.up()
    flushed = app.flushed_up_to()
    on_disk = len(spooled_records(spool))
    assert flushed >= 19, app.lines[-5:]

    stats, _ = drain(name, options)
    assert stats["dropped"] == 0 and stats["dead_lettered"] == 0, stats
    received = backend.wait_received(flushed + 1, timeout=30)
    seqs = {payload["seq"] for _, payload in received}
    missing = sorted(set(range(flushed + 1)) - seqs)
    assert not missing, f"flushed before the kill but never delivered: {missing[:20]}"
    # Events after the last flush may or may not have made it; duplicates must be identical copies.
    duplicates = check_duplicates(received)
    assert not list(spool.glob("*.wal"))
    print(f"\n{name} seed {seed} ({at_kill} at the kill): flushed {flushed + 1}, records on disk at "
          f"the kill {on_disk}, delivered {len(seqs)}, replayed {stats['replayed']}, duplicates {duplicates}")


@pytest.mark.timeout(120)
def test_a_torn_last_record_is_skipped_with_a_warning_and_the_rest_replays(tmp_path):
    port = free_port()
    collector = CollectorServer(tmp_path / "collector", port=port)  # down until the replay
    spool = tmp_path / "spool"
    options = {**FAST, "url": collector.url, "connect_timeout": 0.5, "spool_dir": str(spool),
               "spool_segment_bytes": 8192}
    app = App({"sink": "http", "options": options, "mode": "stream", "schema": SCHEMA, "round": 50})
    try:
        app.wait_line(lambda line: line.startswith("flushed") and int(line.split()[1]) >= 299)
    finally:
        app.kill()
    flushed = app.flushed_up_to()

    segments = [p for p in sorted(spool.glob("*.wal")) if parse_records(p.read_bytes()).records]
    assert len(segments) >= 2
    last = segments[-1]
    buf = last.read_bytes()
    parsed = parse_records(buf)
    torn_id, torn_data = parsed.records[-1]
    start = buf.rindex(torn_id.encode()) - HEADER.size
    with open(last, "r+b") as file:
        file.truncate(start + HEADER.size + 7)  # mid-record: the header and 7 bytes of its body
    torn_seq = json.loads(torn_data)["seq"]  # the one event this damage destroys

    collector.start()
    try:
        stats, stderr = drain("http", options)
        received = [(line.pop("__event_id__", None), line) for line in collector.received()]
    finally:
        collector.stop()
    assert "torn tail" in stderr and last.name in stderr, stderr[-2000:]
    assert "WARNING telemetry_sinks.delivery" in stderr
    seqs = {payload["seq"] for _, payload in received}
    assert torn_seq not in seqs
    missing = sorted(set(range(flushed + 1)) - seqs - {torn_seq})
    assert not missing, missing[:20]
    assert stats["replayed"] >= flushed, stats
    check_duplicates(received)
    assert not list(spool.glob("*.wal"))
