"""Hostile clients against the real collector (``telemetry-sinks serve`` as a subprocess).

Proves: oversized bodies and batches are answered 413 naming the limit (or
accepted when configured larger); slow-drip bodies are cut off after
``body_timeout`` while other clients are served; bad JSON and content types are
clean 4xx; the token is checked in constant time and never echoed or logged;
schema ids made of path-traversal characters are a clean "not registered" and
touch nothing on disk (checked with a Python audit hook inside the collector).
"""

from __future__ import annotations

import gzip
import hmac
import json
import socket
import threading
import time

import pytest
import requests
from helpers.harness import SCHEMA, SID, CollectorServer

pytestmark = [pytest.mark.integration]

JSON = {"Content-Type": "application/json"}


def event(seq: int, **extra) -> dict:
    return {"schema_id": SID, "version": 1, "data": {"seq": seq, **extra}}


@pytest.fixture
def collector_factory(tmp_path):
    started: list[CollectorServer] = []

    def start(name: str = "collector", **kwargs) -> CollectorServer:
        server = CollectorServer(tmp_path / name, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def post(server: CollectorServer, body: bytes | str, headers: dict | None = None, **kwargs):
    data = body.encode() if isinstance(body, str) else body
    return requests.post(server.url, data=data, headers={**JSON, **(headers or {})}, timeout=30, **kwargs)


# ---------------------------------------------------------------------- size limits


@pytest.mark.timeout(60)
def test_bodies_over_the_limit_are_413_naming_the_limit(collector_factory):
    server = collector_factory(extra_config="c.Collector.max_body_bytes = 10000\n")
    big = json.dumps([event(i, producer="x" * 50) for i in range(200)])
    assert len(big) > 10000
    answer = post(server, big)
    assert answer.status_code == 413, answer.text
    assert "10000 bytes" in answer.json()["error"] and "max_body_bytes" in answer.json()["error"]
    chunked = post(server, iter([big[i:i + 1000].encode() for i in range(0, len(big), 1000)]))
    assert chunked.status_code == 413 and "10000 bytes" in chunked.json()["error"]
    # A gzip body is limited by what it inflates to, not by its compressed size.
    bomb = gzip.compress(b"[" + b" " * 5_000_000 + b"]")
    answer = post(server, bomb, {"Content-Encoding": "gzip"})
    assert answer.status_code in (400, 413), answer.text
    assert post(server, json.dumps([event(1)])).status_code == 200
    assert [line["seq"] for line in server.received()] == [1]


@pytest.mark.timeout(120)
def test_a_batch_of_100000_tiny_events_is_413_by_default_and_accepted_when_configured(collector_factory):
    default = collector_factory("default")
    tiny = "[" + ",".join(["{}"] * 100_000) + "]"  # 300 KB: under the body limit
    answer = post(default, tiny)
    assert answer.status_code == 413
    assert "100000 events" in answer.json()["error"] and "10000" in answer.json()["error"]
    assert "max_events_per_request" in answer.json()["error"]
    ndjson = "\n".join(["{}"] * 100_000)
    answer = post(default, ndjson, {"Content-Type": "application/x-ndjson"})
    assert answer.status_code == 413 and "max_events_per_request" in answer.json()["error"]
    events = json.dumps([event(i) for i in range(100_000)])  # ~6 MB: over the 1 MiB body limit
    answer = post(default, events)
    assert answer.status_code == 413 and "1048576 bytes" in answer.json()["error"]
    assert default.received() == []

    larger = collector_factory("larger", extra_config="c.Collector.max_events_per_request = 100000\n"
                                                      "c.Collector.max_body_bytes = 16 * 1024 * 1024\n")
    answer = post(larger, events)
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["accepted"] == 100_000
    seqs = [line["seq"] for line in larger.received()]
    assert sorted(seqs) == list(range(100_000))


# ---------------------------------------------------------------------- slow clients


@pytest.mark.timeout(60)
def test_slow_drip_bodies_are_cut_off_while_other_clients_are_served(collector_factory):
    server = collector_factory(extra_config="c.Collector.body_timeout = 1.0\n")
    head = (b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n")
    results: dict[int, float] = {}

    def drip(index: int) -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(head)
            started = time.monotonic()
            try:
                for _ in range(40):  # one byte every 0.5 s: 20 s if nobody stops it
                    sock.sendall(b" ")
                    time.sleep(0.5)
                    sock.setblocking(False)
                    try:
                        if sock.recv(65536) == b"":
                            break
                    except BlockingIOError:
                        pass
                    finally:
                        sock.setblocking(True)
            except OSError:  # reset by the server
                pass
            results[index] = time.monotonic() - started

    drippers = [threading.Thread(target=drip, args=(i,)) for i in range(8)]
    for thread in drippers:
        thread.start()
    latencies = []
    for seq in range(10):  # meanwhile, an ordinary client is served as usual
        started = time.monotonic()
        assert post(server, json.dumps(event(seq))).status_code == 200
        latencies.append(time.monotonic() - started)
        time.sleep(0.1)
    for thread in drippers:
        thread.join(30)
    assert len(results) == 8
    assert max(results.values()) < 1.0 + 3.0, results  # cut off after body_timeout, not after 20 s
    assert sorted(latencies)[len(latencies) // 2] < 0.5 and max(latencies) < 3.0, latencies
    assert sorted(line["seq"] for line in server.received()) == list(range(10))


# ---------------------------------------------------------------------- malformed requests


@pytest.mark.timeout(60)
def test_invalid_json_wrong_content_type_and_non_utf8_are_clean_4xx(collector_factory):
    server = collector_factory()
    answer = post(server, '[{"schema_id": "x",\n "data": }]')
    assert answer.status_code == 400 and "line 2" in answer.json()["error"]
    assert answer.json()["line"] == 2
    for content_type in ("text/plain", "application/xml", "multipart/form-data; boundary=x", ""):
        answer = post(server, json.dumps(event(1)), {"Content-Type": content_type})
        assert answer.status_code == 415, (content_type, answer.text)
        assert "application/json" in answer.json()["error"]
    answer = post(server, json.dumps(event(1)), {"Content-Type": "application/json; charset=latin-1"})
    assert answer.status_code == 415
    answer = post(server, b'{"schema_id": "\xff\xfe"}')
    assert answer.status_code == 400 and "UTF-8" in answer.json()["error"]
    for body in ("NaN", "[Infinity]", '"just a string"', "12", "null", "[[[[[[[[[[" * 2000):
        answer = post(server, body)
        assert answer.status_code == 400, (body[:20], answer.text)
        assert answer.headers["Content-Type"].startswith("application/json")
    assert server.received() == []
    assert requests.get(f"{server.base_url}/api/health", timeout=10).status_code == 200


# ---------------------------------------------------------------------- authentication


TOKEN = "tok-3f9a7c2e1b8d4f60a5c7e9b1d3f5a7c9"


@pytest.mark.timeout(60)
def test_missing_or_wrong_token_is_401_and_the_token_is_never_echoed_or_logged(collector_factory):
    server = collector_factory(token=TOKEN)
    wrong = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},  # a prefix
        {"Authorization": f"Bearer {TOKEN}0"},  # longer
        {"Authorization": f"Bearer {TOKEN[:-1]}X"},  # last character differs
        {"Authorization": f"Bearer {TOKEN.upper()}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {TOKEN} {TOKEN}"},
        {"Authorization": "Bearer \u00e9\u00e9\u00e9".encode().decode("latin-1")},
    ]
    answers = []
    for headers in wrong:
        answer = post(server, json.dumps(event(1)), headers)
        assert answer.status_code == 401, (headers, answer.status_code)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        answers.append(answer)
    for path in ("/api/health", "/api/schemas"):
        answers.append(requests.get(server.base_url + path, timeout=10))
        assert answers[-1].status_code == 401
    assert server.received() == []
    good = post(server, json.dumps(event(7)), {"Authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200
    answers.append(good)
    answers.append(requests.get(f"{server.base_url}/api/health", timeout=10,
                                headers={"Authorization": f"Bearer {TOKEN}"}))
    assert [line["seq"] for line in server.received()] == [7]
    for answer in answers:
        assert TOKEN not in answer.text and TOKEN not in str(answer.headers)
        assert TOKEN[:12] not in answer.text
    server.stop()  # the collector's whole output (access log, warnings) and its files
    assert TOKEN.encode() not in server.all_output().replace(
        (server.log_path.parent / "collector_config.py").read_bytes(), b""
    )


@pytest.mark.timeout(60)
def test_the_token_is_compared_with_hmac_compare_digest(monkeypatch, tmp_path):
    """In-process: every token check goes through ``hmac.compare_digest`` (constant time)."""
    from traitlets.config import Config

    from telemetry_sinks.server import Collector, handlers

    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(handlers.hmac, "compare_digest", spy)
    config = Config()
    config.EventLog.allowed_schemas = [SID]
    config.EventLog.load_schema_entry_points = False
    config.Collector.port = 0
    config.Collector.token = TOKEN
    collector = Collector(config=config)
    collector.eventlog.register_schema(SCHEMA)
    port = collector.start()
    try:
        url = f"http://127.0.0.1:{port}/api/events"
        for given, status in ((TOKEN[:-1] + "X", 401), (TOKEN, 200), ("x", 401)):
            answer = requests.post(url, data=json.dumps(event(1)), timeout=10,
                                   headers={**JSON, "Authorization": f"Bearer {given}"})
            assert answer.status_code == status
    finally:
        collector.stop()
    assert [a for a, _ in calls] == [(TOKEN[:-1] + "X").encode(), TOKEN.encode(), b"x"]
    assert all(b == TOKEN.encode() for _, b in calls)


# ---------------------------------------------------------------------- schema ids


TRAVERSAL_IDS = [
    "../../etc/passwd",
    "/etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/etc/passwd",
    "..\\..\\windows\\win.ini",
    "file:///etc/passwd",
    "schemas/\x00../../etc/passwd",
    "passwd\x00.json",
    "~root/.ssh/id_rsa",
    "....//....//etc/passwd",
    "a" * 10_000,
]


@pytest.mark.timeout(60)
def test_schema_ids_with_path_traversal_are_not_registered_and_touch_no_file(collector_factory, tmp_path):
    audit = tmp_path / "audit.jsonl"
    server = collector_factory(audit_log=audit)
    requests.get(f"{server.base_url}/api/health", timeout=10)
    before = audit.read_text().count("\n")
    items = [{"schema_id": sid, "version": 1, "data": {"seq": 1}} for sid in TRAVERSAL_IDS]
    items += [{"__schema__": sid, "__schema_version__": 1, "seq": 1} for sid in TRAVERSAL_IDS]
    answer = post(server, json.dumps(items))
    assert answer.status_code == 400
    body = answer.json()
    assert body["rejected"] == len(items) and body["accepted"] == 0
    for result in body["results"]:
        assert result["status"] == "rejected"
        assert result["error"]["reason"] == "unknown schema"
        assert "is not registered" in result["error"]["message"]
    for path in ("/api/schemas/../../etc/passwd", "/api/..%2f..%2fetc/passwd", "/api/events/%2e%2e/x",
                 "/%2e%2e/%2e%2e/etc/passwd"):
        answer = requests.get(server.base_url + path, timeout=10)
        assert answer.status_code in (404, 405), (path, answer.status_code)
        assert "root:" not in answer.text
        assert answer.headers["Content-Type"].startswith("application/json")
    assert post(server, json.dumps(event(2))).status_code == 200
    server.stop()
    accesses = [json.loads(line) for line in audit.read_text().splitlines()[before:]]
    markers = ("passwd", "..", "%2", "\x00", "win.ini", ".ssh", "aaaa")
    suspicious = [a for a in accesses if any(marker in path for path in a[1] for marker in markers)]
    assert not suspicious, suspicious[:10]
    assert audit.read_text().count("events.jsonl") >= 1  # the hook did see the collector's files
