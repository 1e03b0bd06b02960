"""ElasticsearchSink against a real server on 127.0.0.1: Elasticsearch (``ELASTICSEARCH_URL``)
or osmem-server behind the media-type proxy described in conftest.py.

Everything is read back with the elasticsearch client (search, count, _doc).
"""

from __future__ import annotations

import base64
import json
import logging
import logging.config
import time

import pytest
from backends import assert_never_blocked, search_hits, wait_delivered

from telemetry_sinks import ElasticsearchSink, EventLog, SinkConfigError, get_sink
from telemetry_sinks.capsule import encode
from telemetry_sinks.delivery import Envelope
from telemetry_sinks.delivery.envelope import next_event_id, producer_id

pytestmark = pytest.mark.integration

FAST = {"flush_interval": 0.05, "retry_initial_backoff": 0.1, "retry_max_backoff": 0.5}

SCHEMAS = [
    {
        "$id": f"https://events.example.org/{name}",
        "version": 1,
        "type": "object",
        "required": ["seq"],
        "properties": {"seq": {"type": "integer"}, "note": {"type": "string"}, "value": {}},
    }
    for name in ("launch", "save")
]
LAUNCH = SCHEMAS[0]["$id"]


def make_log(sink) -> EventLog:
    log = EventLog(handlers=[sink], allowed_schemas=[s["$id"] for s in SCHEMAS])
    for schema in SCHEMAS:
        log.register_schema(schema)
    return log


def make_sink(url: str, prefix: str, **options) -> ElasticsearchSink:
    options = {**FAST, "index": f"{prefix}-{{__schema__}}-%Y.%m.%d", **options}
    return ElasticsearchSink(hosts=[url], **options)


def capsule(seq: int, **fields) -> dict:
    return {"__timestamp__": "2024-03-04T05:06:07.000008Z", "__schema__": LAUNCH,
            "__schema_version__": 1, "__metadata_version__": 1, "seq": seq, **fields}


