"""The collector's HTTP API (tornado handlers) and the per-event processing behind it.

Endpoints:

``POST /api/events``
    One event or a JSON list of them, each either in the body shape of Jupyter
    Server's events API, ``{"schema_id", "version", "data", "timestamp", "event_id"}``,
    or in capsule shape, ``{"__schema__", "__schema_version__", "__timestamp__",
    "__event_id__", ...fields}``.  Each event is validated, filtered by the
    operator's policy and dispatched to the EventLog's sinks.  The answer is 200
    when no event was rejected and 400 when any was, in both cases with one result
    per event, so that a client knows which events of a batch were recorded.
``GET /api/schemas``
    The registered schemas and versions.
``GET /api/health``
    ``{"status": "ok", "sinks": [...]}`` with each sink's ``stats()``.
``GET /``
    A public HTML page for the people the events are about: what is
    recorded and what is not, which personal data is removed, where events go
    (:mod:`telemetry_sinks.describe`; ``GET /?format=md`` for Markdown), and their
    consent choice with a plain form to change it.  It shows the operator's policy,
    never event data, so it needs no token.

The endpoints for browsers (policy, consent, the JavaScript module, the demo page)
are in :mod:`.browser`.  Requests without the bearer token are browser requests:
the user's consent (cookie, ``Sec-GPC``) is enforced on their events and the
per-client rate limit applies.

Every error answer is JSON ``{"error": "..."}`` naming the problem and the fix.
The request body is streamed (``@stream_request_body``) so that its size limit is
enforced as it arrives, with a JSON 413 rather than tornado's bare 400.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import tornado.web
from tornado import httputil

from ..capsule import format_timestamp, parse_timestamp, to_json_data
from ..dedup import RecentIds
from ..errors import EventValidationError, UnknownSchemaError
from ..policy import policy_for
from ..schema import json_path, parse_version
from . import consent

if TYPE_CHECKING:
    from ..eventlog import EventLog
    from .app import Collector
    from .consent import UserConsent

access_log = logging.getLogger("telemetry_sinks.server.access")
_log = logging.getLogger("telemetry_sinks.server")

MAX_EVENT_ID_LENGTH = 256
_JSON_TYPES = {dict: "object", list: "list", str: "string", int: "number", float: "number",
               bool: "boolean", type(None): "null"}
_BODY_SHAPE = '{"schema_id": ID, "version": N, "data": {...}}'
_ENDPOINTS = ("GET / (what is recorded), POST /api/events, GET /api/schemas, GET /api/health, "
              "GET /api/policy, GET|POST /api/consent, GET /static/telemetry-sinks.js, GET /demo")


class ApiError(tornado.web.HTTPError):
    """An error answer: a status, a message for ``{"error": ...}``, extra headers and fields."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(status)
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


# --------------------------------------------------------------------------- processing


