"""CloudWatch Logs sink: every capsule as one JSON log event, through boto3 and watchtower.

Why watchtower's handler queue is not used
------------------------------------------
``watchtower.CloudWatchLogHandler`` queues records in memory and sends them from
its own threads.  A batch it cannot deliver after a few attempts is dropped with
a warning, and whatever is still queued at interpreter exit when its
``FLUSH_TIMEOUT`` passes is lost: its queue is not a place where delivery can be
guaranteed.  This sink therefore uses watchtower for its conventions only (the
26-byte event overhead, the 1 MiB / 10,000-event request limits and the 256 KiB
event limit it ships as defaults, the ``machine_name`` / ``program_name`` /
``process_id`` / ``strftime`` stream-name placeholders, idempotent group and
stream creation) and calls ``PutLogEvents`` itself, from the delivery core's
``send_batch``, with the boto3 ``logs`` client watchtower would use.  The
outcome of every request is then known per event: acknowledged, retried (and
spooled while CloudWatch is unreachable) or dead-lettered with CloudWatch's
reason.

How CloudWatch's limits are met
-------------------------------
* A core batch is grouped by log group and stream, sorted by the capsule's
  ``__timestamp__`` (a log record's ``timestamp``) and split into
  ``PutLogEvents`` requests of at most 10,000 events, 1,048,576 bytes (message
  bytes + 26 per event) and less than 24 hours between first and last event.
* An event larger than ``max_event_bytes`` (256 KiB with the 26-byte overhead),
  more than 14 days old (or older than ``log_group_retention_days``) or more than
  2 hours in the future is dead-lettered with the reason before sending;
  ``rejectedLogEventsInfo`` (tooOld / tooNew / expired) in an answer dead-letters
  those events.
* ``ThrottlingException``, ``ServiceUnavailableException``, 5xx answers,
  connection errors and timeouts are retried by the delivery core with backoff
  (boto3's own retries are turned off on clients this sink builds, so that each
  attempt's outcome is the core's to handle).  Credentials and permissions that
  are refused (``AccessDeniedException``, ``UnrecognizedClientException``,
  ``ExpiredTokenException``, signature errors, no credentials at all) are retried
  too, with a warning naming what to check, and never dead-lettered.
  ``ResourceNotFoundException`` creates the stream (``create_log_stream``) and
  the group (``create_log_group``) and retries at once; if they may not be
  created, the events are retried until they exist.
  ``InvalidParameterException`` and other 4xx answers are permanent: the request
  is halved until the offending events are found, and only they are
  dead-lettered.  ``DataAlreadyAcceptedException`` counts as delivered.

Each message is the capsule's JSON with the event id added as ``__event_id__``
(``include_event_id``), so readers can drop the duplicates that at-least-once
delivery can make: CloudWatch Logs itself has no per-event id.

Credentials come from the standard AWS chain (environment, shared files,
``profile_name``, instance/container roles) unless given as options; they are
never logged, nor shown in ``repr()``, ``stats()`` or error messages.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import logging
import os
import platform
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import watchtower
from traitlets import Bool, Dict, Float, Int, TraitError, Unicode, validate

from ..capsule import event_time, format_timestamp
from ..delivery import (
    AuthError,
    BatchResult,
    Envelope,
    RequestRefused,
    RetryableError,
    send_requests,
    split_requests,
)
from ..delivery.envelope import EVENT_ID_FIELD, with_event_id
from ..delivery.retry import error_text
from ..errors import SinkConfigError
from .naming import TEMPLATE_ERRORS, NameOption, NameRule, name_template
from .network import NetworkSink

log = logging.getLogger("telemetry_sinks.delivery.cloudwatch")


def _watchtower_default(name: str, fallback: int) -> int:
    """A default of ``watchtower.CloudWatchLogHandler`` (CloudWatch's documented limits)."""
    try:
        value = inspect.signature(watchtower.CloudWatchLogHandler).parameters[name].default
    except (KeyError, TypeError, ValueError):  # pragma: no cover - another watchtower
        return fallback
    return value if isinstance(value, int) else fallback


#: Bytes CloudWatch adds to every event when it counts a request's size.
EVENT_OVERHEAD: int = getattr(watchtower.CloudWatchLogHandler, "EXTRA_MSG_PAYLOAD_SIZE", 26)
#: Largest PutLogEvents request: message bytes plus EVENT_OVERHEAD per event.
MAX_REQUEST_BYTES = _watchtower_default("max_batch_size", 1_048_576)
#: Most events in one PutLogEvents request.
MAX_REQUEST_EVENTS = _watchtower_default("max_batch_count", 10_000)
#: Largest event (message bytes plus EVENT_OVERHEAD).
MAX_EVENT_BYTES = _watchtower_default("max_message_size", 262_144)
#: The events of one request must lie within less than this span (milliseconds).
MAX_REQUEST_SPAN_MS = 24 * 3600 * 1000
#: CloudWatch takes events at most this old (ms) ...
MAX_AGE_MS = 14 * 24 * 3600 * 1000
#: ... and at most this far in the future (ms).
MAX_FUTURE_MS = 2 * 3600 * 1000

#: The values PutRetentionPolicy accepts.
RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip

#: CloudWatch Logs' rules for log group and log stream names.
LOG_GROUP_NAME = NameRule(
    "log group name", r"[^A-Za-z0-9._\-/#]", 512,
    "Use at most 512 of the characters A-Z a-z 0-9 . _ - / #",
)
LOG_STREAM_NAME = NameRule("log stream name", r"[:*]", 512, "':' and '*' are not allowed")
#: ``name`` as a log group name: characters other than ``A-Za-z0-9._-/#`` become ``_``.
group_safe = LOG_GROUP_NAME.safe
#: ``name`` as a log stream name: ``:`` and ``*`` become ``_``.
stream_safe = LOG_STREAM_NAME.safe

#: Answers for which the same request will never succeed.
_PERMANENT_CODES = frozenset(
    {
        "InvalidParameterException",
        "ValidationException",
        "SerializationException",
        "InvalidOperationException",
    }
)
#: Answers about the caller's credentials or permissions: retried, because they are
#: fixed by operators (or by the credential chain refreshing), not by the events.
_AUTH_CODES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "IncompleteSignature",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
    }
)
_ALREADY_EXISTS = ("ResourceAlreadyExistsException", "OperationAbortedException")