def dead_letters(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def bulk_statuses(proxy) -> list[int]:
    return [status for _, path, status, _ in proxy.requests if "_bulk" in path]


def test_5000_events_arrive_complete_and_equal(elasticsearch_url, es_client, prefix):
    sink = make_sink(elasticsearch_url, prefix)
    log = make_log(sink)
    sent = [
        log.emit(schema_id=SCHEMAS[seq % 2]["$id"], data={"seq": seq, "note": "n" * (seq % 40)})
        for seq in range(5000)
    ]
    assert sink.flush(timeout=60)
    sink.close()
    stats = sink.stats()
    assert (stats["sent"], stats["dropped"], stats["dead_lettered"]) == (5000, 0, 0), stats

    hits = search_hits(es_client, f"{prefix}-*")
    assert len(hits) == 5000
    assert es_client.count(index=f"{prefix}-*")["count"] == 5000
    ids = [hit["_id"] for hit in hits]
    assert len(set(ids)) == 5000  # one document per event id
    assert all(i.startswith(producer_id() + "-") for i in ids)
    # Event ids follow emission order, and every _source is the capsule, field for field.
    assert [hit["_source"] for hit in sorted(hits, key=lambda h: h["_id"])] == sent
    day = sent[0]["__timestamp__"][:10].replace("-", ".")
    assert f"{prefix}-https___events.example.org_launch-{day}" in {h["_index"] for h in hits}
    first = hits[0]
    assert es_client.get(index=first["_index"], id=first["_id"])["_source"] == first["_source"]


@pytest.mark.parametrize("op_type", ["create", "index"])
def test_a_batch_sent_twice_creates_no_duplicates(elasticsearch_url, es_client, prefix, op_type):
    sink = make_sink(elasticsearch_url, prefix, op_type=op_type, index=f"{prefix}-dups")
    batch = [Envelope(next_event_id(), encode(capsule(seq))) for seq in range(20)]
    sink.open()
    for _ in range(2):  # the second time, as a retry or a spool replay would
        result = sink.send_batch(batch)
        assert (result.retryable, result.permanent) == ({}, {})
    sink.close()
    hits = search_hits(es_client, f"{prefix}-dups")
    assert sorted(h["_id"] for h in hits) == sorted(e.event_id for e in batch)
    assert sorted(h["_source"]["seq"] for h in hits) == list(range(20))


def test_a_lost_answer_is_retried_without_duplicates(proxy, es_client, prefix):
    # The server indexes the batch but its answer never arrives: the retry finds the documents
    # already there (409 on create), which counts as delivered.
    proxy.fail(504, times=1, path="_bulk", forward=True)
    sink = make_sink(proxy.url, prefix)
    log = make_log(sink)
    for seq in range(100):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["retried"] == 100 and stats["sent"] == 100 and stats["dead_lettered"] == 0
    assert bulk_statuses(proxy)[:2] == [504, 200]
    hits = search_hits(es_client, f"{prefix}-*")
    assert sorted(h["_source"]["seq"] for h in hits) == list(range(100))


def test_server_down_mid_stream_loses_nothing_and_emit_stays_fast(local_server, tmp_path, prefix):
    from elasticsearch import Elasticsearch

    osmem, compat = local_server
    sink = make_sink(
        compat.url, prefix, spool_dir=str(tmp_path / "spool"), max_retry_time=1.0, request_timeout=2.0
    )
    log = make_log(sink)
    for seq in range(200):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    assert sink.flush(timeout=30)

    compat.stop()  # the client sees connection errors (the proxy cuts open connections)
    osmem.stop()  # in memory: it comes back empty
    latencies = []
    for seq in range(200, 1200):
        start = time.perf_counter()
        log.emit(schema_id=LAUNCH, data={"seq": seq})
        latencies.append(time.perf_counter() - start)
        if seq % 100 == 0:
            time.sleep(0.3)  # the outage lasts about 3 s of steady emitting
    assert_never_blocked(latencies)
    assert "ConnectionError" in sink.stats()["last_error"]

    osmem.start()
    compat.start()
    for seq in range(1200, 1300):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    stats = wait_delivered(sink, timeout=60)
    sink.close()
    assert stats["dropped"] == 0 and stats["dead_lettered"] == 0, stats
    assert stats["spooled"] > 0 and stats["replayed"] > 0, stats

    client = Elasticsearch(compat.url)
    seqs = [h["_source"]["seq"] for h in search_hits(client, f"{prefix}-*")]
    client.close()
    # Everything emitted during and after the outage is there, once.
    assert sorted(seqs) == list(range(200, 1300))


def test_a_mapping_error_is_dead_lettered_and_the_rest_of_the_batch_indexed(
    elasticsearch_url, es_client, prefix, tmp_path
):
    dead = tmp_path / "dead.jsonl"
    sink = make_sink(
        elasticsearch_url, prefix, index=f"{prefix}-values", dead_letter_file=str(dead),
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
    hits = search_hits(es_client, f"{prefix}-values")
    assert sorted(h["_source"]["seq"] for h in hits) == [1, 2, 4]
    (letter,) = dead_letters(dead)
    assert letter["payload"]["seq"] == 3 and letter["payload"]["value"] == "not a number"
    assert "HTTP 400" in letter["reason"] and "parsing_exception" in letter["reason"]
    assert "[value]" in letter["reason"] and f"{prefix}-values" in letter["reason"]
    stats = sink.stats()
    assert (stats["sent"], stats["dead_lettered"], stats["retried"]) == (3, 1, 0)


def test_a_429_answer_is_retried_then_delivered(proxy, es_client, prefix):
    proxy.fail(
        429, times=2, path="_bulk", headers={"Retry-After": "0"},
        error={"type": "es_rejected_execution_exception", "reason": "rejected execution"},
    )
    sink = make_sink(proxy.url, prefix)
    log = make_log(sink)
    for seq in range(50):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert bulk_statuses(proxy)[:3] == [429, 429, 200]
    assert stats["retried"] == 100 and stats["sent"] == 50 and stats["dead_lettered"] == 0
    assert sorted(h["_source"]["seq"] for h in search_hits(es_client, f"{prefix}-*")) == list(
        range(50)
    )


def test_items_answered_429_are_retried_alone(proxy, es_client, prefix):
    proxy.fail_bulk_items(429, every=2, times=1)
    sink = make_sink(proxy.url, prefix, flush_interval=5.0)
    log = make_log(sink)
    for seq in range(10):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    assert sink.flush(timeout=30)
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["retried"] == 5 and stats["sent"] == 10 and stats["dead_lettered"] == 0
    assert sorted(h["_source"]["seq"] for h in search_hits(es_client, f"{prefix}-*")) == list(
        range(10)
    )


def test_events_over_the_size_limits_are_dead_lettered(proxy, es_client, prefix, tmp_path):
    # The proxy refuses bodies over 4000 bytes with 413, like a front end's body limit (the
    # server's own http.max_content_length is 100 MB): the sink splits the batch until the
    # one event that can never fit is alone, and dead-letters it.
    proxy.max_body_bytes = 4000
    dead = tmp_path / "dead.jsonl"
    sink = make_sink(
        proxy.url, prefix, max_document_bytes=20_000, dead_letter_file=str(dead), flush_interval=5.0
    )
    log = make_log(sink)
    log.emit(schema_id=LAUNCH, data={"seq": 1})
    log.emit(schema_id=LAUNCH, data={"seq": 2, "note": "x" * 8000})  # over the body limit
    log.emit(schema_id=LAUNCH, data={"seq": 3, "note": "y" * 30_000})  # over max_document_bytes
    log.emit(schema_id=LAUNCH, data={"seq": 4})
    assert sink.flush(timeout=30)
    sink.close()
    assert sorted(h["_source"]["seq"] for h in search_hits(es_client, f"{prefix}-*")) == [1, 4]
    letters = {letter["payload"]["seq"]: letter["reason"] for letter in dead_letters(dead)}
    assert set(letters) == {2, 3}
    assert "HTTP 413" in letters[2] and "one event" in letters[2]
    assert "larger than max_document_bytes (20000 bytes)" in letters[3]
    assert 413 in bulk_statuses(proxy)
    assert sink.stats()["dead_lettered"] == 2


def test_auth_failures_are_retried_and_secrets_never_shown(proxy, es_client, prefix, caplog):
    # 401 is an operator problem: the events wait (here in memory) until the credentials work.
    secret = "s3cret-key"
    proxy.fail(
        401, times=3, path="_bulk",
        error={"type": "security_exception", "reason": f"unable to authenticate with {secret}"},
    )
    sink = make_sink(proxy.url, prefix, api_key=f"key-id:{secret}")
    log = make_log(sink)
    caplog.set_level(logging.WARNING, logger="telemetry_sinks.delivery")
    for seq in range(20):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    deadline = time.monotonic() + 10
    while bulk_statuses(proxy).count(401) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    last_error = sink.stats()["last_error"]
    assert "HTTP 401" in last_error and "security_exception" in last_error
    assert secret not in last_error and "***" in last_error
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["sent"] == 20 and stats["dead_lettered"] == 0 and stats["dropped"] == 0
    assert len(search_hits(es_client, f"{prefix}-*")) == 20
    headers = {k.lower(): v for k, v in proxy.requests[-1][3].items()}
    assert headers["authorization"] == "ApiKey " + base64.b64encode(
        f"key-id:{secret}".encode()
    ).decode()
    warnings = [r.getMessage() for r in caplog.records if "HTTP 401" in r.getMessage()]
    assert len(warnings) == 1 and secret not in warnings[0]
    for text in (repr(sink), json.dumps(sink.stats(), default=str), caplog.text):
        assert secret not in text


def test_secrets_are_hidden_in_repr_and_config_errors():
    sink = ElasticsearchSink(
        hosts=["http://svc:url-pass@127.0.0.1:9200"], password="s3cret-pass", api_key="s3cret-key",
        client_options={"headers": {"x-token": "hdr-token"}},
    )
    text = repr(sink)
    for secret in ("s3cret-pass", "s3cret-key", "url-pass", "hdr-token"):
        assert secret not in text
    assert "password='***'" in text and "api_key='***'" in text
    sink.close()
    with pytest.raises(SinkConfigError) as info:
        ElasticsearchSink(api_key=["s3cret-key"])
    assert "s3cret-key" not in str(info.value) and "'api_key'" in str(info.value)
    with pytest.raises(SinkConfigError) as info:
        ElasticsearchSink(hosts="localhost", password="s3cret-pass")  # no scheme nor port
    assert "cannot build its Elasticsearch client" in str(info.value)
    assert "s3cret-pass" not in str(info.value)


def test_config_traitlets(elasticsearch_url, es_client, prefix):
    from traitlets.config import Config

    c = Config()
    c.EventLog.sinks = ["elasticsearch"]
    c.ElasticsearchSink.hosts = [elasticsearch_url]
    c.ElasticsearchSink.index = f"{prefix}-traitlets"
    c.ElasticsearchSink.flush_interval = 0.05
    log = EventLog(config=c, allowed_schemas=[LAUNCH])
    log.register_schema(SCHEMAS[0])
    sent = log.emit(schema_id=LAUNCH, data={"seq": 7})
    (sink,) = log.all_handlers
    assert isinstance(sink, ElasticsearchSink)
    assert sink.flush(timeout=30)
    log.close()
    assert [h["_source"] for h in search_hits(es_client, f"{prefix}-traitlets")] == [sent]


def test_config_dictconfig(elasticsearch_url, es_client, prefix):
    name = f"test.{prefix}"
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "search": {
                "()": "telemetry_sinks.get_sink",
                "name": "elasticsearch",
                "hosts": [elasticsearch_url],
                "index": f"{prefix}-logs-%Y",
                "flush_interval": 0.05,
            }
        },
        "loggers": {name: {"handlers": ["search"], "level": "INFO", "propagate": False}},
    })
    logger = logging.getLogger(name)
    (sink,) = logger.handlers
    try:
        assert isinstance(sink, ElasticsearchSink)
        logger.info(capsule(1))  # a capsule: indexed as it is, in the index of its timestamp
        logger.info("hello %s", "world", extra={"user_id": 7})
        assert sink.flush(timeout=30)
    finally:
        logger.removeHandler(sink)
        sink.close()
    hits = search_hits(es_client, f"{prefix}-logs-*")
    by_index = {h["_index"]: h["_source"] for h in hits}
    assert by_index[f"{prefix}-logs-2024"] == capsule(1)
    (record,) = [s for i, s in by_index.items() if i != f"{prefix}-logs-2024"]
    assert record["message"] == "hello world" and record["user_id"] == 7


