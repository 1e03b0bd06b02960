"""Integration tests of the bulk mechanism shared by ElasticsearchSink and OpenSearchSink.

Written once against the neutral fixtures of this directory's conftest.py
(``bulk_url``, ``bulk_client``, ``make_bulk_sink``, ``bulk_server``, ``proxy``, ...),
which is parametrized over both backends: every case runs against Elasticsearch and
against OpenSearch.
"""

from __future__ import annotations

import json
import logging
import logging.config
import time

import pytest
from helpers.bulk import bulk_statuses, capsule
from helpers.events import LAUNCH, SCHEMAS, make_log
from helpers.jsonl import read_jsonl as dead_letters
from helpers.servers import assert_never_blocked, search_hits, wait_delivered

from telemetry_sinks import EventLog, SinkConfigError, get_sink
from telemetry_sinks.capsule import encode
from telemetry_sinks.delivery import Envelope
from telemetry_sinks.delivery.envelope import next_event_id, producer_id


def test_5000_events_arrive_complete_and_equal(bulk_url, bulk_client, make_bulk_sink, prefix):
    sink = make_bulk_sink(bulk_url, prefix)
    log = make_log(sink)
    sent = [
        log.emit(schema_id=SCHEMAS[seq % 2]["$id"], data={"seq": seq, "note": "n" * (seq % 40)})
        for seq in range(5000)
    ]
    assert sink.flush(timeout=60)
    sink.close()
    stats = sink.stats()
    assert (stats["sent"], stats["dropped"], stats["dead_lettered"]) == (5000, 0, 0), stats

    hits = search_hits(bulk_client, f"{prefix}-*")
    assert len(hits) == 5000
    assert bulk_client.count(index=f"{prefix}-*")["count"] == 5000
    ids = [hit["_id"] for hit in hits]
    assert len(set(ids)) == 5000  # one document per event id
    assert all(i.startswith(producer_id() + "-") for i in ids)
    # Event ids follow emission order, and every _source is the capsule, field for field.
    assert [hit["_source"] for hit in sorted(hits, key=lambda h: h["_id"])] == sent
    day = sent[0]["__timestamp__"][:10].replace("-", ".")
    assert f"{prefix}-https___events.example.org_launch-{day}" in {h["_index"] for h in hits}
    first = hits[0]
    assert bulk_client.get(index=first["_index"], id=first["_id"])["_source"] == first["_source"]


@pytest.mark.parametrize("op_type", ["create", "index"])
def test_a_batch_sent_twice_creates_no_duplicates(bulk_url, bulk_client, make_bulk_sink, prefix, op_type):
    sink = make_bulk_sink(bulk_url, prefix, op_type=op_type, index=f"{prefix}-dups")
    batch = [Envelope(next_event_id(), encode(capsule(seq))) for seq in range(20)]
    sink.open()
    for _ in range(2):  # the second time, as a retry or a spool replay would
        result = sink.send_batch(batch)
        assert (result.retryable, result.permanent) == ({}, {})
    sink.close()
    hits = search_hits(bulk_client, f"{prefix}-dups")
    assert sorted(h["_id"] for h in hits) == sorted(e.event_id for e in batch)
    assert sorted(h["_source"]["seq"] for h in hits) == list(range(20))


def test_a_lost_answer_is_retried_without_duplicates(proxy, bulk_client, make_bulk_sink, prefix):
    # The server indexes the batch but its answer never arrives: the retry finds the documents
    # already there (409 on create), which counts as delivered.
    proxy.fail(504, times=1, path="_bulk", forward=True)
    sink = make_bulk_sink(proxy.url, prefix)
    log = make_log(sink)
    for seq in range(100):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["retried"] == 100 and stats["sent"] == 100 and stats["dead_lettered"] == 0
    assert bulk_statuses(proxy)[:2] == [504, 200]
    hits = search_hits(bulk_client, f"{prefix}-*")
    assert sorted(h["_source"]["seq"] for h in hits) == list(range(100))