class _Rejected(Exception):
    def __init__(self, path: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.path, self.reason, self.message = path, reason, message


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _parse_timestamp(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _Rejected(path, "not a string", f"{path} must be an ISO 8601 string, not a JSON "
                        f"{_json_type(value)}")
    when = parse_timestamp(value)
    if when is None:
        raise _Rejected(path, "not an ISO 8601 timestamp",
                        f"{path} {value[:64]!r} is not an ISO 8601 timestamp such as "
                        "'2025-01-31T12:00:00.000Z'")
    return format_timestamp(when)


class _Event:
    __slots__ = ("schema_id", "version", "data", "timestamp", "event_id", "data_path", "keys")

    schema_id: Any
    version: Any
    data: Any
    timestamp: str | None
    event_id: str | None
    data_path: str
    keys: tuple[str, ...]


def _unpack(item: Any) -> _Event:
    """Read one item of a request: Jupyter Server's body shape or a capsule."""
    ev = _Event()
    if not isinstance(item, dict):
        raise _Rejected("$", "not an object",
                        f"an event must be a JSON object {_BODY_SHAPE}, not a JSON {_json_type(item)}")
    if "schema_id" in item:
        ev.keys = ("schema_id", "version", "timestamp", "event_id")
        ev.data_path = "$.data"
        if "data" not in item:
            raise _Rejected("$.data", "missing", f"the event has no 'data'; send {_BODY_SHAPE}")
        ev.data = item["data"]
        if not isinstance(ev.data, dict):
            raise _Rejected("$.data", "not an object",
                            f"'data' must be a JSON object, not a JSON {_json_type(ev.data)}")
        reserved = next((k for k in ev.data if k.startswith("__")), None)
        if reserved is not None:  # e.g. a forged __event_id__
            raise _Rejected(json_path(["data", reserved]), "reserved property name",
                            f"property {reserved!r}: names starting with '__' are reserved for the capsule")
    elif "__schema__" in item:
        ev.keys = ("__schema__", "__schema_version__", "__timestamp__", "__event_id__")
        ev.data_path = "$"
        ev.data = {k: v for k, v in item.items() if not k.startswith("__")}
    else:
        raise _Rejected("$", "unknown shape",
                        f"expected an event {_BODY_SHAPE} (Jupyter Server's events API) or a "
                        'capsule {"__schema__": ID, "__schema_version__": N, ...fields}')
    id_key, version_key, ts_key, eid_key = ev.keys
    ev.schema_id = item[id_key]
    if not isinstance(ev.schema_id, str) or not ev.schema_id:
        raise _Rejected(f"$.{id_key}", "not a string",
                        f"'{id_key}' must be a non-empty string (a schema $id)")
    raw = item.get(version_key)
    ev.version = None if raw is None else parse_version(raw)
    if raw is not None and ev.version is None:
        raise _Rejected(f"$.{version_key}", "not an integer",
                        f"'{version_key}' must be an integer (or omitted for the newest version), "
                        f"not {json.dumps(raw)[:40]}")
    raw = item.get(ts_key)
    ev.timestamp = None if raw is None else _parse_timestamp(raw, f"$.{ts_key}")
    raw = item.get(eid_key)
    if raw is not None and (not isinstance(raw, str) or not raw or len(raw) > MAX_EVENT_ID_LENGTH):
        raise _Rejected(f"$.{eid_key}", "invalid event id",
                        f"'{eid_key}' must be a non-empty string of at most {MAX_EVENT_ID_LENGTH} "
                        "characters (a UUID, for example)")
    ev.event_id = raw
    return ev


class EventIntake(Protocol):
    """Where events from clients are recorded: the collector, or Jupyter Server's JupyterLab endpoint."""

    eventlog: EventLog
    recent_ids: RecentIds
    counters: Counter[str]


def _process_one(
    collector: EventIntake, item: Any, batch_ids: set[str], user: UserConsent | None
) -> dict[str, Any]:
    eventlog = collector.eventlog
    try:
        ev = _unpack(item)
        if ev.event_id is not None and (ev.event_id in batch_ids or collector.recent_ids.seen(ev.event_id)):
            return {"status": "duplicate"}
        if user is not None:
            mode = eventlog.consent_mode(ev.schema_id)
            if mode is not None and not user.permits(mode):
                return {"status": "not_recorded", "reason": f"consent {user.state(mode)} ({mode})"}
        try:
            capsule = eventlog.prepare(ev.schema_id, ev.version, ev.data, ev.timestamp)
        except EventValidationError as exc:
            path = ev.data_path + exc.path[1:]
            raise _Rejected(path, exc.reason, f"schema {exc.schema_id!r} version {exc.version}: "
                            f"invalid at {path}: {exc.reason}") from None
        except UnknownSchemaError as exc:
            known = any(sid == ev.schema_id for sid, _ in eventlog.schemas)
            key = ev.keys[1] if known else ev.keys[0]
            raise _Rejected(f"$.{key}", "unknown schema version" if known else "unknown schema",
                            str(exc)) from None
    except _Rejected as rejected:
        return {"status": "rejected",
                "error": {"path": rejected.path, "reason": rejected.reason, "message": rejected.message}}
    if capsule is None:
        return {"status": "not_recorded"}
    if ev.event_id is not None:
        capsule["__event_id__"] = ev.event_id
        batch_ids.add(ev.event_id)
        collector.recent_ids.add(ev.event_id)
    eventlog.dispatch(capsule)
    return {"status": "accepted"}


def process_events(
    collector: EventIntake, items: list[Any], user: UserConsent | None = None
) -> dict[str, Any]:
    """Validate, filter and dispatch ``items``; return the response body (without ``error``).

    ``{"accepted", "not_recorded", "duplicate", "rejected", "results": [{"index",
    "status", "error"?, "reason"?}]}``.  Ids of accepted events are remembered for
    deduplication.  With ``user`` (a browser request), events of schemas the user's
    consent does not permit are ``not_recorded`` with a ``reason``.
    """
    counts = dict.fromkeys(("accepted", "not_recorded", "duplicate", "rejected"), 0)
    results = []
    batch_ids: set[str] = set()
    for index, item in enumerate(items):
        result = _process_one(collector, item, batch_ids, user)
        counts[result["status"]] += 1
        results.append({"index": index, **result})
    for status, n in counts.items():
        collector.counters[status] += n
    return {**counts, "results": results}


_NDJSON = "application/x-ndjson"
_MEDIA_TYPES = ("application/json", _NDJSON)


def parse_body(body: bytes, max_events: int, ndjson: bool = False) -> list[Any]:
    """The list of items in a request body; :class:`ApiError` 400/413 if it is not usable.

    A JSON body is one event or a list of them; an NDJSON body (``ndjson``) is one
    event per line.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the request body is not UTF-8 text (invalid byte at offset {exc.start}); "
                       "send UTF-8 encoded JSON") from None

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON; send null or a number")

    if ndjson:
        lines = [line for line in text.split("\n") if line.strip()]
        if len(lines) > max_events:
            raise ApiError(413, f"{len(lines)} events in one request; the limit is {max_events} "
                           "(c.Collector.max_events_per_request): split the batch")
        text = "[" + ",".join(lines) + "]"
    try:
        data = json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc.msg} at line {exc.lineno}, "
                       f"column {exc.colno}; send one event {_BODY_SHAPE} or a JSON list of them",
                       extra={"line": exc.lineno, "column": exc.colno}) from None
    except (ValueError, RecursionError) as exc:
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ApiError(400, f"the request body is not usable JSON: {reason}") from None
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise ApiError(400, f"the request body is a JSON {_json_type(data)}; send one event "
                       f"{_BODY_SHAPE} (a JSON object) or a JSON list of them")
    if len(data) > max_events:
        raise ApiError(413, f"{len(data)} events in one request; the limit is {max_events} "
                       "(c.Collector.max_events_per_request): split the batch")
    return data


# --------------------------------------------------------------------------- handlers


class BaseHandler(tornado.web.RequestHandler):
    """JSON answers, CORS for allowed origins, bearer-token auth, JSON error bodies."""

    @property
    def collector(self) -> Collector:
        return self.application.settings["collector"]

    def set_default_headers(self) -> None:  # also called again by send_error's clear()
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        origins = self.collector.cors_allowed_origins
        if origins:
            self.set_header("Vary", "Origin")
            origin = self.request.headers.get("Origin")
            if origin and origin in origins:
                self.set_header("Access-Control-Allow-Origin", origin)
                self.set_header("Access-Control-Allow-Credentials", "true")  # the consent cookie
                self.set_header("Access-Control-Expose-Headers", "Retry-After")

    def auth_error(self) -> ApiError | None:
        """None when the request carries the configured bearer token (or none is configured)."""
        token = self.collector.token
        if not token:
            return None
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        given = given.strip()
        if scheme.lower() == "bearer" and given and hmac.compare_digest(
            given.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
        ):
            return None
        how = ("send the header 'Authorization: Bearer <token>' with the collector's token "
               "(c.Collector.token or the TELEMETRY_SINKS_TOKEN environment variable)")
        if scheme.lower() == "bearer" and given:
            return ApiError(401, f"the bearer token is not valid; {how}",
                            {"WWW-Authenticate": 'Bearer realm="telemetry-sinks", error="invalid_token"'})
        return ApiError(401, f"authentication required; {how}",
                        {"WWW-Authenticate": 'Bearer realm="telemetry-sinks"'})

    #: True where every request must pass ``auth_error()``, browser requests included
    #: (the collector as a JupyterHub service: the Hub vouches for each user and server).
    authenticates_every_request = False

    def is_browser_request(self) -> bool:
        """No bearer token configured, or none sent while ``browser_events`` accepts such requests.

        Browser requests are subject to the user's consent and to the per-client rate limit.
        """
        collector = self.collector
        if not collector.token:
            return True
        return collector.browser_events and "Authorization" not in self.request.headers

    def prepare(self) -> None:
        if self.request.method != "OPTIONS":
            error = self.auth_error()
            if error is not None:
                raise error

    def options(self, *args: Any) -> None:
        """CORS preflight: allowed only for the origins in ``cors_allowed_origins``."""
        origin = self.request.headers.get("Origin")
        if not origin or origin not in self.collector.cors_allowed_origins:
            raise ApiError(403, f"origin {origin!r} is not allowed to call the collector; add it to "
                           "c.Collector.cors_allowed_origins (exact origins such as "
                           "'https://lab.example.org')")
        self.set_status(204)
        self.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
        self.set_header("Access-Control-Max-Age", "600")
        self.finish()

    def write_json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.finish(json.dumps(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            for name, value in exc.headers.items():
                self.set_header(name, value)
            body = {"error": exc.message, **exc.extra}
        elif status_code == 405:
            allowed = [m for m in ("GET", "POST") if type(self).__dict__.get(m.lower())]
            body = {"error": f"method {self.request.method} is not allowed on {self.request.path}; "
                             f"use {' or '.join(allowed) or 'another endpoint'} ({_ENDPOINTS})"}
        elif status_code >= 500:
            body = {"error": "internal error in the collector; see its log"}
        else:
            body = {"error": f"{status_code} {httputil.responses.get(status_code, 'error')}"}
        self.finish(json.dumps(body))


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise ApiError(404, f"no endpoint {self.request.path}; the endpoints are {_ENDPOINTS}")


class SchemasHandler(BaseHandler):
    def get(self) -> None:
        eventlog = self.collector.eventlog
        by_id: dict[str, list[int]] = {}
        for sid, version in eventlog.schemas:
            by_id.setdefault(sid, []).append(version)
        schemas = []
        for sid in sorted(by_id):
            versions = sorted(by_id[sid])
            schemas.append({
                "id": sid,
                "versions": versions,
                "title": eventlog.schema(sid, versions[-1]).title,
                "recorded": policy_for(eventlog.allowed_schemas, sid) is not None,
            })
        self.write_json(200, {"schemas": schemas})


class DescribeHandler(BaseHandler):
    """``GET /``: what is recorded, for end users (HTML; ``?format=md`` for Markdown).

    Public and read-only: it describes the operator's policy and never event data,
    so no token is required even when ``c.Collector.token`` is set.
    """

    _CSP = ("default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")

    def prepare(self) -> None:
        pass  # public: no bearer token for this page

    def get(self) -> None:
        from ..describe import consent_section_html, describe_html, describe_markdown

        fmt = self.get_query_argument("format", "html").lower()
        if fmt not in ("html", "md", "markdown"):
            raise ApiError(400, f"unknown format {fmt[:20]!r}; use ?format=html (default) or ?format=md")
        self.set_header("X-Content-Type-Options", "nosniff")
        if fmt == "html":
            self.set_header("Content-Type", "text/html; charset=UTF-8")
            self.set_header("Content-Security-Policy", self._CSP)
            eventlog = self.collector.eventlog
            user = consent.from_request(self.request)
            section = consent_section_html(
                eventlog.default_consent, user.choice, user.gpc, consent.schema_states(eventlog, user),
                {sid: s.title for (sid, _), s in eventlog.schemas.items()}, "/api/consent")
            self.set_header("Vary", "Origin, Cookie, Sec-GPC")
            self.finish(describe_html(eventlog, consent_html=section))
        else:
            self.set_header("Content-Type", "text/markdown; charset=UTF-8")
            self.finish(describe_markdown(self.collector.eventlog))


class HealthHandler(BaseHandler):
    def get(self) -> None:
        sinks = []
        for handler in self.collector.eventlog.all_handlers:
            cls = type(handler)
            entry: dict[str, Any] = {
                "name": getattr(handler, "sink_name", "") or handler.get_name() or cls.__name__,
                "class": f"{cls.__module__}.{cls.__qualname__}",
            }
            if callable(getattr(handler, "stats", None)):
                try:
                    entry["stats"] = to_json_data(handler.stats())
                except Exception as exc:
                    entry["stats_error"] = f"{type(exc).__name__}: {exc}"
            sinks.append(entry)
        self.write_json(200, {"status": "ok", "sinks": sinks, "events": dict(self.collector.counters),
                              "rate_limited_requests": self.collector.rate_limited})


@tornado.web.stream_request_body
class EventsHandler(BaseHandler):
    """``POST /api/events``; the body is streamed so that its size limit holds as it arrives."""

    _deferred: ApiError | None = None
    _browser = False

    def prepare(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        if self.request.method != "POST":
            super().prepare()
            return
        # The server-wide max_body_size would answer a bare 400; this handler answers 413 itself.
        connection: Any = self.request.connection
        if hasattr(connection, "set_max_body_size"):
            connection.set_max_body_size(2**62)
        self._browser = self.is_browser_request()
        skip_auth = self._browser and not self.authenticates_every_request
        error = (None if skip_auth else self.auth_error()) or self._content_type_error()
        length = self.request.headers.get("Content-Length")
        if length is not None:
            if not length.strip().isdigit():
                raise error or ApiError(400, f"invalid Content-Length {length[:40]!r}")
            if int(length) > self.collector.max_body_bytes:
                raise error or self._too_large(f"Content-Length is {int(length)} bytes")
        # Small bodies are read before an auth or content-type error is answered, so that the
        # client reliably receives the answer (closing with unread data would reset the connection).
        self._deferred = error

    def _content_type_error(self) -> ApiError | None:
        value = self.request.headers.get("Content-Type", "")
        media, _, params = value.partition(";")
        charset = ""
        for param in params.split(";"):
            name, _, val = param.partition("=")
            if name.strip().lower() == "charset":
                charset = val.strip().strip('"').lower()
        if media.strip().lower() in _MEDIA_TYPES and charset in ("", "utf-8", "utf8"):
            return None
        shown = f"Content-Type {value[:80]!r}" if value else "no Content-Type"
        return ApiError(415, f"the request has {shown}; send JSON with 'Content-Type: application/json' "
                        "(UTF-8), or one event per line with 'Content-Type: application/x-ndjson'")

    def _too_large(self, what: str) -> ApiError:
        limit = self.collector.max_body_bytes
        return ApiError(413, f"the request body is too large ({what}; the limit is {limit} bytes, "
                        "c.Collector.max_body_bytes): send fewer events per request")

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self._size += len(chunk)
        if self._size > self.collector.max_body_bytes:
            error = self._deferred or self._too_large(f"more than {self.collector.max_body_bytes} bytes")
            self.send_error(error.status_code, exc_info=(type(error), error, None))
            return
        if self._deferred is None:
            self._chunks.append(chunk)

    def post(self) -> None:
        if self._deferred is not None:
            raise self._deferred
        collector = self.collector
        if self._browser:
            collector.check_rate(self.request)
        busy = collector.busy_sink()
        if busy is not None:
            raise ApiError(503, f"the sink {busy} cannot keep up; nothing was recorded. Retry after "
                           f"{collector.retry_after} seconds", {"Retry-After": str(collector.retry_after)})
        ndjson = self.request.headers.get("Content-Type", "").lower().startswith(_NDJSON)
        items = parse_body(b"".join(self._chunks), collector.max_events_per_request, ndjson)
        self._chunks = []
        user = consent.from_request(self.request) if self._browser else None
        result = process_events(collector, items, user)
        if result["rejected"]:
            first = next(r for r in result["results"] if r["status"] == "rejected")
            err = first["error"]
            message = (f"{result['rejected']} of {len(items)} events rejected (the others were "
                       f"accepted; resend only the rejected ones, fixed); first: event {first['index']} "
                       f"at {err['path']}: {err['reason']}")
            self.write_json(400, {"error": message, **result})
        else:
            self.write_json(200, result)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log without headers or bodies (so never a token): 4xx as warnings, 5xx as errors."""
    status = handler.get_status()
    level = logging.DEBUG if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    request = handler.request
    access_log.log(level, "%d %s %s (%s) %.1fms", status, request.method, request.path,
                   request.remote_ip, 1000.0 * request.request_time())


def make_app(collector: Collector) -> tornado.web.Application:
    """The tornado Application of ``collector`` (without a server; see ``Collector.start``)."""
    from .browser import routes

    return tornado.web.Application(
        [
            (r"/", DescribeHandler),
            (r"/api/events/?", EventsHandler),
            (r"/api/schemas/?", SchemasHandler),
            (r"/api/health/?", HealthHandler),
            *routes(),
        ],
        default_handler_class=NotFoundHandler,
        collector=collector,
        log_function=_log_request,
    )
