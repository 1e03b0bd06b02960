"""Credentials or permissions refused, then fixed, for every network sink: nothing is lost.

A refusal of the sink's credentials (401, AWS's AccessDenied / UnrecognizedClient /
ExpiredToken, Cloud Logging's UNAUTHENTICATED / PERMISSION_DENIED, a failed SASL
authentication) is an operator's problem, not the events': each sink retries with
backoff, keeps the events (on disk with a spool, in the bounded queue without),
warns once per interval naming itself and what to check, counts the refusals in
``stats()["auth_failures"]``, and dead-letters nothing.  Once the operator fixes the
backend's side (the collector's token, the IAM policy, the broker's user), every
event arrives, and ``flush()`` returns as soon as they have: it does not wait out
the backoff.

The refusals come from the real servers where they can check credentials (the
collector's bearer token; Kafka's SASL handshake, through a SASL/PLAIN gate in front
of Tansu); for the cloud backends, whose local stand-ins accept any credentials, a
proxy answers in the real service's error shape until the fix.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from pathlib import Path

import pytest
from helpers.aws_fault_proxy import AWSFaultProxy
from helpers.harness import FAST, SCHEMA, SID, CollectorServer, available_backends, check_at_least_once
from helpers.kafka_sasl import SaslPlainFront
from helpers.servers import HTTPProxy, free_port, tansu_broker, wait_for_port

from telemetry_sinks import EventLog

pytestmark = [pytest.mark.integration]

COUNT = 30
SECRET = "n3w-s3cret-value"


class Scenario:
    """A backend that refuses the sink's credentials until ``fix()``."""

    #: What ``last_error`` says while the backend refuses.
    refusal = ""

    def sink(self, **options):
        raise NotImplementedError

    def fix(self) -> None:
        raise NotImplementedError

    def received(self) -> list[tuple[str | None, dict]]:
        return self.backend.received()

    def stop(self) -> None:
        pass


class CollectorToken(Scenario):
    """The real collector: its token was rotated; the sink already has the new one."""

    refusal = "HTTP 401"

    def __init__(self, backend_factory, tmp_path: Path) -> None:
        self.backend = backend_factory("http", token="old-token-value")
        self.directory = self.backend.server.events_file.parent

    def sink(self, **options):
        return self.backend.make_sink(token=SECRET, **options)

    def fix(self) -> None:
        port = self.backend.server.port
        self.backend.server.stop()
        self.backend.server = CollectorServer(self.directory, token=SECRET, port=port)
        self.backend.server.start()


class GatedHTTP(Scenario):
    """A backend behind a proxy that answers ``status`` (in the backend's error shape) until fixed."""

    def __init__(self, backend_factory, name: str, status: int, refusal: str) -> None:
        self.backend = backend_factory(name)
        self.status, self.refusal = status, refusal
        if name == "stackdriver":
            self.gate = None
            self.backend.api.fail_next(10**6, status)
            return
        self.gate = HTTPProxy(self.backend.proxy.url).start()
        error = {"type": "security_exception", "reason": "action [indices:data/write/bulk] is unauthorized"}
        self.gate.fail(status, times=10**6, error=error)

    def sink(self, **options):
        gated = {}
        if self.gate is not None:
            gated = {"hosts": [self.gate.url]}
        return self.backend.make_sink(**gated, **options)

    def fix(self) -> None:
        if self.gate is None:
            self.backend.api.clear()
        else:
            self.gate.clear()

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.stop()


class AWSRefusal(Scenario):
    """moto behind a proxy that answers ``code`` to PutLogEvents until the IAM side is fixed."""

    def __init__(self, backend_factory, code: str) -> None:
        self.backend = backend_factory("cloudwatch")
        self.refusal = code
        self.gate = AWSFaultProxy(self.backend.proxy.url, aws_rules=False).start()
        status = 403 if code == "UnrecognizedClientException" else 400
        self.gate.fail(code, status=status, message="The security token included in the request is invalid",
                       times=None)

    def sink(self, **options):
        return self.backend.make_sink(endpoint_url=self.gate.url, **options)

    def fix(self) -> None:
        self.gate.clear()

    def stop(self) -> None:
        self.gate.stop()


class KafkaSasl(Scenario):
    """Tansu behind a SASL/PLAIN gate whose user still has the old password (kafka-python)."""

    refusal = "SaslAuthenticationFailedError"

    def __init__(self, backend_factory, tmp_path: Path) -> None:
        broker_port = free_port()
        self.front = SaslPlainFront(broker_port, {"svc": "old-password"})
        self.broker = tansu_broker(broker_port, tmp_path)
        argv = self.broker.argv
        argv[argv.index("--advertised-listener-url") + 1] = f"tcp://127.0.0.1:{self.front.port}"
        self.broker.start()
        self.front.start()
        wait_for_port(self.front.port)
        self.topic = f"credentials-{uuid.uuid4().hex[:10]}"
        self.security = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                         "sasl_plain_username": "svc", "sasl_plain_password": SECRET}

    def sink(self, **options):
        from telemetry_sinks.sinks.kafka import KafkaSink

        config = {"request_timeout_ms": 2000, "reconnect_backoff_ms": 50, "reconnect_backoff_max_ms": 300}
        return KafkaSink(bootstrap_servers=f"127.0.0.1:{self.front.port}", topic=self.topic, ack_timeout=2.0,
                         producer_config=config, **self.security, **{**FAST, **options})

    def fix(self) -> None:
        self.front.users = {"svc": SECRET}

    def received(self) -> list[tuple[str | None, dict]]:
        import json

        from kafka import KafkaConsumer

        consumer = KafkaConsumer(self.topic, bootstrap_servers=f"127.0.0.1:{self.front.port}",
                                 auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
                                 consumer_timeout_ms=3000, **self.security)
        try:
            messages = list(consumer)
        finally:
            consumer.close()
        return [(dict(m.headers)["event_id"].decode(), json.loads(m.value)) for m in messages]

    def stop(self) -> None:
        self.front.stop()
        self.broker.stop()


