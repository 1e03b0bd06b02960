"""``Collector``: the event collector's configuration and lifecycle.

Its options are traitlets traits (``c.Collector.port = 8585`` in the same config
file ``telemetry-sinks emit --config`` reads), and it builds its EventLog from that
same config, so schemas, policy and sinks are configured once.

Three ways to run it:

- ``telemetry-sinks serve`` calls :meth:`Collector.run`: serve until SIGTERM or
  SIGINT, then stop accepting, flush and close the sinks;
- tests and embedding call :meth:`Collector.start` (serves from a thread with its
  own event loop, returns the bound port) and :meth:`Collector.stop`;
- an application with its own event loop awaits :meth:`Collector.listen` and
  :meth:`Collector.shutdown`, or mounts :func:`make_app` itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from traitlets import Bool, Dict, Float, Instance, Int, List, TraitError, Unicode, Union, default, validate
from traitlets.config import LoggingConfigurable

from ..dedup import RecentIds
from ..eventlog import EventLog
from .browser import check_browser_sinks, check_sample_rates
from .handlers import ApiError, make_app
from .ratelimit import ClientRateLimiter

TOKEN_ENV = "TELEMETRY_SINKS_TOKEN"

_log = logging.getLogger("telemetry_sinks.server")


class _Secret(Unicode):
    """A string trait whose value never appears in error messages."""

    info_text = "a string (secret)"

    def error(self, obj: Any, value: Any, error: Any = None, info: Any = None) -> None:
        raise TraitError(
            f"The '{self.name}' trait of {type(obj).__name__} must be a string; "
            "the value given is not shown because it is a secret."
        )


class Collector(LoggingConfigurable):
    """An HTTP server that validates posted events and records them through an EventLog."""

    ip = Unicode("127.0.0.1", help="Address to listen on ('0.0.0.0' or '::' for all).").tag(
        config=True
    )
    port = Int(8585, help="Port to listen on (0: a free port).").tag(config=True)
    token = _Secret(
        help="Bearer token clients must send ('Authorization: Bearer <token>'); empty: no "
        f"authentication. Default: the {TOKEN_ENV} environment variable.",
    ).tag(config=True, secret=True)
    max_body_bytes = Int(1024 * 1024, help="Largest request body accepted (413 above).").tag(
        config=True
    )
    max_events_per_request = Int(10_000, help="Most events in one request (413 above).").tag(
        config=True
    )
    dedup_window = Int(
        100_000,
        help="How many recent event ids (event_id / __event_id__) are remembered to answer a "
        "repeated id as 'duplicate' (0: no deduplication). With serve --processes N each process "
        "remembers its own: a retry that reaches another process is recorded again, with the same "
        "__event_id__.",
    ).tag(config=True)
    cors_allowed_origins = List(
        Unicode(),
        help="Browser origins allowed to call the API (exact, e.g. 'https://lab.example.org').",
    ).tag(config=True)
    body_timeout = Float(
        60.0, help="Seconds a client may take to send a request body, and to stay idle."
    ).tag(config=True)
    retry_after = Int(5, help="Retry-After (seconds) of a 503 when a sink cannot keep up.").tag(
        config=True
    )
    hub_service = Bool(
        False,
        help="Run as a JupyterHub service: serve under $JUPYTERHUB_SERVICE_PREFIX on the address of "
        "$JUPYTERHUB_SERVICE_URL and accept only requests the Hub authenticates (a user's OAuth "
        "cookie, or a Hub API token such as a single-user server's); see telemetry_sinks.server.hub.",
    ).tag(config=True)
    hub_scopes = List(
        Unicode(),
        help="With hub_service: the Hub scopes a request's identity must hold, e.g. "
        "['access:services!service=telemetry']. Empty: any identity the Hub authenticates.",
    ).tag(config=True)

    browser_events = Bool(
        False,
        help="With a token set: also accept events without it, from browsers (no static secret in "
        "pages), under the users' consent and the per-client rate limit. Without a token every "
        "request is treated this way.",
    ).tag(config=True)
    client_rate_limit = Float(
        50.0,
        help="Requests per second each client address may make on average to POST /api/events and "
        "POST /api/consent without the bearer token (429 with Retry-After above; 0: no limit).",
    ).tag(config=True)
    client_rate_burst = Int(
        500, help="Requests a client may make at once before client_rate_limit applies."
    ).tag(config=True)
    trust_forwarded_headers = Bool(
        False,
        help="Take the client address (for rate limits) and scheme from X-Forwarded-For / X-Real-Ip "
        "and X-Forwarded-Proto: set it behind a reverse proxy, never when clients reach the "
        "collector directly.",
    ).tag(config=True)
    browser_sinks = List(
        Union([Unicode(), Dict()]),
        default_value=["collector"],
        help="Where the browser module sends events, besides page-defined sinks: 'collector' (this "
        "collector), 'console' (the browser console), {'type': 'http', 'url': URL, 'format': 'json' "
        "| 'ndjson'} (any URL that accepts them, with CORS for the page's origin).",
    ).tag(config=True)
    browser_sample_rates = Dict(
        help="Share of page sessions (0 to 1) that record a schema in the browser, by schema id "
        "(default 1: every session). Deterministic per session.",
    ).tag(config=True)
    consent_cookie_days = Int(
        365, help="How long the browser keeps a user's consent choice (days)."
    ).tag(config=True)

    eventlog = Instance(EventLog, help="The EventLog events go to (default: built from config).")

    @default("token")
    def _token_from_env(self) -> str:
        return os.environ.get(TOKEN_ENV, "").strip()

    @default("eventlog")
    def _eventlog_from_config(self) -> EventLog:
        return EventLog(config=self.config)

    @validate("port")
    def _check_port(self, proposal: Any) -> int:
        if not 0 <= proposal.value <= 65535:
            raise TraitError(f"Collector.port must be between 0 and 65535, not {proposal.value}.")
        return proposal.value

    @validate("max_body_bytes", "max_events_per_request", "body_timeout")
    def _check_positive(self, proposal: Any) -> Any:
        if proposal.value <= 0:
            raise TraitError(f"Collector.{proposal.trait.name} must be positive, not {proposal.value}.")
        return proposal.value

    @validate("browser_sinks")
    def _check_browser_sinks(self, proposal: Any) -> list[dict[str, Any]]:
        try:
            return check_browser_sinks(proposal.value)
        except ValueError as exc:
            raise TraitError(str(exc)) from None

    @validate("browser_sample_rates")
    def _check_sample_rates(self, proposal: Any) -> dict[str, float]:
        try:
            return check_sample_rates(proposal.value)
        except ValueError as exc:
            raise TraitError(str(exc)) from None

    @validate("client_rate_burst", "consent_cookie_days")
    def _check_at_least_one(self, proposal: Any) -> int:
        if proposal.value < 1:
            raise TraitError(f"Collector.{proposal.trait.name} must be at least 1, not {proposal.value}.")
        return proposal.value

    @validate("dedup_window", "retry_after", "client_rate_limit")
    def _check_non_negative(self, proposal: Any) -> Any:
        if proposal.value < 0:
            raise TraitError(f"Collector.{proposal.trait.name} must be >= 0, not {proposal.value}.")
        return proposal.value

    @validate("cors_allowed_origins")
    def _check_origins(self, proposal: Any) -> list[str]:
        for origin in proposal.value:
            scheme, sep, rest = origin.partition("://")
            if not sep or scheme not in ("http", "https") or not rest or "/" in rest or "*" in rest:
                raise TraitError(
                    f"Collector.cors_allowed_origins: {origin!r} is not an origin; write the exact "
                    "scheme, host and port without a path, e.g. 'https://lab.example.org'."
                )
        return list(proposal.value)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.hub_service:
            self._use_service_address()
        self.eventlog  # noqa: B018 - build it now, so that configuration errors show at start
        self.recent_ids = RecentIds(self.dedup_window)
        self.rate_limiter = ClientRateLimiter(self.client_rate_limit, self.client_rate_burst)
        self.browser_sinks = check_browser_sinks(self.browser_sinks)  # the default, normalized
        self.counters: Counter[str] = Counter(accepted=0, not_recorded=0, duplicate=0, rejected=0)
        self.rate_limited = 0  # requests answered 429
        self.bound_port: int | None = None
        self._server: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def _use_service_address(self) -> None:
        """As a Hub service, listen where $JUPYTERHUB_SERVICE_URL says, unless ip/port were set."""
        from .hub import service_address

        address = service_address()
        if address is None:
            return
        ip, port = address
        mine = self.config.Collector if "Collector" in self.config else {}
        if "ip" not in mine:
            self.ip = ip
        if "port" not in mine:
            self.port = port

    # ------------------------------------------------------------------ state

    @property
    def url(self) -> str:
        """``http://IP:PORT`` of the running server."""
        host = self.ip or "0.0.0.0"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.bound_port if self.bound_port is not None else self.port}"

    def busy_sink(self) -> str | None:
        """The name of the first sink whose ``backpressure()`` says it cannot keep up, or None."""
        for handler in self.eventlog.all_handlers:
            check = getattr(handler, "backpressure", None)
            if not callable(check):
                continue
            try:
                busy = check()
            except Exception:
                _log.exception("backpressure() of %s failed; treating it as not busy", type(handler).__name__)
                continue
            if busy is True:
                return getattr(handler, "sink_name", "") or type(handler).__name__
        return None

    def check_rate(self, request: Any) -> None:
        """Raise a 429 :class:`ApiError` with Retry-After when ``request``'s client is over its limit."""
        wait = self.rate_limiter.acquire(request.remote_ip or "")
        if wait:
            after = self.rate_limiter.retry_after(wait)
            self.rate_limited += 1
            raise ApiError(429, f"too many requests from this client (c.Collector.client_rate_limit = "
                           f"{self.client_rate_limit:g} per second, burst {self.client_rate_burst}); "
                           f"retry after {after} seconds", {"Retry-After": after})

    # ------------------------------------------------------------------ in the caller's loop

    async def listen(self, sockets: list[socket.socket] | None = None) -> int:
        """Start serving on the running event loop; return the bound port.

        ``sockets``: listening sockets to serve on (shared by pre-forked processes)
        instead of binding ``ip`` and ``port``.
        """
        if self.hub_service:
            from .hub import make_hub_app

            app = make_hub_app(self)
        else:
            app = make_app(self)
        server = HTTPServer(
            app,
            max_body_size=self.max_body_bytes,
            body_timeout=self.body_timeout,
            idle_connection_timeout=self.body_timeout,
            decompress_request=True,  # Content-Encoding: gzip bodies, e.g. from HTTPSink(gzip=True)
            xheaders=self.trust_forwarded_headers,
        )
        try:
            sockets = sockets or bind_sockets(self.port, address=self.ip or None)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot listen on {self.ip or '*'}:{self.port}: {exc.strerror}; choose another "
                "port (--port, c.Collector.port; 0 picks a free one)",
            ) from None
        server.add_sockets(sockets)
        self._server = server
        self.bound_port = sockets[0].getsockname()[1]
        return self.bound_port

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Stop accepting, close open connections, flush and close the EventLog's sinks."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            try:
                await asyncio.wait_for(server.close_all_connections(), timeout)
            except asyncio.TimeoutError:
                _log.warning("connections still open after %s seconds; closing anyway", timeout)
        self.close_eventlog()

    def close_eventlog(self) -> None:
        """Flush every sink and close the sinks the EventLog built (once)."""
        if self._closed:
            return
        self._closed = True
        for handler in self.eventlog.all_handlers:
            try:
                handler.flush()
            except Exception:
                _log.exception("flushing %s failed", type(handler).__name__)
        self.eventlog.close()

    # ------------------------------------------------------------------ blocking (CLI)

    def run(
        self, on_ready: Callable[[int], None] | None = None, sockets: list[socket.socket] | None = None
    ) -> None:
        """Serve until SIGTERM or SIGINT, then shut down gracefully.  Blocks."""
        asyncio.run(self._serve_until_signal(on_ready, sockets))

    async def _serve_until_signal(
        self, on_ready: Callable[[int], None] | None, sockets: list[socket.socket] | None
    ) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            port = await self.listen(sockets)
        except BaseException:
            self.close_eventlog()
            raise
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # Windows: no add_signal_handler
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
        if on_ready is not None:
            on_ready(port)
        await stop.wait()
        _log.info("stopping: no new connections; flushing and closing the sinks")
        await self.shutdown()

    # ------------------------------------------------------------------ in a thread (tests, embedding)

    def start(self, timeout: float = 10.0) -> int:
        """Serve from a background thread with its own event loop; return the bound port."""
        if self._thread is not None:
            raise RuntimeError("this Collector is already running; call stop() first")
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self.listen())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=serve, name="telemetry-sinks-collector", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"the collector did not start within {timeout} seconds")
        if failure:
            self._thread = None
            raise failure[0]
        assert self.bound_port is not None
        return self.bound_port

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server started by :meth:`start`, flush and close the sinks."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            self.close_eventlog()
            return
        try:
            asyncio.run_coroutine_threadsafe(self.shutdown(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._loop = self._thread = None

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
