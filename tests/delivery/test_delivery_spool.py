"""The disk spool: record format, the pure reader, segments, replay across restarts."""

from __future__ import annotations

import json
import logging
import tempfile
import zlib
from pathlib import Path

import pytest
from helpers.delivery import Gate
from helpers.waiting import wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_sinks.delivery import BatchResult, Envelope
from telemetry_sinks.delivery.envelope import next_event_id
from telemetry_sinks.delivery.spool import (
    CHECKPOINT_MAGIC,
    HEADER,
    KEPT,
    MAGIC,
    Spool,
    encode_checkpoint,
    encode_record,
    parse_records,
)

DELIVERY_LOGGER = "telemetry_sinks.delivery"


def fail(batch: list[Envelope]) -> None:
    raise ConnectionError("backend down")


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.wal"))


def record_offsets(buf: bytes) -> list[tuple[int, int]]:
    """(start, end) of each record in a well-formed segment."""
    spans, pos = [], 0
    while pos < len(buf):
        _, length, _ = HEADER.unpack_from(buf, pos)
        spans.append((pos, pos + HEADER.size + length))
        pos += HEADER.size + length
    return spans


def spool_events(make_sink, directory: Path, count: int, **options) -> list[str]:
    """Emit ``count`` events ({"n": i}) into a spool through a sink whose backend is down."""
    sink = make_sink(fail, spool_dir=str(directory), close_timeout=0.1, **options)
    for n in range(count):
        sink.write_payload({"n": n})
    sink.close()
    stats = sink.stats()
    assert stats["spooled"] == count and stats["sent"] == 0 and stats["dropped"] == 0
    return [e for _, ids in sink.attempts for e in ids]


# ---------------------------------------------------------------------- the pure reader


def test_record_format_is_magic_length_crc_then_id_and_json():
    record = encode_record("abc-000000000001", '{"n":1}')
    body = b'abc-000000000001\n{"n":1}'
    assert record == MAGIC + len(body).to_bytes(4, "big") + zlib.crc32(body).to_bytes(4, "big") + body
    assert parse_records(record).records == [("abc-000000000001", '{"n":1}')]


def test_checkpoint_format_is_magic_length_crc_then_offset_and_the_records_checksum():
    record = encode_record("abc-000000000001", '{"n":1}')
    crc = HEADER.unpack_from(record)[2]
    checkpoint = encode_checkpoint(len(record), crc)
    body = len(record).to_bytes(8, "big") + crc.to_bytes(4, "big")
    header = CHECKPOINT_MAGIC + (12).to_bytes(4, "big") + zlib.crc32(body).to_bytes(4, "big")
    assert checkpoint == header + body
    parsed = parse_records(record + checkpoint + encode_record("abc-000000000002", "{}"))
    assert parsed.settled == len(record)
    assert [r[0] for r in parsed.unsettled()] == ["abc-000000000002"]


def test_a_checkpoint_counts_only_if_its_record_is_where_it_says():
    first, second = encode_record("p-000000000001", '{"n":1}'), encode_record("p-000000000002", '{"n":2}')
    crc = HEADER.unpack_from(first)[2]
    good = encode_checkpoint(len(first), crc)
    assert parse_records(first + second + good).settled == len(first)
    assert parse_records(first + second + encode_checkpoint(len(first), crc ^ 1)).settled == 0  # other record
    assert parse_records(b"x" + first + second + good).settled == 0  # shifted: it names no record now
    assert parse_records(good + first).settled == 0  # a checkpoint covers only what is before it


def test_reader_skips_a_corrupted_record_and_a_torn_tail():
    records = [(f"p-{i:012d}", f'{{"n":{i}}}') for i in range(5)]
    buf = bytearray(b"".join(encode_record(*r) for r in records))
    spans = record_offsets(bytes(buf))
    buf[spans[1][0] + HEADER.size + 2] ^= 0xFF  # flip a byte in record 1's body
    buf = buf[: spans[4][1] - 3]  # tear record 4
    parsed = parse_records(bytes(buf))
    assert parsed.records == [records[0], records[2], records[3]]
    assert [(i.kind, i.offset) for i in parsed.issues] == [
        ("corrupted record", spans[1][0]),
        ("torn tail", spans[4][0]),
    ]


