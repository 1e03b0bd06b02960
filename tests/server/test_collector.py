"""The event collector's REST API, over real HTTP against a server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import pytest
import requests
from traitlets import TraitError
from traitlets.config import Config

from telemetry_sinks import EventLog, FileSink
from telemetry_sinks.config import EXAMPLE_EVENTS, EXAMPLE_SCHEMAS_DIR
from telemetry_sinks.server import TOKEN_ENV, Collector, RecentIds

pytestmark = pytest.mark.timeout(60)

LAUNCH = "https://events.telemetry-sinks.org/example/app-launch"
SAVE = "https://events.telemetry-sinks.org/example/file-save"
EXAMPLES = [json.loads(line) for line in EXAMPLE_EVENTS.read_text().splitlines() if line.strip()]
LAUNCH_EVENT = EXAMPLES[0]  # has username (user-identifier) and client.ip (user-identifiable-information)
JSON = {"Content-Type": "application/json"}


def _config(tmp_path: Path, **collector: object) -> Config:
    c = Config()
    c.EventLog.schema_paths = [str(EXAMPLE_SCHEMAS_DIR)]
    c.EventLog.load_schema_entry_points = False
    # app-launch: keep user names, drop IP addresses; file-save is registered but not allowed.
    c.EventLog.allowed_schemas = {LAUNCH: {"allowed_categories": ["user-identifier"]}}
    c.EventLog.sinks = ["file"]
    c.FileSink.filename = str(tmp_path / "events.jsonl")
    c.Collector.port = 0
    for name, value in collector.items():
        setattr(c.Collector, name, value)
    return c


class Server:
    def __init__(self, collector: Collector, path: Path) -> None:
        self.collector = collector
        self.path = path
        self.port = collector.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def post(self, body: object, headers: dict | None = None, raw: bytes | None = None) -> requests.Response:
        data = raw if raw is not None else json.dumps(body).encode()
        return requests.post(f"{self.url}/api/events", data=data, headers={**JSON, **(headers or {})},
                             timeout=10)

    def get(self, endpoint: str, headers: dict | None = None) -> requests.Response:
        return requests.get(f"{self.url}{endpoint}", headers=headers or {}, timeout=10)

    def lines(self) -> list[dict]:
        self.collector.eventlog.flush()
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines()]


@pytest.fixture
def serve(tmp_path):
    """``serve(**collector_options, eventlog=None)`` starts a collector; all stop at teardown."""
    started: list[Server] = []

    def start(eventlog: EventLog | None = None, **options: object) -> Server:
        config = _config(tmp_path, **options)
        kwargs = {"eventlog": eventlog} if eventlog is not None else {}
        server = Server(Collector(config=config, **kwargs), tmp_path / "events.jsonl")
        started.append(server)
        return server

    yield start
    for server in started:
        server.collector.stop()


def raw_http(port: int, *parts: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], dict]:
    """Send raw bytes, read until the server closes; return (status, headers, JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for part in parts:
            sock.sendall(part)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


# --------------------------------------------------------------------------- happy path


def test_single_event_is_recorded_with_capsule_and_redaction(serve):
    server = serve()
    response = server.post({**LAUNCH_EVENT, "timestamp": "2025-01-31T12:00:00.5+01:00"})
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "not_recorded": 0, "duplicate": 0, "rejected": 0,
                               "results": [{"index": 0, "status": "accepted"}]}
    [line] = server.lines()
    assert line["__schema__"] == LAUNCH and line["__schema_version__"] == 1
    assert line["__metadata_version__"] == 1
    assert line["__timestamp__"] == "2025-01-31T11:00:00.500000Z"
    assert "__event_id__" not in line
    # Policy: user-identifier allowed (username kept), user-identifiable-information not (ip dropped).
    assert line["username"] == "ada"
    assert line["client"] == {"user_agent": "Firefox/133.0"}
    assert line["app"] == "jupyterlab" and line["duration_ms"] == 812.5


def test_list_of_events_version_omitted_or_string(serve):
    server = serve()
    data = {"app": "voila", "status": "failure"}
    response = server.post([
        {"schema_id": LAUNCH, "version": 1, "data": data},
        {"schema_id": LAUNCH, "data": data},  # newest version
        {"schema_id": LAUNCH, "version": "1", "data": data},  # jupyter_events writes versions as strings
        EXAMPLES[1],  # file-save: registered, but not in allowed_schemas
    ])
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["not_recorded"]) == (3, 1)
    assert [r["status"] for r in body["results"]] == ["accepted"] * 3 + ["not_recorded"]
    lines = server.lines()
    assert len(lines) == 3 and all(x["app"] == "voila" and x["__schema_version__"] == 1 for x in lines)


