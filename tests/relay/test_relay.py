"""``telemetry-sinks relay`` against the Tansu broker, with real relays, collectors and sinks.

Events are produced by an application's EventLog through the Kafka sink; relays
(real ``telemetry-sinks relay`` processes in one consumer group) deliver them to
a real collector over HTTP (which drops duplicates by ``__event_id__``) or to a
file.  Relays are killed with SIGKILL and stopped with SIGTERM; the target is
stopped mid-stream; every produced event is accounted for.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from helpers.collector_process import SCHEMA, CollectorProcess
from helpers.kafka_readback import consume
from helpers.relay import RelayProcess, committed, create_topic, wait_for
from helpers.servers import free_port

from telemetry_sinks import EventLog, KafkaSink, SinkConfigError
from telemetry_sinks.relay import Relay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
SID = SCHEMA["$id"]
PARTITIONS = 4


def producing_log(bootstrap: str, topic: str) -> tuple[EventLog, KafkaSink]:
    """An application's EventLog writing to ``topic`` through the Kafka sink, keyed by seq."""
    sink = KafkaSink(bootstrap_servers=bootstrap, topic=topic, key="seq", linger_ms=5)
    log = EventLog(handlers=[sink], allowed_schemas=[SID])
    log.register_schema(SCHEMA)
    return log, sink


def produce(bootstrap: str, topic: str, seqs: range, pace: float = 0.0) -> None:
    """Emit one event per seq; ``pace``: seconds of sleep after every 100 events."""
    log, sink = producing_log(bootstrap, topic)
    for seq in seqs:
        log.emit(schema_id=SID, data={"seq": seq, "producer": "relay-test"})
        if pace and seq % 100 == 99:
            time.sleep(pace)
    assert sink.flush(timeout=120)
    sink.close()


def topic_index(bootstrap: str, topic: str, expected: int) -> dict[str, tuple[int, int, int]]:
    """event id -> (partition, offset, seq) of every event in ``topic`` (read back; ``expected``
    messages, those without an event_id header left out)."""
    index = {}
    messages = consume(bootstrap, topic, expected)
    assert len(messages) == expected
    for message in messages:
        headers = dict(message.headers)
        if "event_id" in headers:
            seq = json.loads(message.value)["seq"]
            index[headers["event_id"].decode()] = (message.partition, message.offset, seq)
    return index


def http_sink_lines(collector: CollectorProcess, directory: Path) -> str:
    return (
        "c.Relay.sinks = ['http']\n"
        f"c.HTTPSink.url = {collector.url!r}\n"
        f"c.HTTPSink.dead_letter_file = {str(directory / 'dead_letters.jsonl')!r}\n"
        "c.HTTPSink.flush_interval = 0.05\n"
        "c.HTTPSink.retry_initial_backoff = 0.1\n"
        "c.HTTPSink.retry_max_backoff = 0.5\n"
    )


def assert_committed_only_delivered(offsets: dict[int, int], index: dict, delivered_ids: set[str]) -> None:
    """Every message below a partition's committed offset is in the target."""
    for event_id, (partition, offset, _) in index.items():
        if offset < offsets[partition]:
            assert event_id in delivered_ids, (
                f"offset {offset} of partition {partition} is committed ({offsets[partition]}) "
                "but its event never reached the target"
            )


def assert_partition_order(received: list[dict], index: dict) -> None:
    """Per partition, events reached the target in offset order (duplicates removed)."""
    per_partition: dict[int, list[int]] = defaultdict(list)
    seen = set()
    for event in received:
        event_id = event["__event_id__"]
        if event_id in seen:
            continue
        seen.add(event_id)
        partition, offset, _ = index[event_id]
        per_partition[partition].append(offset)
    for partition, offsets in per_partition.items():
        assert offsets == sorted(offsets), f"partition {partition} out of order"


