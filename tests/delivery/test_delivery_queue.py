"""Batching, bounded memory and overflow policies, event ids, stats and options."""

from __future__ import annotations

import logging
import re
import threading
import time

import pytest
from helpers.delivery import Gate, MemorySink
from helpers.waiting import wait_until

from telemetry_sinks.capsule import encode
from telemetry_sinks.delivery.envelope import next_event_id, producer_id
from telemetry_sinks.errors import SinkConfigError
from telemetry_sinks.sinks.network import NetworkSink

DELIVERY_LOGGER = "telemetry_sinks.delivery"


def batch_sizes(sink: MemorySink) -> list[int]:
    return [len(ids) for _, ids in sink.attempts]


# ---------------------------------------------------------------------- batching


def test_batches_by_count(make_sink):
    sink = make_sink(max_batch_events=10, flush_interval=60)
    for n in range(25):
        sink.write_payload({"n": n})
    wait_until(lambda: len(sink.attempts) == 2)
    time.sleep(0.05)
    assert batch_sizes(sink) == [10, 10]  # the last 5 wait for more events or the interval
    assert sink.flush(5)
    assert batch_sizes(sink) == [10, 10, 5]
    assert sink.delivered_numbers == list(range(25))


def test_batches_by_bytes(make_sink):
    payload = {"n": 0, "pad": "x" * 50}
    size = len(encode(payload))
    sink = make_sink(max_batch_bytes=size * 3, flush_interval=60)
    for n in range(10):
        sink.write_payload({**payload, "n": n})
    wait_until(lambda: len(sink.attempts) == 3)
    assert sink.flush(5)
    assert batch_sizes(sink) == [3, 3, 3, 1]
    assert all(sum(e.size for e in sink.delivered[i : i + 3]) <= size * 3 for i in (0, 3, 6))


def test_batches_by_time(make_sink):
    sink = make_sink(max_batch_events=100, flush_interval=0.2)
    start = time.monotonic()
    for n in range(3):
        sink.write_payload({"n": n})
    wait_until(lambda: sink.attempts)
    assert sink.attempts[0][0] - start >= 0.19
    assert batch_sizes(sink) == [3]


def test_emit_through_logging_and_capsule_fast_path(make_sink):
    sink = make_sink()
    logger = logging.getLogger("test.delivery.app")
    logger.addHandler(sink)
    logger.propagate = False
    try:
        logger.warning({"n": 1})
        sink.handle_capsule({"n": 2})
        sink.handle(logging.makeLogRecord({"name": DELIVERY_LOGGER, "msg": "not fed back"}))
        assert sink.flush(5)
    finally:
        logger.removeHandler(sink)
    assert sink.delivered_numbers == [1, 2]


# ---------------------------------------------------------------------- overflow


def blocked_sink(make_sink, **options):
    """A sink whose backend holds event 0 in flight, so the queue fills deterministically."""
    gate = Gate()
    sink = make_sink(gate, max_batch_events=1, max_queue_events=5, **options)
    sink.write_payload({"n": 0})
    assert gate.entered.wait(5)
    return sink, gate


def test_overflow_drop_newest(make_sink, caplog):
    caplog.set_level(logging.WARNING, logger=DELIVERY_LOGGER)
    sink, gate = blocked_sink(make_sink, overflow="drop_newest")
    for n in range(1, 21):
        sink.write_payload({"n": n})
    stats = sink.stats()
    assert stats["dropped"] == 15 and stats["queue_events"] == 5 and stats["emitted"] == 21
    gate.release()
    assert sink.flush(5)
    assert sink.delivered_numbers == [0, 1, 2, 3, 4, 5]
    wait_until(lambda: any("dropped 15 events" in r.getMessage() for r in caplog.records))


def test_overflow_drop_oldest(make_sink):
    sink, gate = blocked_sink(make_sink, overflow="drop_oldest")
    for n in range(1, 21):
        sink.write_payload({"n": n})
    assert sink.stats()["dropped"] == 15
    gate.release()
    assert sink.flush(5)
    assert sink.delivered_numbers == [0, 16, 17, 18, 19, 20]