def test_capsule_shaped_items_are_accepted(serve):
    server = serve()
    capsule = {"__timestamp__": "2025-02-01T08:00:00.000000Z", "__schema__": LAUNCH,
               "__schema_version__": 1, "__metadata_version__": 1,
               "app": "lab", "status": "success", "client": {"ip": "192.0.2.1"}}
    response = server.post([capsule, {**capsule, "__event_id__": "cap-1"}])
    assert response.status_code == 200, response.text
    first, second = server.lines()
    assert first == {"__timestamp__": "2025-02-01T08:00:00.000000Z", "__schema__": LAUNCH,
                     "__schema_version__": 1, "__metadata_version__": 1,
                     "app": "lab", "status": "success", "client": {}}
    assert second["__event_id__"] == "cap-1"


def test_event_id_deduplication(serve):
    server = serve()
    event = {**LAUNCH_EVENT, "event_id": "0f8fad5b-d9cb-469f-a165-70867728950e"}
    assert server.post(event).json()["results"] == [{"index": 0, "status": "accepted"}]
    again = server.post([event, {**event, "event_id": "other"}, {**event, "event_id": "other"}])
    assert again.status_code == 200
    assert [r["status"] for r in again.json()["results"]] == ["duplicate", "accepted", "duplicate"]
    lines = server.lines()
    assert [x["__event_id__"] for x in lines] == ["0f8fad5b-d9cb-469f-a165-70867728950e", "other"]
    # The capsule shape's __event_id__ shares the same memory.
    capsule = {"__schema__": LAUNCH, "__schema_version__": 1, "__event_id__": "other",
               "app": "x", "status": "success"}
    assert server.post(capsule).json()["results"][0]["status"] == "duplicate"
    assert len(server.lines()) == 2
    assert server.get("/api/health").json()["events"]["duplicate"] == 3


def test_rejected_event_ids_are_not_remembered(serve):
    server = serve()
    bad = {"schema_id": LAUNCH, "event_id": "e1", "data": {"app": "x", "status": "maybe"}}
    assert server.post(bad).status_code == 400
    fixed = {**bad, "data": {"app": "x", "status": "success"}}
    assert server.post(fixed).json()["results"][0]["status"] == "accepted"


def test_recent_ids_is_a_bounded_lru():
    ids = RecentIds(2)
    ids.add("a")
    ids.add("b")
    assert ids.seen("a")  # refreshes "a"; "b" is now the least recently seen
    ids.add("c")
    assert len(ids) == 2 and ids.seen("a") and ids.seen("c") and not ids.seen("b")
    off = RecentIds(0)
    off.add("a")
    assert not off.seen("a")


# --------------------------------------------------------------------------- 400


def test_invalid_event_is_named_and_valid_events_of_the_batch_are_recorded(serve):
    server = serve()
    response = server.post([
        LAUNCH_EVENT,
        {"schema_id": LAUNCH, "version": 1, "data": {"app": "lab", "status": "maybe"}},
        {"__schema__": LAUNCH, "__schema_version__": 1, "app": "lab"},
        {"schema_id": LAUNCH, "data": {"app": "voila", "status": "success"}},
    ])
    assert response.status_code == 400
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert "event 1 at $.data.status" in body["error"] and "resend only the rejected" in body["error"]
    results = body["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected", "accepted"]
    assert results[1]["index"] == 1
    assert results[1]["error"]["path"] == "$.data.status"
    assert "is not one of" in results[1]["error"]["reason"]
    assert results[2]["error"]["path"] == "$" and "required" in results[2]["error"]["reason"]
    assert [x["app"] for x in server.lines()] == ["jupyterlab", "voila"]


@pytest.mark.parametrize(
    ("item", "path", "reason"),
    [
        ("text", "$", "not an object"),
        ({"data": {}}, "$", "unknown shape"),
        ({"schema_id": LAUNCH}, "$.data", "missing"),
        ({"schema_id": LAUNCH, "data": [1]}, "$.data", "not an object"),
        ({"schema_id": 5, "data": {}}, "$.schema_id", "not a string"),
        ({"schema_id": LAUNCH, "version": "one", "data": {}}, "$.version", "not an integer"),
        ({"schema_id": LAUNCH, "version": 7, "data": {}}, "$.version", "unknown schema version"),
        ({"schema_id": "https://nope", "data": {}}, "$.schema_id", "unknown schema"),
        ({"__schema__": "https://nope"}, "$.__schema__", "unknown schema"),
        ({"schema_id": LAUNCH, "timestamp": "yesterday", "data": {}}, "$.timestamp",
         "not an ISO 8601 timestamp"),
        ({"schema_id": LAUNCH, "event_id": 12, "data": {}}, "$.event_id", "invalid event id"),
        ({"schema_id": LAUNCH, "data": {"app": "a", "status": "success", "__x": 1}}, "$.data.__x",
         "reserved property name"),
    ],
)
def test_malformed_items_are_rejected_with_path_and_reason(serve, item, path, reason):
    server = serve()
    response = server.post([item])
    assert response.status_code == 400
    [result] = response.json()["results"]
    assert result["status"] == "rejected"
    assert result["error"]["path"] == path
    assert result["error"]["reason"] == reason
    assert result["error"]["message"]


