"""``NetworkSink``: the base class of every sink that sends events over the network.

An adapter subclasses it and implements one method::

    class MySink(NetworkSink):
        sink_name = "my"

        def open(self):                      # optional: connect (lazily, in the worker)
            self.client = make_client()

        def send_batch(self, batch):         # required
            response = self.client.post([e.data for e in batch])
            if response.status in (200, 201):
                return None                  # every event acknowledged
            if is_retryable_status(response.status):
                raise RetryableError(f"HTTP {response.status}",
                                     retry_after=parse_retry_after(response.retry_after))
            raise PermanentError(f"HTTP {response.status}")

        def close_backend(self):             # optional: disconnect
            self.client.close()

``send_batch`` runs in the sink's worker thread, never in the caller's.  It may
return a :class:`BatchResult` naming events that failed (retryably or for good);
the others count as acknowledged.  ``open()`` is retried like a send until it
succeeds, so a backend that is down at start never stops the application; it is
called again in a forked child, which must not reuse the parent's connections.
Messages of exceptions and reasons end up in ``stats()["last_error"]`` and the
dead-letter file: they must not contain secrets.  Values of options tagged
``secret=True`` and passwords in URLs are masked, as a safety net.

``emit()`` only encodes the payload and queues it; see
:mod:`telemetry_sinks.delivery.engine` for what happens next.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from traitlets import Bool, CaselessStrEnum, Float, Int, TraitError, Unicode, validate

from ..capsule import encode
from ..errors import SinkConfigError
from ..sinks.base import Sink, mask_url_password
from .engine import DeliveryEngine
from .envelope import BatchResult, Envelope

_MiB = 1024 * 1024
_OWN_LOGGER = "telemetry_sinks.delivery"


class NetworkSink(Sink):
    """A sink that queues events and delivers them from a background thread (see module doc)."""

    per_process_options = {"spool_dir": "directory"}

    # --- batching
    max_batch_events = Int(500, help="Send a batch when this many events are queued.").tag(
        config=True
    )
    max_batch_bytes = Int(
        1 * _MiB, help="Send a batch when its events reach this many bytes of JSON."
    ).tag(config=True)
    flush_interval = Float(
        1.0, help="Send queued events at the latest this many seconds after the oldest arrived."
    ).tag(config=True)

    # --- memory bounds
    max_queue_events = Int(10_000, help="Events kept in memory before `overflow` applies.").tag(
        config=True
    )
    max_queue_bytes = Int(
        16 * _MiB,
        help="Memory the queued events may take before `overflow` applies: their JSON plus "
        "384 bytes per event for the Python objects around it.",
    ).tag(config=True)
    overflow = CaselessStrEnum(
        ["spill", "drop_newest", "drop_oldest", "block"],
        default_value=None,
        allow_none=True,
        help=(
            "What to do when the queue (or the spool) is full: 'spill' oldest events to the "
            "spool, 'drop_newest', 'drop_oldest', or 'block' the caller up to `block_timeout` "
            "then drop. Default: 'spill' with a spool_dir, else 'drop_newest'. A full spool "
            "drops its oldest segments with 'drop_oldest' and refuses new events otherwise."
        ),
    ).tag(config=True)
    block_timeout = Float(
        1.0, help="With overflow='block': longest wait for room, in seconds, before dropping."
    ).tag(config=True)

    # --- disk spool
    spool_dir = Unicode(
        None,
        allow_none=True,
        help=(
            "Directory of the disk spool (write-ahead log) for events that cannot be delivered "
            "now; they are replayed when the backend is back or the process restarts. "
            "Give each sink its own directory (processes of one application may share it). "
            "None: no spool (events wait in memory only)."
        ),
    ).tag(config=True)
    max_spool_bytes = Int(256 * _MiB, help="Largest size of the spool directory in bytes.").tag(
        config=True
    )
    spool_segment_bytes = Int(
        1 * _MiB, help="Size at which a spool segment file is closed and a new one started."
    ).tag(config=True)
    spool_fsync = Bool(
        False, help="fsync spool writes: survive power loss, not only a crash (slower)."
    ).tag(config=True)

    # --- retries and failures
    retry_initial_backoff = Float(
        0.5, help="Delay in seconds before the first retry; it doubles each retry (with jitter)."
    ).tag(config=True)
    retry_max_backoff = Float(30.0, help="Longest delay in seconds between two retries.").tag(
        config=True
    )
    max_retry_time = Float(
        60.0,
        help=(
            "How long, in seconds, a failing batch is retried from memory before it goes to the "
            "spool, where it is retried until delivered. Without a spool a failing batch is "
            "retried from memory until delivered, while new events wait in the bounded queue "
            "(`overflow` decides when it is full)."
        ),
    ).tag(config=True)
    dead_letter_file = Unicode(
        None,
        allow_none=True,
        help=(
            "JSONL file for events the backend rejects for good (one line per event with the "
            "payload, event_id, reason, time and sink). Default: <spool_dir>/dead_letters.jsonl "
            "with a spool, else none (rejected events are counted as dropped)."
        ),
    ).tag(config=True)

    # --- lifecycle and reporting
    close_timeout = Float(
        5.0, help="close() waits this long for delivery, then spools what is left."
    ).tag(config=True)
    drop_report_interval = Float(
        60.0, help="At most one warning per this many seconds about dropped events."
    ).tag(config=True)

    @validate(
        "max_batch_events",
        "max_batch_bytes",
        "max_queue_events",
        "max_queue_bytes",
        "max_spool_bytes",
        "spool_segment_bytes",
    )
    def _positive(self, proposal: Any) -> int:
        if proposal.value < 1:
            name = proposal.trait.name
            raise TraitError(f"The '{name}' trait must be 1 or more, not {proposal.value}.")
        return proposal.value

    @validate(
        "flush_interval",
        "block_timeout",
        "retry_initial_backoff",
        "retry_max_backoff",
        "max_retry_time",
        "close_timeout",
        "drop_report_interval",
    )
    def _non_negative(self, proposal: Any) -> float:
        if proposal.value < 0:
            name = proposal.trait.name
            raise TraitError(f"The '{name}' trait must be 0 or more, not {proposal.value}.")
        return proposal.value

    @validate("request_timeout", "connect_timeout", "read_timeout", "ack_timeout")
    def _more_than_zero(self, proposal: Any) -> float:
        """The backends' timeouts (each adapter declares those it has): 0 would never wait."""
        if proposal.value <= 0:
            name = proposal.trait.name
            raise TraitError(f"The '{name}' trait must be more than 0, not {proposal.value}.")
        return proposal.value

    #: None until __init__ succeeds (logging may still call flush/close on a failed sink).
    _engine: DeliveryEngine | None = None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.overflow == "spill" and not self.spool_dir:
            raise SinkConfigError(
                f"{type(self).__name__} option 'overflow' is 'spill' but no spool_dir is set: "
                "set spool_dir=... or choose drop_newest, drop_oldest or block."
            )
        self._engine = DeliveryEngine(self)

    @property
    def effective_overflow(self) -> str:
        """The overflow policy in force (``overflow`` or its default)."""
        if self.overflow:
            return self.overflow.lower()
        return "spill" if self.spool_dir else "drop_newest"

    @property
    def label(self) -> str:
        """This sink's name in warnings, dead letters and metrics: its handler name or type."""
        return self.name or self.sink_name or type(self).__name__

    # ------------------------------------------------------------------ the adapter contract

    def send_batch(self, batch: list[Envelope]) -> BatchResult | None:
        """Send ``batch``; return None if all were acknowledged, else a :class:`BatchResult`.

        Raise :class:`PermanentError` if the backend will never take the batch,
        :class:`RetryableError` (optionally with ``retry_after``) or any other
        exception if it may take it later.
        """
        raise NotImplementedError

    def open(self) -> None:
        """Connect to the backend; called in the worker before the first send (optional)."""

    def close_backend(self) -> None:
        """Disconnect from the backend; called in the worker when the sink closes (optional)."""

    def redact(self, text: str) -> str:
        """``text`` with secret option values and URL passwords replaced by ``***``.

        Strings inside secret dict or list options (headers, producer_config, ...) count
        too, and so do their repr and JSON escapes (a client's error may quote a value).
        """
        secrets: set[str] = set()
        for name in self.trait_names(secret=True):
            for value in _strings(getattr(self, name, None)):
                secrets.update((value, repr(value)[1:-1], json.dumps(value)[1:-1]))
        for value in sorted(secrets, key=len, reverse=True):
            if len(value) >= 3:
                text = text.replace(value, "***")
        return mask_url_password(text)[:1000]

    # ------------------------------------------------------------------ logging.Handler

    def emit(self, record: logging.LogRecord) -> None:
        # Our own warnings and whatever the worker thread logs (e.g. the backend client)
        # are not fed back into this sink: that could loop forever.
        engine = self._engine
        if engine is None or record.name.startswith(_OWN_LOGGER):
            return
        if record.thread == engine.worker_ident:
            return
        super().emit(record)

    def write_payload(self, payload: dict[str, Any]) -> None:
        self._engine.put(encode(payload))  # type: ignore[union-attr]

    def resend(self, data: str, event_id: str) -> None:
        """Queue an already encoded event again under its own id (dead-letter replay)."""
        self._engine.put(data, event_id)  # type: ignore[union-attr]

    @property
    def dead_letter_path(self) -> str | None:
        """The dead-letter file in force (``dead_letter_file``, or the one in ``spool_dir``)."""
        return self._engine.dead_letter_path if self._engine is not None else None

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until everything emitted so far is acknowledged, spooled or dead-lettered.

        Returns False if ``timeout`` (seconds) passed first.  Without a timeout it
        waits at most ``close_timeout``: ``logging`` itself calls ``flush()`` while
        holding its module lock (``dictConfig``, ``logging.shutdown``), and must
        never hang on a backend that is down.  Pass ``float("inf")`` to wait for good.
        """
        if timeout is None:
            timeout = self.close_timeout
        if self._engine is None:
            return True
        return self._engine.flush(None if timeout == float("inf") else timeout)

    def close(self) -> None:
        """Deliver what is queued within ``close_timeout``, spool the rest, stop the worker."""
        try:
            if self._engine is not None:
                self._engine.close()
        finally:
            super().close()

    def backpressure(self) -> bool:
        """True when new events would soon be dropped or block: memory (and spool) nearly full.

        The collector answers 503 with Retry-After while any of its sinks says so.
        """
        stats = self._engine.stats()
        memory_full = (
            stats["queue_events"] >= 0.9 * self.max_queue_events
            or stats["queue_bytes"] >= 0.9 * self.max_queue_bytes
        )
        if not memory_full:
            return False
        if self.effective_overflow == "spill":
            return stats["spool_bytes"] >= 0.9 * self.max_spool_bytes
        return True

    def stats(self) -> dict[str, Any]:
        """Counters: emitted, sent, retried, spooled, replayed, dead_lettered, dropped;
        levels: queue_events, queue_bytes, spool_bytes; and last_error (a string or None)."""
        if self._engine is None:
            raise RuntimeError(f"{type(self).__name__} failed to start: it has no stats")
        return self._engine.stats()


def _strings(value: Any) -> Iterator[str]:
    """Every string in ``value``: the value itself, or those inside a dict or list (nested)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _strings(item)


__all__ = ["NetworkSink"]
