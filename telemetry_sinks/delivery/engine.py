"""The delivery engine: bounded queue, background worker, retries, spool and dead letters.

``DeliveryEngine(adapter, options)`` delivers events through an
:class:`~telemetry_sinks.delivery.adapter.Adapter` (the code that talks to one
backend) as :class:`~telemetry_sinks.delivery.options.DeliveryOptions` say.
``put`` (the hot path) only appends to an in-memory queue under a lock; one
daemon thread per engine, started on the first event (or at ``start()`` when the
spool holds events from earlier runs), does everything else:

* connects through the adapter's ``open()``, and connects again after a failed
  ``open()``, when a result asks for it (``BatchResult.reconnect``) and after a fork;
* sends batches (by count, bytes or age) through the adapter's ``send_batch``;
* retries retryable failures with backoff, honouring the backend's Retry-After;
* while the backend is down, writes the queue to the spool (if configured) and
  later replays the spool, oldest first, before newer events;
* writes permanent rejections to the dead-letter file;
* reports dropped events as one warning per interval on ``telemetry_sinks.delivery``.

Order: events reach the backend in emission order, except that a batch which is
being sent when the queue overflows into the spool (policy ``spill``) can land
after newer events.  Events read back from the spool are retried until the
backend takes or rejects them; a poison event that always fails retryably blocks
the spool (it shows in ``last_error``).

Every open engine is closed by an ``atexit`` hook and reset in a forked child
(empty queue, fresh locks, a new worker on first use, ``open()`` called again).

A closed engine that is handed an event opens again (:meth:`DeliveryEngine.reopen`),
as ``logging.FileHandler`` reopens its file: ``logging.shutdown()`` and every
non-incremental ``dictConfig`` (traitlets calls one when an application configures
its logging) close every handler of the process, and the sinks built before must go
on working.  Once the ``atexit`` hook has run, a closed engine stays closed and
counts what it is handed as dropped.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

from ..errors import SinkConfigError
from . import metrics
from .adapter import Adapter
from .deadletter import DeadLetterFile
from .envelope import BatchResult, Envelope, PermanentError, RetryableError, next_event_id
from .options import DeliveryOptions
from .retry import Backoff, error_text
from .spool import Spool
from .toolkit import split_requests

log = logging.getLogger("telemetry_sinks.delivery")

#: How often the worker looks for segments left in ``spool_dir`` by other processes.
RESCAN_INTERVAL = 30.0
#: Memory a queued event takes besides its JSON text (Envelope, id, str header, counters,
#: allocator slack; measured by ``python -m bench``): counted against ``max_queue_bytes``.
EVENT_OVERHEAD = 384
#: A full queue with overflow=spill moves at most this much to the spool in one emit() call,
#: so no caller pays for writing the whole queue (the worker spools the rest).
SPILL_CHUNK_EVENTS = 256
SPILL_CHUNK_BYTES = 256 * 1024
_INF = float("inf")
_SIZE = attrgetter("size")

Action = Callable[[], None]


class DeliveryEngine:
    """Queue, worker thread, spool and dead letters in front of one :class:`Adapter`.

    ``options`` are read once, here (a frozen :class:`DeliveryOptions`; the
    defaults when None).  Nothing is sent before the first ``put()`` or ``start()``.
    """

    def __init__(self, adapter: Adapter, options: DeliveryOptions | None = None) -> None:
        options = DeliveryOptions() if options is None else options
        self._adapter = adapter
        self.options = options
        self._batch_events = options.max_batch_events
        self._batch_bytes = options.max_batch_bytes
        self._flush_interval = options.flush_interval
        self._max_events = options.max_queue_events
        self._max_bytes = options.max_queue_bytes
        # "Pressure": the queue is half full; the worker then moves it to the spool if it can.
        self._pressure_events = (self._max_events + 1) // 2
        self._pressure_bytes = (self._max_bytes + 1) // 2
        self._overflow = options.effective_overflow
        self._block_timeout = options.block_timeout
        self._max_retry_time = options.max_retry_time
        self._close_timeout = options.close_timeout
        self._report_interval = options.drop_report_interval
        self._backoff = Backoff(options.retry_initial_backoff, options.retry_max_backoff)
        self._spool: Spool | None = None
        if options.spool_dir:
            _check_spool_dir_unused(options.spool_dir)
            try:
                self._spool = Spool(
                    options.spool_dir,
                    max_bytes=options.max_spool_bytes,
                    segment_bytes=options.spool_segment_bytes,
                    fsync=options.spool_fsync,
                    evict_oldest=self._overflow == "drop_oldest",
                )
            except OSError as exc:
                raise SinkConfigError(
                    f"spool_dir {options.spool_dir!r} cannot be used: {exc.strerror or exc}"
                ) from None
        dead_letter_file = options.dead_letter_path
        self._dead = DeadLetterFile(dead_letter_file) if dead_letter_file else None
        self._closed = False
        self._close_done = False  # close() has finished: reopen() may start over
        self._reset_state()
        _open_engines.add(self)
        metrics.observe(self)

    def start(self) -> None:
        """Start replaying the spool now if it holds events (otherwise the first event starts)."""
        if self._spool is not None and self._spool.has_backlog():
            with self._lock:
                if self._worker is None and not self._closed:
                    self._start_worker_locked()

    def _reset_state(self) -> None:
        """Fresh locks, an empty queue and zero counters (at start and in a forked child)."""
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the worker waits here
        self._done = threading.Condition(self._lock)  # flush() and blocked producers wait here
        self._queue: deque[Envelope] = deque()
        self._queue_bytes = 0
        self._inflight: list[Envelope] = []  # events from the queue the worker holds
        self._pending: list[Envelope] = []  # events waiting for their next attempt
        self._retry_at = 0.0
        self._attempt = 0
        self._first_failure = 0.0
        self._ticket = 0
        self._flush_waiters = 0
        self._stopping = False
        self._abandoned = False
        self._worker: threading.Thread | None = None
        self._worker_ident: int | None = None
        self._opened = False
        self._counts = Counter(dict.fromkeys(metrics.COUNTERS, 0))
        self._last_error: str | None = None
        self._drops: Counter[str] = Counter()
        self._next_report = 0.0
        self._next_scan = time.monotonic() + RESCAN_INTERVAL

    @property
    def label(self) -> str:
        """The adapter's name in warnings, dead letters and metrics."""
        return self._adapter.label

    @property
    def dead_letter_path(self) -> str | None:
        """Where events rejected for good are written (None: they are dropped and counted)."""
        return self._dead.path if self._dead is not None else None

    @property
    def worker_ident(self) -> int | None:
        """Thread id of the worker (records it logs are not fed back into the sink)."""
        return self._worker_ident

    # ------------------------------------------------------------------ hot path

    def put(self, data: str, event_id: str | None = None) -> None:
        """Enqueue one encoded event (a new id unless ``event_id``).  Never touches the network."""
        due = False
        with self._lock:
            self._counts["emitted"] += 1
            reopened = self._closed and self._close_done and not _exiting and self._reopen_locked()
            if not self._closed:
                self._enqueue_locked(Envelope(event_id or next_event_id(), data))
            else:
                self._drop_locked(1, "sink closed")
                due = time.monotonic() >= self._next_report
        if reopened:
            self._log_reopened()
        elif due:  # closed, so no worker: warn from here, still once per interval
            self._report_drops()

    def _enqueue_locked(self, env: Envelope) -> None:
        queue = self._queue
        count = len(queue) + 1
        if (
            count > self._max_events
            or self._queue_bytes + env.size + count * EVENT_OVERHEAD > self._max_bytes
        ):
            if not self._make_room_locked(env):
                return
            count = len(queue) + 1
        self._ticket += 1
        env.ticket = self._ticket
        env.enqueued = time.monotonic()
        queue.append(env)
        before = self._queue_bytes
        self._queue_bytes = size = before + env.size
        if self._worker is None:
            self._start_worker_locked()
        # Wake the worker only when the queue crosses a level it acts on, not on every event.
        memory = size + count * EVENT_OVERHEAD
        if (
            count == 1
            or count == self._batch_events
            or count == self._pressure_events
            or before < self._batch_bytes <= size
            or memory - env.size - EVENT_OVERHEAD < self._pressure_bytes <= memory
        ):
            self._work.notify()

    def _memory_locked(self) -> int:
        """Bytes counted against ``max_queue_bytes``: the JSON plus EVENT_OVERHEAD per event."""
        return self._queue_bytes + len(self._queue) * EVENT_OVERHEAD

    def _fits(self, env: Envelope) -> bool:
        return len(self._queue) < self._max_events and (
            self._memory_locked() + env.size + EVENT_OVERHEAD <= self._max_bytes
        )

    def _make_room_locked(self, env: Envelope) -> bool:
        """Apply the overflow policy; True if ``env`` may now be queued."""
        policy = self._overflow
        if env.size + EVENT_OVERHEAD > self._max_bytes:
            if policy == "spill":
                self._spill_locked([env])
            else:
                self._drop_locked(1, "event larger than max_queue_bytes")
            return False
        if policy == "drop_newest":
            self._drop_locked(1, "queue full")
            return False
        queue = self._queue
        if policy == "drop_oldest":
            dropped = 0
            while not self._fits(env):
                self._queue_bytes -= queue.popleft().size
                dropped += 1
            self._drop_locked(dropped, "queue full, oldest dropped")
            return True
        if policy == "block":
            deadline = time.monotonic() + self._block_timeout
            while not self._fits(env):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    self._drop_locked(1, "queue full after block_timeout")
                    return False
                self._done.wait(remaining)
            return True
        # spill: move the oldest events to the spool, one small chunk (one write) per call;
        # the worker, woken here, moves the rest of the queue as soon as it is free.
        chunk: list[Envelope] = []
        chunk_bytes = 0
        while queue and (
            not self._fits(env)
            or (len(chunk) < SPILL_CHUNK_EVENTS and chunk_bytes < SPILL_CHUNK_BYTES)
        ):
            old = queue.popleft()
            self._queue_bytes -= old.size
            chunk_bytes += old.size
            chunk.append(old)
        self._spill_locked(chunk)
        return True

    def _spill_locked(self, envelopes: list[Envelope]) -> None:
        """Write to the spool from the caller's thread (queue full; worker busy); holds the lock."""
        assert self._spool is not None
        refused, evicted = self._spool.append(envelopes)
        self._record_spooled_locked(len(envelopes), refused, evicted)
        self._work.notify()

    def _record_spooled_locked(self, count: int, refused: list[Envelope], evicted: int) -> None:
        self._counts["spooled"] += count - len(refused)
        if refused:
            error = self._spool.write_error if self._spool is not None else None
            self._drop_locked(len(refused), f"spool cannot be written: {error}" if error else "spool full")
        if evicted:
            self._drop_locked(evicted, "spool full, oldest dropped")

    def _drop_locked(self, count: int, reason: str) -> None:
        if count <= 0:
            return
        self._counts["dropped"] += count
        if not self._drops:
            self._work.notify()  # the first drop since the last report
        self._drops[reason] += count

    def _start_worker_locked(self) -> None:
        worker = threading.Thread(
            target=self._run, name=f"telemetry-sinks-delivery[{self.label}]", daemon=True
        )
        try:
            worker.start()
        except RuntimeError:  # interpreter shutting down: close() keeps the events
            return
        self._worker = worker
        self._worker_ident = worker.ident

    # ------------------------------------------------------------------ worker

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    action = self._next_action_locked()
                if action is None:
                    break
                try:
                    action()
                except Exception as exc:  # a bug; keep the worker alive, and lose nothing
                    log.exception("delivery worker of sink %r failed", self.label)
                    with self._lock:
                        self._last_error = self._adapter.mask(error_text(exc))
                        self._retry_stranded_locked()
                        self._work.wait(0.1)
        finally:
            with self._lock:
                abandoned = self._retired_locked()
                self._done.notify_all()
            if not abandoned:
                self._disconnect()

    def _retired_locked(self) -> bool:
        """True in the worker thread once close() gave up on it (a new one may have taken over)."""
        return self._abandoned or threading.current_thread() is not self._worker

    def _retry_stranded_locked(self) -> None:
        """After an unexpected error, retry the in-memory events the failed action held.

        Spooled events stay in their segment and are replayed anyway; events the
        backend may already have taken are sent again (at-least-once).
        """
        stranded = [env for env in self._inflight if env.segment is None]
        if not stranded or self._pending:
            return
        now = time.monotonic()
        self._attempt += 1
        self._pending = self._inflight = stranded
        self._first_failure = now
        self._retry_at = now + self._backoff.delay(self._attempt)

    def _next_action_locked(self) -> Action | None:
        """Decide what the worker does next, waiting until there is something to do."""
        while True:
            if self._retired_locked():
                return None
            now = time.monotonic()
            queue, spool = self._queue, self._spool
            urgent = self._flush_waiters > 0 or self._stopping
            if self._stopping and not queue and not self._inflight:
                return None
            if self._drops and now >= self._next_report:
                return self._report_drops
            ready = bool(queue) and (
                urgent
                or len(queue) >= self._batch_events
                or self._queue_bytes >= self._batch_bytes
                or now - queue[0].enqueued >= self._flush_interval
            )
            pressure = (
                len(queue) >= self._pressure_events
                or self._memory_locked() >= self._pressure_bytes
            )
            # The queue's deadline matters only where the worker would act on it.
            queue_due = queue[0].enqueued + self._flush_interval if queue else _INF
            if self._pending:
                durable = self._pending[0].segment is not None
                gave_up = now - self._first_failure >= self._max_retry_time
                if not durable and spool is not None and (urgent or ready or pressure or gave_up):
                    return self._spool_pending
                if now >= self._retry_at:
                    return self._send_pending
                if durable and (ready or pressure):
                    return self._spool_queue
                wake = self._retry_at
                if not durable and spool is not None:
                    wake = min(wake, self._first_failure + self._max_retry_time)
                if spool is not None:
                    wake = min(wake, queue_due)
            elif now < self._retry_at:  # backend down, failed events already spooled
                if spool is not None and ready:
                    return self._spool_queue
                wake = self._retry_at if spool is None else min(self._retry_at, queue_due)
            elif spool is not None and spool.has_backlog():
                if queue and (urgent or pressure):
                    return self._spool_queue
                return self._replay
            elif ready:
                return self._send_queue
            else:
                wake = queue_due
            if spool is not None:
                if now >= self._next_scan:
                    return self._rescan
                wake = min(wake, self._next_scan)
            if self._drops:
                wake = min(wake, self._next_report)
            self._work.wait(None if wake == _INF else max(0.0, wake - now))

    # ------------------------------------------------------------------ worker actions

    def _send_queue(self) -> None:
        with self._lock:
            batch = self._take_batch_locked()
            self._inflight = batch
            self._done.notify_all()  # room in the queue
        self._deliver(batch)

    def _take_batch_locked(self) -> list[Envelope]:
        """Remove the next batch from the queue, holding the lock as briefly as possible."""
        queue = self._queue
        if len(queue) <= self._batch_events and self._queue_bytes <= self._batch_bytes:
            batch = list(queue)  # the usual case: the whole queue is one batch
            queue.clear()
            self._queue_bytes = 0
            return batch
        batch = next(split_requests(queue, self._batch_events, self._batch_bytes))
        popleft = queue.popleft  # in place: blocked producers hold a reference to the deque
        for _ in range(len(batch)):
            popleft()
        self._queue_bytes -= sum(map(_SIZE, batch))
        return batch

    def _replay(self) -> None:
        assert self._spool is not None
        batch = self._spool.next_batch(self._batch_events, self._batch_bytes)
        if batch:
            self._deliver(batch)

    def _send_pending(self) -> None:
        with self._lock:
            batch = self._pending
            self._counts["retried"] += len(batch)
        self._deliver(batch)

    def _spool_pending(self) -> None:
        assert self._spool is not None
        with self._lock:
            batch = self._pending
        refused, evicted = self._spool.append(batch)
        with self._lock:
            self._record_spooled_locked(len(batch), refused, evicted)
            self._pending = self._inflight = []
            self._done.notify_all()

    def _spool_queue(self) -> None:
        assert self._spool is not None
        with self._lock:
            chunk = list(self._queue)
            self._queue.clear()
            self._queue_bytes = 0
            self._inflight = chunk
            self._done.notify_all()
        refused, evicted = self._spool.append(chunk)
        with self._lock:
            self._record_spooled_locked(len(chunk), refused, evicted)
            self._inflight = []
            self._done.notify_all()

    def _rescan(self) -> None:
        assert self._spool is not None
        self._spool.scan()
        with self._lock:
            self._next_scan = time.monotonic() + RESCAN_INTERVAL

    def _report_drops(self) -> None:
        with self._lock:
            drops, self._drops = self._drops, Counter()
            self._next_report = time.monotonic() + self._report_interval
        if drops:
            detail = ", ".join(f"{reason}: {count}" for reason, count in sorted(drops.items()))
            log.warning(
                "sink %r dropped %d events (%s); see its stats()",
                self.label,
                sum(drops.values()),
                detail,
            )

    # ------------------------------------------------------------------ sending

    def _disconnect(self) -> None:
        """Close the adapter's connection (if open); the next send opens a new one."""
        if not self._opened:
            return
        self._opened = False
        try:
            self._adapter.close_backend()
        except Exception:
            log.exception("sink %r: close_backend() failed", self.label)

    def _call_adapter(self, batch: list[Envelope]) -> BatchResult:
        """Run the adapter (connecting first if needed); exceptions become a result for the batch."""
        try:
            if not self._opened:
                self._adapter.open()
                self._opened = True
            result = self._adapter.send_batch(batch)
        except PermanentError as exc:
            return BatchResult.reject_all(batch, error_text(exc))
        except RetryableError as exc:
            return BatchResult.retry_all(batch, error_text(exc), exc.retry_after)
        except Exception as exc:
            return BatchResult.retry_all(batch, error_text(exc))
        if result is None:
            return BatchResult.ok()
        if not isinstance(result, BatchResult):  # an adapter bug: keep the events, say why
            problem = f"send_batch returned {type(result).__name__}, not a BatchResult or None"
            return BatchResult.retry_all(batch, problem)
        return result

    def _deliver(self, batch: list[Envelope]) -> None:
        """Send ``batch`` and settle every event in it: acknowledged, retried or rejected."""
        result = self._call_adapter(batch)
        if result.reconnect:
            self._disconnect()
        durable = batch[0].segment is not None
        retry: list[Envelope] = []
        rejected: list[tuple[Envelope, str]] = []
        done = batch
        if result.retryable or result.permanent:
            mask = self._adapter.mask
            retry = [env for env in batch if env.event_id in result.retryable]
            done = [env for env in batch if env.event_id not in result.retryable]
            rejected = [
                (env, mask(result.permanent[env.event_id]))
                for env in done
                if env.event_id in result.permanent
            ]
        if rejected:
            self._reject(rejected)
        if durable and done:
            assert self._spool is not None
            self._spool.ack(done)
        now = time.monotonic()
        with self._lock:
            if self._retired_locked():
                return
            acked = len(done) - len(rejected)
            self._counts["sent"] += acked
            if durable:
                self._counts["replayed"] += acked
            if retry:
                self._last_error = self._adapter.mask(result.retryable[retry[0].event_id])
                self._attempt += 1
                self._retry_at = now + self._backoff.delay(self._attempt, result.retry_after)
                if batch is not self._pending:  # a fresh batch: its retry time starts now
                    self._first_failure = now
                self._pending = retry
                self._inflight = [] if durable else retry
            else:
                if rejected:
                    self._last_error = rejected[0][1]
                self._pending = self._inflight = []
                self._retry_at = 0.0
                self._attempt = 0
            self._done.notify_all()

    def _reject(
        self,
        rejected: Sequence[tuple[Envelope, str]],
        otherwise: str = "rejected by the backend, no dead_letter_file",
    ) -> None:
        """Dead-letter events that will not be delivered (or count them as dropped: ``otherwise``)."""
        written = self._dead is not None and self._dead.write(self.label, rejected)
        with self._lock:
            if written:
                self._counts["dead_lettered"] += len(rejected)
            else:
                self._drop_locked(len(rejected), otherwise)

    # ------------------------------------------------------------------ flush / close

    def _unsettled_locked(self, ticket: int) -> bool:
        """True while an event with ticket <= ``ticket`` is neither acknowledged nor spooled."""
        return bool(
            (self._queue and self._queue[0].ticket <= ticket)
            or (self._inflight and self._inflight[0].ticket <= ticket)
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far is acknowledged, spooled or dead-lettered."""
        with self._lock:
            target = self._ticket
            if not self._unsettled_locked(target):
                return True
            self._flush_waiters += 1
            self._work.notify()
            try:
                self._done.wait_for(
                    lambda: not self._unsettled_locked(target)
                    or self._abandoned
                    or self._worker is None
                    or not self._worker.is_alive(),
                    timeout,
                )
            finally:
                self._flush_waiters -= 1
            return not self._unsettled_locked(target)

    def close(self) -> None:
        """Drain within ``close_timeout``; spool (or dead-letter) what is left; stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._done.notify_all()  # producers blocked on a full queue give up
        _open_engines.discard(self)
        deadline = time.monotonic() + self._close_timeout
        self.flush(self._close_timeout)
        with self._lock:
            self._stopping = True
            self._work.notify()
        worker = self._worker
        if worker is not None:
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._abandoned = True  # a worker stuck in send_batch must not touch anything now
            leftovers = self._inflight + list(self._queue)
            self._inflight, self._pending = [], [e for e in self._pending if e.segment]
            self._queue.clear()
            self._queue_bytes = 0
            self._work.notify()
            self._done.notify_all()
            last_error = self._last_error
        try:
            if leftovers:
                self._keep_leftovers(leftovers, last_error)
            self._report_drops()
            if self._spool is not None:
                self._spool.close()
        finally:
            with self._lock:
                self._close_done = True

    def reopen(self) -> bool:
        """Open a closed engine again: new worker on the next event, spool reopened and replayed.

        Counters go on from where they were.  Returns False if the engine is open, still
        closing, or the process is exiting.  :meth:`put` calls this on a closed engine.
        """
        with self._lock:
            if not (self._closed and self._close_done and not _exiting and self._reopen_locked()):
                return False
        self._log_reopened()
        return True

    def _reopen_locked(self) -> bool:
        if self._spool is not None:
            self._spool.reopen()
        self._closed = self._close_done = self._stopping = self._abandoned = False
        self._opened = False  # close_backend() ran: the adapter connects again
        self._worker = self._worker_ident = None  # a worker stuck in a send stays retired
        self._inflight, self._pending = [], []  # spooled ones are read again from the spool
        self._retry_at, self._attempt = 0.0, 0
        self._next_scan = time.monotonic() + RESCAN_INTERVAL
        _open_engines.add(self)
        if self._spool is not None and self._spool.has_backlog():
            self._start_worker_locked()
        return True

    def _log_reopened(self) -> None:
        spool = self._spool
        backlog = f"; spool {spool.directory} reopened ({spool.size} bytes to replay)" if spool else ""
        log.info(
            "sink %r was closed (logging.shutdown() or a logging reconfiguration such as dictConfig "
            "closes every handler) and received an event: reopened, worker restarted%s",
            self.label,
            backlog,
        )

    def _keep_leftovers(self, leftovers: list[Envelope], last_error: str | None) -> None:
        """Events still undelivered at close: to the spool, else the dead-letter file."""
        if self._spool is not None:
            refused, evicted = self._spool.append(leftovers)
            with self._lock:
                self._record_spooled_locked(len(leftovers), refused, evicted)
            return
        reason = f"not delivered within close_timeout={self._close_timeout:g} s: {last_error}"
        self._reject([(env, reason) for env in leftovers], "undelivered at close, no spool_dir")

    def backpressure(self) -> bool:
        """True when new events would soon be dropped or block: memory (and spool) nearly full."""
        with self._lock:
            memory_full = (
                len(self._queue) >= 0.9 * self._max_events
                or self._memory_locked() >= 0.9 * self._max_bytes
            )
        if not memory_full:
            return False
        if self._overflow == "spill" and self._spool is not None:
            return self._spool.size >= 0.9 * self.options.max_spool_bytes
        return True

    def stats(self) -> dict[str, Any]:
        """Counters and levels (see :mod:`telemetry_sinks.delivery.metrics`) and ``last_error``."""
        with self._lock:
            stats: dict[str, Any] = dict(self._counts)
            stats["queue_events"] = len(self._queue)
            stats["queue_bytes"] = self._memory_locked()
            stats["last_error"] = self._last_error
        stats["spool_bytes"] = self._spool.size if self._spool is not None else 0
        return stats

    def after_fork_in_child(self) -> None:
        """Start over in a forked child: the parent keeps (and delivers) its own events."""
        self._reset_state()
        if self._spool is not None:
            self._spool.after_fork_in_child()
        if self._dead is not None:
            self._dead.after_fork_in_child()


def _check_spool_dir_unused(directory: str) -> None:
    """Two sinks of one process must not share a spool: each would replay the other's events."""
    wanted = os.path.abspath(os.path.expanduser(directory))
    for engine in list(_open_engines):
        if engine._spool is not None and engine._spool.directory == wanted:
            raise SinkConfigError(
                f"spool_dir {directory!r} is already used by sink {engine.label!r}: "
                "give each sink its own spool_dir."
            )


# ---------------------------------------------------------------------- process hooks

_open_engines: weakref.WeakSet[DeliveryEngine] = weakref.WeakSet()


#: Set by the atexit hook: from then on a closed engine stays closed.
_exiting = False


def _close_all_at_exit() -> None:
    global _exiting
    _exiting = True
    for engine in list(_open_engines):
        try:
            engine.close()
        except Exception:
            log.exception("closing sink %r at exit failed", engine.label)


def _reset_all_in_child() -> None:
    for engine in list(_open_engines):
        engine.after_fork_in_child()


atexit.register(_close_all_at_exit)
os.register_at_fork(after_in_child=_reset_all_in_child)

__all__ = ["EVENT_OVERHEAD", "DeliveryEngine"]
