"""The Kafka sink's librdkafka client (confluent-kafka): a delivery report is the acknowledgement.

librdkafka is a C library with threads of its own: ``produce()`` only copies the
message into its queue (no Python on the network path), its broker threads batch
and send, and each message's delivery report says whether the broker took it.
A batch of the delivery core is produced whole, then the sink waits for the
reports (``flush``), so librdkafka keeps several produce requests in flight to
each broker (one batch of up to ``batch_size`` bytes per partition per request,
up to ``max.in.flight`` requests, with idempotence keeping their order).

Reports that did not come within ``ack_timeout`` and failures the broker may
not repeat (a broker gone, a timeout) make the batch's events retryable: the
delivery core retries them, from memory or its spool, through a new producer.
Failures the broker will always repeat (message too large, topic invalid) are
permanent: the events are dead-lettered.  Refused credentials (a failed SASL
authentication, which librdkafka reports through ``error_cb`` while its messages
time out) and missing ACLs are retried as authentication failures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..delivery import BatchResult
from ..masking import MaskingLogger

log = logging.getLogger("telemetry_sinks.delivery.kafka")

#: One message to produce: (event id, topic, value, key, headers); the value is the event's JSON.
Message = tuple[str, str, str, "bytes | None", "list[tuple[str, bytes]] | None"]

_PERMANENT_NAMES = (
    "MSG_SIZE_TOO_LARGE",
    "INVALID_MSG_SIZE",
    "RECORD_LIST_TOO_LARGE",
    "TOPIC_EXCEPTION",
    "INVALID_MSG",
    "INVALID_RECORD",
    "UNSUPPORTED_FOR_MESSAGE_FORMAT",
    "_INVALID_ARG",
    "_BAD_MSG",
)


_AUTH_NAMES = (
    "_AUTHENTICATION",
    "SASL_AUTHENTICATION_FAILED",
    "TOPIC_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    "GROUP_AUTHORIZATION_FAILED",
)


def _codes(kafka_error: Any, names: Sequence[str]) -> frozenset[int]:
    return frozenset(getattr(kafka_error, name) for name in names if hasattr(kafka_error, name))


def permanent_codes(kafka_error: Any) -> frozenset[int]:
    """The error codes for which the same message will never be accepted."""
    return _codes(kafka_error, _PERMANENT_NAMES)


def auth_codes(kafka_error: Any) -> frozenset[int]:
    """The error codes of refused credentials or permissions (retried, never dead-lettered)."""
    return _codes(kafka_error, _AUTH_NAMES)


class LibrdkafkaProducer:
    """Produce batches through one ``confluent_kafka.Producer`` and classify their delivery reports."""

    def __init__(self, config: dict[str, Any], ack_timeout: float, mask: Callable[[str], str]) -> None:
        import confluent_kafka

        self._kafka = confluent_kafka
        self._config = config
        self._ack_timeout = ack_timeout
        self._mask = mask
        self._permanent = permanent_codes(confluent_kafka.KafkaError)
        self._auth = auth_codes(confluent_kafka.KafkaError)
        self._auth_error: str | None = None  # a refusal error_cb reported during this send
        self._producer: Any = None

    def open(self) -> None:
        """Create the producer (it connects in its own threads; nothing here waits for a broker)."""
        config = dict(self._config)
        config["error_cb"] = self._log_error
        self._producer = self._kafka.Producer(config, logger=self._producer_logger())

    def close(self) -> None:
        """Drop the producer at once: what it still holds was not acknowledged, and the delivery
        core retries those events."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.purge()  # queued and in-flight messages fail now, instead of later
            producer.flush(0)
        except Exception as exc:  # a producer in a fatal state
            log.debug("the Kafka producer did not close cleanly: %s", exc)

    def send(self, messages: Sequence[Message]) -> BatchResult:
        """Produce ``messages``, wait for their delivery reports (``ack_timeout``), classify them.

        One report callback serves the whole batch and only keeps the failures: an
        acknowledged message costs no Python beyond ``produce``.  Messages still without
        a report when ``ack_timeout`` is over are purged, which reports them as failed.
        ``result.reconnect`` asks for a new producer when any event is to be retried: a
        broker that restarted may have forgotten this producer's id and sequence numbers.
        """
        producer = self._producer
        result = BatchResult()
        self._auth_error = None
        failures: list[tuple[Any, Any]] = []  # (error, value) of each failed report
        reported = 0

        def on_delivery(error: Any, message: Any) -> None:
            nonlocal reported
            reported += 1
            if error is not None:
                failures.append((error, message.value()))

        produce, poll = producer.produce, producer.poll
        deadline = time.monotonic() + self._ack_timeout
        produced: list[Message] = []
        for message in messages:
            event_id, topic, value, key, headers = message
            while True:
                try:
                    produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                    produced.append(message)
                    break
                except BufferError:  # librdkafka's queue is full: serve reports, then again
                    if time.monotonic() >= deadline:
                        result.retry(event_id, "the producer's queue stayed full for ack_timeout")
                        break
                    poll(0.05)
                except self._kafka.KafkaException as exc:
                    self._classify(result, event_id, exc.args[0] if exc.args else exc)
                    break
        if producer.flush(max(0.0, deadline - time.monotonic())):
            producer.purge()  # the rest was not acknowledged in time: its reports say so now
            producer.flush(0)
        if failures:
            by_value: dict[bytes, list[str]] = {}
            for event_id, _, value, _, _ in produced:
                by_value.setdefault(value.encode("utf-8"), []).append(event_id)
            for error, value in failures:
                for event_id in by_value.get(value, ()):
                    self._classify(result, event_id, error)
        if reported < len(produced):  # reports that never came: no way to tell which, retry all
            for event_id, *_ in produced:
                if event_id not in result.permanent:
                    result.retry(event_id, "no acknowledgement from the broker in time")
        if self._auth_error is not None and result.retryable:
            result.auth_error = self._auth_error  # the messages timed out because of it
        result.reconnect = bool(result.retryable)
        return result

    def _producer_logger(self) -> MaskingLogger:
        """Where librdkafka's log lines go: the sink's logger, secrets masked."""
        return MaskingLogger(log, self._mask)

    def _log_error(self, error: Any) -> None:
        text = self._mask(str(error))
        if hasattr(error, "code") and error.code() in self._auth:
            self._auth_error = f"KafkaError {error.name()}: {text}"
            return  # the delivery core warns about it, once per interval, with what to check
        log.warning("Kafka: %s", text)

    def _classify(self, result: BatchResult, event_id: str, error: Any) -> None:
        code = error.code() if hasattr(error, "code") else None
        text = f"KafkaError {error.name()}: {error.str()}" if hasattr(error, "name") else str(error)
        if code in self._permanent:
            result.reject(event_id, text)
        else:
            result.retry(event_id, text, auth=code in self._auth)


__all__ = ["LibrdkafkaProducer", "Message", "auth_codes", "permanent_codes"]