def timestamp_ms(payload: Any) -> int | None:
    """Milliseconds since the epoch of a capsule's ``__timestamp__`` or a record's ``timestamp``."""
    when = event_time(payload)
    return None if when is None else int(when.timestamp() * 1000)


_HOSTNAME = platform.node() or "localhost"
_PROGRAM = os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "python") or "python"


#: The template fields CloudWatch Logs users know from watchtower, and ``{date}``.
STREAM_FIELDS = {
    "hostname": lambda when: _HOSTNAME,
    "machine_name": lambda when: _HOSTNAME,
    "program_name": lambda when: _PROGRAM,
    "process_id": lambda when: os.getpid(),
    "date": lambda when: when.strftime("%Y-%m-%d"),
    "strftime": lambda when: when,
}


def rejected_indices(info: dict[str, Any], timestamps: list[int], now_ms: int) -> dict[int, str]:
    """Indices of a request's events that ``rejectedLogEventsInfo`` names, with the reason.

    AWS documents ``tooOldLogEventEndIndex`` and ``expiredLogEventEndIndex`` as
    exclusive ends and ``tooNewLogEventStartIndex`` as an inclusive start; moto
    (and LocalStack, built on it) report the *last* too-old and too-new index
    instead.  So an event is also counted as rejected when its own timestamp is
    beyond the limit that the answer says was hit.
    """
    count = len(timestamps)
    rejected: dict[int, str] = {}
    old_end = info.get("tooOldLogEventEndIndex")
    if isinstance(old_end, int):
        reason = "CloudWatch Logs rejected the event as too old (tooOld: more than 14 days ago)"
        for i in range(count):
            if i < old_end or timestamps[i] < now_ms - MAX_AGE_MS:
                rejected[i] = reason
    expired_end = info.get("expiredLogEventEndIndex")
    if isinstance(expired_end, int):
        reason = "CloudWatch Logs rejected the event as expired (older than the group's retention)"
        for i in range(min(count, max(expired_end, 1))):
            rejected.setdefault(i, reason)
    new_start = info.get("tooNewLogEventStartIndex")
    if isinstance(new_start, int):
        reason = "CloudWatch Logs rejected the event as too new (tooNew: over 2 hours ahead)"
        for i in range(count):
            if i >= new_start or timestamps[i] > now_ms + MAX_FUTURE_MS:
                rejected.setdefault(i, reason)
    return rejected


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


