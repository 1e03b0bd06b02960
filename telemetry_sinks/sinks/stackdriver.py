"""Google Cloud Logging (Stackdriver) sink: every capsule as a log entry's ``jsonPayload``.

Built on google-cloud-logging: a ``google.cloud.logging.Client`` (given, or built
from ``project``, ``credentials_file`` / ``anonymous`` / Application Default
Credentials, ``api_endpoint`` and ``use_grpc``) sends each batch with one
``entries.write`` call per request, through the client's own connection (REST)
or its generated ``LoggingServiceV2Client`` (gRPC), with ``partialSuccess`` set,
the library's retries off (the delivery core retries) and ``request_timeout``.
So the outcome of every entry is known:

* an answer without error acknowledges the request;
* an error with a ``WriteLogEntriesPartialErrors`` detail names the failed
  entries by index: the others were written; each failed one is retried or
  dead-lettered by its own status;
* any other error concerns the whole request: ``RESOURCE_EXHAUSTED`` (429),
  ``UNAVAILABLE`` and other 5xx, ``DEADLINE_EXCEEDED``, connection errors and
  timeouts are retried with backoff (honouring ``RetryInfo`` and
  ``Retry-After``); ``UNAUTHENTICATED`` (401), ``PERMISSION_DENIED`` (403) and
  credentials that cannot be refreshed are retried too, with a warning naming what
  to check, and never dead-lettered; ``INVALID_ARGUMENT`` (400) and other 4xx
  answers dead-letter the request's entries with the API's message.

Limits: an entry larger than ``max_entry_bytes`` (256 KiB, the API's limit) is
dead-lettered before sending; a batch is split into requests of at most
``max_request_entries`` entries and ``max_request_bytes`` bytes.

Each entry has ``logName`` ``projects/PROJECT/logs/LOG_ID`` (``log_name``, a
template over the capsule, made a valid LOG_ID), the monitored resource
(``resource_type``, ``resource_labels``), ``labels``, ``timestamp`` (the
capsule's ``__timestamp__``, a record's ``timestamp``), ``severity`` (INFO for
capsules, the record's level for plain log records) and ``insertId`` (the
event id, so Cloud Logging drops the duplicates at-least-once delivery can
make).
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from typing import Any

import google.api_core.exceptions as gexc
import google.auth.exceptions as gauth
from google.cloud import logging as gcl
from traitlets import Bool, Dict, Float, Int, TraitError, Unicode, validate

from ..capsule import CANONICAL_TIMESTAMP, capsule_head, event_time, format_timestamp
from ..delivery import (
    AuthError,
    BatchResult,
    Envelope,
    PermanentError,
    RetryableError,
    send_requests,
    split_requests,
)
from ..delivery.retry import error_text, is_auth_status, is_retryable_status, parse_retry_after
from ..errors import SinkConfigError
from .naming import TEMPLATE_ERRORS, NameOption, NameRule, name_template
from .network import NetworkSink

#: Cloud Logging's rule for a LOG_ID.
LOG_NAME = NameRule(
    "log name", r"[^A-Za-z0-9/_\-.]", 511, "Use at most 511 of the characters A-Z a-z 0-9 / _ - ."
)
#: ``name`` as a LOG_ID: characters other than ``A-Za-z0-9/_-.`` become ``_``.
log_id_safe = LOG_NAME.safe
_PLAIN_ID = re.compile(r"[A-Za-z0-9._:-]+")  # needs no JSON escaping
PARTIAL_ERRORS = "google.logging.v2.WriteLogEntriesPartialErrors"

#: gRPC status codes (numbers) worth retrying: the same entry may be written later.
_RETRYABLE_CODES = frozenset({1, 2, 4, 8, 10, 13, 14})
#: PERMISSION_DENIED and UNAUTHENTICATED: the credentials or the roles are refused (retried).
_AUTH_CODES = frozenset({7, 16})
_CODE_NAMES = {
    0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
    13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}  # fmt: skip

#: Python level names -> Cloud Logging severities.
SEVERITIES = {
    "DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING", "WARN": "WARNING",
    "ERROR": "ERROR", "CRITICAL": "CRITICAL", "FATAL": "CRITICAL", "NOTSET": "DEFAULT",
}  # fmt: skip


def severity_of(payload: Any) -> str:
    """INFO for capsules; the level of a plain log record's payload; DEFAULT otherwise."""
    if not isinstance(payload, dict) or "__schema__" in payload:
        return "INFO"
    level = payload.get("level")
    if isinstance(level, str):
        return SEVERITIES.get(level.upper(), "DEFAULT")
    return "INFO"


