"""A backend that goes down and up every second for ~20 s, under steady load, for every network sink.

(Also: a backend that is down when the sink starts.)

The collector (``http``) is killed with SIGKILL and restarted; the other backends
keep their data in memory, so the network in front of them is cut instead (see
``helpers.harness``).  Proves, per sink: nothing is lost, duplicates are identical to
their first copy and no more than the retries and replays, emit() never waits for
the backend, and memory and spool stay within their bounds all along.
"""

from __future__ import annotations

import threading
import time

import pytest
from helpers.harness import SCHEMA, SID, BoundsMonitor, available_backends, check_at_least_once
from helpers.servers import assert_never_blocked, wait_delivered

from telemetry_sinks import EventLog

pytestmark = [pytest.mark.integration]

#: Seconds of flapping (one second down, one second up): ~20 s for the HTTP and Kafka sinks;
#: the cloud sinks, whose own suites stop and restart their backends too, get 12 s of CI time.
FLAP_SECONDS = {"http": 20, "kafka": 20}
DEFAULT_FLAP_SECONDS = 12
KiB = 1024


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", available_backends())
def test_flapping_backend_loses_nothing_and_memory_and_spool_stay_bounded(name, backend_factory, tmp_path):
    backend = backend_factory(name)
    spool = tmp_path / "spool"
    sink = backend.make_sink(
        spool_dir=str(spool),
        max_batch_events=100,
        max_queue_events=1000,
        max_queue_bytes=32 * KiB,  # ~0.5 s of the load: a 1 s outage overflows into the spool
        max_spool_bytes=4096 * KiB,
        spool_segment_bytes=64 * KiB,
    )
    log = EventLog(handlers=[sink], allowed_schemas=[SID])
    log.register_schema(SCHEMA)

    done = threading.Event()
    flaps = []

    seconds = FLAP_SECONDS.get(name, DEFAULT_FLAP_SECONDS)

    def flap() -> None:
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(0.5)
                backend.down()
                flaps.append(time.monotonic())
                time.sleep(1.0)
                backend.up()
                time.sleep(0.5)
        finally:
            done.set()

    sent, latencies = [], []
    flapper = threading.Thread(target=flap, daemon=True)
    with BoundsMonitor(sink) as monitor:
        flapper.start()
        seq = 0
        while not done.is_set():
            for _ in range(3):  # ~300 events per second
                start = time.perf_counter()
                sent.append(log.emit(schema_id=SID, data={"seq": seq, "producer": name}))
                latencies.append(time.perf_counter() - start)
                seq += 1
            time.sleep(0.01)
        flapper.join(30)
        stats = wait_delivered(sink, timeout=90)
    sink.close()

    assert len(flaps) >= seconds // 2 - 1, flaps
    monitor.check()
    assert_never_blocked(latencies)
    assert stats["emitted"] == len(sent)
    assert stats["dropped"] == 0 and stats["dead_lettered"] == 0, stats
    assert stats["spooled"] > 0, stats  # the outages went through the spool
    received = backend.wait_received(len(sent), timeout=30)
    duplicates = check_at_least_once(received, sent, by_event_id=backend.carries_event_id)
    assert duplicates <= stats["retried"] + stats["replayed"], (duplicates, stats)
    print(f"\n{name}: {len(sent)} events, {len(flaps)} outages, {duplicates} duplicates, "
          f"peaks {monitor.peak}, stats {stats}")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", available_backends())
def test_backend_down_at_start_events_are_on_disk_at_once_and_flush_after_it_returns_delivers(
    name, backend_factory, tmp_path
):
    backend = backend_factory(name)
    backend.down()
    # A long backoff: flush() must try the pending retry at once, not wait it out.
    sink = backend.make_sink(spool_dir=str(tmp_path / "spool"), retry_initial_backoff=30.0,
                             retry_max_backoff=30.0)
    log = EventLog(handlers=[sink], allowed_schemas=[SID])
    log.register_schema(SCHEMA)
    sent = [log.emit(schema_id=SID, data={"seq": seq}) for seq in range(50)]
    stats = sink.stats()
    assert stats["spooled"] == 50 and stats["sent"] == 0, stats  # on disk when emit() returned
    started = time.monotonic()
    assert not sink.flush(timeout=1.0), sink.stats()  # nothing acknowledged: False, in time
    assert time.monotonic() - started < 3
    deadline = time.monotonic() + 20
    while not sink.stats()["last_error"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sink.stats()["last_error"], sink.stats()
    backend.up()
    started = time.monotonic()
    assert sink.flush(timeout=30), sink.stats()  # the backend is back: delivered before it returns
    took = time.monotonic() - started
    stats = sink.stats()
    sink.close()
    assert stats["sent"] == 50 and stats["dropped"] == 0 and stats["dead_lettered"] == 0, stats
    check_at_least_once(backend.wait_received(50), sent, by_event_id=backend.carries_event_id)
    print(f"\n{name}: flush() after the backend came back delivered 50 events in {took:.2f} s")
