"""KafkaSink against a real Kafka-protocol broker on 127.0.0.1."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict

import pytest
from helpers.events import SCHEMAS, make_log
from helpers.kafka_readback import consume, payloads
from helpers.servers import assert_never_blocked, free_port, tansu_broker, wait_delivered
from helpers.waiting import wait_until

from telemetry_sinks import EventLog, KafkaSink, MissingExtraError, SinkConfigError, get_sink

pytestmark = pytest.mark.integration



def test_ten_thousand_events_arrive_complete_equal_and_in_order_per_key(bootstrap, topic, client):
    sink = KafkaSink(bootstrap_servers=bootstrap, topic=topic, key="__schema__", linger_ms=5, client=client)
    log = make_log(sink)
    sent = []
    for seq in range(10_000):
        schema = SCHEMAS[seq % 2]["$id"]
        sent.append(log.emit(schema_id=schema, data={"seq": seq, "note": "x" * (seq % 50)}))
    assert sink.flush(timeout=120)
    sink.close()
    stats = sink.stats()
    assert stats["sent"] == 10_000 and stats["dropped"] == 0, stats

    messages = consume(bootstrap, topic, expected=10_000)
    received = payloads(messages)
    assert len(received) == 10_000
    by_id = {(p["__schema__"], p["seq"]): p for p in received}
    assert len(by_id) == 10_000  # no duplicates
    assert all(by_id[(c["__schema__"], c["seq"])] == c for c in sent)
    # Per key (the schema id) the order of emission is kept.
    per_key = defaultdict(list)
    for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
        assert message.key.decode() == json.loads(message.value)["__schema__"]
        per_key[message.key].append(json.loads(message.value)["seq"])
    for seqs in per_key.values():
        assert seqs == sorted(seqs)
    headers = dict(messages[0].headers)
    assert headers["schema"].decode() in {s["$id"] for s in SCHEMAS}
    assert headers["schema_version"] == b"1"
    assert headers["event_id"]


def test_topic_template_is_made_topic_safe(bootstrap, topic, client):
    sink = KafkaSink(bootstrap_servers=bootstrap, topic=topic + ".{__schema__}", client=client)
    log = make_log(sink)
    log.emit(schema_id=SCHEMAS[0]["$id"], data={"seq": 1})
    assert sink.flush(timeout=30)
    sink.close()
    expected_topic = topic + ".https___events.example.org_launch"
    assert [p["seq"] for p in payloads(consume(bootstrap, expected_topic, 1))] == [1]


def os_threads() -> int:
    """Threads of this process, Python's and native ones (librdkafka's broker threads)."""
    return len(os.listdir("/proc/self/task"))


#: Per client: reconnect quickly to the restarted broker, and keep records in the producer past a
#: failed batch (kafka-python expires them only after request_timeout_ms): the sink must still
#: close each producer it drops.
OUTAGE_CONFIG = {
    "kafka-python": {"producer_config": {"request_timeout_ms": 30_000, "reconnect_backoff_max_ms": 200}},
    "confluent": {"librdkafka_config": {"reconnect.backoff.max.ms": 200}},
}


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_broker_killed_mid_stream_loses_nothing_and_emit_stays_fast(local_broker, tmp_path, topic, client):
    bootstrap = f"127.0.0.1:{local_broker.port}"
    threads_before = os_threads()
    sink = KafkaSink(
        client=client,
        bootstrap_servers=bootstrap,
        topic=topic,
        spool_dir=str(tmp_path / "spool"),
        flush_interval=0.05,
        retry_initial_backoff=0.1,
        retry_max_backoff=0.5,
        ack_timeout=2.0,
        **OUTAGE_CONFIG[client],
    )
    assert sink.chosen_client == client
    log = make_log(sink)
    schema = SCHEMAS[0]["$id"]
    for seq in range(200):
        log.emit(schema_id=schema, data={"seq": seq})
    assert sink.flush(timeout=30)
    with_one_producer = os_threads()

    local_broker.stop()  # memory storage: the broker comes back empty
    latencies = []
    for seq in range(200, 1200):
        start = time.perf_counter()
        log.emit(schema_id=schema, data={"seq": seq})
        latencies.append(time.perf_counter() - start)
        if seq % 100 == 0:
            time.sleep(0.3)  # the outage lasts several seconds of steady emitting
    assert_never_blocked(latencies)

    local_broker.start()
    for seq in range(1200, 1300):
        log.emit(schema_id=schema, data={"seq": seq})
    stats = wait_delivered(sink, timeout=90)
    # Each producer dropped during the outage was closed: its threads are gone.
    wait_until(lambda: os_threads() <= with_one_producer, 10, interval=0.1, what="no leftover producer")
    sink.close()
    wait_until(lambda: os_threads() <= threads_before, 10, interval=0.1, what="no thread after close")
    assert stats["dropped"] == 0 and stats["dead_lettered"] == 0, stats

    seqs = [p["seq"] for p in payloads(consume(bootstrap, topic, expected=1100))]
    # Everything emitted during and after the outage is there (duplicates allowed, none lost).
    assert set(range(200, 1300)) <= set(seqs), sorted(set(range(200, 1300)) - set(seqs))[:20]


def test_broker_down_at_start_does_not_stop_the_application(tmp_path, topic, client):
    port = free_port()
    sink = KafkaSink(
        client=client,
        bootstrap_servers=f"127.0.0.1:{port}",
        topic=topic,
        flush_interval=0.05,
        retry_initial_backoff=0.1,
        retry_max_backoff=0.5,
        spool_dir=str(tmp_path / "spool"),
    )
    log = make_log(sink)
    start = time.perf_counter()
    for seq in range(50):
        log.emit(schema_id=SCHEMAS[0]["$id"], data={"seq": seq})
    assert time.perf_counter() - start < 0.5
    assert sink.flush(timeout=1) is False  # nothing can be delivered yet
    server = tansu_broker(port, tmp_path).start()
    try:
        wait_delivered(sink, timeout=60)
        sink.close()
        seqs = [p["seq"] for p in payloads(consume(f"127.0.0.1:{port}", topic, 50))]
        assert sorted(set(seqs)) == list(range(50))
    finally:
        server.stop()


def test_event_over_the_size_limit_is_dead_lettered_and_the_rest_flows(bootstrap, tmp_path, topic, client):
    dead = tmp_path / "dead.jsonl"
    sink = KafkaSink(
        client=client,
        bootstrap_servers=bootstrap, topic=topic, max_request_size=2000, dead_letter_file=str(dead)
    )
    log = make_log(sink)
    schema = SCHEMAS[0]["$id"]
    log.emit(schema_id=schema, data={"seq": 1})
    log.emit(schema_id=schema, data={"seq": 2, "note": "x" * 5000})
    log.emit(schema_id=schema, data={"seq": 3})
    assert sink.flush(timeout=30)
    sink.close()
    assert sorted(p["seq"] for p in payloads(consume(bootstrap, topic, 2))) == [1, 3]
    (letter,) = [json.loads(line) for line in dead.read_text().splitlines()]
    assert "larger than max_request_size" in letter["reason"]
    assert json.dumps(letter).count("x" * 5000) == 1  # the event itself is kept
    assert sink.stats()["dead_lettered"] == 1


def test_invalid_topic_name_fails_at_construction():
    with pytest.raises(SinkConfigError) as info:
        KafkaSink(topic="bad topic!")
    assert "KafkaSink option 'topic'" in str(info.value) and "'bad_topic_'" in str(info.value)
    with pytest.raises(SinkConfigError, match="needs option 'topic'"):
        KafkaSink()


def test_security_options_reach_the_producer_and_secrets_stay_hidden():
    sink = get_sink(
        "kafka",
        topic="t",
        bootstrap_servers="b1:9093,b2:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username="svc",
        sasl_plain_password="s3cret-pass",
        ssl_cafile="/etc/ca.pem",
        acks="1",
        compression_type="gzip",
        producer_config={"retries": 3},
    )
    options = sink.producer_options()
    assert options["bootstrap_servers"] == ["b1:9093", "b2:9093"]
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "svc"
    assert options["sasl_plain_password"] == "s3cret-pass"
    assert options["ssl_cafile"] == "/etc/ca.pem"
    assert options["acks"] == 1 and options["compression_type"] == "gzip"
    assert options["retries"] == 3
    assert "s3cret-pass" not in repr(sink)
    assert "s3cret-pass" not in json.dumps(sink.stats(), default=str)
    sink.close()


def test_the_same_options_reach_librdkafka_and_secrets_stay_hidden():
    sink = get_sink(
        "kafka",
        topic="t",
        client="confluent",
        bootstrap_servers="b1:9093,b2:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username="svc",
        sasl_plain_password="s3cret-pass",
        ssl_cafile="/etc/ca.pem",
        ssl_password="k3y-pass",
        acks="1",
        compression_type="zstd",
        linger_ms=20,
        max_request_size=2_000_000,
        ack_timeout=4.0,
        librdkafka_config={"queue.buffering.max.messages": 50_000},
    )
    props = sink.librdkafka_properties()
    assert props["bootstrap.servers"] == "b1:9093,b2:9093"
    assert props["security.protocol"] == "SASL_SSL" and props["sasl.mechanism"] == "SCRAM-SHA-512"
    assert props["sasl.username"] == "svc" and props["sasl.password"] == "s3cret-pass"
    assert props["ssl.ca.location"] == "/etc/ca.pem" and props["ssl.key.password"] == "k3y-pass"
    assert props["acks"] == "1" and props["enable.idempotence"] is False  # idempotence needs acks=all
    assert props["compression.type"] == "zstd" and props["linger.ms"] == 20
    assert props["message.max.bytes"] == 2_000_000
    assert props["message.timeout.ms"] == 4000  # an unacknowledged message fails its batch by then
    assert props["queue.buffering.max.messages"] == 50_000
    assert "s3cret-pass" not in repr(sink) and "k3y-pass" not in repr(sink)
    assert "s3cret-pass" not in sink.mask("SASL authentication failed for svc with s3cret-pass")
    sink.close()


def test_the_client_is_chosen_by_the_option_or_by_what_the_other_options_are_written_for(monkeypatch):
    from telemetry_sinks.sinks import kafka

    def sink(**options):
        made = KafkaSink(topic="t", **options)
        made.close()
        return made.chosen_client

    assert sink() == "confluent"  # both installed: librdkafka
    assert sink(producer_config={"retries": 3}) == "kafka-python"  # written for kafka-python
    assert sink(librdkafka_config={"linger.ms": 1}) == "confluent"
    assert sink(client="kafka-python") == "kafka-python"
    monkeypatch.setattr(kafka, "installed", lambda client: client == "kafka-python")
    assert sink() == "kafka-python"  # only kafka-python installed: the [kafka] extra keeps working
    missing = r'needs confluent-kafka: pip install "telemetry-sinks\[librdkafka\]"'
    with pytest.raises(MissingExtraError, match=missing):
        sink(client="confluent")


def test_traitlets_config_two_lines(bootstrap, topic, client):
    from traitlets.config import Config

    c = Config()
    c.EventLog.sinks = ["kafka"]
    c.KafkaSink.topic = topic
    c.KafkaSink.bootstrap_servers = bootstrap
    c.KafkaSink.client = client
    log = EventLog(config=c, allowed_schemas=[SCHEMAS[0]["$id"]])
    log.register_schema(SCHEMAS[0])
    log.emit(schema_id=SCHEMAS[0]["$id"], data={"seq": 7})
    (sink,) = log.all_handlers
    assert sink.flush(timeout=30)
    log.close()
    assert [p["seq"] for p in payloads(consume(bootstrap, topic, 1))] == [7]


def test_headers_come_from_the_capsule_without_decoding_it():
    from telemetry_sinks.capsule import encode, make_capsule
    from telemetry_sinks.delivery import Envelope

    sink = KafkaSink(topic="t")
    capsule = make_capsule('https://events.example.org/quote"d', 3, {"seq": 1})
    headers = dict(sink._headers_for(Envelope("p-1", encode(capsule))))
    schema = b'https://events.example.org/quote"d'
    assert headers == {"event_id": b"p-1", "schema": schema, "schema_version": b"3"}
    plain = dict(sink._headers_for(Envelope("p-2", encode({"message": "a log record"}))))
    assert plain == {"event_id": b"p-2"}
    sink.close()


def test_librdkafka_log_lines_reach_logging_masked(bootstrap, topic, caplog):
    """librdkafka's own log lines (here its debug output, a SASL handshake the broker refuses)
    go through Python's logging, with the secrets masked like every other text of the sink."""
    import logging

    secret = "pw-" + "s3cret-" * 3
    caplog.set_level(logging.DEBUG, logger="telemetry_sinks.delivery.kafka")
    sink = KafkaSink(client="confluent", bootstrap_servers=bootstrap, topic=topic, ack_timeout=2.0,
                     security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_plain_username="svc",
                     sasl_plain_password=secret,
                     librdkafka_config={"debug": "conf,security,broker", "log_level": 7})  # fmt: skip
    log = make_log(sink)
    log.emit(schema_id=SCHEMAS[0]["$id"], data={"seq": 1})
    sink.flush(timeout=3)
    # A line that quotes the secret (as a client's error may) is masked on its way.
    if sink._producer is None:  # dropped after the refused batch (reconnect): make one
        sink.open()
    producer = sink._producer
    producer._producer_logger().log(logging.ERROR, "%s|%s| authentication failed for %s", "3", "FAIL", secret)
    sink.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "telemetry_sinks.delivery.kafka"]
    assert any("authentication failed for ***" in line for line in lines)
    assert any("SASL" in line or "sasl" in line for line in lines), lines[:5]  # librdkafka spoke
    assert not [line for line in lines if secret in line]