def rfc3339(payload: Any) -> str | None:
    """The event time of a capsule (``__timestamp__``) or record (``timestamp``), RFC 3339 UTC."""
    when = event_time(payload)
    return None if when is None else format_timestamp(when)


class _Entry:
    """One event as a log entry: its JSON text (payload spliced in), size and envelope.

    ``head`` is the JSON of the entry's other fields without the closing brace.
    """

    __slots__ = ("envelope", "head", "size")

    def __init__(self, envelope: Envelope, head: str) -> None:
        self.envelope = envelope
        self.head = head
        self.size = len(head) + len(',"jsonPayload":}') + envelope.size

    @property
    def event_id(self) -> str:
        return self.envelope.event_id

    def json(self) -> str:
        return f'{self.head},"jsonPayload":{self.envelope.data}}}'

    def mapping(self) -> dict[str, Any]:
        payload = self.envelope.payload
        head = json.loads(self.head + "}")
        return {**head, "jsonPayload": payload if isinstance(payload, dict) else {"value": payload}}


class StackdriverSink(NetworkSink):
    """Send capsules to Google Cloud Logging (``pip install "telemetry-sinks[stackdriver]"``).

    ``client``, a ready ``google.cloud.logging.Client``, is a Python-only keyword
    argument (not from config files, never shown in ``repr()``); the sink does
    not close it.  Without it the client is built from the options.
    """

    sink_name = "stackdriver"
    credentials_help = (
        "credentials_file (or Application Default Credentials) and that its account has "
        "roles/logging.logWriter on the project"
    )

    log_name = NameOption(
        LOG_NAME,
        "telemetry-events",
        help='Log name (LOG_ID), or a template over the capsule such as "events.{__schema__}" '
        "(characters other than A-Za-z0-9/_-. become '_').",
    ).tag(config=True, destination=("log name", "text"))
    project = Unicode(
        None,
        allow_none=True,
        help="Google Cloud project the entries are written to. None: the client's, from the "
        "credentials or GOOGLE_CLOUD_PROJECT.",
    ).tag(config=True, destination=("project", "text"))
    resource_type = Unicode(
        "global", help='Monitored resource type, e.g. "global", "gce_instance", "k8s_container".'
    ).tag(config=True)
    resource_labels = Dict(
        help='Labels of the monitored resource, e.g. {"instance_id": ..., "zone": ...}.'
    ).tag(config=True)
    labels = Dict(help="Labels added to every entry.").tag(config=True)
    credentials_file = Unicode(
        None,
        allow_none=True,
        help="Service account key (or other credentials) JSON file. None: Application Default "
        "Credentials.",
    ).tag(config=True)
    anonymous = Bool(
        False, help="Send without credentials (for a local stand-in of the API)."
    ).tag(config=True)
    api_endpoint = Unicode(
        None,
        allow_none=True,
        help="API endpoint, e.g. a private endpoint. None: logging.googleapis.com.",
    ).tag(config=True, destination=("endpoint host", "url"))
    use_grpc = Bool(
        False, help="Use the gRPC transport instead of REST (JSON over HTTP/1.1)."
    ).tag(config=True)
    request_timeout = Float(30.0, help="Timeout of each entries.write call, in seconds.").tag(
        config=True
    )
    max_entry_bytes = Int(
        256 * 1024, help="Largest entry the API takes; a larger one is dead-lettered."
    ).tag(config=True)
    max_request_entries = Int(1000, help="Most entries in one entries.write call.").tag(
        config=True
    )
    max_request_bytes = Int(
        9 * 1024 * 1024, help="Largest entries.write request body (the API's limit is 10 MiB)."
    ).tag(config=True)

    @validate("resource_labels", "labels")
    def _check_labels(self, proposal: Any) -> Any:
        for key, value in proposal.value.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TraitError(
                    f"The '{proposal.trait.name}' trait of a StackdriverSink maps strings to "
                    f"strings, not {key!r}: {value!r}."
                )
        return proposal.value

    @validate("max_entry_bytes", "max_request_entries", "max_request_bytes")
    def _check_limits(self, proposal: Any) -> Any:
        if proposal.value < 1:
            raise TraitError(
                f"The '{proposal.trait.name}' trait must be 1 or more, not {proposal.value}."
            )
        return proposal.value

    def __init__(self, *, client: Any = None, **options: Any) -> None:
        self._given_client = client
        self._client: Any = None
        self._project: str | None = None
        super().__init__(**options)
        problem = None
        if self.anonymous and self.credentials_file:
            problem = "takes credentials_file or anonymous=True, not both"
        elif self.credentials_file and not os.path.isfile(os.path.expanduser(self.credentials_file)):
            problem = f"option 'credentials_file': no such file {self.credentials_file!r}"
        elif client is not None and not hasattr(client, "logging_api"):
            problem = f"'client' must be a google.cloud.logging.Client, not {type(client).__name__}"
        elif client is not None and (
            self.anonymous or self.credentials_file or self.api_endpoint or self.use_grpc
        ):
            problem = (
                "options credentials_file, anonymous, api_endpoint and use_grpc build a client: "
                "they cannot be used with client=..., which is configured already"
            )
        if problem:
            self.close()
            raise SinkConfigError(f"StackdriverSink {problem}.")
        self._log_name = name_template(self, "log_name")

    # ------------------------------------------------------------------ client

    def open(self) -> None:
        client = self._given_client
        if client is None:
            client = self.build_client()
        project = self.project or getattr(client, "project", None)
        if not project:
            raise RuntimeError(
                "StackdriverSink has no project: set project=... (c.StackdriverSink.project) or "
                "GOOGLE_CLOUD_PROJECT"
            )
        self._project = project
        self._client = client

    def build_client(self) -> Any:
        """A ``google.cloud.logging.Client`` from the options."""
        credentials = None
        project = self.project
        if self.anonymous:
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()
        elif self.credentials_file:
            credentials, file_project = _load_credentials(
                os.path.expanduser(self.credentials_file), list(gcl.Client.SCOPE)
            )
            project = project or file_project
        client_options = {"api_endpoint": self.api_endpoint} if self.api_endpoint else None
        try:
            return gcl.Client(
                project=project,
                credentials=credentials,
                _use_grpc=self.use_grpc,
                client_options=client_options,
            )
        except Exception as exc:
            if project:
                raise
            raise RuntimeError(
                "StackdriverSink has no project and none could be found: set project=... "
                f"(c.StackdriverSink.project) or GOOGLE_CLOUD_PROJECT ({_api_error_text(exc)})"
            ) from None

    def close_backend(self) -> None:
        client, self._client = self._client, None
        if client is None or client is self._given_client:
            return
        try:
            gapic = getattr(client._logging_api, "_gapic_api", None)
            if gapic is not None:
                gapic.transport.close()
            client.close()
        except Exception:  # pragma: no cover - closing is best effort
            pass

    # ------------------------------------------------------------------ entries

    def log_name_for(self, payload: Any) -> str:
        """The full ``logName`` of an event: ``projects/P/logs/LOG_ID`` (LOG_ID URL-encoded)."""
        name = self._log_name.render(payload)  # type: ignore[union-attr]  # log_name is never None
        return f"projects/{self._project}/logs/{urllib.parse.quote(name, safe='')}"

    def resource(self) -> dict[str, Any]:
        labels = dict(self.resource_labels)
        if self.resource_type == "global" and "project_id" not in labels:
            labels["project_id"] = self._project
        return {"type": self.resource_type, "labels": labels}

    def send_batch(self, batch: list[Envelope]) -> BatchResult:
        result = BatchResult()
        entries: list[_Entry] = []
        fixed_name = json.dumps(self.log_name_for(None)) if self._log_name.fixed else None  # type: ignore[union-attr]  # log_name is never None
        for env in batch:
            head = self._capsule_entry_head(env, fixed_name) if fixed_name else None
            if head is None:
                try:
                    head = self._entry_head(env)
                except TEMPLATE_ERRORS as exc:
                    result.reject(env.event_id, f"cannot render the log name: {exc}")
                    continue
            entry = _Entry(env, head)
            if entry.size > self.max_entry_bytes:
                result.reject(
                    env.event_id,
                    f"log entry of {entry.size} bytes is larger than Cloud Logging's limit of "
                    f"{self.max_entry_bytes} bytes per entry",
                )
                continue
            entries.append(entry)
        # Requests within the API's limits: entries, and bytes less a margin for the request's
        # own fields (one comma between entries).
        requests = split_requests(
            entries, self.max_request_entries, self.max_request_bytes - 1024, lambda e: e.size + 1
        )
        return result.merge(send_requests(requests, self._write))

    @staticmethod
    def _capsule_entry_head(env: Envelope, log_name_json: str) -> str | None:
        """The entry head of a capsule read from its first bytes (None: decode it instead)."""
        head = capsule_head(env.data)
        if head is None or not CANONICAL_TIMESTAMP.fullmatch(head[0]) or not _PLAIN_ID.fullmatch(
            env.event_id
        ):
            return None
        return (
            f'{{"logName":{log_name_json},"insertId":"{env.event_id}",'
            f'"severity":"INFO","timestamp":"{head[0]}"'
        )

    def _entry_head(self, env: Envelope) -> str:
        """The entry head of any event, from its decoded payload."""
        payload = env.payload
        head: dict[str, Any] = {"logName": self.log_name_for(payload)}
        head["insertId"] = env.event_id
        head["severity"] = severity_of(payload)
        when = rfc3339(payload)
        if when is not None:
            head["timestamp"] = when
        return json.dumps(head, separators=(",", ":"))[:-1]

    def _write(self, request: list[_Entry]) -> BatchResult | None:
        """One entries.write call; the answer classified per entry or for the whole request."""
        try:
            self._send(request)
        except Exception as exc:
            partial = _partial_errors(exc)
            if partial is None:
                reason = self.mask(_api_error_text(exc))
                if _is_auth(exc):
                    raise AuthError(reason, retry_after=_retry_delay(exc)) from None
                if _is_retryable(exc):
                    raise RetryableError(reason, retry_after=_retry_delay(exc)) from None
                raise PermanentError(reason) from None
            result = BatchResult()
            for index, (code, message) in partial.items():
                if 0 <= index < len(request):
                    event_id = request[index].event_id
                    reason = self.mask(f"{_CODE_NAMES.get(code, code)}: {message}")
                    if code in _RETRYABLE_CODES or code in _AUTH_CODES:
                        result.retry(event_id, reason, _retry_delay(exc), auth=code in _AUTH_CODES)
                    else:
                        result.reject(event_id, reason)
            return result
        return None

    def _send(self, request: list[_Entry]) -> None:
        client = self._client
        api = client.logging_api
        resource = self.resource()
        labels = dict(self.labels) or None
        gapic = getattr(api, "_gapic_api", None)
        if gapic is not None:  # gRPC: the generated client, without its own retries
            from google.cloud.logging_v2.types import LogEntry, WriteLogEntriesRequest
            from google.protobuf import json_format

            pbs = [json_format.ParseDict(e.mapping(), LogEntry.pb(LogEntry())) for e in request]
            message = WriteLogEntriesRequest(
                resource=resource, labels=labels, entries=pbs, partial_success=True
            )
            gapic.write_log_entries(request=message, retry=None, timeout=self.request_timeout)
            return
        connection = getattr(client, "_connection", None)
        if connection is None or not hasattr(connection, "api_request"):  # another client
            api.write_entries(
                [e.mapping() for e in request],
                resource=resource,
                labels=labels,
                partial_success=True,
            )
            return
        head = {"resource": resource, "partialSuccess": True}
        if labels:
            head["labels"] = labels
        body = json.dumps(head, separators=(",", ":"))[:-1]
        body += ',"entries":[' + ",".join(e.json() for e in request) + "]}"
        connection.api_request(
            method="POST",
            path="/entries:write",
            data=body.encode("utf-8"),
            content_type="application/json",
            timeout=self.request_timeout,
        )


