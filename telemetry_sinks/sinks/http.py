"""HTTP sink: batches of events POSTed to a URL as a JSON array or as NDJSON.

The wire format (documented for any endpoint that takes JSON):

* ``format="json"`` (default): the body is a JSON array of payloads, content
  type ``application/json``; ``format="ndjson"``: one payload per line, content
  type ``application/x-ndjson``.  With ``gzip=True`` the body is gzip-compressed
  and sent with ``Content-Encoding: gzip``.
* Each payload is the capsule (or log record payload) with, by default, its
  event id added as ``"__event_id__"``, so that a receiver can drop the
  duplicates that at-least-once delivery can produce.  A payload that already
  carries an ``__event_id__`` (forwarded from another collector) keeps it.
* Any 2xx answer acknowledges the batch.  If the answer is JSON with a
  ``"results"`` list of ``{"index", "status", "error"}`` (what
  ``telemetry-sinks serve`` returns, also with 400), only items with status
  ``"rejected"`` failed, and for good.  408, 425, 429 and 5xx answers and
  connection errors are retried (``Retry-After`` honoured); 401 and 403 (the
  token, credentials or access rules are refused) are retried too, with a warning
  naming what to check, and never dead-lettered; 413 splits the batch in halves,
  down to a single event, which is then dead-lettered; other 4xx answers
  dead-letter the batch with the status and the server's message.  Redirects are
  not followed: a 3xx answer dead-letters the batch with its ``Location`` (set ``url``
  to it).

The transport is ``http.client``'s, as in ``logging.handlers.HTTPHandler``: one
keep-alive connection (TLS with ``https``; the system's CA certificates unless
``verify`` names a bundle), no proxies, no client library to install.  A request is
written with one ``sendall`` of its head and body: the sink's worker gives the GIL
up once to send and once to wait for the answer, not at every step of a general
client, and each hand-over of the GIL to a busy emitting thread can cost it up to
the interpreter's switch interval (5 ms).
"""

from __future__ import annotations

import base64
import gzip as _gzip
import http.client
import json
import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

from traitlets import Bool, CaselessStrEnum, Dict, Float, TraitError, Unicode, Union, validate

from ..delivery import BatchResult, Envelope, RetryableError, send_requests
from ..delivery.envelope import EVENT_ID_FIELD, with_event_id
from ..delivery.retry import error_text, parse_retry_after
from ..delivery.toolkit import error_for_status
from .network import NetworkSink