def test_two_relays_share_the_partitions_and_one_killed_mid_stream_loses_nothing(bootstrap, tmp_path):
    topic, group, total = f"relay-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}", 10_000
    create_topic(bootstrap, topic, PARTITIONS)
    collector = CollectorProcess(tmp_path / "collector").start()
    relays = [
        RelayProcess(tmp_path / f"relay-{i}", bootstrap, topic, group,
                     http_sink_lines(collector, tmp_path / f"relay-{i}")).start()
        for i in range(2)
    ]  # fmt: skip
    try:
        # Both relays are members of the group, each with its share of the partitions.
        for relay in relays:
            wait_for(lambda r=relay: len(r.stats()["partitions"]) == PARTITIONS // 2, 60,
                       f"{relay.name} holds {PARTITIONS // 2} partitions")  # fmt: skip
        producer = threading.Thread(target=produce, args=(bootstrap, topic, range(total), 0.03))
        producer.start()
        wait_for(lambda: len(collector.received()) >= 2_000, 120, "2,000 events delivered")
        victim, survivor = relays
        victim_partitions = set(victim.stats()["partitions"])
        assert victim.stats()["delivered"] > 0
        victim.kill()
        offsets_at_kill = committed(bootstrap, group, topic, PARTITIONS)
        delivered_at_kill = {e["__event_id__"] for e in collector.received()}
        producer.join(120)
        index = topic_index(bootstrap, topic, total)
        # Offsets committed at the moment of the kill cover only events the target has.
        assert_committed_only_delivered(offsets_at_kill, index, delivered_at_kill)

        # The survivor takes the victim's partitions over and delivers the rest.
        wait_for(lambda: {e["__event_id__"] for e in collector.received()} >= set(index), 120,
                   "every event delivered")  # fmt: skip
        assert victim_partitions <= set(survivor.stats()["partitions"])
        received = collector.received()
        assert {e["__event_id__"] for e in received} == set(index)
        assert sorted(e["seq"] for e in received) == list(range(total))  # duplicates dropped by id
        assert_partition_order(received, index)
        wait_for(lambda: survivor.stats()["lag"] == 0, 30, "no lag left")
        assert survivor.terminate() == 0, survivor.log()[-3000:]
        # Everything is committed, and only after it was delivered.
        ends = defaultdict(int)
        for partition, offset, _ in index.values():
            ends[partition] = max(ends[partition], offset + 1)
        assert committed(bootstrap, group, topic, PARTITIONS) == dict(ends)
    finally:
        for relay in relays:
            relay.stop()
        collector.stop()


