"""Reading a Kafka topic back with a real consumer, for the Kafka sink's tests."""

from __future__ import annotations

import json
import time


def consume(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list:
    """Read ``topic`` from the beginning with a real KafkaConsumer until ``expected`` messages."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=2000,
    )
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500, max_records=5000)
            for records in batch.values():
                messages.extend(records)
    finally:
        consumer.close()
    return messages


def payloads(messages) -> list[dict]:
    return [json.loads(m.value) for m in messages]
