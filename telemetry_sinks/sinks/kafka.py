"""Kafka sink: every capsule as a UTF-8 JSON message on a topic, through kafka-python.

A thin adapter of the delivery core: an event counts as delivered only when the
broker acknowledged it (its producer future resolved); anything else goes back
to the core's retry, spool and dead-letter paths.  A failed SASL authentication
or a missing ACL (topic, cluster, transactional id) is retried, with a warning
naming what to check, and never dead-lettered.  The producer is created
lazily in the worker, so a broker that is down at start never stops the
application.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import kafka
import kafka.errors as kerrors
from traitlets import Bool, Dict, Float, Int, List, Unicode, Union

from ..capsule import capsule_head
from ..delivery import AuthError, BatchResult, Envelope
from ..delivery.retry import error_text
from .naming import NameOption, NameRule, name_template
from .network import NetworkSink

log = logging.getLogger("telemetry_sinks.delivery.kafka")

#: Kafka's rule for topic names.
TOPIC_NAME = NameRule(
    "Kafka topic name", r"[^a-zA-Z0-9._-]", 249, "Use at most 249 of the characters a-z A-Z 0-9 . _ -"
)
#: ``name`` with characters Kafka forbids in topic names replaced by ``_``.
topic_safe = TOPIC_NAME.safe

def _errors(*names: str) -> tuple[type[Exception], ...]:
    return tuple(getattr(kerrors, name) for name in names if hasattr(kerrors, name))


# Errors for which the same message will never be accepted.
_PERMANENT_ERRORS = _errors(
    "MessageSizeTooLargeError",
    "RecordListTooLargeError",
    "InvalidTopicError",
    "CorruptRecordError",
    "InvalidRecordError",
    "UnsupportedForMessageFormatError",
)
# The broker refused the credentials or the ACLs: an operator fixes them, the events wait.
_AUTH_ERRORS = _errors(
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
            if isinstance(arg, _AUTH_ERRORS):
                self.error = arg


class KafkaSink(NetworkSink):
    """Send capsules to a Kafka topic (``pip install "telemetry-sinks[kafka]"``).

    Options map one-to-one to Kafka's concepts; ``producer_config`` passes any
    other kafka-python ``KafkaProducer`` option.
    """

    sink_name = "kafka"
    required_options = ("topic",)
    credentials_help = (
        "security_protocol and the sasl_* / ssl_* options, and the broker's ACLs "
        "(WRITE and DESCRIBE on the topic)"
    )

    bootstrap_servers = Union(
        [Unicode(), List(Unicode())],
        default_value="localhost:9092",
        help='Brokers to bootstrap from: "host:port", "h1:p1,h2:p2" or a list.',
    ).tag(config=True, destination=("servers", "hosts"))
    topic = NameOption(
        TOPIC_NAME,
        None,
        allow_none=True,
        help='Topic name, or a template over the capsule such as "events.{__schema__}" '
        "(rendered names are made topic-safe: other characters become '_').",
    ).tag(config=True, destination=("topic", "text"))
    key = Unicode(
        None,
        allow_none=True,
        help='Capsule field whose value is the message key, e.g. "__schema__" so that events '
        "of one kind keep their order within a partition. None: no key.",
    ).tag(config=True)
    acks = Union(
        [Unicode(), Int()], default_value="all", help='Acknowledgements: 0, 1 or "all".'
    ).tag(config=True)
    compression_type = Unicode(
        None, allow_none=True, help="gzip, snappy, lz4, zstd, or None."
    ).tag(config=True)
    linger_ms = Int(5, help="Producer linger time in milliseconds.").tag(config=True)
    batch_size = Int(16384, help="Producer batch size in bytes (per partition).").tag(config=True)
    max_request_size = Int(
        1048576,
        help="Largest message in bytes the producer sends; a larger event is dead-lettered.",
    ).tag(config=True)
    ack_timeout = Float(
        10.0, help="How long a batch waits for the broker's acknowledgements before a retry."
    ).tag(config=True)
    headers = Bool(
        True,
        help="Add headers schema, schema_version and event_id so consumers can route "
        "without parsing.",
    ).tag(config=True)

    security_protocol = Unicode(
        "PLAINTEXT", help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    ).tag(config=True)
    sasl_mechanism = Unicode(
        None, allow_none=True, help="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, ..."
    ).tag(config=True)
    sasl_plain_username = Unicode(None, allow_none=True, help="SASL user name.").tag(config=True)
    sasl_plain_password = Unicode(None, allow_none=True, help="SASL password.").tag(
        config=True, secret=True
    )
    ssl_cafile = Unicode(None, allow_none=True, help="CA file to verify the brokers.").tag(
        config=True
    )
    ssl_certfile = Unicode(None, allow_none=True, help="Client certificate file.").tag(config=True)
    ssl_keyfile = Unicode(None, allow_none=True, help="Client key file.").tag(config=True)
    ssl_password = Unicode(None, allow_none=True, help="Password of the client key.").tag(
        config=True, secret=True
    )
    producer_config = Dict(
        help="Any other kafka-python KafkaProducer option, passed as it is."
    ).tag(config=True, secret=True)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._producer: Any = None
        self._topic = name_template(self, "topic")

    # ------------------------------------------------------------------ adapter

    def producer_options(self) -> dict[str, Any]:
        """The keyword arguments given to ``kafka.KafkaProducer``."""
        servers = self.bootstrap_servers
        if isinstance(servers, str):
            servers = [s.strip() for s in servers.split(",") if s.strip()]
        acks = self.acks
        if isinstance(acks, str) and acks.isdigit():
            acks = int(acks)
        options: dict[str, Any] = {
            "bootstrap_servers": servers,
            "acks": acks,
            "linger_ms": self.linger_ms,
            "batch_size": self.batch_size,
            "max_request_size": self.max_request_size,
            "security_protocol": self.security_protocol,
            "client_id": "telemetry-sinks",
        }
        optional = {
            "compression_type": self.compression_type,
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_plain_username,
            "sasl_plain_password": self.sasl_plain_password,
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
            "ssl_password": self.ssl_password,
        }
        options.update({k: v for k, v in optional.items() if v is not None})
        # The producer must not hold the sink's worker longer than an acknowledgement may take:
        # kafka-python waits up to 60 s for metadata in send() and, from 3.0 on, up to 30 s to
        # bootstrap inside KafkaProducer(); meanwhile nothing could be spooled or flushed.
        wait_ms = max(1, int(self.ack_timeout * 1000))
        defaults = kafka.KafkaProducer.DEFAULT_CONFIG
        options["max_block_ms"] = wait_ms
        if "bootstrap_timeout_ms" in defaults:
            options["bootstrap_timeout_ms"] = wait_ms
        options.update(self.producer_config)
        return options

    def open(self) -> None:
        watch = _AuthFailureWatch()
        client_log = logging.getLogger("kafka")
        client_log.addHandler(watch)
        try:
            self._producer = kafka.KafkaProducer(**self.producer_options())
        except kerrors.KafkaError as exc:
            if watch.error is not None:
                raise AuthError(f"{error_text(exc)}: {error_text(watch.error)}") from None
            raise
        finally:
            client_log.removeHandler(watch)

    def close_backend(self) -> None:
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
            sender.join(self.ack_timeout)
        try:
            producer.close(timeout=0)
        except kerrors.KafkaError as exc:
            log.debug("sink %r: the Kafka producer did not close cleanly: %s", self.label, exc)

    def topic_for(self, envelope: Envelope) -> str:
        """The topic of ``envelope`` (the ``topic`` template rendered)."""
        topic = self._topic
        assert topic is not None  # a required option
        return topic.template if topic.fixed else topic.render(envelope.payload)

    def _key_for(self, envelope: Envelope) -> bytes | None:
        if self.key is None:
            return None
        value = envelope.payload.get(self.key) if isinstance(envelope.payload, dict) else None
        return None if value is None else str(value).encode("utf-8")

    def _headers_for(self, envelope: Envelope) -> list[tuple[str, bytes]] | None:
        if not self.headers:
            return None
        headers = [("event_id", envelope.event_id.encode())]
        # A capsule's JSON starts with its metadata: read it there instead of decoding the event.
        head = capsule_head(envelope.data)
        if head is not None:
            _, schema, version = head
        else:
            payload = envelope.payload if isinstance(envelope.payload, dict) else {}
            if "__schema__" not in payload:
                return headers
            schema, version = str(payload["__schema__"]), str(payload.get("__schema_version__"))
        headers.append(("schema", schema.encode("utf-8")))
        headers.append(("schema_version", version.encode()))
        return headers

    def send_batch(self, batch: list[Envelope]) -> BatchResult:
        producer = self._producer
        result = BatchResult()
        futures = []
        for envelope in batch:
            if envelope.size > self.max_request_size:
                result.reject(
                    envelope.event_id,
                    f"message of {envelope.size} bytes is larger than max_request_size "
                    f"({self.max_request_size} bytes)",
                )
                continue
            try:
                future = producer.send(
                    self.topic_for(envelope),
                    value=envelope.data.encode("utf-8"),
                    key=self._key_for(envelope),
                    headers=self._headers_for(envelope),
                )
            except _PERMANENT_ERRORS as exc:
                result.reject(envelope.event_id, error_text(exc))
                continue
            except Exception as exc:  # buffer full, broker gone, credentials refused, ...
                result.retry(envelope.event_id, error_text(exc), auth=isinstance(exc, _AUTH_ERRORS))
                continue
            futures.append((envelope, future))
        try:
            producer.flush(timeout=self.ack_timeout)
        except kerrors.KafkaTimeoutError:
            pass  # the unresolved futures are retried below
        for envelope, future in futures:
            if not future.is_done:
                result.retry(envelope.event_id, "no acknowledgement from the broker in time")
            elif future.failed():
                failure = future.exception
                if isinstance(failure, _PERMANENT_ERRORS):
                    result.reject(envelope.event_id, error_text(failure))
                else:
                    result.retry(envelope.event_id, error_text(failure),
                                 auth=isinstance(failure, _AUTH_ERRORS))
        # Drop the producer with whatever it still holds (a broker that restarted may have
        # forgotten its producer id): the engine closes it and opens a fresh one for the retry.
        result.reconnect = bool(result.retryable)
        return result


__all__ = ["KafkaSink", "topic_safe"]