def test_a_rebalance_during_an_unsettled_round_commits_nothing_and_the_new_owners_deliver_it(
    bootstrap, tmp_path
):
    topic, group, total = f"relay-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}", 400
    create_topic(bootstrap, topic, PARTITIONS)
    collector = CollectorProcess(tmp_path / "collector")  # the target, down for now
    produce(bootstrap, topic, range(total))
    lines = http_sink_lines(collector, tmp_path)
    first = RelayProcess(tmp_path / "relay-a", bootstrap, topic, group, lines,
                         "c.Relay.rebalance_timeout = 1.0\n").start()  # fmt: skip
    second = None
    try:
        first.wait_assigned(PARTITIONS)
        wait_for(lambda: first.stats()["consumed"] > 0, 30, "a round read and waiting for the target")
        # A second relay joins: the first gives up its unsettled round instead of committing it.
        second = RelayProcess(tmp_path / "relay-b", bootstrap, topic, group, lines).start()
        second.wait_assigned(PARTITIONS // 2)
        first.wait_assigned(PARTITIONS // 2)
        assert first.stats()["rebalances"] >= 2 and first.stats()["delivered"] == 0
        assert committed(bootstrap, group, topic, PARTITIONS) == dict.fromkeys(range(PARTITIONS), -1001)
        collector.start()
        wait_for(lambda: {e["seq"] for e in collector.received()} == set(range(total)), 60, "all delivered")
        index = topic_index(bootstrap, topic, total)
        ends = defaultdict(int)
        for partition, offset, _ in index.values():
            ends[partition] = max(ends[partition], offset + 1)
        wait_for(lambda: committed(bootstrap, group, topic, PARTITIONS) == dict(ends), 30, "all committed")
        assert_partition_order(collector.received(), index)
    finally:
        for relay in (first, second):
            if relay is not None:
                relay.stop()
        collector.stop()


def test_relay_restarted_after_a_target_outage_resumes_from_the_committed_offsets(bootstrap, tmp_path):
    topic, group = f"relay-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, PARTITIONS)
    collector = CollectorProcess(tmp_path / "collector").start()
    lines = http_sink_lines(collector, tmp_path)
    relay = RelayProcess(tmp_path / "relay-a", bootstrap, topic, group, lines).start()
    try:
        produce(bootstrap, topic, range(500))
        wait_for(lambda: len(collector.received()) >= 500, 60, "the first 500 delivered")
        wait_for(lambda: sum(committed(bootstrap, group, topic, PARTITIONS).values()) == 500, 30,
                   "the first 500 committed")  # fmt: skip

        collector.stop()  # the target goes down (SIGKILL) while events keep coming
        produce(bootstrap, topic, range(500, 1000))
        wait_for(lambda: relay.stats()["consumed"] > 500, 30, "the relay reads past the outage")
        time.sleep(2.0)
        stats = relay.stats()
        assert stats["delivered"] == 500, stats
        assert "waiting" in relay.log() or stats["partitions"], relay.log()[-2000:]
        before_restart = committed(bootstrap, group, topic, PARTITIONS)
        assert sum(before_restart.values()) == 500  # nothing undelivered was committed
        relay.kill()

        collector.start()
        relay = RelayProcess(tmp_path / "relay-b", bootstrap, topic, group, lines).start()
        wait_for(lambda: len({e["seq"] for e in collector.received()}) == 1000, 90, "all 1000 delivered")
        wait_for(lambda: relay.stats()["delivered"] == 500, 30, "the restarted relay's round committed")
        # It started at the committed offsets: it read exactly the 500 events not committed before.
        assert relay.stats()["consumed"] == 500
        index = topic_index(bootstrap, topic, 1000)
        assert_partition_order(collector.received(), index)
        assert relay.terminate() == 0
    finally:
        relay.stop()
        collector.stop()


def test_events_delivered_again_after_a_kill_are_written_once_into_the_archive(bootstrap, tmp_path):
    """A relay writing to the archive and to a collector that is down: the archive has the round,
    nothing is committed; the relay is SIGKILLed; restarted with the collector up, it delivers the
    round again to both, and the archive drops the copies by event id."""
    topic, group, total = f"relay-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}", 1000
    create_topic(bootstrap, topic, PARTITIONS)
    archive = tmp_path / "archive"
    collector = CollectorProcess(tmp_path / "collector")  # not started yet: the second store is down
    lines = (f"c.Relay.sinks = ['archive', 'http']\nc.ArchiveSink.directory = {str(archive)!r}\n"
             + http_sink_lines(collector, tmp_path).replace("c.Relay.sinks = ['http']\n", ""))  # fmt: skip
    produce(bootstrap, topic, range(total))
    relay = RelayProcess(tmp_path / "relay-a", bootstrap, topic, group, lines).start()

    def archived() -> list[dict]:
        return [json.loads(line) for path in sorted(archive.glob("events-*.jsonl"))
                for line in path.read_text().splitlines()]  # fmt: skip

    try:
        wait_for(lambda: len(archived()) >= 200, 60, "a round in the archive")
        assert relay.stats()["delivered"] == 0  # the collector has not taken it: nothing committed
        relay.kill()
    finally:
        relay.stop()
    in_archive_at_kill = len(archived())
    assert committed(bootstrap, group, topic, PARTITIONS) == dict.fromkeys(range(PARTITIONS), -1001)
    collector.start()
    relay = RelayProcess(tmp_path / "relay-b", bootstrap, topic, group, lines).start()
    try:
        wait_for(lambda: relay.stats()["delivered"] == total, 60, "everything delivered to both")
        assert relay.stats()["consumed"] == total  # it started again from the first offsets
        assert relay.terminate() == 0
    finally:
        relay.stop()
        collector.stop()
    index = topic_index(bootstrap, topic, total)
    ids = [event["__event_id__"] for event in archived()]
    assert in_archive_at_kill >= 200
    assert sorted(ids) == sorted(index)  # each event once: the re-delivered copies were dropped by id
    assert_partition_order(archived(), index)
    assert {e["__event_id__"] for e in collector.received()} == set(index)


def test_opensearch_gets_each_event_once_however_often_the_relay_delivers_it(bootstrap, tmp_path):
    """The bulk sinks write each event under its id (create by _id): a second group reading the
    whole topic again, the worst re-delivery there is, adds no document."""
    from helpers.servers import osmem_server, search_hits
    from opensearchpy import OpenSearch

    topic, total, index = f"relay-{uuid.uuid4().hex[:8]}", 300, f"relay-{uuid.uuid4().hex[:6]}"
    create_topic(bootstrap, topic, PARTITIONS)
    produce(bootstrap, topic, range(total))
    search = osmem_server(free_port(), tmp_path).start()
    lines = ("c.Relay.sinks = ['opensearch']\n"
             f"c.OpenSearchSink.hosts = 'http://127.0.0.1:{search.port}'\n"
             f"c.OpenSearchSink.index = {index!r}\n"
             f"c.OpenSearchSink.dead_letter_file = {str(tmp_path / 'dead.jsonl')!r}\n"
             "c.OpenSearchSink.flush_interval = 0.05\n")  # fmt: skip
    try:
        for run in ("first", "again"):
            group = f"g-{run}-{uuid.uuid4().hex[:6]}"
            relay = RelayProcess(tmp_path / f"relay-{run}", bootstrap, topic, group, lines).start()
            try:
                wait_for(lambda r=relay: r.stats()["delivered"] == total, 60, f"{run}: all delivered")
                assert relay.terminate() == 0
            finally:
                relay.stop()
        hits = search_hits(OpenSearch(hosts=[f"http://127.0.0.1:{search.port}"], timeout=30), index)
    finally:
        search.stop()
    assert sorted(hit["_id"] for hit in hits) == sorted(topic_index(bootstrap, topic, total))
    assert sorted(hit["_source"]["seq"] for hit in hits) == list(range(total))


def test_sigterm_drains_and_commits_and_bad_messages_are_dead_lettered(bootstrap, tmp_path):
    topic, group = f"relay-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 1)
    out, dead = tmp_path / "out" / "events.jsonl", tmp_path / "relay_dead_letters.jsonl"
    sink_lines = f"c.Relay.sinks = ['file']\nc.FileSink.filename = {str(out)!r}\n"
    relay = RelayProcess(tmp_path / "relay", bootstrap, topic, group, sink_lines,
                         f"c.Relay.dead_letter_file = {str(dead)!r}\n").start()  # fmt: skip
    try:
        produce(bootstrap, topic, range(100))
        from kafka import KafkaProducer

        raw = KafkaProducer(bootstrap_servers=bootstrap)
        raw.send(topic, b"this is not JSON").get(timeout=30)
        raw.send(topic, b"[1, 2]").get(timeout=30)
        raw.close()
        produce(bootstrap, topic, range(100, 200))
        wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 200, 60, "200 lines")
        # Throughput and lag in Prometheus: every message (the bad ones too) delivered, no lag.
        delivered = f'telemetry_sinks_relay_delivered_total{{group="{group}"}} 202.0'
        wait_for(lambda: delivered in relay.metrics(), 30, "202 delivered in /metrics")
        lag = f'telemetry_sinks_relay_lag{{group="{group}",partition="0",topic="{topic}"}} 0.0'
        wait_for(lambda: lag in relay.metrics(), 30, f"lag 0 in /metrics: {relay.metrics()[-1500:]}")
        assert f'telemetry_sinks_relay_invalid_total{{group="{group}"}} 2.0' in relay.metrics()
        assert relay.terminate() == 0, relay.log()[-3000:]
    finally:
        relay.stop()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    index = topic_index(bootstrap, topic, 202)
    assert [line["seq"] for line in lines] == list(range(200))
    assert {line["__event_id__"] for line in lines} == set(index)  # the producer's ids are kept
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [letter["payload"] for letter in letters] == ["this is not JSON", "[1, 2]"]
    assert "offset 100" in letters[0]["reason"] and "not a JSON object" in letters[0]["reason"]
    assert letters[0]["event_id"] == f"{topic}-0-100"
    # SIGTERM finished the last round and committed it: the offset after the last message.
    assert committed(bootstrap, group, topic, 1) == {0: 202}


def test_a_sink_that_cannot_write_holds_the_partition_and_nothing_is_committed(bootstrap, tmp_path):
    """A file sink on a full disk (/dev/full): every round fails, is delivered again, never committed;
    a relay restarted with a working sink delivers everything from the first offset."""
    topic, group = f"relay-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 1)
    produce(bootstrap, topic, range(50))
    full = "c.Relay.sinks = ['file']\nc.FileSink.filename = '/dev/full'\nc.Relay.retry_backoff = 0.1\n"
    relay = RelayProcess(tmp_path / "relay-a", bootstrap, topic, group, full).start()
    try:
        wait_for(lambda: relay.stats()["redelivered"] >= 100, 60, "the failing round delivered again")
        stats = relay.stats()
        assert stats["delivered"] == 0 and "No space left on device" in stats["last_error"], stats
        assert committed(bootstrap, group, topic, 1) == {0: -1001}  # nothing committed
        assert relay.terminate() == 0
    finally:
        relay.stop()
    out = tmp_path / "events.jsonl"
    good = f"c.Relay.sinks = ['file']\nc.FileSink.filename = {str(out)!r}\n"
    relay = RelayProcess(tmp_path / "relay-b", bootstrap, topic, group, good).start()
    try:
        wait_for(lambda: relay.stats()["delivered"] == 50, 60, "all 50 delivered")
        assert [json.loads(line)["seq"] for line in out.read_text().splitlines()] == list(range(50))
        assert relay.terminate() == 0
    finally:
        relay.stop()
    assert committed(bootstrap, group, topic, 1) == {0: 50}


@contextlib.contextmanager
def small_disk(directory: Path, size: str):
    """A tmpfs of ``size`` mounted on ``directory`` (a disk that fills up)."""
    directory.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                           capture_output=True, text=True)  # fmt: skip
    assert mount.returncode == 0, f"this test mounts a tmpfs (as root): {mount.stderr}"
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def written_ids(path: Path) -> set[str]:
    """Event ids of the lines of a file sink; a line torn by the full disk is followed by a full copy."""
    ids = set()
    for line in path.read_text(errors="replace").splitlines():
        piece = line[line.rfind('{"__event_id__"'):]
        try:
            ids.add(json.loads(piece)["__event_id__"])
        except ValueError:
            continue  # the torn fragment itself
    return ids