def _load_credentials(path: str, scopes: list[str]) -> tuple[Any, str | None]:
    """Credentials (and their project, if the file names one) from a JSON credentials file."""
    with open(path, encoding="utf-8") as file:
        info = json.load(file)
    kind = info.get("type") if isinstance(info, dict) else None
    if kind == "service_account":
        from google.oauth2 import service_account

        credentials = service_account.Credentials.from_service_account_info(info, scopes=scopes)
        return credentials, info.get("project_id")
    if kind == "authorized_user":
        from google.oauth2 import credentials as user_credentials

        credentials = user_credentials.Credentials.from_authorized_user_info(info, scopes=scopes)
        return credentials, info.get("quota_project_id")
    import google.auth  # external accounts, impersonation, ...: the generic loader

    return google.auth.load_credentials_from_file(path, scopes=scopes)


# ---------------------------------------------------------------------- errors

_REST_PREFIX = re.compile(r"^(?:GET|POST|PUT|PATCH|DELETE) \S+: ")


def _api_error_text(exc: BaseException) -> str:
    if isinstance(exc, gexc.GoogleAPICallError):
        status = getattr(exc, "grpc_status_code", None)
        name = getattr(status, "name", None) or _CODE_NAMES.get(_http_to_grpc(exc.code), "")
        message = _REST_PREFIX.sub("", str(exc.message))
        prefix = " ".join(str(part) for part in (exc.code, name) if part)
        return f"{prefix}: {message}" if prefix else message
    return error_text(exc)