def test_invalid_json_names_line_and_column(serve):
    server = serve()
    response = server.post(None, raw=b'[\n  {"schema_id": "x",\n  oops}\n]')
    assert response.status_code == 400
    error = response.json()["error"]
    assert "not valid JSON" in error and "line 3, column 3" in error
    assert server.post(None, raw=b"[NaN]").status_code == 400
    response = server.post(None, raw=b'{"a": "\xff"}')
    assert response.status_code == 400 and "not UTF-8" in response.json()["error"]


def test_body_that_is_neither_object_nor_list(serve):
    server = serve()
    response = server.post("just a string")
    assert response.status_code == 400
    assert "JSON string" in response.json()["error"] and "JSON list" in response.json()["error"]


# --------------------------------------------------------------------------- 413


def test_413_from_content_length_before_the_body_is_sent(serve):
    server = serve(max_body_bytes=1000)
    head = (f"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10**9}\r\n\r\n").encode()
    status, headers, body = raw_http(server.port, head)
    assert status == 413
    assert "too large" in body["error"] and "1000 bytes" in body["error"]
    assert headers["Content-Type"].startswith("application/json")
    # An ordinary client sending a body over the limit gets the same answer.
    response = server.post(None, raw=b"[" + b" " * 5000 + b"]")
    assert response.status_code == 413 and "5002 bytes" in response.json()["error"]


