"""A local stand-in for the wire contract of Google Cloud Logging API v2 ``entries.write``.

Google ships no emulator for Cloud Logging, so the StackdriverSink's tests talk
to this server instead.  It implements the documented contract of
``POST /v2/entries:write`` (https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/write)
over HTTP/1.1 JSON, and the same RPC (``google.logging.v2.LoggingServiceV2/WriteLogEntries``)
over gRPC, closely enough for a client library to be unable to tell the difference:

* the request ``{"logName", "resource", "labels", "entries": [...], "partialSuccess",
  "dryRun"}``; request-level ``logName``, ``resource`` and ``labels`` are the
  defaults of every entry; unknown fields are refused, as the real API's JSON
  parser does;
* each entry is checked as the API does: a log name ``projects/P/logs/LOG_ID``
  (LOG_ID URL-encoded, of ``A-Za-z0-9/_-.``, under 512 characters), a monitored
  resource with a type, at most one payload, a known severity, an RFC 3339
  timestamp, and at most 256 KiB; a request over 10 MiB is refused whole;
* with ``partialSuccess`` the valid entries are written even if others fail, and
  the answer is the error of a failed entry with a
  ``google.logging.v2.WriteLogEntriesPartialErrors`` detail mapping entry index
  to status; without it, nothing is written and no per-entry details are given;
* errors have the API's shape: ``{"error": {"code": 400, "message": ...,
  "status": "INVALID_ARGUMENT", "details": [...]}}`` (a ``google.rpc.Status``
  with details over gRPC), with ``ErrorInfo`` / ``RetryInfo`` details and a
  ``Retry-After`` header for quota errors.

``POST /token`` plays Google's OAuth 2.0 token endpoint for service-account
credentials whose key file names this server as ``token_uri``; with
``require_auth=True`` writes need ``Authorization: Bearer`` with a token it
issued (else 401 ``UNAUTHENTICATED``).

Test controls: :meth:`FakeLoggingAPI.fail_next` answers the next N write requests
with an error of a given HTTP status (400, 403, 429, 500, 503, ...), and
:meth:`FakeLoggingAPI.reject_entries` refuses entries matching a predicate with a
per-entry error.  Written entries are recorded (``entries``) with the request
defaults merged in and a ``receiveTimestamp``, as ``entries.list`` would show
them; ``requests`` records each write's status and entry count.

``start()`` / ``stop()`` can be called repeatedly: the server comes back on the
same port, with its recorded entries, and ``stop()`` closes open keep-alive
connections too, so clients see a real outage.  Run as a program
(``python fake_logging_api.py --port N``) it serves in its own process, which a
test can kill and start again (like a real server, it then forgets its entries);
``GET /_fake/entries`` returns the recorded entries and requests as JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_ENTRY_BYTES = 256 * 1024
MAX_REQUEST_BYTES = 10 * 1024 * 1024
PARTIAL_ERRORS_TYPE = "type.googleapis.com/google.logging.v2.WriteLogEntriesPartialErrors"

#: HTTP status -> (gRPC code number, canonical status name, a message the real API uses).
STATUSES: dict[int, tuple[int, str, str]] = {
    400: (3, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: (
        16,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential.",
    ),
    403: (
        7,
        "PERMISSION_DENIED",
        "Permission 'logging.logEntries.create' denied on resource (or it may not exist).",
    ),
    404: (5, "NOT_FOUND", "Requested entity was not found."),
    409: (10, "ABORTED", "The operation was aborted."),
    429: (
        8,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute' "
        "of service 'logging.googleapis.com'.",
    ),
    500: (13, "INTERNAL", "Internal error encountered."),
    503: (14, "UNAVAILABLE", "The service is currently unavailable."),
    504: (4, "DEADLINE_EXCEEDED", "The request deadline was exceeded."),
}
_GRPC_TO_HTTP = {code: status for status, (code, _, _) in STATUSES.items()}

SEVERITIES = {
    "DEFAULT": 0, "DEBUG": 100, "INFO": 200, "NOTICE": 300, "WARNING": 400, "ERROR": 500,
    "CRITICAL": 600, "ALERT": 700, "EMERGENCY": 800,
}  # fmt: skip
_REQUEST_FIELDS = {"logName", "log_name", "resource", "labels", "entries", "partialSuccess",
                   "partial_success", "dryRun", "dry_run"}  # fmt: skip
_ENTRY_FIELDS = {
    "logName", "resource", "protoPayload", "textPayload", "jsonPayload", "timestamp",
    "receiveTimestamp", "severity", "insertId", "httpRequest", "labels", "operation", "trace",
    "spanId", "traceSampled", "sourceLocation", "split",
}  # fmt: skip
_LOG_NAME = re.compile(r"^(projects|organizations|folders|billingAccounts)/([^/]+)/logs/([^/]+)$")
_LOG_ID = re.compile(r"^[A-Za-z0-9/_\-.]+$")


class WriteError(Exception):
    """A write request the API refuses: HTTP status, message, details."""

    def __init__(self, status: int, message: str, details: list[dict] | None = None,
                 retry_after: float | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        _, name, _ = STATUSES.get(self.status, (2, "UNKNOWN", ""))
        return {"error": {"code": self.status, "message": self.message, "status": name,
                          "details": self.details}}  # fmt: skip


@dataclass
class WriteRequest:
    """What the server saw: the answer's HTTP status, entries in the request, body bytes."""

    status: int
    entries: int
    size: int
    transport: str