@pytest.mark.timeout(30)
def test_overflow_block_waits_then_drops(make_sink):
    sink, gate = blocked_sink(make_sink, overflow="block", block_timeout=0.1)
    for n in range(1, 6):
        sink.write_payload({"n": n})
    start = time.monotonic()
    sink.write_payload({"n": 6})  # the queue is full: waits block_timeout, then drops
    assert time.monotonic() - start >= 0.09
    assert sink.stats()["dropped"] == 1
    sink._engine._block_timeout = 5.0
    threading.Timer(0.1, gate.release).start()
    start = time.monotonic()
    sink.write_payload({"n": 7})  # room appears once the backend moves on
    assert 0.05 < time.monotonic() - start < 4
    assert sink.flush(5)
    assert sink.delivered_numbers == [0, 1, 2, 3, 4, 5, 7]
    assert sink.stats()["dropped"] == 1


@pytest.mark.timeout(30)
def test_with_a_spool_a_full_queue_overflows_to_disk_and_everything_arrives_in_order(make_sink, tmp_path):
    sink, gate = blocked_sink(make_sink, spool_dir=str(tmp_path))
    assert sink.effective_overflow == "spill"
    for n in range(1, 21):
        sink.write_payload({"n": n})
    stats = sink.stats()
    # Event 0 is in flight, 1..5 fill the queue, 6..20 wait on disk only.
    assert stats["spooled"] == 21 and stats["dropped"] == 0 and stats["queue_events"] == 5
    gate.release()
    assert sink.flush(5)
    assert sink.delivered_numbers == list(range(21))
    assert sink.stats()["replayed"] == 15  # read back from the spool


@pytest.mark.timeout(30)
def test_when_flush_returns_the_stats_count_every_event_it_waited_for(make_sink, tmp_path, monkeypatch):
    """The spool settles a batch before the engine counts it: a flush() that came in between
    returned True while stats() did not count the batch yet."""
    from telemetry_sinks.delivery.spool import Spool

    sink, gate = blocked_sink(make_sink, spool_dir=str(tmp_path))
    for n in range(1, 11):
        sink.write_payload({"n": n})  # 6..10 wait on disk only
    acked, go_on = threading.Event(), threading.Event()
    real_ack = Spool.ack

    def slow_ack(self, envelopes):  # the worker pauses right after the spool settled the batch
        real_ack(self, envelopes)
        if any(env.payload["n"] == 10 for env in envelopes):
            acked.set()
            go_on.wait(5)

    monkeypatch.setattr(Spool, "ack", slow_ack)
    gate.release()
    assert acked.wait(10)
    threading.Timer(0.3, go_on.set).start()
    assert sink.flush(5)
    stats = sink.stats()
    assert stats["sent"] == 11 and stats["replayed"] == 5, stats


@pytest.mark.timeout(60)
def test_with_a_spool_each_emit_writes_its_own_record_and_memory_stays_bounded(make_sink, tmp_path):
    gate = Gate()
    sink = make_sink(gate, max_batch_events=1, max_queue_events=2000, spool_dir=str(tmp_path))
    sink.write_payload({"n": 0})
    assert gate.entered.wait(5)  # the worker is stuck in send_batch
    for n in range(1, 5001):
        before = sink.stats()["spooled"]
        sink.write_payload({"n": n})
        stats = sink.stats()
        assert stats["spooled"] == before + 1  # one record, never a queue's worth
        assert stats["queue_events"] <= 2000
    gate.release()
    assert sink.flush(20)
    assert sink.delivered_numbers == list(range(5001))
    assert sink.stats()["dropped"] == 0


def test_an_event_larger_than_the_queue_is_dropped_and_counted(make_sink):
    sink = make_sink(max_queue_bytes=600)  # JSON + EVENT_OVERHEAD (384) per event
    sink.write_payload({"n": 0, "pad": "x" * 300})
    sink.write_payload({"n": 1})
    assert sink.flush(5)
    assert sink.delivered_numbers == [1]
    assert sink.stats()["dropped"] == 1


def test_max_queue_bytes_counts_the_memory_of_each_event_not_only_its_json(make_sink):
    from telemetry_sinks.delivery.engine import EVENT_OVERHEAD

    gate = Gate()
    sink = make_sink(gate, max_batch_events=1, overflow="drop_newest", max_queue_bytes=10 * 1024)
    sink.write_payload({"n": 0})
    assert gate.entered.wait(5)
    for n in range(10, 110):  # 100 events of 8 bytes of JSON: all would fit in 10 KiB of JSON
        sink.write_payload({"n": n})
    stats = sink.stats()
    gate.release()
    held = stats["queue_events"]
    assert held == (10 * 1024) // (len('{"n":17}') + EVENT_OVERHEAD) < 100
    assert stats["queue_bytes"] == held * (len('{"n":17}') + EVENT_OVERHEAD) <= 10 * 1024
    assert stats["dropped"] == 100 - held
    assert sink.flush(5)
    assert sink.delivered_numbers == [0, *range(10, 10 + held)]