def test_a_round_that_failed_midway_is_delivered_again_on_every_partition(bootstrap, tmp_path):
    """The disk fills in the middle of a round of 4 partitions, then space comes back: every event
    of every partition reaches the file, none is skipped by the offsets committed after it."""
    topic, group, total = f"relay-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}", 2000
    create_topic(bootstrap, topic, PARTITIONS)
    produce(bootstrap, topic, range(total))
    index = topic_index(bootstrap, topic, total)
    with small_disk(tmp_path / "disk", "1m") as disk:
        filler = disk / "filler"
        filler.write_bytes(b"x" * 990_000)  # room for some 200 lines of the first round of 1000
        out = disk / "events.jsonl"
        lines = (f"c.Relay.sinks = ['file']\nc.FileSink.filename = {str(out)!r}\n"
                 "c.Relay.retry_backoff = 0.2\nc.Relay.max_poll_records = 1000\n")  # fmt: skip
        relay = RelayProcess(tmp_path / "relay", bootstrap, topic, group, lines).start()
        try:
            wait_for(lambda: relay.stats()["redelivered"] > 0, 60, "the disk full")
            assert relay.stats()["delivered"] < total
            filler.unlink()  # space again
            wait_for(lambda: relay.stats()["delivered"] == total, 60, "everything delivered")
            assert written_ids(out) == set(index)
            assert relay.terminate() == 0
        finally:
            relay.stop()
    ends = defaultdict(int)
    for partition, offset, _ in index.values():
        ends[partition] = max(ends[partition], offset + 1)
    assert committed(bootstrap, group, topic, PARTITIONS) == dict(ends)


