"""The wall clock jumps backwards (NTP step, VM restore) under running sinks.

The delivery core times everything with ``time.monotonic``; the wall clock only
names spool segments and stamps capsules.  ``time.time`` and ``time.time_ns`` are
replaced for the test by a clock that can be stepped (no faketime needed).
Proves: no event is lost or duplicated, nothing stalls, the spool still replays
in emission order across a restart after the jump, and file sinks keep every
line exactly once while their rotation clock goes back and forth.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest
from helpers.harness import FAST, SCHEMA, SID, CollectorServer, check_at_least_once, free_port

from telemetry_sinks import EventLog, HTTPSink, RotatingFileSink, TimedRotatingFileSink
from telemetry_sinks.delivery import engine

HOUR = 3600.0


class SteppedClock:
    """``time.time`` / ``time.time_ns`` shifted by ``offset`` seconds (stepped by the test)."""

    def __init__(self, monkeypatch) -> None:
        self.offset = 0.0
        self._time, self._time_ns = time.time, time.time_ns
        monkeypatch.setattr(time, "time", self.time)
        monkeypatch.setattr(time, "time_ns", self.time_ns)

    def time(self) -> float:
        return self._time() + self.offset

    def time_ns(self) -> int:
        return self._time_ns() + int(self.offset * 1e9)


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_clock_jumping_back_loses_nothing_and_the_spool_replays_in_emission_order(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "RESCAN_INTERVAL", 0.2)  # the spool directory is re-sorted often
    clock = SteppedClock(monkeypatch)
    collector = CollectorServer(tmp_path / "collector", port=free_port())  # down for now
    options = {**FAST, "url": collector.url, "connect_timeout": 0.5, "spool_dir": str(tmp_path / "spool"),
               "spool_segment_bytes": 4096}
    log = EventLog(allowed_schemas=[SID])
    log.register_schema(SCHEMA)
    sent = []

    def run(count: int, up: bool = False, **extra) -> HTTPSink:
        sink = HTTPSink(**{**options, **extra})
        log.handlers = [sink]
        for _ in range(count):
            sent.append(log.emit(schema_id=SID, data={"seq": len(sent)}))
        assert sink.flush(timeout=20 if up else 0.2) is up  # acknowledged only with the collector up
        return sink

    run(200, close_timeout=0.5).close()  # spooled with the true time
    clock.offset = -HOUR  # the clock steps back an hour
    run(200, close_timeout=0.5).close()  # and a restart: new segments are named an hour earlier
    collector.start()
    try:
        started = time.monotonic()
        last = run(200, up=True)  # the restarted application replays the spool and goes on
        deadline = time.monotonic() + 30
        while len(collector.received()) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        took = time.monotonic() - started
        last.close()
        received = [(line.pop("__event_id__"), line) for line in collector.received()]
    finally:
        collector.stop()
    assert took < 20, f"delivery stalled for {took:.1f} s after the clock jump"
    assert check_at_least_once(received, sent) == 0
    seqs = [payload["seq"] for _, payload in received]
    assert seqs == sorted(seqs), f"replayed out of emission order: {seqs[:5]}...{seqs[-5:]}"
    # Capsules carry the wall clock as it was: an hour earlier after the jump.
    assert sent[300]["__timestamp__"] < sent[100]["__timestamp__"]


def read_lines(directory: Path) -> list[dict]:
    lines = []
    for path in sorted(directory.iterdir()):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        lines.extend(json.loads(line) for line in data.decode().splitlines())
    return lines


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["timed_seconds", "timed_hourly", "rotating"])
def test_file_sinks_keep_every_line_exactly_once_while_the_clock_jumps(tmp_path, monkeypatch, kind):
    clock = SteppedClock(monkeypatch)
    directory = tmp_path / "out"
    path = directory / "events.jsonl"
    if kind == "timed_seconds":
        sink = TimedRotatingFileSink(filename=str(path), when="S", backup_count=0)
    elif kind == "timed_hourly":
        sink = TimedRotatingFileSink(filename=str(path), when="H", backup_count=0, compress=True)
    else:
        sink = RotatingFileSink(filename=str(path), max_bytes=2000, backup_count=1000)
    log = EventLog(handlers=[sink], allowed_schemas=[SID])
    log.register_schema(SCHEMA)
    steps = [0.0, -HOUR, -HOUR + 1.5, 2 * HOUR, -3 * HOUR, 0.0, 5 * HOUR, -10 * HOUR]
    seq = 0
    for offset in steps:
        clock.offset = offset
        for _ in range(40):
            log.emit(schema_id=SID, data={"seq": seq})
            seq += 1
        time.sleep(0.05)
    sink.close()
    seqs = sorted(line["seq"] for line in read_lines(directory))
    assert seqs == list(range(seq)), "lines lost or written twice"
