"""Kafka sink: every capsule as a UTF-8 JSON message on a topic, through librdkafka or kafka-python.

A thin adapter of the delivery core: an event counts as delivered only when the
broker acknowledged it (a delivery report without error, or a resolved
kafka-python future); anything else goes back to the core's retry, spool and
dead-letter paths.  A failed SASL authentication or a missing ACL (topic,
cluster, transactional id) is retried, with a warning naming what to check, and
never dead-lettered.  The producer is created lazily in the worker, so a broker
that is down at start never stops the application.

Two clients (``client``), with the same options and the same guarantee:

* ``"confluent"``: librdkafka through confluent-kafka (``pip install
  "telemetry-sinks[librdkafka]"``, the C library comes in the wheel).  Producing
  costs the application a copy into librdkafka's queue; its own threads batch,
  compress and send, several requests in flight per broker
  (:mod:`telemetry_sinks.sinks.kafka_librdkafka`).  ``librdkafka_config`` passes any
  other librdkafka property.
* ``"kafka-python"``: the pure-Python client (``pip install "telemetry-sinks[kafka]"``);
  ``producer_config`` passes any other ``KafkaProducer`` option.
* ``"auto"`` (the default): the client the other options are written for
  (``producer_config`` set: kafka-python; ``librdkafka_config`` set: librdkafka),
  else librdkafka when confluent-kafka is installed, else kafka-python.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from traitlets import Bool, CaselessStrEnum, Dict, Float, Int, TraitError, Unicode, Union, validate

from ..capsule import capsule_head
from ..delivery import BatchResult, Envelope
from ..delivery.retry import error_text
from ..errors import MissingExtraError
from ..kafka_options import KafkaClientOptions
from .kafka_librdkafka import LibrdkafkaProducer, Message
from .naming import NameOption, NameRule, name_template
from .network import NetworkSink

log = logging.getLogger("telemetry_sinks.delivery.kafka")

#: Kafka's rule for topic names.
TOPIC_NAME = NameRule(
    "Kafka topic name", r"[^a-zA-Z0-9._-]", 249, "Use at most 249 of the characters a-z A-Z 0-9 . _ -"
)
#: ``name`` with characters Kafka forbids in topic names replaced by ``_``.
topic_safe = TOPIC_NAME.safe

CLIENTS = ("auto", "confluent", "kafka-python")
#: Each client's module, distribution and extra.
_LIBRARIES = {
    "confluent": ("confluent_kafka", "confluent-kafka", "librdkafka"),
    "kafka-python": ("kafka", "kafka-python", "kafka"),
}


def installed(client: str) -> bool:
    """Whether the library of ``client`` can be imported."""
    return importlib.util.find_spec(_LIBRARIES[client][0]) is not None


if not (installed("confluent") or installed("kafka-python")):
    raise ImportError(
        'the Kafka sink needs a Kafka client: pip install "telemetry-sinks[librdkafka]" (librdkafka) '
        'or "telemetry-sinks[kafka]" (kafka-python)',
        name="confluent_kafka",
    )


class KafkaSink(NetworkSink, KafkaClientOptions):
    """Send capsules to a Kafka topic (``pip install "telemetry-sinks[librdkafka]"`` or ``[kafka]``).

    Options map one-to-one to Kafka's concepts; see the module documentation for the
    two clients and how one is chosen.
    """

    sink_name = "kafka"
    required_options = ("topic",)
    credentials_help = (
        "security_protocol and the sasl_* / ssl_* options, and the broker's ACLs "
        "(WRITE and DESCRIBE on the topic)"
    )

    client = CaselessStrEnum(
        CLIENTS,
        default_value="auto",
        help="Kafka client: 'confluent' (librdkafka, pip install \"telemetry-sinks[librdkafka]\"), "
        "'kafka-python' (pip install \"telemetry-sinks[kafka]\"), or 'auto': the one "
        "producer_config (kafka-python) or librdkafka_config is written for, else librdkafka when "
        "confluent-kafka is installed, else kafka-python.",
    ).tag(config=True)
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
    batch_size = Int(
        None,
        allow_none=True,
        help="Producer batch size in bytes (per partition). None: the client's own default "
        "(librdkafka 1,000,000; kafka-python 16,384): librdkafka with 16 KiB batches needs several "
        "round trips for one batch of the sink.",
    ).tag(config=True)
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
    producer_config = Dict(
        help="Any other kafka-python KafkaProducer option, passed as it is (client kafka-python)."
    ).tag(config=True, secret=True)
    librdkafka_config = Dict(
        help='Any other librdkafka producer property, passed as it is, e.g. {"queue.buffering.max.kbytes": '
        "65536} (client confluent).",
    ).tag(config=True, secret=True)

    @validate("acks")
    def _check_acks(self, proposal: Any) -> Any:
        if str(proposal.value).lower() not in ("0", "1", "all", "-1"):
            raise TraitError(f"The 'acks' trait of a KafkaSink must be 0, 1 or 'all', not "
                             f"{proposal.value!r}.")  # fmt: skip
        return proposal.value

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._topic = name_template(self, "topic")
        self.chosen_client = self._choose_client()
        # Read once: the hot path reads plain attributes, not traits.
        self._key_field, self._with_headers, self._max_size = self.key, self.headers, self.max_request_size
        self._producer: Any = None

    def _choose_client(self) -> str:
        """The client in force (see the ``client`` option); a missing library names its extra."""
        wanted = self.client.lower()
        if wanted == "auto":
            if self.producer_config and not self.librdkafka_config:
                wanted = "kafka-python"
            elif self.librdkafka_config or installed("confluent"):
                wanted = "confluent"
            else:
                wanted = "kafka-python"
        if not installed(wanted):
            _, distribution, extra = _LIBRARIES[wanted]
            raise MissingExtraError(
                f"KafkaSink client {wanted!r} needs {distribution}: pip install \"telemetry-sinks[{extra}]\""
            )
        return wanted

    # ------------------------------------------------------------------ adapter

    def librdkafka_properties(self) -> dict[str, Any]:
        """The configuration given to ``confluent_kafka.Producer``."""
        acks = str(self.acks).lower()
        wait_ms = max(1, int(self.ack_timeout * 1000))
        config = self.librdkafka_connection()
        config.update({
            "client.id": "telemetry-sinks",
            "acks": "all" if acks in ("all", "-1") else acks,
            "enable.idempotence": acks in ("all", "-1"),  # retries keep the order of a partition
            "linger.ms": self.linger_ms,
            "message.max.bytes": max(self.max_request_size, 1000),
            "compression.type": self.compression_type or "none",
            # A message not acknowledged by then fails its batch (retried by the delivery core):
            "message.timeout.ms": wait_ms,
            "request.timeout.ms": min(30_000, wait_ms),
        })  # fmt: skip
        if self.batch_size is not None:
            config["batch.size"] = self.batch_size
        config.update(self.librdkafka_config)
        return config

    def open(self) -> None:
        if self.chosen_client == "confluent":
            self._producer = LibrdkafkaProducer(self.librdkafka_properties(), self.ack_timeout, self.mask)
        else:
            from .kafka_python import KafkaPythonProducer

            self._producer = KafkaPythonProducer(self.producer_options(), self.ack_timeout, self.label)
        self._producer.open()

    def producer_options(self) -> dict[str, Any]:
        """The keyword arguments given to ``kafka.KafkaProducer``."""
        from .kafka_python import producer_options

        return producer_options(self)

    def close_backend(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close()

    def topic_for(self, envelope: Envelope) -> str:
        """The topic of ``envelope`` (the ``topic`` template rendered)."""
        topic = self._topic
        assert topic is not None  # a required option
        return topic.template if topic.fixed else topic.render(envelope.payload)

    def _key_for(self, envelope: Envelope) -> bytes | None:
        if self._key_field is None:
            return None
        payload = envelope.payload
        value = payload.get(self._key_field) if isinstance(payload, dict) else None
        return None if value is None else str(value).encode("utf-8")

    def _headers_for(self, envelope: Envelope) -> list[tuple[str, bytes]] | None:
        if not self._with_headers:
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
        result = BatchResult()
        messages: list[Message] = []
        for envelope in batch:
            if envelope.size > self._max_size:
                result.reject(
                    envelope.event_id,
                    f"message of {envelope.size} bytes is larger than max_request_size "
                    f"({self._max_size} bytes)",
                )
                continue
            try:
                topic = self.topic_for(envelope)
            except Exception as exc:  # a template the event cannot fill
                result.reject(envelope.event_id, f"cannot render the topic: {error_text(exc)}")
                continue
            messages.append((envelope.event_id, topic, envelope.data, self._key_for(envelope),
                             self._headers_for(envelope)))  # fmt: skip
        if messages:
            result.merge(self._producer.send(messages))
        return result


__all__ = ["CLIENTS", "KafkaSink", "topic_safe"]
