"""A reverse proxy in front of a CloudWatch Logs endpoint (moto, LocalStack) for the limit tests.

It forwards every request unchanged, except that:

* with ``aws_rules=True`` it checks ``PutLogEvents`` requests the way the real
  service does and moto does not (at most 10,000 events and 1,048,576 bytes
  counting 26 bytes per event, events in timestamp order and within 24 hours,
  at most 256 KiB per event), answering a violation with CloudWatch's
  ``InvalidParameterException``;
* :meth:`AWSFaultProxy.fail` makes it answer chosen requests with an error, in
  the shape the real service uses for JSON-protocol errors (HTTP status,
  ``x-amzn-ErrorType`` header, body ``{"__type": CODE, "message": MESSAGE}``),
  which botocore parses into the same ``ClientError`` as a real answer.

It records the action (``X-Amz-Target``), status and event count of each request.
"""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MAX_EVENTS = 10_000
MAX_BYTES = 1_048_576
OVERHEAD = 26
MAX_EVENT_BYTES = 262_144
DAY_MS = 24 * 3600 * 1000


@dataclass
class Rule:
    action: str
    code: str
    status: int
    message: str
    times: int | None
    when: Callable[[bytes], bool] | None


@dataclass
class Seen:
    action: str
    status: int
    events: int
    code: str | None = None


class AWSFaultProxy:
    """Forward to ``upstream`` (an http:// URL); see the module docstring."""

    def __init__(self, upstream: str, *, aws_rules: bool = True) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.aws_rules = aws_rules
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(
        self,
        code: str = "ThrottlingException",
        *,
        status: int = 400,
        message: str = "Rate exceeded",
        action: str = "PutLogEvents",
        times: int | None = 1,
        when: Callable[[bytes], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` (None: all) ``action`` requests matching ``when`` with ``code``."""
        with self.lock:
            self.rules.append(Rule(action, code, status, message, times, when))

    def clear(self) -> None:
        """Forward every request again (the failures still pending are dropped)."""
        with self.lock:
            self.rules.clear()

    def calls(self, action: str = "PutLogEvents") -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.action == action]

    # ------------------------------------------------------------------ server

    def start(self) -> AWSFaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
                events = _event_count(body) if action == "PutLogEvents" else 0
                answer = proxy._injected(action, body)
                if answer is None and proxy.aws_rules and action == "PutLogEvents":
                    problem = _aws_rule_violation(body)
                    if problem:
                        answer = (400, "InvalidParameterException", problem)
                code = None
                if answer is not None:
                    status, code, message = answer
                    self._send(
                        status,
                        json.dumps({"__type": code, "message": message}).encode(),
                        {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code},
                    )
                else:
                    status, code = self._forward(body)
                with proxy.lock:
                    proxy.seen.append(Seen(action, status, events, code))

            def _forward(self, body: bytes) -> tuple[int, str | None]:
                connection = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=30
                )
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    connection.request("POST", self.path, body, headers)
                    response = connection.getresponse()
                    data = response.read()
                    skip = {"connection", "transfer-encoding", "content-length", "keep-alive"}
                    extra = {k: v for k, v in response.getheaders() if k.lower() not in skip}
                    self._send(response.status, data, extra)
                    return response.status, _error_type(response.status, data)
                except OSError as exc:
                    self._send(502, f"upstream unreachable: {exc}".encode(), {})
                    return 502, None
                finally:
                    connection.close()

            def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _injected(self, action: str, body: bytes) -> tuple[int, str, str] | None:
        with self.lock:
            for rule in self.rules:
                if rule.action != action or (rule.times is not None and rule.times <= 0):
                    continue
                if rule.when is not None and not rule.when(body):
                    continue
                if rule.times is not None:
                    rule.times -= 1
                return rule.status, rule.code, rule.message
        return None


def _error_type(status: int, data: bytes) -> str | None:
    if status < 400:
        return None
    try:
        return str(json.loads(data).get("__type", "")).rpartition("#")[2] or None
    except (ValueError, AttributeError):
        return None


def _event_count(body: bytes) -> int:
    try:
        return len(json.loads(body).get("logEvents", []))
    except ValueError:
        return 0


def _aws_rule_violation(body: bytes) -> str | None:
    """The message CloudWatch Logs answers a PutLogEvents request with, if it breaks a rule."""
    request = json.loads(body)
    events = request.get("logEvents", [])
    if not events:
        return "1 validation error detected: Value at 'logEvents' failed to satisfy constraint: Member must have length greater than or equal to 1"  # noqa: E501
    if len(events) > MAX_EVENTS:
        return f"Log event count {len(events)} exceeds the maximum of {MAX_EVENTS}"
    size = sum(len(e["message"].encode("utf-8")) + OVERHEAD for e in events)
    if size > MAX_BYTES:
        return f"Upload too large: {size} bytes exceeds limit of {MAX_BYTES}"
    for event in events:
        event_size = len(event["message"].encode("utf-8")) + OVERHEAD
        if event_size > MAX_EVENT_BYTES:
            return f"Log event too large: {event_size} bytes exceeds limit of {MAX_EVENT_BYTES}"
    stamps = [e["timestamp"] for e in events]
    if stamps != sorted(stamps):
        return "Log events in a single PutLogEvents request must be in chronological order."
    if stamps[-1] - stamps[0] >= DAY_MS:
        return "The batch of log events in a single PutLogEvents request cannot span more than 24 hours."  # noqa: E501
    return None