def test_relay_configuration_errors_name_the_fix(tmp_path):
    with pytest.raises(SinkConfigError, match="no topics"):
        Relay(sinks=["stream"])
    with pytest.raises(SinkConfigError, match="no sinks"):
        Relay(topics=["events"])
    from telemetry_sinks import HTTPSink

    sink = HTTPSink(url="http://127.0.0.1:9/api/events")
    try:
        with pytest.raises(SinkConfigError, match=r"no dead-letter file.*c\.HTTPSink\.dead_letter_file"):
            Relay(topics=["events"], handlers=[sink])
    finally:
        sink.close()
    loop = KafkaSink(topic="events", dead_letter_file=str(tmp_path / "dl.jsonl"))
    try:
        with pytest.raises(SinkConfigError, match="go round for ever"):
            Relay(topics=["events"], handlers=[loop])
    finally:
        loop.close()
    # From the command line: exit 2 and the same message.
    run = subprocess.run([sys.executable, "-m", "telemetry_sinks", "relay", "--topic", "events"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 2 and "The relay has no sinks" in run.stderr, run.stderr


def test_relay_security_options_map_to_librdkafka_and_secrets_stay_hidden():
    relay = Relay(topics=["events"], sinks=["stream"], bootstrap_servers=["k1:9093", "k2:9093"],
                  security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="relay",
                  sasl_plain_password="pa55-word", ssl_cafile="/etc/ca.pem",
                  consumer_config={"session.timeout.ms": 10000, "sasl.oauthbearer.client.secret": "t0ken-x"})
    props = relay.consumer_properties()
    assert props["bootstrap.servers"] == "k1:9093,k2:9093"
    assert props["security.protocol"] == "SASL_SSL" and props["sasl.mechanism"] == "SCRAM-SHA-512"
    assert props["sasl.username"] == "relay" and props["sasl.password"] == "pa55-word"
    assert props["ssl.ca.location"] == "/etc/ca.pem" and props["session.timeout.ms"] == 10000
    assert props["enable.auto.commit"] is False  # offsets are the relay's to commit
    masked = relay.mask("auth failed for relay:pa55-word with t0ken-x at sasl://relay:pa55-word@k1")
    assert "pa55-word" not in masked and "t0ken-x" not in masked
    relay._on_error("SASL authentication error: password pa55-word rejected")
    assert "pa55-word" not in relay.stats()["last_error"]
