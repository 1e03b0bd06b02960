"""The options every Kafka client of telemetry-sinks shares: brokers, security, and their librdkafka names.

The relay's consumer and the Kafka sink connect to the same clusters with the
same settings, so both take these traits (``c.Relay.sasl_mechanism`` and
``c.KafkaSink.sasl_mechanism`` mean the same thing).  Names follow kafka-python's
keyword arguments; :meth:`KafkaClientOptions.librdkafka_connection` maps them to
librdkafka's configuration properties (``security.protocol``, ``sasl.username``, ...).
"""

from __future__ import annotations

from typing import Any

from traitlets import HasTraits, List, Unicode, Union

#: Our option name -> librdkafka's property name.
LIBRDKAFKA_NAMES = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
}


class KafkaClientOptions(HasTraits):
    """Brokers and security of a Kafka client (mixed into configurable classes)."""

    bootstrap_servers = Union(
        [Unicode(), List(Unicode())],
        default_value="localhost:9092",
        help='Brokers to bootstrap from: "host:port", "h1:p1,h2:p2" or a list.',
    ).tag(config=True, destination=("servers", "hosts"))
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

    def bootstrap_list(self) -> list[str]:
        """``bootstrap_servers`` as a list of ``host:port``."""
        servers = self.bootstrap_servers
        if isinstance(servers, str):
            servers = servers.split(",")
        return [s.strip() for s in servers if s.strip()]

    def librdkafka_connection(self) -> dict[str, Any]:
        """The brokers and security options as librdkafka configuration properties."""
        config: dict[str, Any] = {"bootstrap.servers": ",".join(self.bootstrap_list())}
        for name, property_name in LIBRDKAFKA_NAMES.items():
            value = getattr(self, name)
            if value is not None:
                config[property_name] = value
        return config

    def secret_values(self) -> list[str]:
        """Values that must never appear in logs, errors or stats."""
        return [v for v in (self.sasl_plain_password, self.ssl_password) if v]


__all__ = ["LIBRDKAFKA_NAMES", "KafkaClientOptions"]