def test_reader_handles_zeroed_tail_and_garbage_length():
    good = encode_record("p-000000000001", "{}")
    # Zeros to the end: the room a mapped head reserved for records never written.
    reserved = parse_records(good + b"\0" * 100)
    assert reserved.records == [("p-000000000001", "{}")] and reserved.issues == []
    assert reserved.length == len(good)
    # A record cut short before the zeros (killed while it was copied) is a torn tail.
    torn = parse_records(good + good[:-3] + b"\0" * 100)
    assert [(i.kind, i.offset) for i in torn.issues] == [("torn tail", len(good))]
    assert torn.length == 2 * len(good) - 3 + 100
    bad_length = MAGIC + (10**9).to_bytes(4, "big") + b"\0\0\0\0" + b"xx"
    parsed = parse_records(bad_length + good)
    assert parsed.records == [("p-000000000001", "{}")]
    assert parsed.issues[0].kind == "corrupted record"


ids = st.from_regex(r"[0-9a-f]{1,16}-[0-9]{1,12}", fullmatch=True)
datas = st.text(max_size=40).map(lambda s: s.replace("\n", " "))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_reader_never_raises_on_arbitrary_bytes(buf):
    parsed = parse_records(buf)
    covered = sum(i.length for i in parsed.issues) + sum(
        len(encode_record(*r)) for r in parsed.records
    )
    reserved = buf[parsed.length :]  # zeros to the end: room reserved, neither item nor issue
    assert covered + len(reserved) == len(buf) and reserved.count(0) == len(reserved)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(ids, datas), max_size=8),
    st.lists(st.binary(max_size=30), max_size=8),
    st.data(),
)
def test_reader_keeps_every_intact_record_in_order(records, garbage, data):
    chunks = []
    for i, record in enumerate(records):
        if i < len(garbage):
            chunks.append(garbage[i])
        chunks.append(encode_record(*record))
    buf = b"".join(chunks)
    found = parse_records(buf).records
    it = iter(found)
    assert all(r in it for r in records)  # a subsequence, in order
    cut = data.draw(st.integers(0, len(buf)))
    assert parse_records(buf[:cut]).records == found[: len(parse_records(buf[:cut]).records)]


# ---------------------------------------------------------------------- the Spool class


def envelopes(count: int, start: int = 0) -> list[Envelope]:
    return [Envelope(next_event_id(), f'{{"n":{n}}}') for n in range(start, start + count)]


def test_an_event_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path):
    """A segment holds at least one record, however large; the next event starts a new one."""
    spool = Spool(str(tmp_path), max_bytes=10**6, segment_bytes=120)
    events = [Envelope(next_event_id(), f'{{"n":{n},"s":"{"x" * 200}"}}') for n in range(3)]
    small = envelopes(2, start=3)
    assert [spool.write(env)[0] for env in [*events, *small]] == [KEPT] * 5
    files = segments(tmp_path)
    assert len(files) == 4  # one per large event, the two small ones together
    # Sealed segments are cut to their records; the head may hold room reserved for more (zeros).
    head_length = parse_records(files[-1].read_bytes()).length
    assert spool.size == sum(f.stat().st_size for f in files[:-1]) + head_length
    assert [r[0] for f in files for r in parse_records(f.read_bytes()).records] == [
        e.event_id for e in [*events, *small]
    ]
    spool.ack([*events, *small])
    spool.retire_head()
    assert segments(tmp_path) == [] and spool.size == 0
    spool.close()


def test_spool_rolls_segments_and_replays_in_order(tmp_path):
    spool = Spool(str(tmp_path), max_bytes=10**6, segment_bytes=100)
    events = envelopes(10)
    assert spool.append(events) == ([], 0)
    assert len(segments(tmp_path)) > 2
    replayed = []
    while batch := spool.next_batch(3, 10**6):
        replayed += batch
        spool.ack(batch)
    assert [e.event_id for e in replayed] == [e.event_id for e in events]
    assert [e.payload["n"] for e in replayed] == list(range(10))
    assert segments(tmp_path) == [] and spool.size == 0
    spool.close()


