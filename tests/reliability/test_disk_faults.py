"""The spool's disk fails under a running sink: read-only, full, deleted, replaced by a file.

The sink is an HTTPSink whose collector is down while the fault lasts, so every
event has to go through the spool.  In every case: the application keeps running
(emit never raises, flush never hangs), the problem is reported on the
``telemetry_sinks.delivery`` logger naming the spool and the OS error (without
flooding the log), every event that is not delivered is counted as dropped in
``stats()`` (missing == dropped, exactly), and once the fault is gone the sink
recovers: what was kept is delivered when the collector is back.

Tests run as root, which ignores permission bits: "read-only" is ``chattr +i``
(immutable, refused even to root) and "disk full" a 64 KiB tmpfs mounted on the
spool directory.  Where the machine does not allow these (a container without
CAP_SYS_ADMIN, a filesystem without attributes), "read-only" is skipped and
"disk full" is emulated with ``max_spool_bytes``; the test says which it used.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from helpers.harness import FAST, SCHEMA, SID, CollectorServer, check_at_least_once, free_port

from telemetry_sinks import EventLog, HTTPSink
from telemetry_sinks.delivery import engine
from telemetry_sinks.delivery.spool import parse_records

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

DELIVERY = "telemetry_sinks.delivery"


def try_run(*argv: str) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@contextlib.contextmanager
def tiny_tmpfs(directory: Path, size: str = "64k"):
    """Mount a tmpfs of ``size`` on ``directory``; yields False (nothing mounted) if not allowed."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = try_run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory))
    try:
        yield mounted
    finally:
        if mounted:
            try_run("umount", "-l", str(directory))


class Scenario:
    """An app with an HTTPSink, a spool and a collector that is down until ``recover()``."""

    def __init__(self, tmp_path: Path, caplog, **options) -> None:
        self.collector = CollectorServer(tmp_path / "collector", port=free_port())
        self.spool = Path(options.pop("spool_dir", tmp_path / "spool"))
        self.sink = HTTPSink(
            url=self.collector.url, spool_dir=str(self.spool),
            **{**FAST, "connect_timeout": 0.5, "max_queue_events": 100, "drop_report_interval": 0.2,
               **options},
        )
        self.log = EventLog(handlers=[self.sink], allowed_schemas=[SID])
        self.log.register_schema(SCHEMA)
        self.sent: list[dict] = []
        self.caplog = caplog

    def emit(self, count: int, pause: float = 0.0) -> None:
        for _ in range(count):
            capsule = self.log.emit(schema_id=SID, data={"seq": len(self.sent), "note": "x" * 100})
            self.sent.append(capsule)
            if pause:
                time.sleep(pause)

    def flush(self) -> None:
        started = time.monotonic()
        self.sink.flush(timeout=10)
        assert time.monotonic() - started < 10.5

    def delivery_logs(self) -> list[logging.LogRecord]:
        return [r for r in self.caplog.records if r.name.startswith(DELIVERY)]

    def received(self) -> list[tuple[str, dict]]:
        return [(line.pop("__event_id__"), line) for line in self.collector.received()]

    def recover_and_check(self, deleted_by_operator: int = 0) -> tuple[dict, int]:
        """Start the collector and wait until every event arrived or was counted as dropped.

        Checks missing == dropped exactly (events whose files the test itself deleted, at most
        ``deleted_by_operator``, cannot be counted) and returns (stats, missing).
        """
        self.collector.start()
        try:
            deadline = time.monotonic() + 60
            while True:
                self.sink.flush(timeout=1)
                stats = self.sink.stats()
                arrived = {p["seq"] for _, p in self.received()}
                done = len(arrived) + stats["dropped"] + deleted_by_operator >= len(self.sent)
                if (done and stats["queue_events"] == 0 and stats["spool_bytes"] == 0) or (
                    time.monotonic() > deadline
                ):
                    break
                time.sleep(0.1)
            self.sink.close()
            received = self.received()
        finally:
            self.collector.stop()
        stats = self.sink.stats()
        arrived = self.arrived = {p["seq"] for _, p in received}
        left = [json.loads(d)["seq"] for f in sorted(self.spool.glob("*.wal"))
                for _, d in parse_records(f.read_bytes()).records]
        kept = [c for c in self.sent if c["seq"] in arrived]
        check_at_least_once(received, kept)  # what arrived is intact, duplicates identical
        missing = sorted({c["seq"] for c in self.sent} - arrived)
        assert stats["emitted"] == len(self.sent)
        assert 0 <= len(missing) - stats["dropped"] <= deleted_by_operator, (
            f"{len(missing)} events never arrived but {stats['dropped']} were counted as dropped "
            f"({len(set(left) - arrived)} of them still in the spool): {stats}"
        )
        return stats, len(missing)


@pytest.fixture(autouse=True)
def frequent_rescans(monkeypatch):
    """The worker looks at the spool directory every 0.2 s instead of every 30 s."""
    monkeypatch.setattr(engine, "RESCAN_INTERVAL", 0.2)