def test_server_down_mid_stream_loses_nothing_and_emit_stays_fast(
    bulk_server, bulk_client_for, make_bulk_sink, tmp_path, prefix
):
    sink = make_bulk_sink(
        bulk_server.url, prefix, spool_dir=str(tmp_path / "spool"), max_queue_events=100,
        request_timeout=2.0,
    )
    log = make_log(sink)
    for seq in range(200):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    assert sink.flush(timeout=30)

    bulk_server.stop()  # in memory: it comes back empty
    latencies = []
    for seq in range(200, 1200):
        start = time.perf_counter()
        log.emit(schema_id=LAUNCH, data={"seq": seq})
        latencies.append(time.perf_counter() - start)
        if seq % 100 == 0:
            time.sleep(0.3)  # the outage lasts about 3 s of steady emitting
    assert_never_blocked(latencies)
    assert "ConnectionError" in sink.stats()["last_error"]

    bulk_server.start()
    for seq in range(1200, 1300):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    stats = wait_delivered(sink, timeout=60)
    sink.close()
    assert stats["dropped"] == 0 and stats["dead_lettered"] == 0, stats
    assert stats["spooled"] == 1300 and stats["replayed"] > 0, stats  # on disk, read back from there

    client = bulk_client_for(bulk_server.url)
    seqs = [h["_source"]["seq"] for h in search_hits(client, f"{prefix}-*")]
    client.close()
    # Everything emitted during and after the outage is there, once.
    assert sorted(seqs) == list(range(200, 1300))


def test_a_mapping_error_is_dead_lettered_and_the_rest_of_the_batch_indexed(
    bulk_url, bulk_client, make_bulk_sink, prefix, tmp_path
):
    dead = tmp_path / "dead.jsonl"
    sink = make_bulk_sink(
        bulk_url, prefix, index=f"{prefix}-values", dead_letter_file=str(dead),
        flush_interval=5.0,  # the three events below leave as one batch, on flush()
    )
    log = make_log(sink)
    log.emit(schema_id=LAUNCH, data={"seq": 1, "value": 1})  # maps "value" as a number
    assert sink.flush(timeout=30)
    log.emit(schema_id=LAUNCH, data={"seq": 2, "value": 2})
    log.emit(schema_id=LAUNCH, data={"seq": 3, "value": "not a number"})
    log.emit(schema_id=LAUNCH, data={"seq": 4, "value": 4})
    assert sink.flush(timeout=30)
    sink.close()
    hits = search_hits(bulk_client, f"{prefix}-values")
    assert sorted(h["_source"]["seq"] for h in hits) == [1, 2, 4]
    (letter,) = dead_letters(dead)
    assert letter["payload"]["seq"] == 3 and letter["payload"]["value"] == "not a number"
    assert "HTTP 400" in letter["reason"] and "parsing_exception" in letter["reason"]
    assert "[value]" in letter["reason"] and f"{prefix}-values" in letter["reason"]
    stats = sink.stats()
    assert (stats["sent"], stats["dead_lettered"], stats["retried"]) == (3, 1, 0)


def test_a_429_answer_is_retried_then_delivered(proxy, bulk_client, make_bulk_sink, prefix):
    proxy.fail(
        429, times=2, path="_bulk", headers={"Retry-After": "0"},
        error={"type": "es_rejected_execution_exception", "reason": "rejected execution"},
    )
    sink = make_bulk_sink(proxy.url, prefix)
    log = make_log(sink)
    for seq in range(50):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert bulk_statuses(proxy)[:3] == [429, 429, 200]
    assert stats["retried"] == 100 and stats["sent"] == 50 and stats["dead_lettered"] == 0
    assert sorted(h["_source"]["seq"] for h in search_hits(bulk_client, f"{prefix}-*")) == list(
        range(50)
    )


