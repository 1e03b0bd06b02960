"""SIGKILL of the emitting process at random moments, then a restart with the same spool.

The application (``emitting_app.py``, a real subprocess) emits continuously with a
``spool_dir`` and records the ``seq`` of each event once ``emit()`` has returned (a
``write(2)`` to a file of its own, which survives the kill).  It is killed with
SIGKILL at a seeded random moment while the backend is down, slow (every answer
late), up, or flapping, so at the kill events are in flight, in the queue, on disk
only, acknowledged but not yet checkpointed.  A new process on the same spool must
deliver every event the first one recorded, without being told anything: no flush
was ever asked for.  Duplicates are allowed, carry the same event id (the first
process's), and are identical copies.
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
from helpers.harness import FAST, SCHEMA, CollectorServer, available_backends, check_at_least_once, free_port

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


STATES = ("down", "slow", "up", "flapping")
CASES = [
    *[("http", state, seed) for state in STATES for seed in (1, 2)],
    *[("kafka", state, seed) for state in STATES for seed in (3, 4)],
    *[("kafka:confluent", state, 6) for state in STATES],  # the Kafka sink on librdkafka
    *[(name, state, 5) for name in available_backends() if name not in ("http", "kafka") for state in STATES],
]


def recorded_seqs(path: Path) -> list[int]:
    """The seqs the app recorded (a line cut by the kill does not count)."""
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split("\n")[:-1]]


class Flapper(threading.Thread):
    """Takes the backend down and up at random intervals until stopped."""

    def __init__(self, backend, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.backend, self.rng = backend, rng
        self.stopped = threading.Event()
        self.is_up = True

    def run(self) -> None:
        while not self.stopped.wait(self.rng.uniform(0.2, 0.6)):
            (self.backend.down if self.is_up else self.backend.up)()
            self.is_up = not self.is_up

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)
        if not self.is_up:
            self.backend.up()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name, state, seed", CASES)
def test_sigkill_at_a_random_moment_then_a_new_process_delivers_every_event_emit_accepted(
    name, state, seed, backend_factory, tmp_path
):
    rng = random.Random(seed)
    name, _, client = name.partition(":")
    backend = backend_factory(name, **({"client": client} if client else {}))
    spool, record = tmp_path / "spool", tmp_path / "emitted.txt"
    options = {**FAST, **backend.sink_options(), "spool_dir": str(spool), "spool_segment_bytes": 16384,
               "max_queue_events": 200, "max_batch_events": 50}
    app = App({"sink": name, "options": options, "mode": "record", "record": str(record),
               "schema": SCHEMA, "pause": 0.0005})
    flapper = None
    try:
        producer = app.wait_line(lambda line: line.startswith("ready")).split()[1]
        deadline = time.monotonic() + 30
        while len(recorded_seqs(record)) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        if state == "down":
            backend.down()
        elif state == "slow":
            backend.slow(0.4)
        elif state == "flapping":
            flapper = Flapper(backend, rng)
            flapper.start()
        time.sleep(rng.uniform(0.3, 2.5))
    finally:
        app.kill()
        if flapper is not None:
            flapper.stop()
    if state == "down":
        backend.up()
    backend.slow(0)
    recorded = recorded_seqs(record)
    on_disk = len(spooled_records(spool))
    assert len(recorded) >= 50, app.stderr()[-3000:]

    stats, _ = drain(name, options)
    assert stats["dropped"] == 0 and stats["dead_lettered"] == 0, stats
    received = backend.wait_received(len(recorded), timeout=60)
    seqs = {payload["seq"] for _, payload in received}
    missing = sorted(set(recorded) - seqs)
    assert not missing, f"{len(missing)} events emit() accepted were never delivered: {missing[:20]}"
    duplicates = check_duplicates(received)
    # What a crash re-sends is bounded: the batch in flight, and the one acknowledged just
    # before the kill whose checkpoint was not written yet.
    assert duplicates <= 2 * options["max_batch_events"], duplicates
    if backend.carries_event_id:  # every copy under the id the first process gave it
        assert all(event_id.startswith(producer + "-") for event_id, _ in received)
    assert not list(spool.glob("*.wal"))
    print(f"\n{name} seed {seed}, backend {state} at the kill: {len(recorded)} accepted, "
          f"{on_disk} records on disk, delivered {len(seqs)}, replayed {stats['replayed']}, "
          f"duplicates {duplicates}")


@pytest.mark.timeout(120)
def test_a_torn_last_record_is_skipped_with_a_warning_and_the_rest_replays(tmp_path):
    port = free_port()
    collector = CollectorServer(tmp_path / "collector", port=port)  # down until the replay
    spool, record = tmp_path / "spool", tmp_path / "emitted.txt"
    options = {**FAST, "url": collector.url, "connect_timeout": 0.5, "spool_dir": str(spool),
               "spool_segment_bytes": 8192}
    app = App({"sink": "http", "options": options, "mode": "record", "record": str(record),
               "schema": SCHEMA, "pause": 0.001})
    try:
        app.wait_line(lambda line: line.startswith("ready"))
        deadline = time.monotonic() + 30
        while len(recorded_seqs(record)) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        app.kill()
    recorded = recorded_seqs(record)
    assert len(recorded) >= 300

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
    missing = sorted(set(recorded) - seqs - {torn_seq})
    assert not missing, missing[:20]
    assert stats["replayed"] >= len(recorded) - 1, stats
    check_duplicates(received)
    assert not list(spool.glob("*.wal"))


@pytest.mark.timeout(180)
def test_processes_sharing_a_spool_the_survivor_delivers_what_a_killed_one_accepted(
    backend_factory, tmp_path
):
    backend = backend_factory("http")
    backend.down()
    spool = tmp_path / "spool"
    options = {**FAST, **backend.sink_options(), "spool_dir": str(spool), "spool_segment_bytes": 16384,
               "max_queue_events": 200, "max_batch_events": 50}
    records = {tag: tmp_path / f"emitted-{tag}.txt" for tag in ("a", "b")}
    apps = {tag: App({"sink": "http", "options": options, "mode": "record", "record": str(path),
                      "schema": SCHEMA, "pause": 0.001, "tag": tag, "rescan_interval": 0.3})
            for tag, path in records.items()}
    try:
        for app in apps.values():
            app.wait_line(lambda line: line.startswith("ready"))
        time.sleep(1.5)  # both accept events while the collector is down
        apps["a"].kill()
        killed = recorded_seqs(records["a"])
        assert len(killed) > 100
        backend.up()
        # Nobody restarts "a": "b", still running, finds its segments and delivers them.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            delivered = {p["seq"] for _, p in backend.received() if p["producer"] == "a"}
            if delivered >= set(killed):
                break
            time.sleep(0.5)
        missing = sorted(set(killed) - delivered)
        assert not missing, f"{len(missing)} events of the killed process not delivered: {missing[:20]}"
    finally:
        for app in apps.values():
            app.kill()
    survivor = recorded_seqs(records["b"])
    drain("http", options)
    received = backend.wait_received(len(killed) + len(survivor), timeout=60)
    by_producer = {tag: {p["seq"] for _, p in received if p["producer"] == tag} for tag in ("a", "b")}
    assert set(killed) <= by_producer["a"] and set(survivor) <= by_producer["b"]
    first: dict = {}
    for event_id, payload in received:  # duplicates are identical copies under one id
        assert first.setdefault(event_id, payload) == payload
    assert not list(spool.glob("*.wal"))