@pytest.mark.filterwarnings("ignore:Connecting to")
def test_kwargs_and_registry_build_the_same_sink(elasticsearch_url):
    sink = get_sink("elasticsearch", hosts=elasticsearch_url, index="events", pipeline="p")
    assert type(sink) is ElasticsearchSink and sink.host_list() == [elasticsearch_url]
    options = sink.client_options_for()
    assert options["hosts"] == [elasticsearch_url] and options["max_retries"] == 0
    sink.close()
    sink = ElasticsearchSink(
        hosts="https://a:9200, https://b:9200", username="u", password="p4ss", verify_certs=False,
        ca_certs="/etc/ca.pem", request_timeout=3.0,
    )
    options = sink.client_options_for()
    assert options["hosts"] == ["https://a:9200", "https://b:9200"]
    assert options["basic_auth"] == ("u", "p4ss") and options["request_timeout"] == 3.0
    assert options["verify_certs"] is False and options["ca_certs"] == "/etc/ca.pem"
    sink.close()


def test_cloud_id_and_api_key():
    cloud_id = "deployment:" + base64.b64encode(b"eu-west-1.aws.found.io$abc123$def456").decode()
    sink = ElasticsearchSink(cloud_id=cloud_id, api_key="ZW5jb2RlZC1rZXk=")
    options = sink.client_options_for()
    assert options["cloud_id"] == cloud_id and "hosts" not in options
    assert options["api_key"] == "ZW5jb2RlZC1rZXk="  # an encoded key is passed as it is
    client = sink.make_client()
    assert client.transport.node_pool.all()[0].base_url == "https://abc123.eu-west-1.aws.found.io:443"
    client.close()
    sink.close()


