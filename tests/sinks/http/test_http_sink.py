"""HTTPSink against the real collector, and its wire format against a plain JSON endpoint."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers.collector_process import SCHEMA, CollectorProcess
from helpers.servers import assert_never_blocked, free_port, wait_delivered

from telemetry_sinks import EventLog, HTTPSink, SinkConfigError, get_sink

pytestmark = pytest.mark.integration
SID = SCHEMA["$id"]


def make_log(sink, allowed=None) -> EventLog:
    allowed = allowed or {SID: {"allowed_categories": ["user-identifier"]}}
    log = EventLog(handlers=[sink], allowed_schemas=allowed)
    log.register_schema(SCHEMA)
    return log


FAST = dict(flush_interval=0.05, retry_initial_backoff=0.05, retry_max_backoff=0.3)


@pytest.mark.parametrize("fmt, use_gzip", [("json", False), ("ndjson", False), ("json", True)])
def test_events_reach_the_collector_and_its_file(collector, fmt, use_gzip):
    sink = HTTPSink(url=collector.url, format=fmt, gzip=use_gzip, **FAST)
    log = make_log(sink)
    sent = [log.emit(schema_id=SID, data={"seq": i, "user": "ada"}) for i in range(300)]
    stats = wait_delivered(sink, 30)
    sink.close()
    assert stats["sent"] == 300 and stats["dead_lettered"] == 0
    received = collector.received()
    assert [r["seq"] for r in received] == list(range(300))
    for original, written in zip(sent, received, strict=True):
        # The collector applies its own policy: it records no user identifiers.
        expected = {k: v for k, v in original.items() if k != "user"}
        assert {k: v for k, v in written.items() if k != "__event_id__"} == expected
        assert written["__event_id__"]


def test_invalid_events_are_dead_lettered_one_by_one_and_the_rest_is_recorded(collector, tmp_path):
    # The collector's schema requires "seq"; this application registers a looser one.
    loose = {**SCHEMA, "required": []}
    dead = tmp_path / "dead.jsonl"
    sink = HTTPSink(url=collector.url, dead_letter_file=str(dead), max_batch_events=10, **FAST)
    log = EventLog(handlers=[sink], allowed_schemas=[SID])
    log.register_schema(loose)
    for i in range(10):
        log.emit(schema_id=SID, data={"seq": i} if i != 4 else {"producer": "no seq"})
    wait_delivered(sink, 30)
    sink.close()
    assert [r["seq"] for r in collector.received()] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    (letter,) = [json.loads(x) for x in dead.read_text().splitlines()]
    assert "HTTP 400" in letter["reason"] and "seq" in letter["reason"]
    assert letter["payload"]["producer"] == "no seq"


def test_token_is_sent_and_never_shown_and_a_wrong_one_is_retried_not_dead_lettered(tmp_path, caplog):
    server = CollectorProcess(tmp_path / "c", token="tok-s3cret-123").start()
    try:
        dead = tmp_path / "dead.jsonl"
        wrong = HTTPSink(url=server.url, token="wrong-token-456", dead_letter_file=str(dead), **FAST)
        log = make_log(wrong)
        with caplog.at_level(logging.WARNING, logger="telemetry_sinks.delivery"):
            log.emit(schema_id=SID, data={"seq": 1})
            assert not wrong.flush(timeout=1)  # 401: kept and retried, never acknowledged
        stats = wrong.stats()
        assert stats["auth_failures"] >= 1 and stats["dead_lettered"] == 0 and stats["dropped"] == 0
        assert "HTTP 401" in stats["last_error"]
        assert any("refused its credentials" in r.getMessage() and "token" in r.getMessage()
                   for r in caplog.records)
        wrong._engine._close_timeout = 0.2
        wrong.close()
        # No spool: at close what is left goes to the dead-letter file, as undelivered, not refused.
        assert all(json.loads(line)["reason"].startswith("not delivered within close_timeout")
                   for line in dead.read_text().splitlines())
        text = repr(wrong) + json.dumps(wrong.stats(), default=str) + caplog.text
        text += dead.read_text() if dead.exists() else ""
        assert "wrong-token-456" not in text and "tok-s3cret-123" not in text

        right = HTTPSink(url=server.url, token="tok-s3cret-123", **FAST)
        log = make_log(right)
        log.emit(schema_id=SID, data={"seq": 2})
        wait_delivered(right, 30)
        right.close()
        assert [r["seq"] for r in server.received()] == [2]
    finally:
        server.stop()


class _Endpoint(BaseHTTPRequestHandler):
    """A plain JSON endpoint that records bodies and answers with scripted statuses."""

    answers: list = []
    bodies: list = []
    delay = 0.0

    def do_POST(self):  # noqa: N802
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        time.sleep(self.delay)
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        if status == 200:
            self.bodies.append((self.headers["Content-Type"], raw))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        body = b'{"error": "scripted"}'
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    _Endpoint.answers, _Endpoint.bodies, _Endpoint.delay = [], [], 0.0
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/ingest"


def test_retry_after_429_and_5xx_then_delivered(endpoint):
    _Endpoint.answers = [(429, {"Retry-After": "1"}), (503, {})]
    sink = HTTPSink(url=_url(endpoint), **FAST)
    log = make_log(sink)
    start = time.monotonic()
    log.emit(schema_id=SID, data={"seq": 1})
    stats = wait_delivered(sink, 30)
    elapsed = time.monotonic() - start
    sink.close()
    assert elapsed >= 1.0  # Retry-After honoured
    assert stats["retried"] >= 2 and stats["sent"] == 1
    content_type, body = _Endpoint.bodies[0]
    assert content_type == "application/json"
    (item,) = json.loads(body)
    assert item["seq"] == 1 and item["__schema__"] == SID and item["__event_id__"]


def test_permanent_4xx_goes_to_the_dead_letter_file(endpoint, tmp_path):
    _Endpoint.answers = [(422, {})]
    dead = tmp_path / "dead.jsonl"
    sink = HTTPSink(url=_url(endpoint), dead_letter_file=str(dead), **FAST)
    log = make_log(sink)
    log.emit(schema_id=SID, data={"seq": 1})
    wait_delivered(sink, 30)
    log.emit(schema_id=SID, data={"seq": 2})
    wait_delivered(sink, 30)
    sink.close()
    letter = json.loads(dead.read_text())
    assert letter["reason"] == "HTTP 422: scripted" and letter["payload"]["seq"] == 1
    assert [json.loads(b)[0]["seq"] for _, b in _Endpoint.bodies] == [2]


def test_413_splits_the_batch(endpoint, tmp_path):
    _Endpoint.answers = [(413, {})]
    sink = HTTPSink(url=_url(endpoint), format="ndjson", flush_interval=1.0, max_batch_events=4)
    log = make_log(sink)
    for i in range(4):
        log.emit(schema_id=SID, data={"seq": i})
    wait_delivered(sink, 30)
    sink.close()
    sizes = [len(body.splitlines()) for _, body in _Endpoint.bodies]
    assert sizes == [2, 2]
    assert _Endpoint.bodies[0][0] == "application/x-ndjson"


def test_a_slow_endpoint_does_not_slow_emit(endpoint):
    _Endpoint.delay = 2.0
    sink = HTTPSink(url=_url(endpoint), max_queue_events=100, overflow="drop_newest", **FAST)
    log = make_log(sink)
    latencies = []
    for i in range(300):
        start = time.perf_counter()
        log.emit(schema_id=SID, data={"seq": i})
        latencies.append(time.perf_counter() - start)
    stats = sink.stats()
    assert_never_blocked(latencies)
    assert stats["dropped"] >= 100  # the queue held 100; the policy dropped the newest, counted
    sink.close()


def test_bad_options_and_three_ways_of_configuring(tmp_path):
    with pytest.raises(SinkConfigError, match="HTTPSink needs option 'url'"):
        HTTPSink()
    with pytest.raises(SinkConfigError, match="'format'"):
        HTTPSink(url="http://x", format="xml")
    from traitlets.config import Config

    c = Config()
    c.EventLog.sinks = ["http"]
    c.HTTPSink.url = "http://127.0.0.1:9/api/events"
    c.HTTPSink.token = "abc-secret"
    log = EventLog(config=c)
    (sink,) = log.all_handlers
    assert isinstance(sink, HTTPSink) and sink.url.endswith("/api/events")
    assert "abc-secret" not in repr(sink)
    log.close()
    factory = get_sink("http", url="http://127.0.0.1:9/", format="ndjson")
    assert factory.format == "ndjson"
    factory.close()


def test_backpressure_reaches_the_collector_as_503(endpoint, tmp_path):
    """A collector whose own network sink is full answers 503 with Retry-After."""
    import requests

    from telemetry_sinks.server import Collector

    _Endpoint.delay = 3.0  # the collector's downstream is slow
    downstream = HTTPSink(url=_url(endpoint), max_queue_events=20, overflow="drop_newest", **FAST)
    log = make_log(downstream)
    with Collector(eventlog=log, port=0) as collector:
        url = f"http://127.0.0.1:{collector.bound_port}/api/events"
        statuses = []
        for i in range(40):
            body = {"schema_id": SID, "version": 1, "data": {"seq": i}}
            answer = requests.post(url, json=body, timeout=10)
            statuses.append(answer.status_code)
            if answer.status_code == 503:
                assert answer.headers["Retry-After"]
                assert "http" in answer.json()["error"]
                break
        assert statuses[0] == 200 and statuses[-1] == 503
    downstream.close()