def test_413_on_a_streamed_chunked_body(serve):
    server = serve(max_body_bytes=1000)
    head = (b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"[" + b" " * 1998 + b"]"
    status, _, body = raw_http(server.port, head, b"%x\r\n%s\r\n" % (len(chunk), chunk))
    assert status == 413 and "c.Collector.max_body_bytes" in body["error"]
    # Within the limit, a chunked body is fine.
    response = requests.post(f"{server.url}/api/events", headers=JSON, timeout=10,
                             data=iter([b"[", json.dumps(LAUNCH_EVENT).encode(), b"]"]))
    assert response.status_code == 200 and response.json()["accepted"] == 1


def test_413_for_too_many_events(serve):
    server = serve(max_events_per_request=3)
    response = server.post([LAUNCH_EVENT] * 4)
    assert response.status_code == 413
    assert "4 events" in response.json()["error"] and "max_events_per_request" in response.json()["error"]
    assert server.lines() == []
    assert server.post([LAUNCH_EVENT] * 3).status_code == 200


def test_slow_body_is_cut_off(serve):
    server = serve(body_timeout=0.3)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n[")
        started = time.monotonic()
        assert sock.recv(1024) == b""  # the server closed the connection
        assert time.monotonic() - started < 3


# --------------------------------------------------------------------------- 401, 415, 503


def test_401_without_the_bearer_token_which_is_never_echoed(serve, caplog):
    caplog.set_level(logging.DEBUG)
    token = "s3cr3t-t0ken-value"
    server = serve(token=token)
    seen = []
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"},
                    {"Authorization": f"Bearer {token}x"}):
        response = server.post(LAUNCH_EVENT, headers=headers)
        seen.append(response)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Authorization: Bearer <token>" in response.json()["error"]
    assert 'error="invalid_token"' in seen[1].headers["WWW-Authenticate"]
    for endpoint in ("/api/schemas", "/api/health"):
        seen.append(server.get(endpoint))
        assert seen[-1].status_code == 401
    assert server.lines() == []
    good = server.post(LAUNCH_EVENT, headers={"Authorization": f"Bearer {token}"})
    assert good.status_code == 200
    seen.append(good)
    seen.append(server.get("/api/health", headers={"Authorization": f"bearer {token}"}))
    assert seen[-1].status_code == 200
    for response in seen:
        assert token not in response.text and token not in str(response.headers)
    assert caplog.records  # the access log ran
    assert token not in caplog.text
    assert all(token not in str(r.args) for r in caplog.records)


def test_token_from_environment_and_hidden_in_trait_errors(monkeypatch, tmp_path):
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    collector = Collector(config=_config(tmp_path))
    assert collector.token == "from-env"
    assert Collector(config=_config(tmp_path, token="from-config")).token == "from-config"
    with pytest.raises(TraitError) as info:
        Collector(config=_config(tmp_path, token=987654321))
    assert "987654321" not in str(info.value) and "secret" in str(info.value)
    with pytest.raises(TraitError, match="not an origin"):
        Collector(config=_config(tmp_path, cors_allowed_origins=["https://lab.example.org/"]))


@pytest.mark.parametrize("content_type", ["text/plain", "", "application/x-www-form-urlencoded",
                                          "application/json; charset=latin-1"])
def test_415_for_a_non_json_content_type(serve, content_type):
    server = serve()
    response = requests.post(f"{server.url}/api/events", data=json.dumps(LAUNCH_EVENT).encode(),
                             headers={"Content-Type": content_type}, timeout=10)
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["error"]
    assert server.lines() == []


def test_json_with_charset_is_accepted(serve):
    server = serve()
    response = server.post(LAUNCH_EVENT, headers={"Content-Type": "Application/JSON; charset=UTF-8"})
    assert response.status_code == 200


class BusySink(logging.Handler):
    """A tiny handler that implements the backpressure protocol of network sinks."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = True
        self.received: list[dict] = []

    def backpressure(self) -> bool:
        return self.busy

    def emit(self, record: logging.LogRecord) -> None:
        self.received.append(record.msg)  # type: ignore[arg-type]

    def stats(self) -> dict:
        return {"received": len(self.received), "busy": self.busy}


def test_503_with_retry_after_when_a_sink_cannot_keep_up(serve, tmp_path):
    busy = BusySink()
    sink = FileSink(filename=tmp_path / "events.jsonl")
    eventlog = EventLog(handlers=[sink, busy], allowed_schemas=[LAUNCH],
                        load_schema_entry_points=False)
    eventlog.register_schema_file(EXAMPLE_SCHEMAS_DIR)
    server = serve(eventlog=eventlog, retry_after=7)
    response = server.post([LAUNCH_EVENT, LAUNCH_EVENT])
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert "BusySink cannot keep up" in response.json()["error"] and "7 seconds" in response.json()["error"]
    assert busy.received == [] and server.lines() == []
    health = server.get("/api/health").json()
    assert {"name": "BusySink", "class": f"{BusySink.__module__}.BusySink",
            "stats": {"received": 0, "busy": True}} in health["sinks"]
    busy.busy = False
    assert server.post([LAUNCH_EVENT]).status_code == 200
    assert len(busy.received) == 1 and len(server.lines()) == 1
    sink.close()


# --------------------------------------------------------------------------- GET, CORS, 404


def test_schemas_endpoint(serve):
    server = serve()
    response = server.get("/api/schemas")
    assert response.status_code == 200
    assert response.json() == {"schemas": [
        {"id": LAUNCH, "versions": [1], "title": "Application launch", "recorded": True},
        {"id": SAVE, "versions": [1], "title": "File saved", "recorded": False},
    ]}


def test_health_endpoint(serve):
    server = serve()
    server.post(LAUNCH_EVENT)
    body = server.get("/api/health").json()
    assert body["status"] == "ok"
    assert body["sinks"] == [{"name": "file", "class": "telemetry_sinks.sinks.file.FileSink"}]
    assert body["events"]["accepted"] == 1


def test_cors_preflight_and_allow_origin(serve):
    allowed = "https://lab.example.org"
    server = serve(cors_allowed_origins=[allowed], token="t")
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    ok = requests.options(f"{server.url}/api/events", headers={"Origin": allowed, **preflight}, timeout=10)
    assert ok.status_code == 204  # preflights carry no token
    assert ok.headers["Access-Control-Allow-Origin"] == allowed
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert "authorization" in ok.headers["Access-Control-Allow-Headers"].lower()
    denied = requests.options(f"{server.url}/api/events",
                              headers={"Origin": "https://evil.example.com", **preflight}, timeout=10)
    assert denied.status_code == 403
    assert "Access-Control-Allow-Origin" not in denied.headers
    assert "cors_allowed_origins" in denied.json()["error"]
    auth = {"Authorization": "Bearer t"}
    response = server.post(LAUNCH_EVENT, headers={"Origin": allowed, **auth})
    assert response.headers["Access-Control-Allow-Origin"] == allowed
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
    rejected = server.post(LAUNCH_EVENT, headers={"Origin": allowed})  # errors are readable too
    assert rejected.status_code == 401 and rejected.headers["Access-Control-Allow-Origin"] == allowed
    other = server.post(LAUNCH_EVENT, headers={"Origin": "https://evil.example.com", **auth})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_unknown_endpoint_and_method(serve):
    server = serve()
    missing = server.get("/api/nothing")
    assert missing.status_code == 404 and "POST /api/events" in missing.json()["error"]
    wrong = server.get("/api/events")
    assert wrong.status_code == 405 and "use POST" in wrong.json()["error"]