class HTTPSink(NetworkSink):
    """POST batches of events to ``url`` (``pip install "telemetry-sinks[http]"``)."""

    sink_name = "http"
    required_options = ("url",)
    credentials_help = "its token (or username and password) and headers, and the endpoint's access rules"

    url = Unicode(None, allow_none=True, help="Endpoint to POST batches to.").tag(
        config=True, destination=("URL host", "url")
    )
    format = CaselessStrEnum(
        ["json", "ndjson"], default_value="json", help="JSON array or newline-delimited JSON."
    ).tag(config=True)
    gzip = Bool(False, help="gzip the request body (Content-Encoding: gzip).").tag(config=True)
    headers = Dict(help="Extra request headers.").tag(config=True, secret=True)
    token = Unicode(None, allow_none=True, help="Bearer token (Authorization: Bearer ...).").tag(
        config=True, secret=True
    )
    username = Unicode(None, allow_none=True, help="User name for HTTP basic auth.").tag(config=True)
    password = Unicode(None, allow_none=True, help="Password for HTTP basic auth.").tag(
        config=True, secret=True
    )
    verify = Union(
        [Bool(), Unicode()],
        default_value=True,
        help="Verify TLS certificates: True, False, or the path of a CA bundle.",
    ).tag(config=True)
    client_cert = Unicode(None, allow_none=True, help="Client certificate file (PEM).").tag(config=True)
    client_key = Unicode(None, allow_none=True, help="Client private key file (PEM).").tag(config=True)
    connect_timeout = Float(5.0, help="Seconds to wait for a connection.").tag(config=True)
    read_timeout = Float(30.0, help="Seconds to wait for the answer.").tag(config=True)
    include_event_id = Bool(
        True, help=f"Add each event's id as {EVENT_ID_FIELD!r} so receivers can drop duplicates."
    ).tag(config=True)

    @validate("url")
    def _http_url(self, proposal: Any) -> str | None:
        url = proposal.value
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise TraitError(f"The 'url' trait must be an http:// or https:// URL, not {url!r}.")
        return url

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._connection: Connection | None = None

    # ------------------------------------------------------------------ adapter

    def open(self) -> None:
        headers = dict(self.headers)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        context = None
        if urlsplit(self.url).scheme == "https":
            context = tls_context(self.verify, self.client_cert, self.client_key)
        self._connection = Connection(
            self.url,
            headers,
            context=context,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
        )

    def close_backend(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def encode_body(self, batch: list[Envelope]) -> tuple[bytes, dict[str, str]]:
        """The request body and its content headers for ``batch``."""
        items = [with_event_id(e) for e in batch] if self.include_event_id else [e.data for e in batch]
        if self.format == "ndjson":
            body = ("\n".join(items) + "\n").encode("utf-8")
            headers = {"Content-Type": "application/x-ndjson"}
        else:
            body = ("[" + ",".join(items) + "]").encode("utf-8")
            headers = {"Content-Type": "application/json"}
        if self.gzip:
            body = _gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        return body, headers

    def send_batch(self, batch: list[Envelope]) -> BatchResult:
        return send_requests([batch], self._post)

    def _post(self, request: list[Envelope]) -> BatchResult | None:
        """POST one request; the answer classified (see the module doc)."""
        body, headers = self.encode_body(request)
        try:
            response = self._connection.post(body, headers)  # type: ignore[union-attr]  # open() ran first
        except (OSError, http.client.HTTPException) as exc:
            raise RetryableError(self.mask(error_text(exc))) from None
        status = response.status
        results = _per_event_results(response, len(request))
        if 200 <= status < 300 or (status == 400 and results is not None):
            outcome = BatchResult()
            for index, item in enumerate(results or ()):
                if item.get("status") == "rejected":
                    error = item.get("error") or {}
                    reason = error.get("message") or error.get("reason") or "rejected by the endpoint"
                    outcome.reject(request[index].event_id, f"HTTP {status}: {reason}")
            return outcome
        location = response.headers.get("Location") if 300 <= status < 400 else None
        moved = f" (redirected to {location}: set url to it)" if location else ""
        reason = self.mask(f"HTTP {status}: {_message(response)}{moved}")
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise error_for_status(status, reason, retry_after=retry_after)


@dataclass
class Response:
    """An answer: ``status``, ``reason``, ``headers`` and the whole ``body``."""

    status: int
    reason: str
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(self.headers.get_content_charset() or "utf-8", errors="replace")

    def json(self) -> Any:
        """The body decoded as JSON (ValueError if it is not)."""
        return json.loads(self.text)


#: Errors of a kept-alive connection the server closed while it was idle: made anew, sent once more.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Connection:
    """One kept-alive HTTP/1.1 connection that POSTs to ``url`` with ``headers`` on every request.

    ``url`` is one the sink's ``url`` validator accepted; ``context`` (TLS) is given for
    https.  A request is one ``sendall`` of head and body; the answer is parsed by
    ``http.client.HTTPResponse``.  The connection is made on first use, after the server
    closed it, and once more at once when a reused connection turns out closed.
    """

    def __init__(self, url: str, headers: Mapping[str, str], *, context: ssl.SSLContext | None,
                 connect_timeout: float, read_timeout: float) -> None:  # fmt: skip
        parts = urlsplit(url)
        self._address = (parts.hostname or "", parts.port or (443 if context is not None else 80))
        self._context = context
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        lines = [f"POST {target} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity",
                 *(f"{name}: {value}" for name, value in headers.items())]  # fmt: skip
        self._head = "\r\n".join(lines) + "\r\n"
        self._sock: socket.socket | None = None

    def post(self, body: bytes, headers: Mapping[str, str]) -> Response:
        """Send ``body`` with ``headers`` (besides the connection's); return the whole answer."""
        head = self._head + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        message = f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body
        reused = self._sock is not None
        try:
            return self._exchange(message)
        except _STALE:
            if not reused:
                raise
        return self._exchange(message)

    def _exchange(self, message: bytes) -> Response:
        sock = self._sock if self._sock is not None else self._connect()
        try:
            sock.sendall(message)
            answer = http.client.HTTPResponse(sock, method="POST")
            try:
                answer.begin()
                body = answer.read()
            finally:
                answer.close()
        except BaseException:
            self.close()
            raise
        if answer.will_close:
            self.close()
        return Response(answer.status, answer.reason, answer.headers, body)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self._address, timeout=self._connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_hostname=self._address[0])
            sock.settimeout(self._read_timeout)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        return sock

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def tls_context(verify: bool | str, client_cert: str | None, client_key: str | None) -> ssl.SSLContext:
    """The TLS settings of ``verify`` (True, False or a CA bundle file or directory) and the
    client certificate."""
    if isinstance(verify, str):
        if os.path.isdir(verify):
            context = ssl.create_default_context(capath=verify)
        else:
            context = ssl.create_default_context(cafile=verify)
    else:
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    return context


def _per_event_results(response: Response, count: int) -> list[dict] | None:
    """The ``results`` list of a collector-style answer, if it has one for every event."""
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list) or len(results) != count:
        return None
    return [r if isinstance(r, dict) else {} for r in results]


def _message(response: Response) -> str:
    """A short description of an error answer (its JSON ``error`` or the start of its text)."""
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("error"):
            error = body["error"]
            return str(error.get("message", error) if isinstance(error, dict) else error)[:300]
    except ValueError:
        pass
    return (response.text or response.reason or "").strip()[:300]


__all__ = ["HTTPSink", "EVENT_ID_FIELD"]
