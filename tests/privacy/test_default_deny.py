"""Default-deny: with no ``allowed_schemas`` (or an empty one), nothing reaches any sink.

Every sink type: the local ones (file, rotating, timed, stream, archive) and every
available network sink against its real backend.  After emitting and flushing,
the output is empty and the backend received nothing; then, as a positive
control, the same sink with the schema allowed does deliver (so "nothing" is not
an artefact of reading the wrong place).
"""

from __future__ import annotations

import pytest
from helpers.harness import available_backends
from helpers.privacy import CATEGORIES, POLICY, PSID, SCHEMA, LocalSinks, local_kinds, private_event
from helpers.servers import wait_delivered
from traitlets.config import Config

from telemetry_sinks import EventLog, EventRouter

#: Policies under which the privacy schema is not recorded.
DENYING = {
    "default": None,
    "empty list": [],
    "empty dict": {},
    "another schema": ["https://events.example.org/something-else"],
}

pytestmark = pytest.mark.timeout(60)


def denying_log(handlers, policy_name: str) -> EventLog:
    policy = DENYING[policy_name]
    kwargs = {} if policy is None else {"allowed_schemas": policy}
    log = EventLog(handlers=handlers, load_schema_entry_points=False, **kwargs)
    log.register_schema(SCHEMA)
    return log


def emit_denied(log: EventLog) -> None:
    for seq in range(5):
        assert log.emit(schema_id=PSID, data=private_event(seq)) is None
        assert log.record_event(PSID, 1, private_event(seq)) is None
    assert EventRouter([log]).record_event(PSID, 1, private_event(99)) == [None]


@pytest.mark.parametrize("policy", list(DENYING))
@pytest.mark.parametrize("kind", local_kinds())
def test_nothing_reaches_a_local_sink_by_default(kind, policy, tmp_path):
    sinks = LocalSinks(tmp_path)
    sink = sinks.make(kind)
    emit_denied(denying_log([sink], policy))
    sink.flush()
    sink.close()
    output = sinks.output(kind)
    assert PSID.encode() not in output and b"seq" not in output, output[:300]

    control = LocalSinks(tmp_path / "control")
    allowed = control.make(kind)
    log = EventLog(handlers=[allowed], allowed_schemas=POLICY, load_schema_entry_points=False)
    log.register_schema(SCHEMA)
    log.emit(schema_id=PSID, data=private_event(1))
    allowed.flush()
    allowed.close()
    assert PSID.encode() in control.output(kind)


def test_sinks_built_from_configuration_record_nothing_by_default(tmp_path):
    c = Config()
    c.EventLog.sinks = ["file", "rotating_file"]
    c.EventLog.load_schema_entry_points = False
    c.FileSink.filename = str(tmp_path / "file.jsonl")
    c.RotatingFileSink.filename = str(tmp_path / "rotating.jsonl")
    log = EventLog(config=c)
    log.register_schema(SCHEMA)
    emit_denied(log)
    log.close()
    assert all(path.read_bytes() == b"" for path in tmp_path.glob("*.jsonl"))


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", available_backends())
def test_nothing_reaches_a_network_backend_by_default(name, backend_factory, tmp_path):
    options = {}
    if name == "http":  # the collector records anything it gets: a leak would show
        options = {"schemas": [SCHEMA], "allowed_schemas": {PSID: {"allowed_categories": CATEGORIES}}}
    backend = backend_factory(name, **options)
    sink = backend.make_sink(spool_dir=str(tmp_path / "spool"))
    emit_denied(denying_log([sink], "default"))
    emit_denied(denying_log([sink], "empty dict"))
    assert sink.flush(timeout=10)
    stats = sink.stats()
    assert stats["emitted"] == 0 and stats["sent"] == 0 and stats["spooled"] == 0, stats

    log = EventLog(handlers=[sink], allowed_schemas=POLICY, load_schema_entry_points=False)
    log.register_schema(SCHEMA)
    log.emit(schema_id=PSID, data=private_event(1000))  # the positive control
    wait_delivered(sink, timeout=30)
    sink.close()
    received = backend.wait_received(1, timeout=20)
    assert [payload["seq"] for _, payload in received] == [1000], received
    assert not list((tmp_path / "spool").glob("*.wal"))
