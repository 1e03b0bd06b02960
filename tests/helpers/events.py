"""What the network sinks' suites share: two schemas, an EventLog recording them, fast options."""

from __future__ import annotations

from typing import Any

from telemetry_sinks import EventLog

SCHEMAS = [
    {
        "$id": f"https://events.example.org/{name}",
        "version": 1,
        "type": "object",
        "required": ["seq"],
        "properties": {"seq": {"type": "integer"}, "note": {"type": "string"}, "value": {}},
    }
    for name in ("launch", "save")
]
LAUNCH = SCHEMAS[0]["$id"]

#: Short delivery delays, so that the tests do not wait for the production defaults.
FAST = {"flush_interval": 0.05, "retry_initial_backoff": 0.1, "retry_max_backoff": 0.5}


def make_log(sink: Any) -> EventLog:
    """An EventLog recording both schemas (no personal data in them) into ``sink``."""
    log = EventLog(handlers=[sink], allowed_schemas=[s["$id"] for s in SCHEMAS])
    for schema in SCHEMAS:
        log.register_schema(schema)
    return log


__all__ = ["FAST", "LAUNCH", "SCHEMAS", "make_log"]
