"""Bulk indexing into Elasticsearch or OpenSearch: the mechanism both sinks share.

:class:`BulkIndexSink` turns a batch of the delivery core into one ``_bulk``
request and the answer into per-event results.  The two sinks on top of it only
build their client and translate its exceptions
(:mod:`~telemetry_sinks.sinks.elasticsearch`, :mod:`~telemetry_sinks.sinks.opensearch`).

* Each event is one ``create`` (default) or ``index`` action.  Its ``_id`` is the
  event id, so a batch sent twice (a retry after a timeout, a replay from the
  spool) never makes duplicates: with ``create`` the second copy answers 409
  "version conflict, document already exists", which counts as delivered.
* The document is the event's JSON text as it was encoded, sent without being
  decoded and re-encoded; ``_source`` equals the capsule.
* The index is a template: ``{field}`` takes a capsule field, ``%Y``-style
  directives format the capsule's ``__timestamp__`` (UTC), and the result is made
  index-safe (lowercase, no ``\\ / * ? " < > | , # :`` or spaces, not starting
  with ``- _ +``).

How failures are classified.  The rule: a bad document is dead-lettered (with
the server's reason) and the rest of its batch indexed; a cluster or a
configuration that is not ready is waited for, because dead-lettering every event
while an operator fixes credentials would only make them replay the file later.

=========================================  =========================================
per item                                   outcome
=========================================  =========================================
2xx; 409 of a ``create``                   delivered (409: it is already there)
408, 425, 429, 5xx                         retried (e.g. es_rejected_execution)
401, 403                                   retried, never dead-lettered: credentials
                                           or privileges refused (the delivery core
                                           warns and counts ``auth_failures``)
404; a missing ingest pipeline;            retried, with a warning at most every
index_closed / cluster_block exceptions    ``drop_report_interval``: operator
                                           problems (a missing, closed or read-only
                                           index)
any other status (400                      dead-lettered with the status, error
mapper_parsing_exception,                  type and reason
document_parsing_exception, ...)
=========================================  =========================================

The whole request: no answer (connection refused or reset, timeout, TLS
failure), 401, 403, 404, 408, 425, 429, 5xx, and 406 / 415 /
media_type_header_exception (a client that does not match the server's version)
are retried (``Retry-After`` honoured where the client exposes it: the
elasticsearch client does, opensearch-py does not); 413 splits the batch in
halves down to a single event, which is then dead-lettered; any other status
dead-letters the batch.  An event larger than ``max_document_bytes`` is
dead-lettered without being sent.

"Retried" means the delivery core's retries, until the cluster takes the events:
with ``spool_dir`` they wait on disk, without one in the bounded queue.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from traitlets import Any as AnyTrait
from traitlets import Bool, CaselessStrEnum, Dict, Float, Int, List, TraitError, Unicode, Union, validate

from ..capsule import event_time, format_timestamp
from ..delivery import (
    AuthError,
    BatchResult,
    Envelope,
    PermanentError,
    RequestRefused,
    RetryableError,
    send_requests,
)
from ..delivery.retry import error_text, is_auth_status, is_retryable_status
from ..errors import SinkConfigError
from ..masking import mask_url_password
from .naming import TEMPLATE_ERRORS, NameOption, NameRule, name_template
from .network import NetworkSink

log = logging.getLogger("telemetry_sinks.delivery.bulk")

_MiB = 1024 * 1024
#: The rule for index (and data stream) names of Elasticsearch and OpenSearch.
INDEX_NAME = NameRule(
    "index name",
    r'[\\/*?"<>|,#:\s]',
    255,
    'Use lowercase letters without \\ / * ? " < > | , # : or spaces, not starting with - _ +',
    length_in_bytes=True,
    lowercase=True,
    strip_leading="-_+",
    empty="unknown",
    reserved=(".", ".."),
)
#: ``name`` made a valid index name: lowercase, illegal characters as ``_``.
index_safe = INDEX_NAME.safe
#: Statuses (per item or for the whole request) and error types that mean "the cluster or
#: its configuration is not ready" rather than "this document is bad": retried.
OPERATOR_STATUSES = frozenset({401, 403, 404})
OPERATOR_ERROR_TYPES = frozenset(
    {"index_closed_exception", "cluster_block_exception", "media_type_header_exception"}
)
#: Whole-request statuses of content negotiation: a client that does not match the server
#: (e.g. elasticsearch-py 9 against Elasticsearch 8).
MISMATCH_STATUSES = frozenset({406, 415})
#: Only what the sink needs from the bulk answer.
FILTER_PATH = "errors,items.*.status,items.*.error"


class _Action:
    """One event of a bulk request: its envelope and the index it goes to."""

    __slots__ = ("envelope", "index")

    def __init__(self, envelope: Envelope, index: str) -> None:
        self.envelope = envelope
        self.index = index

    @property
    def event_id(self) -> str:
        return self.envelope.event_id


@dataclass
class RequestFailure:
    """A whole ``_bulk`` request that failed: its HTTP status (None: no answer) and why."""

    status: int | None
    message: str
    retry_after: float | None = None
    error_type: str | None = None


def describe_item_error(status: int, error: Any) -> str:
    """``HTTP 400 mapper_parsing_exception: failed to parse ... (caused by ...)``."""
    if not isinstance(error, dict):
        return f"HTTP {status}: {error or 'failed'}"[:1000]
    text = f"HTTP {status} {error.get('type', 'error')}: {error.get('reason', '')}"
    cause = error.get("caused_by")
    if isinstance(cause, dict) and cause.get("reason"):
        text += f" (caused by {cause.get('type', 'error')}: {cause['reason']})"
    return text[:1000]


DELIVERED, RETRY, REJECT, SPLIT = "delivered", "retry", "reject", "split"


def operator_problem(status: int | None, error: Any = None) -> bool:
    """True if a failure is the cluster's or the configuration's (credentials, privileges,
    a missing index or ingest pipeline, a closed or blocked index), not the document's."""
    if status in OPERATOR_STATUSES:
        return True
    if not isinstance(error, dict):
        return False
    reason = str(error.get("reason", ""))
    missing_pipeline = "pipeline with id" in reason and "does not exist" in reason
    return missing_pipeline or error.get("type") in OPERATOR_ERROR_TYPES


