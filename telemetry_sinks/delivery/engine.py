"""The delivery engine: bounded queue, background worker, retries, durable spool and dead letters.

``DeliveryEngine(adapter, options)`` delivers events through an
:class:`~telemetry_sinks.delivery.adapter.Adapter` (the code that talks to one
backend) as :class:`~telemetry_sinks.delivery.options.DeliveryOptions` say.

``put`` (the hot path) never touches the network.  Without a ``spool_dir`` it
appends the event to an in-memory queue under a lock.  With one, it first
appends the event to the spool (into the page cache: the event survives ``kill -9``
of the process from then on, a power loss too with ``spool_fsync``), then keeps
it in memory if the queue has room; if not, the event waits on disk only and is
read back from there.

One daemon thread per engine, started on the first event (or at ``start()`` when
the spool holds events from earlier runs), does everything else:

* connects through the adapter's ``open()``, and connects again after a failed
  ``open()``, when a result asks for it (``BatchResult.reconnect``) and after a fork;
* replays the spool's backlog (events of earlier runs, events only on disk),
  oldest first, before the newer events in memory;
* sends batches (by count, bytes or age) through the adapter's ``send_batch``;
* retries retryable failures with backoff, honouring the backend's Retry-After,
  until the backend takes or rejects them (credentials and permissions refused
  included: warned about once per interval, counted in ``auth_failures``);
* records in the spool what was settled (acknowledged or dead-lettered), so a
  restart replays only the rest;
* writes permanent rejections to the dead-letter file;
* reports dropped events as one warning per interval on ``telemetry_sinks.delivery``.

A retry blocks the newer events behind it, so events reach the backend in
emission order; a poison event that always fails retryably blocks the sink (it
shows in ``last_error``).

``flush()`` waits until every event put before it is acknowledged or
dead-lettered (a pending retry is tried at once, after any Retry-After the backend
asked for).  ``close()`` delivers within ``close_timeout`` what it can, the
spool's backlog included, then stops; what is left stays in the spool (without a
spool it is dead-lettered, or counted as dropped).  Every open engine is closed
by an ``atexit`` hook (all at once, so the process waits ``close_timeout`` once,
not once per sink) and reset in a forked
child (empty queue, fresh locks, a new worker on first use, ``open()`` called again).

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
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import Any

from ..errors import SinkConfigError
from . import metrics
from .adapter import Adapter
from .deadletter import DeadLetterFile
from .envelope import AuthError, BatchResult, Envelope, PermanentError, RetryableError, next_event_id
from .options import DeliveryOptions
from .retry import Backoff, error_text
from .spool import FULL, KEPT, REFUSED, Segment, Spool
from .toolkit import split_requests

log = logging.getLogger("telemetry_sinks.delivery")

#: How often the worker looks for segments left in ``spool_dir`` by other processes.
RESCAN_INTERVAL = 30.0
#: Memory a queued event takes besides its JSON text (Envelope, id, str header, counters,
#: allocator slack; measured by ``python -m bench``): counted against ``max_queue_bytes``.
EVENT_OVERHEAD = 384
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
        self._overflow = options.effective_overflow
        self._block_timeout = options.block_timeout
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
        self._generation = 0  # counts reopen(): a worker of an earlier generation is retired
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
        # Reentrant: the signal hook (install_signal_handlers) closes the engines in the main
        # thread, which the signal may have interrupted inside put().
        self._lock = threading.RLock()
        self._work = threading.Condition(self._lock)  # the worker waits here
        self._done = threading.Condition(self._lock)  # flush() and blocked producers wait here
        self._queue: deque[Envelope] = deque()
        self._queue_bytes = 0
        self._inflight: list[Envelope] = []  # events from the queue the worker holds
        self._settling = 0  # deliveries between acknowledging in the spool and counting (flush waits)
        self._pending: list[Envelope] = []  # events waiting for their next attempt
        self._pending_replayed = False  # the pending events were read back from the spool
        self._retry_at = 0.0
        #: The backend's own "not before" (Retry-After) for the pending retry: flush and close skip
        #: the engine's backoff, never the backend's request.
        self._not_before = 0.0
        self._attempt = 0
        self._ticket = 0
        self._flush_waiters = 0
        self._spilling = False  # the last event was written to the spool only
        self._stopping = False
        self._abandoned = False
        self._worker: threading.Thread | None = None
        self._worker_ident: int | None = None
        self._opened = False
        self._counts = Counter(dict.fromkeys(metrics.COUNTERS, 0))
        self._last_error: str | None = None
        self._drops: Counter[str] = Counter()
        self._next_report = 0.0
        self._next_auth_warning = 0.0
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
        """Accept one encoded event (a new id unless ``event_id``).  Never touches the network.

        With a spool, the event is in the spool file when this returns (unless the
        spool is full or cannot be written: then it is held in memory, or dropped).
        """
        due = False
        with self._lock:
            self._counts["emitted"] += 1
            reopened = self._closed and self._close_done and not _exiting and self._reopen_locked()
            if self._closed:
                self._drop_locked(1, "sink closed")
                due = time.monotonic() >= self._next_report
            else:
                env = Envelope(event_id or next_event_id(), data)
                if self._spool is None:
                    self._enqueue_locked(env)
                else:
                    self._spool_locked(env)
        if reopened:
            self._log_reopened()
        elif due:  # closed, so no worker: warn from here, still once per interval
            self._report_drops()

    def _spool_locked(self, env: Envelope) -> None:
        """Write ``env`` to the spool; keep it in memory too if the queue has room."""
        spool = self._spool
        assert spool is not None
        fits = self._fits(env)
        outcome, evicted = spool.write(env, fits)
        if outcome == REFUSED and spool.refusal == FULL and self._overflow == "block":
            deadline = time.monotonic() + self._block_timeout
            while outcome == REFUSED and spool.refusal == FULL and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._done.wait(remaining)
                fits = self._fits(env)
                outcome, lost = spool.write(env, fits)
                evicted += lost
        if evicted:
            self._drop_locked(evicted, "spool full, oldest dropped")
        if outcome == REFUSED:
            if fits:  # not on disk, but memory has room: delivered unless the process dies
                self._append_locked(env)
            else:
                why = spool.refusal
                self._drop_locked(1, why if why == FULL else f"spool cannot be written: {why}")
            return
        self._counts["spooled"] += 1
        if outcome == KEPT:
            self._spilling = False
            self._append_locked(env)
            return
        if not self._spilling:  # the first event on disk only: the worker replays from there
            self._spilling = True
            if self._worker is None:
                self._start_worker_locked()
            self._work.notify()

    def _enqueue_locked(self, env: Envelope) -> None:
        """Queue ``env`` in memory (no spool): the overflow policy decides when it is full."""
        if not self._fits(env) and not self._make_room_locked(env):
            return
        self._append_locked(env)

    def _append_locked(self, env: Envelope) -> None:
        queue = self._queue
        self._ticket += 1
        env.ticket = self._ticket
        env.enqueued = time.monotonic()
        queue.append(env)
        count = len(queue)
        before = self._queue_bytes
        self._queue_bytes = size = before + env.size
        if self._worker is None:
            self._start_worker_locked()
        # Wake the worker only when the queue crosses a level it acts on, not on every event.
        if count == 1 or count == self._batch_events or before < self._batch_bytes <= size:
            self._work.notify()

    def _memory_locked(self) -> int:
        """Bytes counted against ``max_queue_bytes``: the JSON plus EVENT_OVERHEAD per event."""
        return self._queue_bytes + len(self._queue) * EVENT_OVERHEAD

    def _fits(self, env: Envelope) -> bool:
        return len(self._queue) < self._max_events and (
            self._memory_locked() + env.size + EVENT_OVERHEAD <= self._max_bytes
        )

    def _make_room_locked(self, env: Envelope) -> bool:
        """Apply the overflow policy of a memory-only sink; True if ``env`` may now be queued."""
        policy = self._overflow
        if env.size + EVENT_OVERHEAD > self._max_bytes:
            self._drop_locked(1, "event larger than max_queue_bytes")
            return False
        if policy == "drop_oldest":
            queue = self._queue
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
        self._drop_locked(1, "queue full")
        return False

    def _drop_locked(self, count: int, reason: str) -> None:
        if count <= 0:
            return
        self._counts["dropped"] += count
        if not self._drops:
            self._work.notify()  # the first drop since the last report
        self._drops[reason] += count

    def _start_worker_locked(self) -> None:
        worker = threading.Thread(
            target=self._run,
            args=(self._generation,),
            name=f"telemetry-sinks-delivery[{self.label}]",
            daemon=True,
        )
        try:
            worker.start()
        except RuntimeError:  # interpreter shutting down: close() keeps the events
            return
        self._worker = worker
        self._worker_ident = worker.ident

    # ------------------------------------------------------------------ worker

    def _run(self, generation: int) -> None:
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
                current = generation == self._generation  # not replaced by reopen()
                self._done.notify_all()
            if current:
                self._disconnect()

    def _retired_locked(self) -> bool:
        """True in the worker thread once close() gave up on it (a new one may have taken over)."""
        return self._abandoned or threading.current_thread() is not self._worker

    def _retry_stranded_locked(self) -> None:
        """After an unexpected error, retry the events the failed action held.

        Events the backend may already have taken are sent again (at-least-once).
        """
        stranded = self._inflight
        if not stranded or self._pending:
            return
        self._attempt += 1
        self._pending = stranded
        self._pending_replayed = False
        self._retry_at = time.monotonic() + self._backoff.delay(self._attempt)
        self._not_before = 0.0

    def _next_action_locked(self) -> Action | None:
        """Decide what the worker does next, waiting until there is something to do."""
        while True:
            if self._retired_locked():
                return None
            now = time.monotonic()
            queue, spool = self._queue, self._spool
            if self._drops and now >= self._next_report:
                return self._report_drops
            # Oldest first: a retry; a replay under way or earlier runs' events; the queue;
            # then the events that waited on disk only because memory was full.
            wake = _INF
            if self._pending:
                if now >= self._retry_at:
                    return self._send_pending
                wake = self._retry_at
            elif spool is not None and spool.has_backlog():
                return self._replay
            elif queue:
                urgent = self._flush_waiters > 0 or self._stopping
                if (
                    urgent
                    or len(queue) >= self._batch_events
                    or self._queue_bytes >= self._batch_bytes
                    or now - queue[0].enqueued >= self._flush_interval
                ):
                    return self._send_queue
                wake = queue[0].enqueued + self._flush_interval
            elif spool is not None and spool.has_spilled():
                return self._replay
            elif self._stopping:
                return None  # everything delivered: close() closes the spool
            elif spool is not None and spool.idle_head():
                return spool.retire_head
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
        self._deliver(batch, replayed=False)

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
            self._deliver(batch, replayed=True)

    def _send_pending(self) -> None:
        with self._lock:
            batch = self._pending
            replayed = self._pending_replayed
            self._counts["retried"] += len(batch)
        self._deliver(batch, replayed=replayed)

    def _rescan(self) -> None:
        assert self._spool is not None
        self._spool.check_directory()
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
            auth = isinstance(exc, AuthError)
            return BatchResult.retry_all(batch, error_text(exc), exc.retry_after, auth=auth)
        except Exception as exc:
            return BatchResult.retry_all(batch, error_text(exc))
        if result is None:
            return BatchResult.ok()
        if not isinstance(result, BatchResult):  # an adapter bug: keep the events, say why
            problem = f"send_batch returned {type(result).__name__}, not a BatchResult or None"
            return BatchResult.retry_all(batch, problem)
        return result

    def _deliver(self, batch: list[Envelope], *, replayed: bool) -> None:
        """Send ``batch`` and settle every event in it: acknowledged, retried or rejected."""
        result = self._call_adapter(batch)
        if result.reconnect:
            self._disconnect()
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
        auth_error = self._adapter.mask(result.auth_error) if result.auth_error else None
        with self._lock:
            if self._retired_locked():
                return  # close() gave up on this send: its events are the spool's (or dead letters)
            # Until the counters below are updated, flush() waits even if the spool (acknowledged
            # outside the lock) already says every event is settled: then stats() agree with it.
            self._settling += 1
        try:
            if rejected:
                self._reject(rejected)
            if self._spool is not None and done:
                self._spool.ack(done)
        except BaseException:
            with self._lock:
                self._settling -= 1
                self._done.notify_all()
            raise
        now = time.monotonic()
        with self._lock:
            self._settling -= 1
            if self._retired_locked():
                self._done.notify_all()
                return
            acked = len(done) - len(rejected)
            self._counts["sent"] += acked
            if replayed:
                self._counts["replayed"] += acked
            if auth_error:
                self._counts["auth_failures"] += 1
            warn = auth_error is not None and now >= self._next_auth_warning
            if warn:
                self._next_auth_warning = now + self._report_interval
            if retry:
                self._last_error = auth_error or self._adapter.mask(result.retryable[retry[0].event_id])
                self._attempt += 1
                self._retry_at = now + self._backoff.delay(self._attempt, result.retry_after)
                self._not_before = now + result.retry_after if result.retry_after else 0.0
                self._pending = retry
                self._pending_replayed = replayed
                self._inflight = [] if replayed else retry
            else:
                if rejected:
                    self._last_error = rejected[0][1]
                self._pending = self._inflight = []
                self._retry_at = self._not_before = 0.0
                self._attempt = 0
            self._done.notify_all()
        if warn:
            self._warn_auth(auth_error, len(retry))  # type: ignore[arg-type]  # set when warn is

    def _warn_auth(self, reason: str, count: int) -> None:
        """The backend refused the credentials or permissions: say so loudly, with what to check."""
        where = (f"on disk in {self._spool.directory}" if self._spool is not None
                 else "in memory (at most max_queue_events; set spool_dir to keep them on disk)")  # fmt: skip
        advice = getattr(self._adapter, "credentials_help", None) or "the sink's credentials"
        log.warning(
            "sink %r: the backend refused its credentials or permissions (%s); %d events and those "
            "after them are kept %s and retried with backoff until it accepts them. Check %s.",
            self.label,
            reason,
            count,
            where,
            advice,
        )

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

    def _unsettled_locked(self, ticket: int, marks: list[tuple[Segment, int]] | None) -> bool:
        """True while an event put before (``ticket`` in memory, ``marks`` in the spool) is
        neither acknowledged nor dead-lettered."""
        if self._settling or (self._queue and self._queue[0].ticket <= ticket) or (
            self._inflight and self._inflight[0].ticket <= ticket
        ):
            return True
        return bool(marks) and self._spool is not None and self._spool.unsettled(marks)  # type: ignore[arg-type]  # not None when marks

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event put so far is acknowledged or dead-lettered.

        A pending retry is tried at once instead of waiting out its backoff (but not
        before the time a backend asked for with Retry-After).  Returns False if
        ``timeout`` passed first (with a spool, the events are safe on disk).
        """
        with self._lock:
            target = self._ticket
            marks = self._spool.marks() if self._spool is not None else None
            if not self._unsettled_locked(target, marks):
                return True
            self._flush_waiters += 1
            if self._pending:
                self._retry_at = self._not_before
            self._work.notify()
            try:
                self._done.wait_for(
                    lambda: not self._unsettled_locked(target, marks)
                    or self._abandoned
                    or self._worker is None
                    or not self._worker.is_alive(),
                    timeout,
                )
            finally:
                self._flush_waiters -= 1
            return not self._unsettled_locked(target, marks)

    def close(self) -> None:
        """Deliver within ``close_timeout`` what is queued and spooled; keep the rest; stop the worker."""
        deadline = self.begin_close()
        if deadline is not None:
            self.finish_close(deadline)

    def begin_close(self) -> float | None:
        """Start closing: the worker delivers everything it can (retrying at once), then stops.

        Returns the deadline for :meth:`finish_close`, or None if already closed.
        """
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            self._stopping = True
            if self._pending:
                self._retry_at = self._not_before
            self._work.notify()
            self._done.notify_all()  # producers blocked on a full queue give up
        _open_engines.discard(self)
        return time.monotonic() + self._close_timeout

    def finish_close(self, deadline: float) -> None:
        """Wait for the worker until ``deadline``; keep what is undelivered; close the spool."""
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._abandoned = True  # a worker stuck in send_batch must not touch anything now
            leftovers = [env for env in self._inflight + list(self._queue) if env.segment is None]
            self._inflight, self._pending = [], []
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
        self._generation += 1
        self._opened = False  # close_backend() ran: the adapter connects again
        self._worker = self._worker_ident = None  # a worker stuck in a send stays retired
        self._inflight, self._pending = [], []  # spooled ones are read again from the spool
        self._retry_at, self._not_before, self._attempt = 0.0, 0.0, 0
        self._spilling = False
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
        """Events still undelivered at close and not on disk: to the spool, else the dead-letter file."""
        if self._spool is not None:
            refused, evicted = self._spool.append(leftovers)
            with self._lock:
                self._counts["spooled"] += len(leftovers) - len(refused)
                self._drop_locked(evicted, "spool full, oldest dropped")
            if not refused:
                return
            leftovers = refused
        reason = f"not delivered within close_timeout={self._close_timeout:g} s: {last_error}"
        self._reject([(env, reason) for env in leftovers], "undelivered at close, no spool_dir")

    def backpressure(self) -> bool:
        """True when new events would soon be dropped or block: memory (or the spool) nearly full."""
        if self._spool is not None:
            return self._spool.size >= 0.9 * self.options.max_spool_bytes
        with self._lock:
            return (
                len(self._queue) >= 0.9 * self._max_events
                or self._memory_locked() >= 0.9 * self._max_bytes
            )

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


def close_engines(engines: Iterable[DeliveryEngine] | None = None) -> None:
    """Close ``engines`` (default: every open one) together: each gets its ``close_timeout``
    from now, so the caller waits for the slowest, not for the sum."""
    started = []
    for engine in list(_open_engines if engines is None else engines):
        try:
            deadline = engine.begin_close()
        except Exception:
            log.exception("closing sink %r failed", engine.label)
            continue
        if deadline is not None:
            started.append((engine, deadline))
    for engine, deadline in started:
        try:
            engine.finish_close(deadline)
        except Exception:
            log.exception("closing sink %r failed", engine.label)


def _close_all_at_exit() -> None:
    global _exiting
    _exiting = True
    close_engines()


def _reset_all_in_child() -> None:
    for engine in list(_open_engines):
        engine.after_fork_in_child()


atexit.register(_close_all_at_exit)
os.register_at_fork(after_in_child=_reset_all_in_child)

__all__ = ["EVENT_OVERHEAD", "DeliveryEngine", "close_engines"]
