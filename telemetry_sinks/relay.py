"""``telemetry-sinks relay``: deliver capsules from Kafka topics to sinks, as a consumer group.

Applications and collectors produce capsules to Kafka (the Kafka sink); relays
consume them and write them to the stores analysts use: the archive, files,
Elasticsearch / OpenSearch, CloudWatch Logs, Cloud Logging, another collector
over HTTP.  Relays started with one ``group_id`` share the topics' partitions
(Kafka's consumer-group protocol), so delivery grows by starting more relays.

Each relay works in rounds, in one thread:

1. read up to ``max_poll_records`` messages (waiting at most ``poll_timeout``);
2. hand each message, in partition order, to every sink, under its event id;
3. wait until every sink's ``flush()`` reports the round settled (acknowledged
   by the backend, written to the sink's disk spool, or dead-lettered), keeping
   the group membership alive meanwhile (the partitions are paused while a
   backend is down);
4. commit, per partition, the offset after the round's last message.

So a relay killed at any moment loses nothing: the next owner of a partition
starts at its committed offset and delivers again only what was not committed,
at most one round.  Re-delivered events keep their event id: the capsule's
``__event_id__`` (a client's id, kept by the collector), else the ``event_id``
header the Kafka sink adds, else ``<topic>-<partition>-<offset>``, the same on
every re-delivery.  Network sinks send it (``__event_id__`` in HTTP bodies and
CloudWatch messages, the document ``_id`` of Elasticsearch / OpenSearch, whose
``create`` then drops the duplicate); the other sinks get it as ``__event_id__``
in the line they write, so a reader can drop duplicates by id.

On a rebalance the relay settles and commits the round it holds before it gives
its partitions up (``rebalance_timeout``); partitions it lost without notice (a
session timeout) are not committed, and their new owner delivers them again.
SIGTERM and SIGINT finish the current round, commit it, leave the group and close
the sinks.

Every network sink of a relay needs a dead-letter file (``dead_letter_file``, or
a ``spool_dir``, which implies one): an event its backend refuses for good is
then kept there before its offset is committed, instead of being lost.  Messages
that are not JSON objects are counted as ``invalid``, logged, and written to the
relay's own ``dead_letter_file`` when one is set; they never stop the partition.

The consumer is librdkafka's (confluent-kafka): ``pip install "telemetry-sinks[relay]"``.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeGuard

import orjson
from traitlets import CaselessStrEnum, Dict, Float, Instance, Int, List, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from .capsule import encode, to_json_data
from .delivery.deadletter import DeadLetterFile
from .delivery.envelope import EVENT_ID_FIELD, Envelope
from .delivery.metrics import register_collector
from .errors import MissingExtraError, SinkConfigError
from .kafka_options import KafkaClientOptions
from .masking import MaskingLogger, mask, strings_in
from .registry import load_sinks
from .sinks.base import Sink
from .sinks.network import NetworkSink

log = logging.getLogger("telemetry_sinks.relay")

#: Messages per partition whose offsets are remembered between stats updates (lag, rate).
RATE_WINDOW = 10.0
#: How often, in seconds, a relay waiting for its sinks says so in its log.
WAIT_REPORT_INTERVAL = 30.0
#: Longest event id taken from a message; longer (or non-ASCII) ids are replaced.
MAX_EVENT_ID_LENGTH = 256
#: A sink takes at most this share of its memory queue from one round before it is flushed.
QUEUE_SHARE = 0.5
_EVENT_OVERHEAD = 384  # the delivery core's per-event memory estimate


def _confluent() -> Any:
    try:
        import confluent_kafka
    except ImportError as exc:
        raise MissingExtraError(
            'The relay needs confluent-kafka (librdkafka): pip install "telemetry-sinks[relay]"'
        ) from exc
    return confluent_kafka


# --------------------------------------------------------------------------- sinks


class _Target:
    """One sink of the relay and how a message is handed to it."""

    def __init__(self, handler: logging.Handler) -> None:
        self.handler = handler
        #: The handler as a network sink (queued, settled by flush), a file-like sink, or neither.
        self.queued: NetworkSink | None = handler if isinstance(handler, NetworkSink) else None
        self.sink: Sink | None = handler if isinstance(handler, Sink) else None
        self.network = self.queued is not None
        self.label = self.queued.label if self.queued else (
            getattr(handler, "sink_name", "") or type(handler).__name__
        )
        # What was handed to a network sink since it last settled (its queue holds no more).
        self.unsettled_events = 0
        self.unsettled_bytes = 0
        self.max_events = self.max_bytes = 0
        if self.queued is not None:
            self.max_events = max(1, int(self.queued.max_queue_events * QUEUE_SHARE))
            self.max_bytes = max(1, int(self.queued.max_queue_bytes * QUEUE_SHARE))

    def full(self, size: int) -> bool:
        """True when one more event of ``size`` bytes must wait until this sink has settled."""
        return self.network and self.unsettled_events > 0 and (
            self.unsettled_events + 1 > self.max_events
            or self.unsettled_bytes + (self.unsettled_events + 1) * _EVENT_OVERHEAD + size > self.max_bytes
        )

    def put(self, text: str, payload: dict[str, Any], event_id: str, size: int) -> None:
        """Hand one event over; raises if a synchronous sink could not write it."""
        if self.queued is not None:
            self.queued.resend(text, event_id)
            self.unsettled_events += 1
            self.unsettled_bytes += size
            return
        if EVENT_ID_FIELD not in payload:
            payload = {EVENT_ID_FIELD: event_id, **payload}
        if self.sink is not None:
            with self.sink.lock:  # type: ignore[union-attr]  # logging.Handler's lock, made in __init__
                self.sink.write_payload(payload)
            return
        record = logging.LogRecord("telemetry_sinks.relay", logging.INFO, __file__, 0, payload, None, None)
        self.handler.handle(record)

    def flush(self, timeout: float) -> bool:
        """True once everything handed over is acknowledged, spooled or dead-lettered."""
        if self.queued is None:
            self.handler.flush()
            return True
        if self.queued.flush(timeout):
            self.unsettled_events = self.unsettled_bytes = 0
            return True
        return False

    def dropped(self) -> int:
        return int(self.queued.stats()["dropped"]) if self.queued is not None else 0

    def last_error(self) -> str | None:
        return self.queued.stats()["last_error"] if self.queued is not None else None


class _Round:
    """The messages of one poll: their offsets per partition, and whether delivery failed."""

    __slots__ = ("first", "next", "count", "size", "failure", "dropped_before", "abandoned")

    def __init__(self, dropped_before: list[int]) -> None:
        self.first: dict[tuple[str, int], int] = {}
        self.next: dict[tuple[str, int], int] = {}
        self.count = 0  # messages handed to every sink
        self.size = 0  # messages read
        self.failure: str | None = None
        self.dropped_before = dropped_before
        self.abandoned = False


# --------------------------------------------------------------------------- the relay


class Relay(LoggingConfigurable, KafkaClientOptions):
    """Consume capsules from Kafka topics as a consumer group and deliver them to sinks.

    Configured in the same traitlets files as the rest of telemetry-sinks::

        c.Relay.bootstrap_servers = "kafka-1:9092,kafka-2:9092"
        c.Relay.topics = ["telemetry-events"]
        c.Relay.group_id = "archive-writers"
        c.Relay.sinks = ["archive"]
        c.ArchiveSink.directory = "/srv/archive"

    See the module documentation for the delivery guarantee.
    """

    topics = List(
        Unicode(),
        help='Topics to consume; a name starting with "^" is a regular expression '
        '(e.g. "^events\\..*" for the topics a Kafka sink\'s topic template creates).',
    ).tag(config=True)
    group_id = Unicode(
        "telemetry-sinks-relay",
        help="Consumer group: relays with the same group share the partitions, each message "
        "is delivered by one of them.",
    ).tag(config=True)
    client_id = Unicode("telemetry-sinks-relay", help="Client id the brokers see.").tag(config=True)
    auto_offset_reset = CaselessStrEnum(
        ["earliest", "latest"],
        default_value="earliest",
        help="Where a group with no committed offset starts: 'earliest' (every retained "
        "message) or 'latest' (only new ones).",
    ).tag(config=True)
    consumer_config = Dict(
        help="Any other librdkafka consumer property, passed as it is, e.g. "
        '{"session.timeout.ms": 10000, "fetch.max.bytes": 52428800}.',
    ).tag(config=True, secret=True)

    sinks = List(
        Unicode(),
        help='Sink names from the registry (e.g. ["archive"]), each configured from the same '
        "config (c.ArchiveSink.directory = ...). Default: c.EventLog.sinks.",
    ).tag(config=True)
    handlers = List(
        Instance(logging.Handler),
        help="logging.Handler instances to deliver to, besides `sinks`. Default: c.EventLog.handlers.",
    ).tag(config=True)

    max_poll_records = Int(
        1000,
        help="Most messages in one round: read, handed to the sinks, flushed, then committed. "
        "At most this many are delivered again after a crash.",
    ).tag(config=True)
    poll_timeout = Float(
        0.5, help="Longest wait, in seconds, for messages before a round delivers what it has."
    ).tag(config=True)
    retry_backoff = Float(
        1.0,
        help="Seconds before a round is delivered again after a sink failed to take it "
        "(it doubles up to 30 s while the failure lasts).",
    ).tag(config=True)
    rebalance_timeout = Float(
        10.0,
        help="How long the relay waits for its sinks to settle the current round before it "
        "gives partitions up in a rebalance; what is not settled by then is delivered again "
        "by the new owner.",
    ).tag(config=True)
    close_timeout = Float(
        30.0,
        help="On SIGTERM: how long the current round may take to settle before the relay "
        "exits without committing it (it is delivered again after a restart).",
    ).tag(config=True)
    dead_letter_file = Unicode(
        None,
        allow_none=True,
        help="JSONL file for messages that are not JSON objects (topic, partition, offset, "
        "reason). None: they are logged and counted as 'invalid'.",
    ).tag(config=True)
    stats_interval = Float(
        60.0, help="Seconds between two log lines with throughput and lag (0: none)."
    ).tag(config=True)
    metrics_port = Int(
        None,
        allow_none=True,
        help="Serve GET /metrics (Prometheus, with prometheus-client installed) and GET "
        "/api/health (JSON stats) on this port; None: no server; 0: a free port.",
    ).tag(config=True)
    metrics_ip = Unicode("127.0.0.1", help="Address of the metrics server.").tag(config=True)

    @validate("max_poll_records")
    def _check_max_poll_records(self, proposal: Any) -> int:
        if proposal.value < 1:
            raise TraitError(f"Relay.max_poll_records must be 1 or more, not {proposal.value}.")
        return proposal.value

    @validate("poll_timeout", "retry_backoff", "rebalance_timeout", "close_timeout", "stats_interval")
    def _check_non_negative(self, proposal: Any) -> float:
        if proposal.value < 0:
            raise TraitError(f"Relay.{proposal.trait.name} must be 0 or more, not {proposal.value}.")
        return proposal.value

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _confluent()  # a missing client library is a configuration error, said at once
        if not self.topics:
            raise SinkConfigError(
                'The relay has no topics: set c.Relay.topics = ["..."] (or --topic) to the topics '
                "the Kafka sinks write."
            )
        handlers = list(self.handlers)
        names = list(self.sinks)
        if not handlers and not names:  # a relay's own config file may use the EventLog's section
            eventlog = self.config.get("EventLog", {})
            handlers, names = list(eventlog.get("handlers", [])), list(eventlog.get("sinks", []))
        self._built = load_sinks(names, config=self.config) if names else []
        self.targets = [_Target(h) for h in [*handlers, *self._built]]
        if not self.targets:
            raise SinkConfigError(
                'The relay has no sinks: set c.Relay.sinks = ["archive"] (with that sink\'s options, '
                "e.g. c.ArchiveSink.directory) or c.Relay.handlers."
            )
        self._check_targets()
        self._dead = DeadLetterFile(self.dead_letter_file) if self.dead_letter_file else None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._counts: Counter[str] = Counter(
            dict.fromkeys(("consumed", "delivered", "committed", "invalid", "redelivered",
                           "rounds", "commit_failures", "rebalances"), 0)
        )  # fmt: skip
        self._last_error: str | None = None
        self._assigned: set[tuple[str, int]] = set()
        self._committed: dict[tuple[str, int], int] = {}
        self._lag: dict[tuple[str, int], int] = {}
        self._rate: deque[tuple[float, int]] = deque()
        self._round: _Round | None = None
        self._paused = False
        self._failed_rounds = 0
        self._consumer: Any = None
        self._metrics_server: ThreadingHTTPServer | None = None
        self.metrics_bound_port: int | None = None
        _relays.add(self)
        _register_prometheus()

    def _check_targets(self) -> None:
        own = {t for t in self.topics if not t.startswith("^")}
        for target in self.targets:
            handler = target.handler
            if target.queued is not None and target.queued.dead_letter_path is None:
                cls = type(handler).__name__
                raise SinkConfigError(
                    f"The relay's sink {target.label!r} has no dead-letter file: an event its backend "
                    "refuses for good would be lost once its offset is committed. Set "
                    f"c.{cls}.dead_letter_file = '...' (or c.{cls}.spool_dir, which keeps one)."
                )
            topic = getattr(handler, "topic", None)
            if getattr(handler, "sink_name", "") == "kafka" and topic in own:
                raise SinkConfigError(
                    f"The relay's Kafka sink writes to {topic!r}, a topic the relay reads: every "
                    "event would go round for ever. Give the sink another topic."
                )

    # ------------------------------------------------------------------ consumer

    def consumer_properties(self) -> dict[str, Any]:
        """The librdkafka configuration of the consumer."""
        config = self.librdkafka_connection()
        config.update({
            "group.id": self.group_id,
            "client.id": self.client_id,
            "enable.auto.commit": False,        # offsets are committed after the sinks settled
            "enable.auto.offset.store": False,
            "auto.offset.reset": self.auto_offset_reset.lower(),
            "enable.partition.eof": False,
        })  # fmt: skip
        config.update(self.consumer_config)
        return config

    def _make_consumer(self) -> Any:
        kafka = _confluent()
        config = self.consumer_properties()
        config["error_cb"] = self._on_error
        librdkafka_log = MaskingLogger(logging.getLogger("telemetry_sinks.relay.librdkafka"), self.mask)
        return kafka.Consumer(config, logger=librdkafka_log)

    def mask(self, text: str) -> str:
        """``text`` without the relay's secrets (SASL and key passwords, consumer_config values)."""
        return mask(text, [*self.secret_values(), *strings_in(self.consumer_config)])

    def _on_error(self, error: Any) -> None:
        text = self.mask(str(error))
        with self._lock:
            self._last_error = text
        log.warning("relay: Kafka: %s", text)

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> None:
        """Consume and deliver until :meth:`stop` is called (or a signal, see :meth:`run_until_signal`)."""
        self._consumer = consumer = self._make_consumer()
        self._start_metrics_server()
        next_report = time.monotonic() + self.stats_interval
        try:
            consumer.subscribe(
                list(self.topics), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            while not self._stopping.is_set():
                messages = consumer.consume(self.max_poll_records, self.poll_timeout)
                if messages:
                    self._deliver_round(messages)
                self._update_lag()
                if self.stats_interval and time.monotonic() >= next_report:
                    next_report = time.monotonic() + self.stats_interval
                    self._report()
        finally:
            self._close()

    def run_until_signal(self) -> None:
        """:meth:`run`, stopping gracefully on SIGTERM or SIGINT."""
        signals = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.signal(sig, lambda *_: self.stop()) for sig in signals}
        try:
            self.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """Finish the current round, commit it, leave the group and close the sinks (thread-safe)."""
        self._stopping.set()

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()  # leaves the group: the partitions move at once
            except Exception as exc:
                log.warning("relay: closing the consumer failed: %s", self.mask(str(exc)))
        for target in self.targets:
            if target.handler in self._built:
                try:
                    target.handler.close()
                except Exception:
                    log.exception("relay: closing sink %r failed", target.label)
        server, self._metrics_server = self._metrics_server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        self._report()

    # ------------------------------------------------------------------ rounds

    def _deliver_round(self, messages: list[Any]) -> None:
        current = _Round([t.dropped() for t in self.targets])
        self._round = current
        try:
            self._hand_over(messages, current)
            if current.failure is None and not current.abandoned:
                self._wait_settled(self.targets, current)
            if current.abandoned:  # revoked, lost or stopping: not committed, delivered again
                return
            dropped = [t.dropped() - before for t, before in zip(self.targets, current.dropped_before)]
            if current.failure is None and any(dropped):
                lost = ", ".join(f"{t.label}: {n}" for t, n in zip(self.targets, dropped) if n)
                current.failure = f"sinks dropped events of the round ({lost}); see their stats()"
                log.warning("relay: %s; the round is delivered again", current.failure)
            if current.failure is not None:
                self._redeliver(current)
            elif self._commit(current):
                self._failed_rounds = 0
        finally:
            self._round = None

    def _hand_over(self, messages: list[Any], current: _Round) -> None:
        """Give each message to every sink, in order; a partition's offset advances only after
        its message was handed to all of them."""
        targets = self.targets
        current.size = len(messages)
        for message in messages:  # where each partition goes back to if the round fails
            if message.error() is None:
                current.first.setdefault((message.topic(), message.partition()), message.offset())
        try:
            for message in messages:
                error = message.error()
                if error is not None:
                    self._on_error(error)
                    continue
                key = (message.topic(), message.partition())
                offset = message.offset()
                decoded = self._decode(message)
                if decoded is not None:
                    text, payload, event_id = decoded
                    size = len(text) if text.isascii() else len(text.encode("utf-8"))
                    for target in targets:
                        if target.full(size) and not self._wait_settled([target], current):
                            return
                        target.put(text, payload, event_id, size)
                current.next[key] = offset + 1
                current.count += 1
        except Exception as exc:
            current.failure = self.mask(f"{type(exc).__name__}: {exc}")
            log.warning("relay: a sink failed to take an event: %s", current.failure)
        finally:
            with self._lock:
                self._counts["consumed"] += len(messages)
                self._counts["rounds"] += 1

    def _decode(self, message: Any) -> tuple[str, dict[str, Any], str] | None:
        """``(JSON text, payload, event id)`` of a message, or None if it is not a JSON object."""
        value = message.value()
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        fallback = f"{topic}-{partition}-{offset}"
        try:
            if not value:
                raise ValueError("the message is empty")
            payload = orjson.loads(value)
            if not isinstance(payload, dict):
                raise ValueError(f"a JSON {type(payload).__name__}, not an object")
        except ValueError as exc:
            self._invalid(message, fallback, str(exc))
            return None
        text = value.decode("utf-8")
        if "\n" in text or "\r" in text:  # one event is one line in files, spools and dead letters
            text = encode(payload)
        event_id = payload.get(EVENT_ID_FIELD)
        if _usable_id(event_id):
            return text, payload, event_id
        for name, header in message.headers() or ():
            if name == "event_id" and header:
                event_id = header.decode("ascii", "replace")
                break
        return text, payload, event_id if _usable_id(event_id) else fallback

    def _invalid(self, message: Any, event_id: str, reason: str) -> None:
        where = f"{message.topic()}[{message.partition()}] offset {message.offset()}"
        with self._lock:
            self._counts["invalid"] += 1
        log.warning("relay: message at %s is not a JSON object (%s); skipped", where, reason)
        if self._dead is not None:
            raw = (message.value() or b"").decode("utf-8", "replace")
            reason = f"{where}: not a JSON object: {reason}"
            self._dead.write("relay", [(Envelope(event_id, json.dumps(raw)), reason)])

    def _wait_settled(self, targets: list[_Target], current: _Round) -> bool:
        """Wait until ``targets`` settled what they were given; False if the round was given up.

        While waiting, the partitions are paused and the consumer is polled, so the
        relay stays in its group and takes part in rebalances.
        """
        waiting = list(targets)
        started = time.monotonic()
        next_report = started + WAIT_REPORT_INTERVAL
        stop_deadline: float | None = None
        while True:
            # The first sink still waiting gets a short wait, the others a look.
            waiting = [t for i, t in enumerate(waiting) if not t.flush(0.2 if i == 0 else 0.0)]
            if not waiting or current.abandoned:
                break
            now = time.monotonic()
            if self._stopping.is_set():
                stop_deadline = stop_deadline or now + self.close_timeout
                if now >= stop_deadline:
                    log.warning("relay: stopping; sinks %s did not settle the last round within "
                                "close_timeout: it is not committed and will be delivered again",
                                ", ".join(t.label for t in waiting))  # fmt: skip
                    current.abandoned = True
                    break
            if now >= next_report:
                next_report = now + WAIT_REPORT_INTERVAL
                names = ", ".join(t.label for t in waiting)
                log.warning("relay: waiting %.0f s for sinks %s (%s); consumption paused",
                            now - started, names, waiting[0].last_error() or "no error")
            self._pause()
            self._consumer.poll(0.05)  # heartbeats, rebalance callbacks; paused: returns nothing
        self._resume()
        return not current.abandoned

    def _pause(self) -> None:
        if not self._paused and self._assigned:
            self._consumer.pause(self._partitions(self._assigned))
            self._paused = True

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            if self._assigned:
                self._consumer.resume(self._partitions(self._assigned))

    def _partitions(self, keys: Any, offsets: dict[tuple[str, int], int] | None = None) -> list[Any]:
        TopicPartition = _confluent().TopicPartition
        if offsets is None:
            return [TopicPartition(t, p) for t, p in keys]
        return [TopicPartition(t, p, offsets[(t, p)]) for t, p in keys]

    def _commit(self, current: _Round) -> bool:
        keys = [k for k in current.next if k in self._assigned]
        if not keys:
            return True
        try:
            self._consumer.commit(offsets=self._partitions(keys, current.next), asynchronous=False)
        except Exception as exc:  # a rebalance in progress, the coordinator gone: delivered again later
            text = self.mask(f"{type(exc).__name__}: {exc}")
            with self._lock:
                self._counts["commit_failures"] += 1
                self._last_error = text
            log.warning("relay: committing offsets failed (%s); those events may be delivered again", text)
            return False
        committed = sum(current.next[k] - current.first[k] for k in keys)
        now = time.monotonic()
        with self._lock:
            self._counts["delivered"] += current.count
            self._counts["committed"] += committed
            for key in keys:
                self._committed[key] = current.next[key]
            self._rate.append((now, self._counts["delivered"]))
            while self._rate and now - self._rate[0][0] > RATE_WINDOW:
                self._rate.popleft()
        return True

    def _redeliver(self, current: _Round) -> None:
        """Seek back to the round's first offsets and deliver it again after a backoff."""
        with self._lock:
            self._counts["redelivered"] += current.size
            self._last_error = current.failure
        keys = [k for k in current.first if k in self._assigned]
        for partition in self._partitions(keys, current.first):
            try:
                self._consumer.seek(partition)
            except Exception as exc:
                log.warning("relay: seeking back %s failed: %s", partition, self.mask(str(exc)))
        self._failed_rounds += 1
        attempts = self._failed_rounds
        delay = min(30.0, self.retry_backoff * 2 ** (attempts - 1))
        deadline = time.monotonic() + delay
        self._pause()
        while time.monotonic() < deadline and not self._stopping.is_set():
            self._consumer.poll(min(0.1, max(0.0, deadline - time.monotonic())))
        self._resume()

    # ------------------------------------------------------------------ rebalances

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        try:  # where the group stands, for the lag until this relay commits
            known = {(p.topic, p.partition): p.offset for p in consumer.committed(partitions, timeout=10)}
        except Exception as exc:
            log.warning("relay: reading the committed offsets failed: %s", self.mask(str(exc)))
            known = {}
        with self._lock:
            self._counts["rebalances"] += 1
            self._assigned = {(p.topic, p.partition) for p in partitions}
            for key, offset in known.items():
                if offset is not None and offset >= 0:
                    self._committed[key] = offset
        self._paused = False
        log.info("relay: assigned %s", _names(self._assigned))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """Settle and commit the round in hand before the partitions go to another relay."""
        current = self._round
        if current is not None and not current.abandoned:
            deadline = time.monotonic() + self.rebalance_timeout
            settled = current.failure is None
            for target in self.targets:
                settled = settled and target.flush(max(0.0, deadline - time.monotonic()))
            if settled:
                self._commit(current)
            current.abandoned = True
        self._forget(partitions)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        """Partitions taken away without notice: nothing may be committed for them any more."""
        if self._round is not None:
            self._round.abandoned = True
        self._forget(partitions)

    def _forget(self, partitions: list[Any]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        if self._paused and self._consumer is not None:
            # librdkafka keeps a partition paused across a rebalance: one assigned to this relay
            # again would never be read.
            try:
                self._consumer.resume(partitions)
            except Exception as exc:
                log.debug("relay: resuming revoked partitions failed: %s", self.mask(str(exc)))
        with self._lock:
            self._assigned -= gone
            for key in gone:
                self._lag.pop(key, None)
        self._paused = False

    # ------------------------------------------------------------------ stats

    def _update_lag(self) -> None:
        """Consumer lag per partition: the broker's high watermark minus the committed offset.

        The high watermark comes with each fetch response (no request of its own).
        """
        consumer = self._consumer
        if consumer is None or not self._assigned:
            return
        lag = {}
        for partition in self._partitions(self._assigned):
            try:
                low, high = consumer.get_watermark_offsets(partition, cached=True)
            except Exception:
                continue
            if high is None or high < 0:
                continue
            key = (partition.topic, partition.partition)
            done = self._committed.get(key)
            if done is None:  # the group has no offset: it starts where auto_offset_reset says
                if self.auto_offset_reset.lower() == "earliest":
                    done = low if low is not None and low >= 0 else None
                else:
                    done = consumer.position([partition])[0].offset
            if done is not None and done >= 0:
                lag[key] = max(0, high - done)
        with self._lock:
            self._lag.update(lag)

    def stats(self) -> dict[str, Any]:
        """Counters (consumed, delivered, committed, invalid, redelivered, rounds,
        commit_failures, rebalances), ``events_per_s`` (delivered, last 10 s), ``lag``
        (messages behind the high watermarks of the assigned partitions), ``partitions``
        (per partition: committed offset and lag) and ``last_error``."""
        with self._lock:
            stats: dict[str, Any] = dict(self._counts)
            rate = 0.0
            if len(self._rate) >= 2:
                (t0, n0), (t1, n1) = self._rate[0], self._rate[-1]
                rate = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
            stats["events_per_s"] = round(rate, 1)
            stats["lag"] = sum(self._lag.values())
            stats["partitions"] = {
                f"{t}[{p}]": {"committed": self._committed.get((t, p)), "lag": self._lag.get((t, p))}
                for t, p in sorted(self._assigned)
            }
            stats["last_error"] = self._last_error
        return stats

    def _report(self) -> None:
        stats = self.stats()
        log.info("relay: %d delivered (%.0f/s), %d invalid, lag %d on %d partitions",
                 stats["delivered"], stats["events_per_s"], stats["invalid"], stats["lag"],
                 len(stats["partitions"]))  # fmt: skip

    def health(self) -> dict[str, Any]:
        """The relay's stats and each sink's, as ``GET /api/health`` answers them."""
        sinks = []
        for target in self.targets:
            entry: dict[str, Any] = {"name": target.label, "class": type(target.handler).__name__}
            stats = getattr(target.handler, "stats", None)
            if callable(stats):
                entry["stats"] = to_json_data(stats())
            sinks.append(entry)
        return {"status": "ok", "relay": self.stats(), "sinks": sinks}

    def _start_metrics_server(self) -> None:
        if self.metrics_port is None:
            return
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                if self.path.rstrip("/") == "/metrics":
                    try:
                        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
                    except ImportError:
                        status, kind = 404, "text/plain"
                        body = b'prometheus-client is not installed: pip install "telemetry-sinks[metrics]"\n'
                    else:
                        status, kind, body = 200, CONTENT_TYPE_LATEST, generate_latest()
                elif self.path.rstrip("/") == "/api/health":
                    status, kind = 200, "application/json"
                    body = json.dumps(relay.health()).encode()
                else:
                    status, kind = 404, "application/json"
                    body = b'{"error": "the endpoints are GET /metrics and GET /api/health"}'
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer((self.metrics_ip, self.metrics_port), Handler)
        server.daemon_threads = True
        self._metrics_server = server
        self.metrics_bound_port = server.server_address[1]
        name = "telemetry-sinks-relay-metrics"
        threading.Thread(target=server.serve_forever, name=name, daemon=True).start()


def _usable_id(value: Any) -> TypeGuard[str]:
    return (
        isinstance(value, str) and 0 < len(value) <= MAX_EVENT_ID_LENGTH and value.isascii()
        and value.isprintable()
    )


def _names(keys: Any) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(keys)) or "nothing"