def classify_item(status: Any, error: Any, create: bool) -> str:
    """DELIVERED, RETRY or REJECT for one item of a bulk answer (see the module doc).

    ``create``: the action was a ``create`` with the event id as ``_id``, so a 409
    means the document is already there.
    """
    if not isinstance(status, int):
        return RETRY
    if 200 <= status < 300 or (status == 409 and create):
        return DELIVERED
    if is_retryable_status(status) or operator_problem(status, error):
        return RETRY
    return REJECT


def classify_request(status: int | None, error_type: str | None = None) -> str:
    """RETRY, REJECT or SPLIT for a whole bulk request that failed with ``status``
    (None: no answer at all) and the server's error type."""
    if status == 413:
        return SPLIT
    if (
        status is None
        or status < 400  # an answer that is not a bulk answer, e.g. from another product
        or is_retryable_status(status)
        or status in MISMATCH_STATUSES
        or operator_problem(status, {"type": error_type})
    ):
        return RETRY
    return REJECT


class BulkIndexSink(NetworkSink):
    """Index events with the ``_bulk`` API (see the module doc).

    Subclasses set ``backend_name`` and implement :meth:`make_client`,
    :meth:`bulk_request` and :meth:`request_failure`.
    """

    #: "Elasticsearch" or "OpenSearch", for messages.
    backend_name: ClassVar[str] = ""
    credentials_help = (
        "its username and password (or api_key, or AWS signing), and that the user's role may "
        "write (create_doc or index privileges) to the index"
    )

    hosts = Union(
        [Unicode(), List(Unicode())],
        default_value="http://localhost:9200",
        help='Nodes to connect to: "https://host:9200", "https://h1:9200,https://h2:9200" or a list.',
    ).tag(config=True, destination=("hosts", "hosts"))
    index = NameOption(
        INDEX_NAME,
        "events-{__schema__}-%Y.%m.%d",
        strftime=True,
        help="Index (or data stream, or alias) to write to. A template: {field} takes a capsule "
        "field, %Y %m %d %H ... format the event's __timestamp__ (UTC); the result is made "
        "index-safe (lowercase; characters \\ / * ? \" < > | , # : and spaces become '_').",
    ).tag(config=True, destination=("index", "text"))
    op_type = CaselessStrEnum(
        ["create", "index"],
        default_value="create",
        help="Bulk action: 'create' (required by data streams; an event that is already there "
        "counts as delivered) or 'index' (overwrites a document with the same id).",
    ).tag(config=True)
    document_ids = Bool(
        True,
        help="Use each event's id as the document _id, so that a retried batch never creates "
        "duplicates. False: the cluster makes ids (a retry may then duplicate events).",
    ).tag(config=True)
    timestamp_field = Unicode(
        None,
        allow_none=True,
        help="Also store the event's __timestamp__ in this field, e.g. '@timestamp' (needed by "
        "data streams and by the time filters of Kibana / OpenSearch Dashboards).",
    ).tag(config=True)
    pipeline = Unicode(None, allow_none=True, help="Ingest pipeline to run on every event.").tag(
        config=True
    )
    max_document_bytes = Int(
        10 * _MiB,
        help="Events larger than this (bytes of JSON) are dead-lettered without being sent. "
        "0: no limit of our own (the cluster's http.max_content_length, 100 MB by default, "
        "still applies).",
    ).tag(config=True)
    request_timeout = Float(30.0, help="Seconds to wait for the answer to a bulk request.").tag(
        config=True
    )
    http_compress = Bool(False, help="gzip request bodies.").tag(config=True)

    username = Unicode(None, allow_none=True, help="User name for HTTP basic auth.").tag(
        config=True
    )
    password = Unicode(None, allow_none=True, help="Password for HTTP basic auth.").tag(
        config=True, secret=True
    )
    verify_certs = Bool(True, help="Verify the nodes' TLS certificates.").tag(config=True)
    ca_certs = Unicode(
        None, allow_none=True, help="CA bundle (PEM) to verify the nodes' certificates."
    ).tag(config=True)
    client_cert = Unicode(None, allow_none=True, help="Client certificate file (PEM).").tag(
        config=True
    )
    client_key = Unicode(None, allow_none=True, help="Client private key file (PEM).").tag(
        config=True
    )
    client_options = Dict(
        help="Any other keyword argument of the client class, passed as it is."
    ).tag(config=True, secret=True)
    client = AnyTrait(
        None,
        allow_none=True,
        help="A client instance to use instead of building one (Python only). The connection, "
        "auth and TLS options are then ignored, and the sink never closes it; a forked child "
        "process keeps using it.",
    ).tag(config=True, secret=True)

    @validate("max_document_bytes")
    def _check_max_document_bytes(self, proposal: Any) -> int:
        if proposal.value < 0:
            raise TraitError(f"The 'max_document_bytes' trait must be 0 or more, not {proposal.value}.")
        return proposal.value

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._next_warning = 0.0
        self._index = name_template(self, "index")
        # A given client is ready as it is: usable at once, and never closed by the sink.
        self._client: Any = self.client
        self._owns_client = False
        if self.client is None:  # build one now, so that bad options fail at construction
            try:
                self.make_client().close()
            except Exception as exc:
                self.close()
                raise SinkConfigError(
                    f"{type(self).__name__} cannot build its {self.backend_name} client from "
                    f"these options: {self.mask(error_text(exc))}"
                ) from None

    def __repr__(self) -> str:
        return mask_url_password(super().__repr__())  # also inside the list of hosts

    def secret_fragments(self) -> list[str]:
        """Forms of the secrets that may show in text besides their values: the encoded
        basic-auth credentials, and, in subclasses, parts of keys."""
        if self.username is None or not self.password:
            return []
        return [base64.b64encode(f"{self.username}:{self.password}".encode()).decode()]

    # ------------------------------------------------------------------ for subclasses

    def make_client(self) -> Any:
        """A new client built from the options."""
        raise NotImplementedError

    def bulk_request(self, client: Any, body: str, params: dict[str, str]) -> dict[str, Any]:
        """POST ``body`` (NDJSON) to ``_bulk`` with query ``params``; return the decoded answer."""
        raise NotImplementedError

    def request_failure(self, exc: Exception) -> RequestFailure | None:
        """What ``exc`` from the client means, or None for an exception it does not know."""
        raise NotImplementedError

    def host_list(self) -> list[str]:
        """``hosts`` as a list."""
        hosts = self.hosts
        if isinstance(hosts, str):
            hosts = hosts.split(",")
        return [h.strip() for h in hosts if h.strip()]

    def tls_options(self) -> dict[str, Any]:
        """The TLS keyword arguments both clients share."""
        options: dict[str, Any] = {"verify_certs": self.verify_certs}
        for name in ("ca_certs", "client_cert", "client_key"):
            if getattr(self, name):
                options[name] = getattr(self, name)
        return options

    # ------------------------------------------------------------------ adapter

    def open(self) -> None:
        if self.client is not None:
            self._client, self._owns_client = self.client, False
        else:
            self._client, self._owns_client = self.make_client(), True

    def close_backend(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            client.close()

    def index_for(self, envelope: Envelope) -> str:
        """The index ``envelope`` goes to (the ``index`` template rendered)."""
        index = self._index
        assert index is not None  # the option has a default and cannot be None
        if index.fixed:
            return index.template
        payload = envelope.payload
        return index.render(payload, event_time(payload))

    def document(self, envelope: Envelope) -> str:
        """The JSON source of ``envelope``'s document: its encoded payload, as it is."""
        data = envelope.data
        field = self.timestamp_field
        if not field or not data.startswith("{"):
            return data
        payload = envelope.payload
        when = event_time(payload)
        if when is None or field in payload:
            return data
        stamp = format_timestamp(when)  # one format every date mapping reads
        head = f"{{{json.dumps(field)}:{json.dumps(stamp)}"
        return head + "}" if data == "{}" else head + "," + data[1:]

    def action(self, envelope: Envelope, index: str) -> str:
        """The bulk action line of ``envelope``."""
        meta = {"_index": index}
        if self.document_ids:
            meta["_id"] = envelope.event_id
        return json.dumps({self.op_type.lower(): meta}, separators=(",", ":"))

    def send_batch(self, batch: list[Envelope]) -> BatchResult:
        result = BatchResult()
        actions = []
        limit = self.max_document_bytes
        for envelope in batch:
            if limit and envelope.size > limit:
                result.reject(
                    envelope.event_id,
                    f"event of {envelope.size} bytes is larger than max_document_bytes "
                    f"({limit} bytes)",
                )
                continue
            try:
                actions.append(_Action(envelope, self.index_for(envelope)))
            except TEMPLATE_ERRORS as exc:
                result.reject(envelope.event_id, f"cannot render the index name: {exc}")
        if actions:  # one bulk request per batch: the batch limits are the request's
            result.merge(send_requests([actions], self._bulk))
        return result

    def _bulk(self, actions: list[_Action]) -> BatchResult | None:
        """One ``_bulk`` request for ``actions``; the answer classified (see the module doc)."""
        lines = []
        for action in actions:
            lines.append(self.action(action.envelope, action.index))
            lines.append(self.document(action.envelope))
        body = "\n".join(lines) + "\n"
        params = {"filter_path": FILTER_PATH}
        if self.pipeline:
            params["pipeline"] = self.pipeline
        try:
            answer = self.bulk_request(self._client, body, params)
        except Exception as exc:
            failure = self.request_failure(exc)
            if failure is None:
                raise  # unknown: the delivery core retries the batch
            raise self._request_error(failure, len(actions), len(body.encode("utf-8"))) from None
        items = answer.get("items") if isinstance(answer, dict) else None
        if not isinstance(items, list) or len(items) != len(actions):
            count = len(items) if isinstance(items, list) else "no"
            raise RetryableError(
                f"the {self.backend_name} bulk answer has {count} items for {len(actions)} actions"
            )
        if not answer.get("errors"):
            return None
        result = BatchResult()
        create = self.op_type.lower() == "create" and self.document_ids
        for action, item in zip(actions, items):
            outcome = next(iter(item.values()), None) if isinstance(item, dict) else None
            if not isinstance(outcome, dict):
                outcome = {"status": 500, "error": "no result for this action"}
            status, error = outcome.get("status", 500), outcome.get("error")
            verdict = classify_item(status, error, create)
            if verdict == DELIVERED:
                continue
            reason = f"index {action.index}: {describe_item_error(status, error)}"
            if verdict == RETRY:
                auth = is_auth_status(status)
                if operator_problem(status, error) and not auth:
                    self._warn_operator(reason)
                result.retry(action.event_id, reason, auth=auth)
            else:
                result.reject(action.event_id, reason)
        return result

    def _request_error(self, failure: RequestFailure, count: int, size: int) -> Exception:
        """What a failed bulk request of ``count`` actions (``size`` bytes) means for them."""
        status = failure.status
        verdict = classify_request(status, failure.error_type)
        if verdict == SPLIT:
            if count > 1:
                return RequestRefused(f"HTTP 413: {failure.message}", too_large=True)
            return PermanentError(
                f"a request of {size} bytes for this one event is too large (HTTP 413: the "
                f"cluster's http.max_content_length or a proxy's body limit): "
                f"{failure.message}"[:1000]
            )
        where = "no answer" if status is None else f"HTTP {status}"
        reason = f"bulk request failed ({where}): {failure.message}"[:1000]
        if verdict == REJECT:
            return PermanentError(reason)
        if is_auth_status(status):
            return AuthError(reason)
        if status is not None and status >= 400 and not is_retryable_status(status):
            reason += " (check the sink's hosts, credentials, privileges and client version)"
            self._warn_operator(reason)
        return RetryableError(reason, retry_after=failure.retry_after)

    def _warn_operator(self, reason: str) -> None:
        """Log a problem only an operator can fix, at most once per ``drop_report_interval``."""
        now = time.monotonic()
        if now < self._next_warning:
            return
        self._next_warning = now + self.drop_report_interval
        log.warning("sink %r: %s; the events are retried", self.label, self.mask(reason))


__all__ = [
    "BulkIndexSink",
    "RequestFailure",
    "classify_item",
    "classify_request",
    "describe_item_error",
    "index_safe",
    "operator_problem",
]
