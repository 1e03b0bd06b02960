"""Envelopes, batch results and event ids: the contract between the delivery core and an adapter.

An :class:`Envelope` is one encoded event on its way to a backend.  An adapter's
``send_batch`` gets a list of them and answers with a :class:`BatchResult` (or
raises :class:`PermanentError` / :class:`RetryableError` / any exception for the
whole batch); see :mod:`telemetry_sinks.delivery.adapter`.

Event ids are ``"<producer>-<sequence>"``: a random 16-hex-digit id per process
(a forked child gets a new one) and a 12-digit counter, so ids are unique, sort
in emission order per producer, and let downstream systems drop the duplicates
that at-least-once delivery can produce.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _json_string  # what json.dumps(str) does, in C
from typing import Any

#: The field a sink adds to the JSON it sends so that receivers can drop duplicates.
EVENT_ID_FIELD = "__event_id__"

_producer = secrets.token_hex(8)
_sequence = itertools.count(1)


def producer_id() -> str:
    """This process's producer id (the first part of every event id it makes)."""
    return _producer


def next_event_id() -> str:
    """A new event id, greater than every id this process made before."""
    return f"{_producer}-{next(_sequence):012d}"


def _new_producer_in_child() -> None:
    global _producer, _sequence
    _producer = secrets.token_hex(8)
    _sequence = itertools.count(1)


os.register_at_fork(after_in_child=_new_producer_in_child)


class Envelope:
    """One encoded event: ``event_id``, ``data`` (its JSON line), ``size`` (bytes of ``data``).

    ``payload`` decodes ``data`` on first use, so adapters that send the JSON text
    as it is never pay for decoding.  ``segment`` and ``end`` say where the event's
    record is in the disk spool (the segment and the byte offset where the record
    ends), for events written to it.
    """

    __slots__ = ("event_id", "data", "size", "ticket", "enqueued", "segment", "end", "_payload")

    def __init__(self, event_id: str, data: str, *, segment: Any = None) -> None:
        self.event_id = event_id
        self.data = data
        # Most events are ASCII: then characters are bytes, no need to encode.
        self.size = len(data) if data.isascii() else len(data.encode("utf-8"))
        self.ticket = 0
        self.enqueued = 0.0
        self.segment = segment
        self.end = 0
        self._payload: Any = None

    @property
    def payload(self) -> Any:
        """The decoded event (a dict for capsules and log payloads)."""
        if self._payload is None:
            self._payload = json.loads(self.data)
        return self._payload

    def __repr__(self) -> str:
        return f"<Envelope {self.event_id} {self.size} bytes>"


def with_event_id(envelope: Envelope) -> str:
    """The event's JSON with ``"__event_id__"`` spliced in first (objects only, once).

    An object that already carries one (forwarded from another collector) keeps it.
    """
    data = envelope.data
    if not data.startswith("{") or f'"{EVENT_ID_FIELD}":' in data:
        return data
    tag = f'{{"{EVENT_ID_FIELD}":{_json_string(envelope.event_id)}'
    return tag + "}" if data == "{}" else tag + "," + data[1:]


class PermanentError(Exception):
    """Raised by ``send_batch``: the backend will never accept this batch (it is dead-lettered)."""


class RetryableError(Exception):
    """Raised by ``send_batch``: the whole batch failed for now; retry after ``retry_after`` s."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthError(RetryableError):
    """Raised by ``send_batch``: the backend refused the sink's credentials or permissions.

    401/403 answers, AWS's AccessDenied / UnrecognizedClient / ExpiredToken, a failed
    SASL authentication, a missing ACL.  Operators fix these, not the events: the
    batch is retried with backoff like any :class:`RetryableError` and never
    dead-lettered, and the engine warns (naming the sink and what to check) and
    counts the failure in ``stats()["auth_failures"]``.
    """


@dataclass
class BatchResult:
    """What happened to a batch.  Events named in neither dict were acknowledged.

    ``retryable`` and ``permanent`` map event ids to a reason; ``retry_after`` is
    the backend's requested delay in seconds (e.g. from a ``Retry-After`` header).
    ``reconnect`` asks the engine to drop the adapter's connection
    (``close_backend()``) and ``open()`` a new one before the next attempt.
    ``auth_error`` names a refusal of the sink's credentials or permissions among
    the retryable failures (see :class:`AuthError`): retried, warned about, counted.
    """

    retryable: dict[str, str] = field(default_factory=dict)
    permanent: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    reconnect: bool = False
    auth_error: str | None = None

    @classmethod
    def ok(cls) -> BatchResult:
        """Every event was acknowledged."""
        return cls()

    @classmethod
    def retry_all(
        cls,
        batch: Iterable[Envelope],
        reason: str,
        retry_after: float | None = None,
        *,
        auth: bool = False,
    ) -> BatchResult:
        """Every event failed but may succeed later (``auth``: credentials were refused)."""
        return cls(
            retryable={e.event_id: reason for e in batch},
            retry_after=retry_after,
            auth_error=reason if auth else None,
        )

    @classmethod
    def reject_all(cls, batch: Iterable[Envelope], reason: str) -> BatchResult:
        """The backend will never accept any of these events."""
        return cls(permanent={e.event_id: reason for e in batch})

    def retry(
        self, event_id: str, reason: str, retry_after: float | None = None, *, auth: bool = False
    ) -> None:
        """Mark one event as failed for now (``auth``: its credentials or permissions were refused)."""
        self.retryable[event_id] = reason
        if retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, retry_after)
        if auth:
            self.auth_error = reason

    def reject(self, event_id: str, reason: str) -> None:
        """Mark one event as permanently rejected."""
        self.permanent[event_id] = reason

    def merge(self, other: BatchResult | None) -> BatchResult:
        """Add the outcomes of ``other`` (a part of the same batch) to this result; return it."""
        if other is not None:
            self.retryable.update(other.retryable)
            self.permanent.update(other.permanent)
            if other.retry_after is not None:
                self.retry_after = max(self.retry_after or 0.0, other.retry_after)
            self.reconnect = self.reconnect or other.reconnect
            self.auth_error = other.auth_error or self.auth_error
        return self


__all__ = [
    "AuthError",
    "BatchResult",
    "Envelope",
    "PermanentError",
    "RetryableError",
    "next_event_id",
    "producer_id",
]