class _Event:
    """One event of a PutLogEvents request: its time (ms), place in the batch, envelope and
    destination."""

    __slots__ = ("ts", "position", "envelope", "group", "stream")

    def __init__(self, ts: int, position: int, envelope: Envelope, group: str, stream: str) -> None:
        self.ts, self.position, self.envelope = ts, position, envelope
        self.group, self.stream = group, stream

    @property
    def event_id(self) -> str:
        return self.envelope.event_id

    def sort_key(self) -> tuple[int, int]:
        return self.ts, self.position


def _requests(events: list[_Event]) -> Iterator[list[_Event]]:
    """Time-sorted ``events`` of one stream cut into PutLogEvents requests within CloudWatch's
    limits: events, bytes (with the per-event overhead) and 24 hours."""
    return split_requests(
        events,
        MAX_REQUEST_EVENTS,
        MAX_REQUEST_BYTES,
        lambda e: e.envelope.size + EVENT_OVERHEAD,
        time=lambda e: e.ts,
        max_span=MAX_REQUEST_SPAN_MS,
    )


class CloudWatchSink(NetworkSink):
    """Send capsules to CloudWatch Logs (``pip install "telemetry-sinks[cloudwatch]"``).

    Besides the options below, two Python-only keyword arguments are accepted
    (not from config files, never shown in ``repr()``): ``boto3_session``, a
    ``boto3.session.Session`` to build the ``logs`` client from, and
    ``boto3_client``, a ready ``logs`` client, used as it is (with its own retry
    and timeout configuration; the sink does not close it, and a forked child
    keeps using it).
    """

    sink_name = "cloudwatch"
    credentials_help = (
        "the AWS credentials it uses (keys, profile_name, role or the environment; expired "
        "session tokens) and that they allow logs:PutLogEvents, logs:CreateLogStream and "
        "logs:CreateLogGroup on the log group"
    )
    required_options = ("log_group_name",)

    log_group_name = NameOption(
        LOG_GROUP_NAME,
        None,
        extra=STREAM_FIELDS,
        allow_none=True,
        help='Log group, or a template over the capsule such as "/telemetry/{__schema__}" '
        "(rendered names are made CloudWatch-safe: characters other than A-Za-z0-9._-/# "
        "become '_').",
    ).tag(config=True, destination=("log group", "text"))
    log_stream_name = NameOption(
        LOG_STREAM_NAME,
        "{hostname}/{date}",
        extra=STREAM_FIELDS,
        help="Log stream, or a template: capsule fields such as {__schema__}, {hostname}, "
        "{date} (the event's UTC date, YYYY-MM-DD), and watchtower's {machine_name}, "
        "{program_name}, {process_id}, {strftime:FORMAT} (the event's UTC time). "
        "':' and '*' in rendered names become '_'.",
    ).tag(config=True, destination=("log stream", "text"))
    create_log_group = Bool(True, help="Create the log group when it does not exist.").tag(
        config=True
    )
    create_log_stream = Bool(True, help="Create the log stream when it does not exist.").tag(
        config=True
    )
    log_group_retention_days = Int(
        None,
        allow_none=True,
        help="Retention (days) set on each log group the first time this process uses it "
        f"(one of {', '.join(map(str, RETENTION_DAYS))}). None: leave it as it is.",
    ).tag(config=True)
    log_group_tags = Dict(
        help="Tags given to the log groups this sink creates, e.g. {'team': 'platform'}."
    ).tag(config=True)
    region_name = Unicode(
        None,
        allow_none=True,
        help="AWS region, e.g. us-east-1. None: from the environment or profile (AWS_REGION, "
        "AWS_DEFAULT_REGION, ~/.aws/config).",
    ).tag(config=True, destination=("region", "text"))
    endpoint_url = Unicode(
        None,
        allow_none=True,
        help="CloudWatch Logs endpoint, e.g. a VPC endpoint or LocalStack "
        "(http://localhost:4566). None: AWS's (or AWS_ENDPOINT_URL).",
    ).tag(config=True, destination=("endpoint host", "url"))
    profile_name = Unicode(
        None, allow_none=True, help="Profile of the shared AWS config and credentials files."
    ).tag(config=True)
    aws_access_key_id = Unicode(
        None, allow_none=True, help="Access key id. None: the standard AWS credential chain."
    ).tag(config=True, secret=True)
    aws_secret_access_key = Unicode(
        None, allow_none=True, help="Secret access key (with aws_access_key_id)."
    ).tag(config=True, secret=True)
    aws_session_token = Unicode(
        None, allow_none=True, help="Session token of temporary credentials."
    ).tag(config=True, secret=True)
    request_timeout = Float(
        10.0, help="Connect and read timeout of each CloudWatch Logs request, in seconds."
    ).tag(config=True)
    max_event_bytes = Int(
        MAX_EVENT_BYTES,
        help="Largest event CloudWatch Logs takes, counting its 26 bytes of overhead; a "
        "larger event is dead-lettered.",
    ).tag(config=True)
    include_event_id = Bool(
        True,
        help=f"Add each event's id to its message as {EVENT_ID_FIELD!r}, so readers can drop "
        "the duplicates at-least-once delivery can make (CloudWatch Logs has no id of its own).",
    ).tag(config=True)

    @validate("log_group_retention_days")
    def _check_retention(self, proposal: Any) -> Any:
        value = proposal.value
        if value is not None and value not in RETENTION_DAYS:
            raise TraitError(
                "The 'log_group_retention_days' trait of a CloudWatchSink must be one of "
                f"{', '.join(map(str, RETENTION_DAYS))}, not {value}."
            )
        return value

    @validate("endpoint_url")
    def _check_endpoint(self, proposal: Any) -> Any:
        value = proposal.value
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise TraitError(
                "The 'endpoint_url' trait of a CloudWatchSink must be an http(s) URL, "
                f"not {value!r}."
            )
        return value

    @validate("max_event_bytes")
    def _check_event_bytes(self, proposal: Any) -> Any:
        if proposal.value <= EVENT_OVERHEAD:
            raise TraitError(
                f"The 'max_event_bytes' trait must be more than {EVENT_OVERHEAD}, "
                f"not {proposal.value}."
            )
        return proposal.value

    def __init__(
        self, *, boto3_session: Any = None, boto3_client: Any = None, **options: Any
    ) -> None:
        if boto3_session is not None and boto3_client is not None:
            raise SinkConfigError(
                "CloudWatchSink takes boto3_session or boto3_client, not both: a client "
                "already carries its session."
            )
        self._boto3_session = boto3_session
        self._boto3_client = boto3_client
        self._client: Any = None
        self._retention_set: set[str] = set()
        super().__init__(**options)
        clashes: tuple[str, ...] = ()
        if boto3_client is not None or boto3_session is not None:  # they carry these already
            clashes = ("profile_name", "aws_access_key_id", "aws_secret_access_key")
            clashes += ("aws_session_token",)
        if boto3_client is not None:
            clashes += ("region_name", "endpoint_url")
        clash = next((name for name in clashes if getattr(self, name) is not None), None)
        if clash is not None:
            self.close()
            given = "boto3_client" if boto3_client is not None else "boto3_session"
            raise SinkConfigError(
                f"CloudWatchSink option {clash!r} cannot be used with {given}, which already "
                f"carries it: configure the {given.split('_')[1]} instead."
            )
        self._group = name_template(self, "log_group_name")
        self._stream = name_template(self, "log_stream_name")
        if boto3_client is None:
            try:
                region = self.region_name or self._session().region_name
            except botocore.exceptions.BotoCoreError as exc:  # e.g. an unknown profile
                self.close()
                raise SinkConfigError(f"CloudWatchSink: {self.mask(str(exc))}") from None
            if not region:
                self.close()
                raise SinkConfigError(
                    "CloudWatchSink needs an AWS region: pass region_name=... (or set "
                    "c.CloudWatchSink.region_name), or set AWS_REGION / AWS_DEFAULT_REGION."
                )

    # ------------------------------------------------------------------ client

    def _session(self) -> Any:
        if self._boto3_session is not None:
            return self._boto3_session
        return boto3.session.Session(
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            region_name=self.region_name,
            profile_name=self.profile_name,
        )

    def client_config(self) -> botocore.config.Config:
        """The botocore configuration of the clients this sink builds (no SDK retries)."""
        return botocore.config.Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=self.request_timeout,
            read_timeout=self.request_timeout,
            user_agent_extra="telemetry-sinks",
            # The sink builds every request itself within PutLogEvents' limits; botocore's
            # check of each event would double the worker's CPU per event.
            parameter_validation=False,
        )

    def open(self) -> None:
        if self._boto3_client is not None:
            self._client = self._boto3_client
            return
        self._client = self._session().client(
            "logs",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            config=self.client_config(),
        )

    def close_backend(self) -> None:
        client, self._client = self._client, None
        if client is not None and client is not self._boto3_client:
            try:
                client.close()
            except Exception:  # pragma: no cover - closing is best effort
                pass

    # ------------------------------------------------------------------ names

    def names_for(self, payload: Any, ts: int) -> tuple[str, str]:
        """The (log group, log stream) of an event with ``payload`` and timestamp ``ts`` (ms)."""
        when = _dt.datetime.fromtimestamp(ts / 1000, _dt.timezone.utc)
        return self._group.render(payload, when), self._stream.render(payload, when)  # type: ignore[union-attr]  # both are set

    # ------------------------------------------------------------------ sending

    def send_batch(self, batch: list[Envelope]) -> BatchResult:
        result = BatchResult()
        now = int(time.time() * 1000)
        oldest = now - MAX_AGE_MS
        if self.log_group_retention_days:
            oldest = max(oldest, now - self.log_group_retention_days * 24 * 3600 * 1000)
        newest = now + MAX_FUTURE_MS
        streams: dict[tuple[str, str], list[_Event]] = {}
        for position, env in enumerate(batch):
            if self.include_event_id:  # the message sent: the event with its id
                env = Envelope(env.event_id, with_event_id(env))
            if env.size + EVENT_OVERHEAD > self.max_event_bytes:
                result.reject(
                    env.event_id,
                    f"event of {env.size} bytes (+{EVENT_OVERHEAD} bytes overhead) is larger than "
                    f"CloudWatch Logs' limit of {self.max_event_bytes} bytes per event",
                )
                continue
            payload = env.payload
            ts = timestamp_ms(payload)
            if ts is None:
                ts = now
            elif ts < oldest or ts > newest:
                when = format_timestamp(_dt.datetime.fromtimestamp(ts / 1000, _dt.timezone.utc))
                result.reject(
                    env.event_id,
                    f"event time {when} is older than CloudWatch Logs accepts (tooOld: 14 days, "
                    "or the group's retention)"
                    if ts < oldest
                    else f"event time {when} is more than 2 hours in the future (tooNew): "
                    "CloudWatch Logs rejects it",
                )
                continue
            try:
                group, stream = self.names_for(payload, ts)
            except TEMPLATE_ERRORS as exc:
                result.reject(env.event_id, f"cannot render the log group or stream name: {exc}")
                continue
            streams.setdefault((group, stream), []).append(_Event(ts, position, env, group, stream))
        requests = (r for events in streams.values() for r in _requests(sorted(events, key=_Event.sort_key)))
        return result.merge(send_requests(requests, self._put))

    def _put(self, request: list[_Event]) -> BatchResult | None:
        """PutLogEvents for ``request`` (creating its stream and group once if needed); the
        answer classified: per event, or raised for the whole request."""
        group, stream = request[0].group, request[0].stream
        events = [{"timestamp": e.ts, "message": e.envelope.data} for e in request]
        for attempt in (1, 2):
            try:
                response = self._client.put_log_events(
                    logGroupName=group, logStreamName=stream, logEvents=events
                )
            except Exception as exc:
                code = _error_code(exc)
                if code == "DataAlreadyAcceptedException":
                    return None
                if code == "ResourceNotFoundException" and attempt == 1:
                    self._create(group, stream)
                    continue
                raise self._classify(exc, group, stream) from None
            self._apply_retention(group)
            return self._rejected(request, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _classify(self, exc: BaseException, group: str, stream: str) -> Exception:
        """A failed request: RetryableError, or RequestRefused (the events are searched)."""
        code = _error_code(exc)
        reason = self.mask(error_text(exc))
        if code == "ResourceNotFoundException":
            return RetryableError(
                f"{reason} (log group {group!r}, stream {stream!r}; retried until it exists)"
            )
        if code in _PERMANENT_CODES:
            return RequestRefused(reason)
        if code in _AUTH_CODES or isinstance(exc, botocore.exceptions.NoCredentialsError):
            return AuthError(reason)
        if not code:
            return RetryableError(reason)  # network, timeouts
        status = 0
        if isinstance(exc, botocore.exceptions.ClientError):
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        throttled = any(word in code for word in ("Throttl", "LimitExceeded", "TooManyRequests"))
        if throttled or code == "ServiceUnavailableException" or status >= 500 or not status:
            return RetryableError(reason)
        return RequestRefused(reason)  # any other 4xx answer

    def _create(self, group: str, stream: str) -> None:
        """Create ``stream`` (and ``group``, if missing and allowed); raises if it cannot."""
        if not self.create_log_stream:
            raise RetryableError(
                f"log stream {stream!r} of log group {group!r} does not exist and "
                "create_log_stream is False (retried until it exists)"
            )
        try:
            self._idempotent("create_log_stream", logGroupName=group, logStreamName=stream)
            return
        except Exception as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise self._classify(exc, group, stream) from None
        if not self.create_log_group:
            raise RetryableError(
                f"log group {group!r} does not exist and create_log_group is False "
                "(retried until it exists)"
            )
        try:
            kwargs: dict[str, Any] = {"logGroupName": group}
            if self.log_group_tags:
                kwargs["tags"] = {str(k): str(v) for k, v in self.log_group_tags.items()}
            self._idempotent("create_log_group", **kwargs)
            self._idempotent("create_log_stream", logGroupName=group, logStreamName=stream)
        except Exception as exc:
            raise self._classify(exc, group, stream) from None
        self._retention_set.discard(group)  # a new group: set its retention again

    def _idempotent(self, method: str, **kwargs: Any) -> None:
        """Call ``method``; "already exists" counts as success (watchtower's convention)."""
        try:
            getattr(self._client, method)(**kwargs)
        except Exception as exc:
            if _error_code(exc) not in _ALREADY_EXISTS:
                raise

    def _apply_retention(self, group: str) -> None:
        days = self.log_group_retention_days
        if not days or group in self._retention_set:
            return
        self._retention_set.add(group)
        try:
            self._idempotent("put_retention_policy", logGroupName=group, retentionInDays=days)
        except Exception as exc:
            log.warning(
                "sink %r could not set the retention of log group %r to %d days: %s",
                self.label,
                group,
                days,
                self.mask(error_text(exc)),
            )

    @staticmethod
    def _rejected(request: list[_Event], response: Any) -> BatchResult | None:
        """The events of an accepted request that ``rejectedLogEventsInfo`` names."""
        info = response.get("rejectedLogEventsInfo") if isinstance(response, dict) else None
        if not info:
            return None
        result = BatchResult()
        timestamps = [e.ts for e in request]
        for index, reason in rejected_indices(info, timestamps, int(time.time() * 1000)).items():
            result.reject(request[index].event_id, reason)
        return result


__all__ = [
    "CloudWatchSink",
    "EVENT_OVERHEAD",
    "MAX_EVENT_BYTES",
    "MAX_REQUEST_BYTES",
    "MAX_REQUEST_EVENTS",
    "group_safe",
    "rejected_indices",
    "stream_safe",
    "timestamp_ms",
]