def _http_to_grpc(status: Any) -> int:
    return {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 499: 1, 500: 13, 501: 12,
            503: 14, 504: 4}.get(status, 2)  # fmt: skip


def _is_auth(exc: BaseException) -> bool:
    """The credentials or the caller's roles were refused: 401/UNAUTHENTICATED, 403/PERMISSION_DENIED,
    or credentials that cannot be refreshed after a 401 (google-auth's errors, except the network
    failing on the way to the token endpoint)."""
    if isinstance(exc, gexc.GoogleAPICallError):
        status = getattr(exc, "grpc_status_code", None)
        if status is not None and hasattr(status, "value"):
            return status.value[0] in _AUTH_CODES
        return is_auth_status(exc.code)
    return isinstance(exc, gauth.GoogleAuthError) and not isinstance(exc, gauth.TransportError)


def _is_retryable(exc: BaseException) -> bool:
    """Whole-request failures worth retrying: quota, server, network errors."""
    if isinstance(exc, gexc.GoogleAPICallError):
        status = getattr(exc, "grpc_status_code", None)
        if status is not None and hasattr(status, "value"):
            return status.value[0] in _RETRYABLE_CODES
        code = exc.code
        return isinstance(code, int) and (is_retryable_status(code) or code == 499)
    return True  # connection errors, timeouts, ...