def test_items_answered_429_are_retried_alone(proxy, bulk_client, make_bulk_sink, prefix):
    proxy.fail_bulk_items(429, every=2, times=1)
    sink = make_bulk_sink(proxy.url, prefix, flush_interval=5.0)
    log = make_log(sink)
    for seq in range(10):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    assert sink.flush(timeout=30)
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["retried"] == 5 and stats["sent"] == 10 and stats["dead_lettered"] == 0
    assert sorted(h["_source"]["seq"] for h in search_hits(bulk_client, f"{prefix}-*")) == list(
        range(10)
    )


def test_events_over_the_size_limits_are_dead_lettered(
    proxy, bulk_client, make_bulk_sink, prefix, tmp_path
):
    # The proxy refuses bodies over 4000 bytes with 413, like a front end's body limit (the
    # server's own http.max_content_length is 100 MB): the sink splits the batch until the
    # one event that can never fit is alone, and dead-letters it.
    proxy.max_body_bytes = 4000
    dead = tmp_path / "dead.jsonl"
    sink = make_bulk_sink(
        proxy.url, prefix, max_document_bytes=20_000, dead_letter_file=str(dead), flush_interval=5.0
    )
    log = make_log(sink)
    log.emit(schema_id=LAUNCH, data={"seq": 1})
    log.emit(schema_id=LAUNCH, data={"seq": 2, "note": "x" * 8000})  # over the body limit
    log.emit(schema_id=LAUNCH, data={"seq": 3, "note": "y" * 30_000})  # over max_document_bytes
    log.emit(schema_id=LAUNCH, data={"seq": 4})
    assert sink.flush(timeout=30)
    sink.close()
    assert sorted(h["_source"]["seq"] for h in search_hits(bulk_client, f"{prefix}-*")) == [1, 4]
    letters = {letter["payload"]["seq"]: letter["reason"] for letter in dead_letters(dead)}
    assert set(letters) == {2, 3}
    assert "HTTP 413" in letters[2] and "one event" in letters[2]
    assert "larger than max_document_bytes (20000 bytes)" in letters[3]
    assert 413 in bulk_statuses(proxy)
    assert sink.stats()["dead_lettered"] == 2


def test_secrets_are_hidden_in_repr_and_config_errors(bulk_sink_class):
    sink = bulk_sink_class(
        hosts=["http://svc:url-pass@127.0.0.1:9200"], password="s3cret-pass",
        client_options={"headers": {"x-token": "hdr-token"}},
    )
    text = repr(sink)
    for secret in ("s3cret-pass", "url-pass", "hdr-token"):
        assert secret not in text
    assert "password='***'" in text
    sink.close()
    with pytest.raises(SinkConfigError) as info:
        bulk_sink_class(password=["s3cret-pass"])
    assert "s3cret-pass" not in str(info.value) and "'password'" in str(info.value)


def test_config_traitlets(bulk_url, bulk_client, bulk_sink_class, prefix):
    from traitlets.config import Config

    c = Config()
    c.EventLog.sinks = [bulk_sink_class.sink_name]
    c[bulk_sink_class.__name__].hosts = [bulk_url]
    c[bulk_sink_class.__name__].index = f"{prefix}-traitlets"
    c[bulk_sink_class.__name__].flush_interval = 0.05
    log = EventLog(config=c, allowed_schemas=[LAUNCH])
    log.register_schema(SCHEMAS[0])
    sent = log.emit(schema_id=LAUNCH, data={"seq": 7})
    (sink,) = log.all_handlers
    assert isinstance(sink, bulk_sink_class)
    assert sink.flush(timeout=30)
    log.close()
    assert [h["_source"] for h in search_hits(bulk_client, f"{prefix}-traitlets")] == [sent]