class FakeLoggingAPI:
    """The fake API server (HTTP; gRPC too with ``grpc=True``); see the module docstring."""

    def __init__(
        self, port: int = 0, *, grpc: bool = False, grpc_port: int = 0, require_auth: bool = False
    ) -> None:
        self.port = port
        self.require_auth = require_auth
        self.tokens: set[str] = set()
        self.grpc_port = grpc_port
        self._want_grpc = grpc
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []
        self._requests: list[WriteRequest] = []
        self._failures: list[tuple[int, int, str | None, float | None]] = []
        self._rejections: list[tuple[Callable[[dict], bool], int, str]] = []
        self._http: ThreadingHTTPServer | None = None
        self._grpc: Any = None
        self._connections: set[socket.socket] = set()

    # ------------------------------------------------------------------ controls

    @property
    def url(self) -> str:
        """The ``api_endpoint`` to give a client (HTTP)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    @property
    def requests(self) -> list[WriteRequest]:
        with self._lock:
            return list(self._requests)

    def fail_next(self, count: int = 1, status: int = 429, *, message: str | None = None,
                  retry_after: float | None = None) -> None:  # fmt: skip
        """Answer the next ``count`` write requests with an error of HTTP ``status``."""
        with self._lock:
            self._failures.append((count, status, message, retry_after))

    def reject_entries(self, predicate: Callable[[dict], bool], *, code: int = 3,
                       message: str = "Log entry is invalid.") -> None:  # fmt: skip
        """Refuse every entry for which ``predicate(entry)`` is true, with gRPC ``code``."""
        with self._lock:
            self._rejections.append((predicate, code, message))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._requests.clear()
            self._failures.clear()
            self._rejections.clear()

    # ------------------------------------------------------------------ the contract

    def write(self, body: bytes, transport: str = "http") -> dict[str, Any]:
        """Handle one ``entries.write`` body; returns ``{}`` or raises :class:`WriteError`."""
        status = 200
        count = 0
        try:
            if len(body) > MAX_REQUEST_BYTES:
                raise WriteError(
                    400, f"Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes."
                )
            try:
                request = json.loads(body)
            except ValueError as exc:
                raise WriteError(400, f"Invalid JSON payload received. {exc}") from None
            if not isinstance(request, dict):
                raise WriteError(400, "Invalid JSON payload received. Expected an object.")
            entries = request.get("entries") or []
            count = len(entries) if isinstance(entries, list) else 0
            self._injected_failure()
            return self._write(request)
        except WriteError as exc:
            status = exc.status
            raise
        finally:
            with self._lock:
                self._requests.append(WriteRequest(status, count, len(body), transport))

    def _injected_failure(self) -> None:
        with self._lock:
            if not self._failures:
                return
            count, status, message, retry_after = self._failures[0]
            if count <= 1:
                self._failures.pop(0)
            else:
                self._failures[0] = (count - 1, status, message, retry_after)
        code, name, default = STATUSES.get(status, (2, "UNKNOWN", "Unknown error."))
        details: list[dict] = []
        if status == 429:
            details = [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                 "domain": "googleapis.com",
                 "metadata": {"service": "logging.googleapis.com", "quota_metric":
                              "logging.googleapis.com/write_requests"}},
            ]  # fmt: skip
            if retry_after is not None:
                details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                "retryDelay": f"{retry_after:g}s"})  # fmt: skip
        elif status == 403:
            details = [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED",
                 "domain": "iam.googleapis.com", "metadata": {"permission": "logging.logEntries.create"}},
            ]  # fmt: skip
        raise WriteError(status, message or default, details, retry_after)

    def _write(self, request: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(request) - _REQUEST_FIELDS)
        if unknown:
            raise WriteError(
                400, f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.'
            )
        entries = request.get("entries")
        if not isinstance(entries, list) or not entries:
            raise WriteError(400, "entries: at least one log entry is required")
        partial = bool(request.get("partialSuccess", request.get("partial_success", False)))
        dry_run = bool(request.get("dryRun", request.get("dry_run", False)))
        defaults = {
            "logName": request.get("logName", request.get("log_name")),
            "resource": request.get("resource"),
            "labels": request.get("labels") or {},
        }
        checked: dict[int, dict[str, Any]] = {}
        errors: dict[int, tuple[int, str]] = {}
        now = _now()
        for index, entry in enumerate(entries):
            try:
                checked[index] = self._check_entry(entry, defaults, now)
            except WriteError as exc:
                errors[index] = (STATUSES.get(exc.status, (3,))[0], exc.message)
        with self._lock:
            rejections = list(self._rejections)
        for index, entry in enumerate(entries):
            if index in errors:
                continue
            for predicate, code, message in rejections:
                if predicate(entry):
                    errors[index] = (code, message)
                    break
        if errors:
            code, message = errors[min(errors)]
            status = _GRPC_TO_HTTP.get(code, 400)
            if not partial:
                raise WriteError(status, message)
            self._record([e for i, e in checked.items() if i not in errors], dry_run)
            detail = {
                "@type": PARTIAL_ERRORS_TYPE,
                "logEntryErrors": {
                    str(i): {"code": c, "message": m} for i, (c, m) in sorted(errors.items())
                },
            }
            raise WriteError(status, message, [detail])
        self._record(list(checked.values()), dry_run)
        return {}

    def _record(self, entries: list[dict[str, Any]], dry_run: bool) -> None:
        if dry_run:
            return
        with self._lock:
            self._entries.extend(entries)

    def _check_entry(
        self, entry: Any, defaults: dict[str, Any], now: str
    ) -> dict[str, Any]:
        if not isinstance(entry, dict):
            raise WriteError(400, "Invalid JSON payload received. Log entry must be an object.")
        unknown = sorted(set(entry) - _ENTRY_FIELDS)
        if unknown:
            raise WriteError(
                400, f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.'
            )
        size = len(json.dumps(entry, separators=(",", ":")).encode("utf-8"))
        if size > MAX_ENTRY_BYTES:
            raise WriteError(
                400,
                f"Log entry with size {size / 1024:.1f}K exceeds maximum size of "
                f"{MAX_ENTRY_BYTES / 1024:.1f}K",
            )
        merged = dict(entry)
        log_name = merged.get("logName") or defaults["logName"]
        if not log_name:
            raise WriteError(400, "Log entry has no logName and the request has none either.")
        match = _LOG_NAME.match(log_name)
        if not match:
            raise WriteError(400, f"Invalid log name: {log_name!r}")
        log_id = urllib.parse.unquote(match.group(3))
        if len(log_id) >= 512 or not _LOG_ID.match(log_id):
            raise WriteError(400, f"Invalid log ID: {log_id!r}")
        merged["logName"] = log_name
        resource = merged.get("resource") or defaults["resource"]
        if not isinstance(resource, dict) or not resource.get("type"):
            raise WriteError(400, "Log entry has no monitored resource type.")
        merged["resource"] = {"type": resource["type"], "labels": dict(resource.get("labels") or {})}
        labels = {**defaults["labels"], **(merged.get("labels") or {})}
        if labels:
            merged["labels"] = labels
        payloads = [k for k in ("jsonPayload", "textPayload", "protoPayload") if k in merged]
        if len(payloads) > 1:
            raise WriteError(400, "A log entry may have only one payload.")
        if "jsonPayload" in merged and not isinstance(merged["jsonPayload"], dict):
            raise WriteError(400, "jsonPayload must be a JSON object.")
        severity = merged.get("severity", "DEFAULT")
        if severity not in SEVERITIES and severity not in SEVERITIES.values():
            raise WriteError(400, f"Invalid value at 'entries.severity': {severity!r}")
        merged["severity"] = severity
        if "timestamp" in merged:
            try:
                _parse_time(merged["timestamp"])
            except ValueError:
                raise WriteError(
                    400, f"Invalid value at 'entries.timestamp': {merged['timestamp']!r}"
                ) from None
        else:
            merged["timestamp"] = now
        merged.setdefault("insertId", uuid.uuid4().hex)
        merged["receiveTimestamp"] = now
        return merged

    # ------------------------------------------------------------------ servers

    def start(self) -> FakeLoggingAPI:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                with api._lock:
                    api._connections.add(self.connection)

            def finish(self):
                with api._lock:
                    api._connections.discard(self.connection)
                super().finish()

            def do_GET(self):
                if self.path != "/_fake/entries":
                    return self._answer(404, WriteError(404, "Not found").body())
                self._answer(
                    200,
                    {
                        "entries": api.entries,
                        "requests": [vars(r) for r in api.requests],
                    },
                )

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/token":
                    token = f"ya29.fake-{uuid.uuid4().hex}"
                    with api._lock:
                        api.tokens.add(token)
                    return self._answer(
                        200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
                    )
                if api.require_auth:
                    scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
                    with api._lock:
                        known = scheme == "Bearer" and token in api.tokens
                    if not known:
                        return self._answer(401, WriteError(401, STATUSES[401][2]).body())
                if self.path.split("?")[0] != "/v2/entries:write":
                    error = WriteError(404, f"Method not found: {self.path}")
                    return self._answer(404, error.body())
                try:
                    self._answer(200, api.write(body, "http"))
                except WriteError as exc:
                    headers = {}
                    if exc.retry_after is not None:
                        headers["Retry-After"] = f"{exc.retry_after:g}"
                    self._answer(exc.status, exc.body(), headers)

            def _answer(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._http = Server(("127.0.0.1", self.port), Handler)
        self.port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        if self._want_grpc:
            self._start_grpc()
        return self

    def stop(self) -> None:
        """Stop answering, and drop open connections (a real outage)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._grpc is not None:
            self._grpc.stop(grace=None)
            self._grpc = None

    def _start_grpc(self) -> None:
        from concurrent import futures

        import grpc
        from google.cloud.logging_v2.types import (
            WriteLogEntriesPartialErrors,
            WriteLogEntriesRequest,
            WriteLogEntriesResponse,
        )
        from google.protobuf import any_pb2, json_format
        from google.rpc import error_details_pb2, status_pb2
        from grpc_status import rpc_status

        api = self

        def write_log_entries(request, context):
            body = json_format.MessageToJson(WriteLogEntriesRequest.pb(request)).encode()
            try:
                api.write(body, "grpc")
            except WriteError as exc:
                code = STATUSES.get(exc.status, (2,))[0]
                details = []
                for detail in exc.details:
                    packed = any_pb2.Any()
                    if detail["@type"] == PARTIAL_ERRORS_TYPE:
                        message = WriteLogEntriesPartialErrors.pb()()
                        for index, error in detail["logEntryErrors"].items():
                            message.log_entry_errors[int(index)].code = error["code"]
                            message.log_entry_errors[int(index)].message = error["message"]
                    elif detail["@type"].endswith("RetryInfo"):
                        message = error_details_pb2.RetryInfo()
                        message.retry_delay.FromTimedelta(
                            dt.timedelta(seconds=float(detail["retryDelay"][:-1]))
                        )
                    else:
                        message = error_details_pb2.ErrorInfo(
                            reason=detail["reason"], domain=detail["domain"],
                            metadata=detail["metadata"],
                        )  # fmt: skip
                    packed.Pack(message)
                    details.append(packed)
                status = status_pb2.Status(code=code, message=exc.message, details=details)
                context.abort_with_status(rpc_status.to_status(status))
            return WriteLogEntriesResponse()

        handler = grpc.method_handlers_generic_handler(
            "google.logging.v2.LoggingServiceV2",
            {
                "WriteLogEntries": grpc.unary_unary_rpc_method_handler(
                    write_log_entries,
                    request_deserializer=WriteLogEntriesRequest.deserialize,
                    response_serializer=WriteLogEntriesResponse.serialize,
                )
            },
        )
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers((handler,))
        self.grpc_port = server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        server.start()
        self._grpc = server


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: Any) -> dt.datetime:
    if not isinstance(text, str):
        raise ValueError(text)
    value = text[:-1] + "+00:00" if text.endswith("Z") else text
    # RFC 3339 allows nanoseconds; Python's parser takes at most microseconds.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    return dt.datetime.fromisoformat(value)


def recorded(url: str) -> dict[str, Any]:
    """``{"entries", "requests"}`` recorded by a fake API at ``url`` (e.g. in another process)."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/_fake/entries", timeout=30) as response:
        return json.load(response)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="A local stand-in of the Cloud Logging API.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, default=None)
    args = parser.parse_args(argv)
    api = FakeLoggingAPI(
        args.port, grpc=args.grpc_port is not None, grpc_port=args.grpc_port or 0
    ).start()
    print(f"fake Cloud Logging API on {api.url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