def _details(exc: BaseException) -> list[Any]:
    try:
        return list(getattr(exc, "details", None) or [])
    except Exception:  # pragma: no cover - a detail that cannot be parsed
        return []


def _partial_errors(exc: BaseException) -> dict[int, tuple[int, str]] | None:
    """Per-entry errors of a ``WriteLogEntriesPartialErrors`` detail, or None if there is none."""
    if not isinstance(exc, gexc.GoogleAPICallError):
        return None
    for detail in _details(exc):
        if isinstance(detail, dict):  # REST: the JSON of the detail
            if str(detail.get("@type", "")).endswith(PARTIAL_ERRORS):
                errors = detail.get("logEntryErrors") or {}
                return {
                    int(index): (int(status.get("code", 2)), str(status.get("message", "")))
                    for index, status in errors.items()
                }
            continue
        type_url = getattr(detail, "type_url", "")  # gRPC: a google.protobuf.Any
        if type_url.endswith(PARTIAL_ERRORS):
            from google.cloud.logging_v2.types import WriteLogEntriesPartialErrors

            message = WriteLogEntriesPartialErrors.pb()()
            detail.Unpack(message)
            return {
                int(index): (status.code, status.message)
                for index, status in message.log_entry_errors.items()
            }
    return None


def _retry_delay(exc: BaseException) -> float | None:
    """The delay the API asks for: a ``RetryInfo`` detail or a ``Retry-After`` header."""
    for detail in _details(exc):
        if isinstance(detail, dict):
            if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
                delay = str(detail.get("retryDelay", "")).rstrip("s")
                try:
                    return max(0.0, float(delay))
                except ValueError:
                    continue
        elif hasattr(detail, "retry_delay"):
            return detail.retry_delay.seconds + detail.retry_delay.nanos / 1e9
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None and hasattr(headers, "get"):
        return parse_retry_after(headers.get("Retry-After"))
    return None


__all__ = ["StackdriverSink", "log_id_safe", "rfc3339", "severity_of"]