# --------------------------------------------------------------------------- Prometheus

_relays: weakref.WeakSet[Relay] = weakref.WeakSet()
_COUNTER_HELP = {
    "consumed": "Messages read from Kafka.",
    "delivered": "Messages whose round every sink settled and whose offsets were committed.",
    "invalid": "Messages that are not JSON objects (skipped, dead-lettered when configured).",
    "redelivered": "Messages delivered again after a sink failed to take their round.",
    "commit_failures": "Offset commits that failed (their messages may be delivered again).",
    "rebalances": "Partition assignments received.",
}


class _PrometheusCollector:
    """Reads ``stats()`` of every live relay at scrape time, labelled by consumer group."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        relays = list(_relays)
        for key, text in _COUNTER_HELP.items():
            family = CounterMetricFamily(f"telemetry_sinks_relay_{key}", text, labels=["group"])
            for relay in relays:
                family.add_metric([relay.group_id], relay.stats()[key])
            yield family
        rate = GaugeMetricFamily("telemetry_sinks_relay_events_per_second",
                                 "Messages delivered per second over the last 10 s.", labels=["group"])
        lag = GaugeMetricFamily("telemetry_sinks_relay_lag",
                                "Messages behind the partition's high watermark (not yet committed).",
                                labels=["group", "topic", "partition"])  # fmt: skip
        for relay in relays:
            stats = relay.stats()
            rate.add_metric([relay.group_id], stats["events_per_s"])
            for name, entry in stats["partitions"].items():
                topic, _, partition = name[:-1].rpartition("[")
                if entry["lag"] is not None:
                    lag.add_metric([relay.group_id, topic, partition], entry["lag"])
        yield rate
        yield lag

    def describe(self) -> Iterator[Any]:
        return iter(())


_registered = False


def _register_prometheus() -> None:
    """Export every relay's stats to prometheus_client's registry, once per process (if installed)."""
    global _registered
    if not _registered:
        _registered = True
        register_collector(_PrometheusCollector())


__all__ = ["Relay"]