def test_drops_are_reported_once_per_interval(make_sink, caplog):
    caplog.set_level(logging.WARNING, logger=DELIVERY_LOGGER)
    sink, gate = blocked_sink(make_sink, overflow="drop_newest", drop_report_interval=60)
    for n in range(1, 9):
        sink.write_payload({"n": n})
    gate.release()
    wait_until(lambda: [r for r in caplog.records if "dropped 3 events" in r.getMessage()])
    gate.released.clear()
    wait_until(lambda: sink.stats()["queue_events"] == 0)
    for n in range(10, 20):
        sink.write_payload({"n": n})  # 5 more dropped within the interval: no new warning yet
    time.sleep(0.05)
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1
    gate.release()
    sink.close()
    reports = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(reports) == 2 and "queue full: " in reports[1]
    assert sink.stats()["dropped"] == sink.stats()["emitted"] - len(sink.delivered)


# ---------------------------------------------------------------------- ids, stats, options


def test_event_ids_are_unique_and_ordered_per_producer():
    ids = [next_event_id() for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{16}-\d{12}", i) for i in ids)
    assert ids[0].startswith(producer_id() + "-")


def test_every_attempt_of_an_event_carries_the_same_id(make_sink):
    calls = []

    def flaky(batch):
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("slow")

    sink = make_sink(flaky)
    sink.write_payload({"n": 0})
    assert sink.flush(5)
    assert len({ids[0] for _, ids in sink.attempts}) == 1
    assert sink.attempts[0][1] == [sink.delivered[0].event_id]


def test_stats_lists_every_counter(make_sink):
    sink = make_sink()
    sink.write_payload({"n": 0})
    assert sink.flush(5)
    assert sink.stats() == {
        "emitted": 1,
        "sent": 1,
        "retried": 0,
        "spooled": 0,
        "replayed": 0,
        "dead_lettered": 0,
        "dropped": 0,
        "auth_failures": 0,
        "queue_events": 0,
        "queue_bytes": 0,
        "spool_bytes": 0,
        "last_error": None,
    }


def test_stats_are_exported_to_prometheus(make_sink):
    from prometheus_client import REGISTRY, generate_latest

    sink = make_sink()
    sink.name = "prom-test"
    for n in range(3):
        sink.write_payload({"n": n})
    assert sink.flush(5)
    text = generate_latest(REGISTRY).decode()
    assert 'telemetry_sinks_delivery_sent_total{sink="prom-test"} 3.0' in text
    assert 'telemetry_sinks_delivery_queue_events{sink="prom-test"} 0.0' in text


def test_options_are_documented_traits():
    expected = {
        "max_batch_events",
        "max_batch_bytes",
        "flush_interval",
        "max_queue_events",
        "max_queue_bytes",
        "overflow",
        "block_timeout",
        "spool_dir",
        "max_spool_bytes",
        "spool_segment_bytes",
        "spool_fsync",
        "retry_initial_backoff",
        "retry_max_backoff",
        "max_retry_time",
        "dead_letter_file",
        "close_timeout",
        "drop_report_interval",
    }
    assert expected <= set(NetworkSink.option_names())
    traits = NetworkSink.class_traits()
    assert all(traits[name].help for name in expected)


def test_two_sinks_cannot_share_a_spool_dir(make_sink, tmp_path):
    make_sink(spool_dir=str(tmp_path))
    with pytest.raises(SinkConfigError, match="already used by sink 'memory'"):
        make_sink(spool_dir=str(tmp_path) + "/")


def test_an_unusable_spool_dir_is_a_config_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SinkConfigError, match="cannot be used"):
        MemorySink(spool_dir=str(tmp_path / "file" / "spool"))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"overflow": "spill"}, "spool_dir"),
        ({"max_queue_events": 0}, "max_queue_events"),
        ({"flush_interval": -1.0}, "flush_interval"),
        ({"overflow": "sometimes"}, "overflow"),
    ],
)
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(SinkConfigError, match=message):
        MemorySink(**options)
