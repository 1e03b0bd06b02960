"""KafkaSink closed by a real ``logging.config.dictConfig`` keeps producing to the real broker."""

from __future__ import annotations

import logging
import logging.config

import pytest
from helpers.kafka_readback import consume, payloads
from helpers.servers import wait_delivered

from telemetry_sinks import EventLog, KafkaSink

pytestmark = pytest.mark.integration
SCHEMA = {
    "$id": "https://events.example.org/reopen",
    "version": 1,
    "type": "object",
    "properties": {"seq": {"type": "integer"}},
}


def test_events_after_dictconfig_reach_kafka(bootstrap, topic, client):
    sink = KafkaSink(bootstrap_servers=bootstrap, topic=topic, linger_ms=5, flush_interval=0.05,
                     client=client)  # fmt: skip
    log = EventLog(handlers=[sink], allowed_schemas=[SCHEMA["$id"]])
    log.register_schema(SCHEMA)
    try:
        for seq in range(5):
            log.emit(schema_id=SCHEMA["$id"], data={"seq": seq})
        wait_delivered(sink, 60)
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
        for seq in range(5, 10):
            log.emit(schema_id=SCHEMA["$id"], data={"seq": seq})
        stats = wait_delivered(sink, 60)
    finally:
        sink.close()
    assert stats["sent"] == 10 and stats["dropped"] == 0, stats
    received = payloads(consume(bootstrap, topic, expected=10))
    assert sorted(p["seq"] for p in received) == list(range(10))  # no key: any partition