def test_spool_refuses_or_evicts_when_full(tmp_path):
    record_size = len(encode_record(next_event_id(), '{"n":0}'))
    refusing = Spool(str(tmp_path / "a"), max_bytes=record_size * 5, segment_bytes=record_size)
    refused, evicted = refusing.append(envelopes(8))
    assert [e.payload["n"] for e in refused] == [5, 6, 7] and evicted == 0
    evicting = Spool(
        str(tmp_path / "b"), max_bytes=record_size * 5, segment_bytes=record_size, evict_oldest=True
    )
    assert evicting.append(envelopes(8)) == ([], 3)
    replayed = evicting.next_batch(100, 10**6)
    evicting.ack(replayed)
    while batch := evicting.next_batch(100, 10**6):
        replayed += batch
        evicting.ack(batch)
    assert [e.payload["n"] for e in replayed] == [3, 4, 5, 6, 7]
    refusing.close()
    evicting.close()


def test_events_held_on_disk_cost_little_memory_each(tmp_path):
    """A long outage puts every event on disk; what the spool keeps in memory per event must
    stay small (its offset and checksum), or memory grows with the spool instead of the queue."""
    import gc
    import tracemalloc

    spool = Spool(str(tmp_path), max_bytes=10**9, segment_bytes=10**6)
    count = 20_000
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for env in envelopes(count):
            spool.write(env, keep=False)  # on disk only, the caller keeps nothing
        gc.collect()
        per_event = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    assert per_event < 24, f"{per_event:.1f} bytes of memory per event held on disk"
    replayed = replay_all(spool)  # and every one of them is still there, in order
    assert [e.payload["n"] for e in replayed] == list(range(count))
    spool.close()


def replay_all(spool: Spool, ack=lambda batch: batch) -> list[Envelope]:
    """Every record ``next_batch`` hands out; ``ack(batch)`` says which to acknowledge."""
    out = []
    while batch := spool.next_batch(4, 10**6):
        out += batch
        spool.ack(ack(batch))
    return out


def test_a_restart_replays_only_what_follows_the_last_checkpoint(tmp_path):
    first = Spool(str(tmp_path), max_bytes=10**6, segment_bytes=10**6)
    first.append(envelopes(10))
    batch = first.next_batch(4, 10**6)
    first.ack(batch)  # 0..3 acknowledged: a checkpoint is appended
    first.close()  # 4..9 never delivered (as if the process died)
    [segment] = segments(tmp_path)
    parsed = parse_records(segment.read_bytes())
    assert len(parsed.checkpoints) == 1
    assert [json.loads(d)["n"] for _, d, _ in parsed.unsettled()] == list(range(4, 10))
    second = Spool(str(tmp_path), max_bytes=10**6, segment_bytes=10**6)
    assert [e.payload["n"] for e in replay_all(second)] == list(range(4, 10))
    assert segments(tmp_path) == []
    second.close()


def test_acknowledgements_out_of_order_checkpoint_only_the_settled_prefix(tmp_path):
    spool = Spool(str(tmp_path), max_bytes=10**6, segment_bytes=10**6)
    spool.append(envelopes(6))
    batch = spool.next_batch(6, 10**6)
    spool.ack(batch[2:4])  # 2 and 3 first: 0 and 1 are still outstanding
    spool.close()
    [segment] = segments(tmp_path)
    assert parse_records(segment.read_bytes()).settled == 0  # nothing settled as a prefix yet
    again = Spool(str(tmp_path), max_bytes=10**6, segment_bytes=10**6)
    batch = again.next_batch(6, 10**6)
    assert [e.payload["n"] for e in batch] == [0, 1, 2, 3, 4, 5]  # 2, 3 again: at-least-once
    again.ack(batch[1:2])
    again.ack(batch[0:1])  # now 0..1 are a settled prefix
    again.close()
    assert [json.loads(d)["n"] for _, d, _ in parse_records(segment.read_bytes()).unsettled()] == [2, 3, 4, 5]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.permutations(range(n)),
                                                      st.lists(st.integers(1, 8)))))  # fmt: skip
