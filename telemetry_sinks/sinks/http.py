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
  dead-letter the batch with the status and the server's message.
"""

from __future__ import annotations

import gzip as _gzip
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from traitlets import Bool, CaselessStrEnum, Dict, Float, Int, Unicode, Union

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
    username = Unicode(None, allow_none=True, help="User name for HTTP basic auth.").tag(
        config=True
    )
    password = Unicode(None, allow_none=True, help="Password for HTTP basic auth.").tag(
        config=True, secret=True
    )
    verify = Union(
        [Bool(), Unicode()],
        default_value=True,
        help="Verify TLS certificates: True, False, or the path of a CA bundle.",
    ).tag(config=True)
    client_cert = Unicode(None, allow_none=True, help="Client certificate file (PEM).").tag(
        config=True
    )
    client_key = Unicode(None, allow_none=True, help="Client private key file (PEM).").tag(
        config=True
    )
    connect_timeout = Float(5.0, help="Seconds to wait for a connection.").tag(config=True)
    read_timeout = Float(30.0, help="Seconds to wait for the answer.").tag(config=True)
    pool_connections = Int(2, help="Connections kept alive to the endpoint.").tag(config=True)
    include_event_id = Bool(
        True, help=f"Add each event's id as {EVENT_ID_FIELD!r} so receivers can drop duplicates."
    ).tag(config=True)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._session: requests.Session | None = None

    # ------------------------------------------------------------------ adapter

    def open(self) -> None:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.pool_connections, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update(self.headers)
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        elif self.username is not None:
            session.auth = (self.username, self.password or "")
        session.verify = self.verify
        if self.client_cert:
            session.cert = (self.client_cert, self.client_key) if self.client_key else self.client_cert
        session.trust_env = False
        self._session = session

    def close_backend(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

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
            response = self._session.post(  # type: ignore[union-attr]  # open() ran first
                self.url,
                data=body,
                headers=headers,
                timeout=(self.connect_timeout, self.read_timeout),
            )
        except requests.RequestException as exc:
            raise RetryableError(self.mask(error_text(exc))) from None
        status = response.status_code
        results = _per_event_results(response, len(request))
        if 200 <= status < 300 or (status == 400 and results is not None):
            outcome = BatchResult()
            for index, item in enumerate(results or ()):
                if item.get("status") == "rejected":
                    error = item.get("error") or {}
                    reason = error.get("message") or error.get("reason") or "rejected by the endpoint"
                    outcome.reject(request[index].event_id, f"HTTP {status}: {reason}")
            return outcome
        reason = self.mask(f"HTTP {status}: {_message(response)}")
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise error_for_status(status, reason, retry_after=retry_after)


def _per_event_results(response: requests.Response, count: int) -> list[dict] | None:
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


def _message(response: requests.Response) -> str:
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