def test_config_dictconfig(bulk_url, bulk_client, bulk_sink_class, prefix):
    name = f"test.{prefix}"
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "search": {
                "()": "telemetry_sinks.get_sink",
                "name": bulk_sink_class.sink_name,
                "hosts": [bulk_url],
                "index": f"{prefix}-logs-%Y",
                "flush_interval": 0.05,
            }
        },
        "loggers": {name: {"handlers": ["search"], "level": "INFO", "propagate": False}},
    })
    logger = logging.getLogger(name)
    (sink,) = logger.handlers
    try:
        assert isinstance(sink, bulk_sink_class)
        logger.info(capsule(1))  # a capsule: indexed as it is, in the index of its timestamp
        logger.info("hello %s", "world", extra={"user_id": 7})
        assert sink.flush(timeout=30)
    finally:
        logger.removeHandler(sink)
        sink.close()
    hits = search_hits(bulk_client, f"{prefix}-logs-*")
    by_index = {h["_index"]: h["_source"] for h in hits}
    assert by_index[f"{prefix}-logs-2024"] == capsule(1)
    (record,) = [s for i, s in by_index.items() if i != f"{prefix}-logs-2024"]
    assert record["message"] == "hello world" and record["user_id"] == 7


@pytest.mark.filterwarnings("ignore:Connecting to")
def test_kwargs_and_registry_build_the_same_sink(bulk_url, bulk_sink_class):
    sink = get_sink(bulk_sink_class.sink_name, hosts=bulk_url, index="events", pipeline="p")
    assert type(sink) is bulk_sink_class and sink.host_list() == [bulk_url]
    options = sink.client_options_for()
    assert options["hosts"] == [bulk_url] and options["max_retries"] == 0
    sink.close()
    sink = bulk_sink_class(
        hosts="https://a:9200, https://b:9200", verify_certs=False, ca_certs="/etc/ca.pem"
    )
    options = sink.client_options_for()
    assert options["hosts"] == ["https://a:9200", "https://b:9200"]
    assert options["verify_certs"] is False and options["ca_certs"] == "/etc/ca.pem"
    sink.close()


def test_bad_options_fail_at_construction(bulk_sink_class):
    with pytest.raises(SinkConfigError) as info:
        bulk_sink_class(index="Bad Index*")
    assert f"{bulk_sink_class.__name__} option 'index'" in str(info.value)
    assert "'bad_index_'" in str(info.value)
    with pytest.raises(SinkConfigError, match="has no option 'indx'"):
        bulk_sink_class(indx="events")
    with pytest.raises(SinkConfigError, match="op_type"):
        bulk_sink_class(op_type="upsert")
    with pytest.raises(SinkConfigError, match="max_document_bytes"):
        bulk_sink_class(max_document_bytes=-1)


def test_index_template_timestamp_field_and_bulk_lines(bulk_url, bulk_client, make_bulk_sink, prefix):
    sink = make_bulk_sink(
        bulk_url, prefix, index=prefix + "-{__schema__}-%Y.%m", timestamp_field="@timestamp"
    )
    data = capsule(1, __schema__="https://Events.example.org/App Launch")
    envelope = Envelope(next_event_id(), encode(data))
    index = f"{prefix}-https___events.example.org_app_launch-2024.03"
    assert sink.index_for(envelope) == index
    assert json.loads(sink.document(envelope)) == {"@timestamp": data["__timestamp__"], **data}
    assert json.loads(sink.action(envelope, index)) == {
        "create": {"_index": index, "_id": envelope.event_id}
    }
    sink.open()
    assert sink.send_batch([envelope]) == sink.send_batch([envelope])  # both empty results
    sink.close()
    stored = bulk_client.get(index=index, id=envelope.event_id)["_source"]
    assert stored == {"@timestamp": data["__timestamp__"], **data}


def test_a_missing_ingest_pipeline_is_retried_not_dead_lettered(bulk_url, make_bulk_sink, prefix):
    sink = make_bulk_sink(bulk_url, prefix, pipeline="no-such-pipeline")
    envelope = Envelope(next_event_id(), encode(capsule(1)))
    sink.open()
    result = sink.send_batch([envelope])
    sink.close()
    assert result.permanent == {}
    assert "pipeline with id [no-such-pipeline] does not exist" in result.retryable[envelope.event_id]