def test_acknowledged_batches_settle_the_same_prefix_in_any_order(case):
    """``ack`` settles a batch's in-order run at once; whatever the order and grouping of the
    acknowledgements, the settled prefix is the one acknowledging the events one by one gives."""
    order, sizes = case
    with tempfile.TemporaryDirectory() as directory:
        spool = Spool(directory, max_bytes=10**6, segment_bytes=10**6)
        written = envelopes(len(order))
        for env in written:
            spool.write(env)
        [segment] = {env.segment for env in written}
        acknowledged: set[int] = set()
        pos, sizes = 0, sizes or [1]
        while pos < len(order):
            size = sizes[pos % len(sizes)]
            group = sorted(order[pos : pos + size])  # a batch holds its events in file order
            spool.ack([written[i] for i in group])
            acknowledged.update(group)
            pos += size
            prefix = next((i for i in range(len(written)) if i not in acknowledged), len(written))
            assert segment.settled == (written[prefix - 1].end if prefix else 0)
            assert len(segment.ledger) == len(written) - prefix
        spool.close()


def test_an_acknowledged_run_then_the_gap_it_left_settles_through_the_early_ones(tmp_path):
    spool = Spool(str(tmp_path), max_bytes=10**6, segment_bytes=10**6)
    written = envelopes(6)
    for env in written:
        spool.write(env)
    segment = written[0].segment
    spool.ack([written[0], written[1], written[3], written[4]])  # 0-1 in order, 3-4 early
    assert segment.settled == written[1].end
    spool.ack([written[2]])  # the gap: the prefix moves over 3 and 4 too
    assert segment.settled == written[4].end
    assert list(segment.ledger) == [written[5].end]
    spool.close()
    unsettled = parse_records(segments(tmp_path)[0].read_bytes()).unsettled()
    assert [json.loads(d)["n"] for _, d, _ in unsettled] == [5]


def test_a_segment_held_by_another_writer_is_not_replayed(tmp_path):
    writer = Spool(str(tmp_path), max_bytes=10**6, segment_bytes=10**6)
    writer.append(envelopes(3))
    other = Spool(str(tmp_path), max_bytes=10**6, segment_bytes=10**6)
    assert other.next_batch(10, 10**6) == []  # the writer's head is locked
    writer.close()
    other.scan()
    batch = other.next_batch(10, 10**6)
    assert [e.payload["n"] for e in batch] == [0, 1, 2]
    other.ack(batch)
    assert segments(tmp_path) == []
    other.close()


# ---------------------------------------------------------------------- through a sink


@pytest.mark.timeout(30)
def test_spooled_events_replay_in_order_after_restart(make_sink, tmp_path):
    spool_events(make_sink, tmp_path, 50, spool_segment_bytes=400)
    assert len(segments(tmp_path)) > 1
    restarted = make_sink(spool_dir=str(tmp_path))  # replays without any new event
    wait_until(lambda: len(restarted.delivered) == 50)
    assert restarted.delivered_numbers == list(range(50))
    ids = [e.event_id for e in restarted.delivered]
    assert ids == sorted(ids) and len(set(ids)) == 50
    wait_until(lambda: segments(tmp_path) == [] and restarted.stats()["replayed"] == 50)
    stats = restarted.stats()
    assert stats["sent"] == 50 and stats["spool_bytes"] == 0


@pytest.mark.timeout(30)
def test_torn_tail_and_corrupted_record_are_skipped_with_a_warning(make_sink, tmp_path, caplog):
    spool_events(make_sink, tmp_path, 10)
    [segment] = segments(tmp_path)
    buf = bytearray(segment.read_bytes())
    spans = record_offsets(bytes(buf))
    buf[spans[3][0] + HEADER.size + 1] ^= 0x55  # corrupt record 3
    segment.write_bytes(bytes(buf[: spans[9][1] - 4]))  # tear record 9 (kill -9 mid-write)
    caplog.set_level(logging.WARNING, logger=DELIVERY_LOGGER)
    restarted = make_sink(spool_dir=str(tmp_path))
    wait_until(lambda: len(restarted.delivered) == 8)
    assert restarted.flush(5)
    assert restarted.delivered_numbers == [0, 1, 2, 4, 5, 6, 7, 8]
    messages = [r.getMessage() for r in caplog.records if r.name == DELIVERY_LOGGER]
    assert any("corrupted record" in m for m in messages)
    assert any("torn tail" in m for m in messages)
    wait_until(lambda: segments(tmp_path) == [])


