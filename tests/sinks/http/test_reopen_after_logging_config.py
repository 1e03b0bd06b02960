"""HTTPSink closed by a real ``logging.config.dictConfig`` keeps delivering to the real collector."""

from __future__ import annotations

import logging
import logging.config
import uuid

import pytest
from helpers.collector_process import SCHEMA
from helpers.servers import wait_delivered

from telemetry_sinks import EventLog, HTTPSink

pytestmark = pytest.mark.integration
SID = SCHEMA["$id"]
FAST = dict(flush_interval=0.05, retry_initial_backoff=0.05, retry_max_backoff=0.3)


def reconfigure_logging() -> None:
    """A non-incremental dictConfig, as traitlets' Application calls it: closes every handler."""
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})


def test_events_after_dictconfig_reach_the_collector(collector):
    sink = HTTPSink(url=collector.url, **FAST)
    log = EventLog(handlers=[sink], allowed_schemas=[SID])
    log.register_schema(SCHEMA)
    logger = logging.getLogger(f"http-reopen-{uuid.uuid4().hex}")
    logger.addHandler(sink)
    try:
        for seq in range(5):
            log.emit(schema_id=SID, data={"seq": seq})
        wait_delivered(sink, 30)
        reconfigure_logging()
        for seq in range(5, 10):
            log.emit(schema_id=SID, data={"seq": seq})
        reconfigure_logging()  # twice, as when several extension apps configure logging
        for seq in range(10, 15):
            log.emit(schema_id=SID, data={"seq": seq})
        stats = wait_delivered(sink, 30)
    finally:
        logger.removeHandler(sink)
        sink.close()
    assert stats["sent"] == 15 and stats["dropped"] == 0, stats
    assert [r["seq"] for r in collector.received()] == list(range(15))


def test_events_spooled_when_dictconfig_closed_the_sink_are_replayed(collector, tmp_path):
    spool = tmp_path / "spool"
    sink = HTTPSink(url=collector.url, spool_dir=str(spool), close_timeout=0.5, **FAST)
    log = EventLog(handlers=[sink], allowed_schemas=[SID])
    log.register_schema(SCHEMA)
    try:
        collector.stop()
        for seq in range(20):
            log.emit(schema_id=SID, data={"seq": seq})
        reconfigure_logging()  # closing: the collector is down, the events go to the spool
        assert sink.stats()["spooled"] == 20
        collector.start()
        log.emit(schema_id=SID, data={"seq": 20})  # reopens: replays the spool, then sends this
        stats = wait_delivered(sink, 60)
    finally:
        sink.close()
    assert stats["dropped"] == 0 and stats["replayed"] >= 20
    received = sorted({r["seq"] for r in collector.received()})
    assert received == list(range(21))
    assert not list(spool.glob("*.wal"))