class LibrdkafkaSasl(KafkaSasl):
    """The same gate, the Kafka sink on librdkafka: its messages time out, error_cb says why."""

    refusal = "_AUTHENTICATION"

    def sink(self, **options):
        from telemetry_sinks.sinks.kafka import KafkaSink

        config = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 300}
        return KafkaSink(bootstrap_servers=f"127.0.0.1:{self.front.port}", topic=self.topic, ack_timeout=2.0,
                         client="confluent", librdkafka_config=config, **self.security,
                         **{**FAST, **options})


CASES = {
    "http-401": lambda f, p: CollectorToken(f, p),
    "kafka-sasl": lambda f, p: KafkaSasl(f, p),
    "kafka-sasl-librdkafka": lambda f, p: LibrdkafkaSasl(f, p),
    "cloudwatch-AccessDenied": lambda f, p: AWSRefusal(f, "AccessDeniedException"),
    "cloudwatch-UnrecognizedClient": lambda f, p: AWSRefusal(f, "UnrecognizedClientException"),
    "cloudwatch-ExpiredToken": lambda f, p: AWSRefusal(f, "ExpiredTokenException"),
    "stackdriver-401": lambda f, p: GatedHTTP(f, "stackdriver", 401, "credentials cannot be refreshed"),
    "stackdriver-403": lambda f, p: GatedHTTP(f, "stackdriver", 403, "PERMISSION_DENIED"),
    "elasticsearch-401": lambda f, p: GatedHTTP(f, "elasticsearch", 401, "HTTP 401"),
    "opensearch-403": lambda f, p: GatedHTTP(f, "opensearch", 403, "HTTP 403"),
}
SINK_OF = {case: case.split("-")[0] for case in CASES}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("keep", ["spool", "memory"])
@pytest.mark.parametrize("case", [c for c in CASES if SINK_OF[c] in available_backends()])
def test_credentials_refused_then_fixed_nothing_is_dead_lettered_and_everything_arrives(
    case, keep, backend_factory, tmp_path, caplog
):
    caplog.set_level(logging.WARNING, logger="telemetry_sinks.delivery")
    scenario = CASES[case](backend_factory, tmp_path)
    try:
        dead = tmp_path / "dead.jsonl"
        options = {"dead_letter_file": str(dead), "max_batch_events": 10}
        if keep == "spool":
            options["spool_dir"] = str(tmp_path / "spool")
        sink = scenario.sink(**options)
        sink.name = f"events-{case}"
        log = EventLog(handlers=[sink], allowed_schemas=[SID])
        log.register_schema(SCHEMA)
        sent = [log.emit(schema_id=SID, data={"seq": seq}) for seq in range(COUNT)]

        deadline = time.monotonic() + 30
        while sink.stats()["auth_failures"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = sink.stats()
        assert stats["auth_failures"] >= 3, stats  # retried with backoff, not given up on
        assert stats["sent"] == 0 and stats["dead_lettered"] == 0 and stats["dropped"] == 0, stats
        assert scenario.refusal in (stats["last_error"] or ""), stats
        if keep == "spool":
            assert stats["spooled"] == COUNT
        else:
            assert stats["queue_events"] + len(sink._engine._pending) == COUNT
        warnings = [r.getMessage() for r in caplog.records if "refused its credentials" in r.getMessage()]
        assert len(warnings) == 1, warnings  # loud, but once per drop_report_interval
        assert repr(sink.name) in warnings[0] and "Check " in warnings[0]
        assert sink.credentials_help in warnings[0]

        scenario.fix()
        started = time.monotonic()
        assert sink.flush(30), sink.stats()
        took = time.monotonic() - started
        stats = sink.stats()
        sink.close()
        assert stats["sent"] == COUNT and stats["dead_lettered"] == 0 and stats["dropped"] == 0, stats
        assert not dead.exists()
        received = scenario.received()
        check_at_least_once(received, sent, by_event_id=scenario.backend.carries_event_id
                            if hasattr(scenario, "backend") else True)
        for text in (caplog.text, repr(sink), str(stats)):
            assert SECRET not in text
        print(f"\n{case} ({keep}): {stats['auth_failures']} refusals, then delivered "
              f"{COUNT} events {took:.2f} s after the fix")
    finally:
        with contextlib.suppress(Exception):
            scenario.stop()