@pytest.mark.timeout(30)
def test_segments_are_deleted_only_after_every_event_is_acknowledged(make_sink, tmp_path):
    spool_events(make_sink, tmp_path, 6, spool_segment_bytes=10**6)
    [segment] = segments(tmp_path)
    gate = Gate()
    calls = []

    def behavior(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            gate(batch)  # hold the first replay
            result = BatchResult()
            result.retry(batch[-1].event_id, "HTTP 503")  # and fail its last event
            return result
        return None

    restarted = make_sink(behavior, spool_dir=str(tmp_path))
    assert gate.entered.wait(5)
    assert segment.exists()  # in flight: not acknowledged yet
    gate.release()
    wait_until(lambda: len(calls) >= 2)
    wait_until(lambda: not segment.exists())
    assert restarted.delivered_numbers == [0, 1, 2, 3, 4, 5]
    assert restarted.stats()["retried"] == 1


@pytest.mark.timeout(30)
def test_spool_overflow_drop_newest_counts_and_warns(make_sink, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=DELIVERY_LOGGER)
    record_size = len(encode_record(next_event_id(), '{"n":0}'))
    gate = Gate()
    sink = make_sink(
        gate,
        spool_dir=str(tmp_path),
        overflow="drop_newest",
        max_spool_bytes=record_size * 4,
        spool_segment_bytes=record_size * 2,
        max_batch_events=1,
        max_queue_events=1,
    )
    sink.write_payload({"n": 0})
    assert gate.entered.wait(5)  # event 0 in flight
    for n in range(1, 10):
        sink.write_payload({"n": n})
    # 1 is held in memory too, 2 and 3 on disk only; the spool is then full and so is memory.
    stats = sink.stats()
    assert stats["spooled"] == 4 and stats["dropped"] == 6
    gate.release()
    assert sink.flush(5)
    assert sink.delivered_numbers == [0, 1, 2, 3]
    wait_until(lambda: any("spool full" in r.getMessage() for r in caplog.records))


@pytest.mark.timeout(30)
def test_a_full_spool_keeps_new_events_in_memory_while_there_is_room(make_sink, tmp_path):
    record_size = len(encode_record(next_event_id(), '{"n":0}'))
    gate = Gate()
    sink = make_sink(gate, spool_dir=str(tmp_path), max_spool_bytes=record_size * 3, max_batch_events=1)
    sink.write_payload({"n": 0})
    assert gate.entered.wait(5)
    for n in range(1, 10):
        sink.write_payload({"n": n})
    stats = sink.stats()
    assert stats["spooled"] == 3 and stats["dropped"] == 0 and stats["queue_events"] == 9
    gate.release()
    assert sink.flush(5)
    assert sink.delivered_numbers == list(range(10))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("memory", ["room", "full"])
def test_events_spooled_while_down_are_delivered_in_order_when_the_backend_is_back(make_sink, tmp_path,
                                                                                  memory):
    down = True

    def backend(batch):
        if down:
            raise ConnectionError("connection refused")

    small = {"max_queue_events": 10} if memory == "full" else {}
    sink = make_sink(backend, spool_dir=str(tmp_path), flush_interval=0.01, max_batch_events=7, **small)
    for n in range(40):
        sink.write_payload({"n": n})
    stats = sink.stats()
    assert stats["spooled"] == 40 and stats["sent"] == 0  # on disk at once, without waiting
    records = [r for f in segments(tmp_path) for r in parse_records(f.read_bytes()).records]
    on_disk = [json.loads(data)["n"] for _, data in records]
    assert on_disk == list(range(40))
    down = False
    for n in range(40, 45):
        sink.write_payload({"n": n})  # newer events wait behind the older ones
    wait_until(lambda: sink.stats()["sent"] == 45)
    assert sink.delivered_numbers == list(range(45))
    stats = sink.stats()
    assert stats["dropped"] == 0
    if memory == "full":  # what did not fit in memory was read back from disk
        assert stats["replayed"] >= 40 - 10 - 7, stats
    wait_until(lambda: segments(tmp_path) == [])