def test_bad_options_fail_at_construction():
    with pytest.raises(SinkConfigError) as info:
        ElasticsearchSink(index="Bad Index*")
    assert "ElasticsearchSink option 'index'" in str(info.value)
    assert "'bad_index_'" in str(info.value)
    with pytest.raises(SinkConfigError, match="has no option 'indx'"):
        ElasticsearchSink(indx="events")
    with pytest.raises(SinkConfigError, match="op_type"):
        ElasticsearchSink(op_type="upsert")
    with pytest.raises(SinkConfigError, match="max_document_bytes"):
        ElasticsearchSink(max_document_bytes=-1)


def test_index_template_timestamp_field_and_bulk_lines(elasticsearch_url, es_client, prefix):
    sink = make_sink(
        elasticsearch_url, prefix, index=prefix + "-{__schema__}-%Y.%m", timestamp_field="@timestamp"
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
    stored = es_client.get(index=index, id=envelope.event_id)["_source"]
    assert stored == {"@timestamp": data["__timestamp__"], **data}


def test_a_missing_ingest_pipeline_is_retried_not_dead_lettered(elasticsearch_url, prefix):
    sink = make_sink(elasticsearch_url, prefix, pipeline="no-such-pipeline")
    envelope = Envelope(next_event_id(), encode(capsule(1)))
    sink.open()
    result = sink.send_batch([envelope])
    sink.close()
    assert result.permanent == {}
    assert "pipeline with id [no-such-pipeline] does not exist" in result.retryable[envelope.event_id]


def api_error(status: int, body, headers=None, cls=None):
    import elasticsearch
    from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig

    meta = ApiResponseMeta(
        status, "1.1", HttpHeaders(headers or {}), 0.01, NodeConfig("http", "127.0.0.1", 9200)
    )
    cls = cls or elasticsearch.ApiError
    return cls(message=str(body), meta=meta, body=body)


def test_client_exceptions_are_read_as_request_failures():
    import elasticsearch

    sink = ElasticsearchSink()
    throttled = sink.request_failure(api_error(
        429, {"error": {"type": "es_rejected_execution_exception", "reason": "queue full"}},
        {"Retry-After": "7"},
    ))
    assert (throttled.status, throttled.retry_after) == (429, 7.0)
    assert throttled.message == "es_rejected_execution_exception: queue full"
    refused = sink.request_failure(elasticsearch.ConnectionError("Connection refused"))
    assert refused.status is None and "ConnectionError" in refused.message
    timeout = sink.request_failure(elasticsearch.ConnectionTimeout("timed out"))
    assert timeout.status is None
    other = sink.request_failure(
        api_error(200, {"hello": 1}, cls=elasticsearch.UnsupportedProductError)
    )
    assert other.status == 200 and "not answer as Elasticsearch" in other.message
    assert sink.request_failure(ValueError("bug")) is None
    sink.close()


def test_a_whole_request_429_is_retried_after_the_servers_delay():
    class Throttled:
        def bulk(self, operations, **params):
            raise api_error(429, {"error": {"type": "es_rejected_execution_exception"}},
                            {"Retry-After": "3"})

        def close(self):
            pass

    sink = ElasticsearchSink(client=Throttled())
    batch = [Envelope(next_event_id(), encode(capsule(i))) for i in range(3)]
    result = sink.send_batch(batch)
    sink.close()
    assert set(result.retryable) == {e.event_id for e in batch} and result.retry_after == 3.0
    assert "HTTP 429" in result.retryable[batch[0].event_id]


def test_a_client_the_server_does_not_understand_is_waited_for(local_server):
    # Straight to osmem, without the media-type proxy: osmem answers the elasticsearch
    # client's versioned media types with 406 (as Elasticsearch 8 answers a 9 client).
    # That is a deployment mismatch, not a bad event: retried, never dead-lettered.
    osmem, _ = local_server
    sink = ElasticsearchSink(hosts=[f"http://127.0.0.1:{osmem.port}"], index="mismatch")
    envelope = Envelope(next_event_id(), encode(capsule(1)))
    sink.open()
    result = sink.send_batch([envelope])
    sink.close()
    assert result.permanent == {}
    assert "HTTP 406" in result.retryable[envelope.event_id]
    assert "client version" in result.retryable[envelope.event_id]
