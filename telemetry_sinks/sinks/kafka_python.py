"""The Kafka sink's kafka-python client: a resolved producer future is the acknowledgement.

A batch of the delivery core is sent whole (``send`` per event), then flushed
within ``ack_timeout``; each event whose future did not resolve in time, or failed
with an error the broker may not repeat, is retried by the delivery core through a
new producer; errors the broker will always repeat are permanent (dead letters).
Refused credentials and missing ACLs are retried as authentication failures.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import kafka
import kafka.errors as kerrors

from ..delivery import AuthError, BatchResult
from ..delivery.retry import error_text

log = logging.getLogger("telemetry_sinks.delivery.kafka")

def _errors(*names: str) -> tuple[type[Exception], ...]:
    return tuple(getattr(kerrors, name) for name in names if hasattr(kerrors, name))


# Errors for which the same message will never be accepted.
PERMANENT_ERRORS = _errors(
    "MessageSizeTooLargeError",
    "RecordListTooLargeError",
    "InvalidTopicError",
    "CorruptRecordError",
    "InvalidRecordError",
    "UnsupportedForMessageFormatError",
)
# The broker refused the credentials or the ACLs: an operator fixes them, the events wait.
AUTH_ERRORS = _errors(
    "AuthenticationFailedError",
    "SaslAuthenticationFailedError",
    "TopicAuthorizationFailedError",
    "ClusterAuthorizationFailedError",
    "TransactionalIdAuthorizationFailedError",
    "GroupAuthorizationFailedError",
)


class _AuthFailureWatch(logging.Handler):
    """Remembers an authentication error kafka-python logs in one thread.

    kafka-python retries a refused SASL authentication while it bootstraps and then
    raises only a timeout ("Unable to bootstrap"); the cause is in what it logs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.error: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread or not isinstance(record.args, tuple):
            return
        for arg in record.args:
            if isinstance(arg, AUTH_ERRORS):
                self.error = arg


def producer_options(sink: Any) -> dict[str, Any]:
    """The keyword arguments a Kafka sink gives ``kafka.KafkaProducer``."""
    acks = sink.acks
    if isinstance(acks, str) and acks.lstrip("-").isdigit():
        acks = int(acks)
    options: dict[str, Any] = {
        "bootstrap_servers": sink.bootstrap_list(),
        "acks": acks,
        "linger_ms": sink.linger_ms,
        "max_request_size": sink.max_request_size,
        "security_protocol": sink.security_protocol,
        "client_id": "telemetry-sinks",
    }
    optional = {
        "batch_size": sink.batch_size,
        "compression_type": sink.compression_type,
        "sasl_mechanism": sink.sasl_mechanism,
        "sasl_plain_username": sink.sasl_plain_username,
        "sasl_plain_password": sink.sasl_plain_password,
        "ssl_cafile": sink.ssl_cafile,
        "ssl_certfile": sink.ssl_certfile,
        "ssl_keyfile": sink.ssl_keyfile,
        "ssl_password": sink.ssl_password,
    }
    options.update({k: v for k, v in optional.items() if v is not None})
    # The producer must not hold the sink's worker longer than an acknowledgement may take:
    # kafka-python waits up to 60 s for metadata in send() and, from 3.0 on, up to 30 s to
    # bootstrap inside KafkaProducer(); meanwhile nothing could be spooled or flushed.
    wait_ms = max(1, int(sink.ack_timeout * 1000))
    defaults = kafka.KafkaProducer.DEFAULT_CONFIG
    options["max_block_ms"] = wait_ms
    if "bootstrap_timeout_ms" in defaults:
        options["bootstrap_timeout_ms"] = wait_ms
    options.update(sink.producer_config)
    return options


class KafkaPythonProducer:
    """Send batches through one ``kafka.KafkaProducer`` and classify their futures."""

    def __init__(self, options: dict[str, Any], ack_timeout: float, label: str) -> None:
        self._options = options
        self._ack_timeout = ack_timeout
        self._label = label
        self._producer: Any = None

    def open(self) -> None:
        """Create the producer; a bootstrap that failed on refused credentials is an AuthError."""
        watch = _AuthFailureWatch()
        client_log = logging.getLogger("kafka")
        client_log.addHandler(watch)
        try:
            self._producer = kafka.KafkaProducer(**self._options)
        except kerrors.KafkaError as exc:
            if watch.error is not None:
                raise AuthError(f"{error_text(exc)}: {error_text(watch.error)}") from None
            raise
        finally:
            client_log.removeHandler(watch)

    def close(self) -> None:
        """Stop the producer at once: what it still holds was not acknowledged, and the
        delivery core retries those events (from memory or the spool)."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        # kafka-python 3's close() flushes first and, when that flush times out (records a
        # down broker never acknowledged), raises without closing: the producer's network
        # thread would live on, one per outage, and its finaliser would block whichever
        # thread drops it for a second.  Stopping the sender first fails those records.
        sender = getattr(producer, "_sender", None)
        if sender is not None and hasattr(sender, "force_close"):
            sender.force_close()
            sender.join(self._ack_timeout)
        try:
            producer.close(timeout=0)
        except kerrors.KafkaError as exc:
            log.debug("sink %r: the Kafka producer did not close cleanly: %s", self._label, exc)

    def send(self, messages: Sequence[Any]) -> BatchResult:
        producer = self._producer
        result = BatchResult()
        futures = []
        for event_id, topic, value, key, headers in messages:
            try:
                future = producer.send(topic, value=value.encode("utf-8"), key=key, headers=headers)
            except PERMANENT_ERRORS as exc:
                result.reject(event_id, error_text(exc))
                continue
            except Exception as exc:  # buffer full, broker gone, credentials refused, ...
                result.retry(event_id, error_text(exc), auth=isinstance(exc, AUTH_ERRORS))
                continue
            futures.append((event_id, future))
        try:
            producer.flush(timeout=self._ack_timeout)
        except kerrors.KafkaTimeoutError:
            pass  # the unresolved futures are retried below
        for event_id, future in futures:
            if not future.is_done:
                result.retry(event_id, "no acknowledgement from the broker in time")
            elif future.failed():
                failure = future.exception
                if isinstance(failure, PERMANENT_ERRORS):
                    result.reject(event_id, error_text(failure))
                else:
                    result.retry(event_id, error_text(failure), auth=isinstance(failure, AUTH_ERRORS))
        # Drop the producer with whatever it still holds (a broker that restarted may have
        # forgotten its producer id): the engine closes it and opens a fresh one for the retry.
        result.reconnect = bool(result.retryable)
        return result


__all__ = ["AUTH_ERRORS", "PERMANENT_ERRORS", "KafkaPythonProducer", "producer_options"]