@pytest.fixture
def scenario(tmp_path, caplog):
    """``scenario(**sink_options)``; sinks are closed and collectors stopped at teardown."""
    made: list[Scenario] = []

    def make(**options) -> Scenario:
        made.append(Scenario(tmp_path, caplog, **options))
        return made[-1]

    caplog.set_level(logging.INFO)
    yield make
    for s in made:
        s.sink._engine._close_timeout = 0.5
        s.sink.close()
        s.collector.stop()


def assert_reported_without_flood(scenario: Scenario, fragment: str, seconds: float) -> None:
    logs = scenario.delivery_logs()
    text = "\n".join(r.getMessage() for r in logs)
    assert any(fragment in r.getMessage() and r.levelno >= logging.WARNING for r in logs), text[-3000:]
    assert str(scenario.spool) in text, text[-3000:]
    # A persistent fault is reported, not repeated for every attempt: a handful per second at most.
    assert len(logs) <= 10 + 10 * seconds, f"{len(logs)} log records in {seconds:.1f} s:\n{text[-3000:]}"


# ---------------------------------------------------------------------- the directory goes away


@pytest.mark.parametrize("how", ["deleted", "replaced_by_a_file"])
def test_spool_directory_removed_under_a_running_sink(scenario, how):
    s = scenario()
    s.emit(300)
    s.flush()
    assert s.sink.stats()["spooled"] == 300
    shutil.rmtree(s.spool)  # the operator (or a tmp cleaner) removes it
    if how == "replaced_by_a_file":
        s.spool.write_text("not a directory")
    started = time.monotonic()
    s.emit(300, pause=0.002)  # the application keeps running
    s.flush()
    time.sleep(1.0)
    expected = "created it again" if how == "deleted" else "not a directory"
    assert_reported_without_flood(s, expected, time.monotonic() - started)
    if how == "replaced_by_a_file":
        s.spool.unlink()  # the fault is gone: the sink must use the directory again
    s.emit(100)
    s.flush()
    # The first 300 were being replayed (held in memory): they are not lost with their file.
    stats, missing = s.recover_and_check(deleted_by_operator=300)
    assert set(range(600, 700)) <= s.arrived, "not spooled again after the fault was gone"
    if how == "deleted":
        assert set(range(300, 600)) <= s.arrived, "the directory was not created again"
    else:
        assert stats["dropped"] >= 1 and "spool cannot be written" in "\n".join(
            r.getMessage() for r in s.delivery_logs()
        )


# ---------------------------------------------------------------------- read-only


def test_read_only_spool_directory_drops_and_counts_then_recovers(scenario, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    if not try_run("chattr", "+i", str(spool)):
        pytest.skip("chattr +i is not supported here (the file-instead-of-directory case still runs)")
    try_run("chattr", "-i", str(spool))
    s = scenario(spool_segment_bytes=4096)
    s.emit(100)
    s.flush()
    try:
        # Immutable even for root: no new segment, no write, no delete.
        for path in [*spool.iterdir(), spool]:
            assert try_run("chattr", "+i", str(path))
        started = time.monotonic()
        s.emit(300, pause=0.002)
        s.flush()
        time.sleep(0.5)
        assert_reported_without_flood(s, "Operation not permitted", time.monotonic() - started)
        during = s.sink.stats()
        assert during["dropped"] > 0, during
    finally:
        for path in [spool, *spool.iterdir()]:
            try_run("chattr", "-i", str(path))
    s.emit(100)
    s.flush()
    stats, missing = s.recover_and_check()
    assert 0 < missing <= 300, stats


# ---------------------------------------------------------------------- disk full


@pytest.mark.parametrize("overflow", ["spill", "drop_oldest"])
def test_disk_full_drops_by_policy_counts_and_keeps_running(scenario, tmp_path, overflow):
    spool = tmp_path / "spool"
    with tiny_tmpfs(spool) as mounted:
        options = {"spool_dir": spool, "overflow": overflow, "spool_segment_bytes": 8192}
        if not mounted:  # emulate: the spool's own bound is the "disk"
            options["max_spool_bytes"] = 64 * 1024
        s = scenario(**options)
        started = time.monotonic()
        s.emit(1500, pause=0.0005)  # ~330 KiB of records: five times the space
        s.flush()
        during = s.sink.stats()
        assert during["dropped"] > 0 and during["spooled"] > 0, during
        fragment = "No space left" if mounted else "spool full"
        assert_reported_without_flood(s, fragment, time.monotonic() - started)
        stats, missing = s.recover_and_check()
    arrived = s.arrived
    if overflow == "spill":
        assert 0 in arrived and len(s.sent) - 1 not in arrived  # the newest were refused
    else:
        # The oldest were evicted (except the segment being replayed when the disk filled up).
        assert len(s.sent) - 1 in arrived and len(arrived) < len(s.sent) // 2
    print(f"\ndisk full ({'tmpfs 64k' if mounted else 'emulated with max_spool_bytes'}), {overflow}: "
          f"dropped {stats['dropped']}, delivered {len(arrived)}")
