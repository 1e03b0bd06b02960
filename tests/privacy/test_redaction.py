"""Redaction by category is exact, in every sink's output, the spool, dead letters and errors.

The schema (``helpers.privacy.SCHEMA``) declares personal data at every level: top
level, a nested object, an object nested in that, objects in an array, and a whole
object property.  The policy allows ``user-identifier`` only.  Proves: no value of
a disallowed category appears anywhere a sink writes (local files, stream, every
network backend's received data, the spool while the backend is down, dead-letter
files, ``stats()``, logs), while the allowed values do (a positive control).  And
validation errors: what they echo of an event.
"""

from __future__ import annotations

import json
import logging

import pytest
from helpers.harness import CollectorServer, available_backends
from helpers.privacy import (
    ALLOWED,
    CATEGORIES,
    FORBIDDEN,
    POLICY,
    PSID,
    SCHEMA,
    LocalSinks,
    assert_private,
    local_kinds,
    private_event,
)
from helpers.servers import wait_delivered

from telemetry_sinks import EventLog
from telemetry_sinks.errors import EventValidationError

pytestmark = pytest.mark.timeout(60)


def private_log(handlers) -> EventLog:
    log = EventLog(handlers=handlers, allowed_schemas=POLICY, load_schema_entry_points=False)
    log.register_schema(SCHEMA)
    return log


def test_the_callers_event_is_not_modified_and_the_capsule_is_redacted():
    event = private_event(1)
    before = json.dumps(event, sort_keys=True)
    capsule = private_log([logging.NullHandler()]).emit(schema_id=PSID, data=event)
    assert json.dumps(event, sort_keys=True) == before
    assert capsule["username"] == ALLOWED["username"]
    assert "email" not in capsule and "session" not in capsule
    assert capsule["client"] == {"agent": ALLOWED["agent"], "location": {"country": ALLOWED["country"]}}
    assert capsule["files"] == [{"size": 10}, {"size": 20}]


@pytest.mark.parametrize("kind", local_kinds())
def test_no_disallowed_value_in_a_local_sinks_output(kind, tmp_path):
    sinks = LocalSinks(tmp_path)
    sink = sinks.make(kind)
    log = private_log([sink])
    for seq in range(20):
        log.emit(schema_id=PSID, data=private_event(seq))
    sink.flush()
    sink.close()
    assert_private(sinks.output(kind), kind)


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", available_backends())
def test_no_disallowed_value_reaches_a_network_backend_or_its_spool(name, backend_factory, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    options = {}
    if name == "http":  # the collector keeps every category: only the sink's redaction protects
        options = {"schemas": [SCHEMA], "allowed_schemas": {PSID: {"allowed_categories": CATEGORIES}}}
    backend = backend_factory(name, **options)
    spool = tmp_path / "spool"
    sink = backend.make_sink(spool_dir=str(spool))
    log = private_log([sink])
    backend.down()
    for seq in range(10):
        log.emit(schema_id=PSID, data=private_event(seq))  # in the spool when emit() returns
    on_disk = b"".join(p.read_bytes() for p in spool.glob("*.wal"))
    assert sink.stats()["spooled"] == 10
    assert_private(on_disk, f"{name}: spool")
    backend.up()
    for seq in range(10, 20):
        log.emit(schema_id=PSID, data=private_event(seq))
    wait_delivered(sink, timeout=60)
    sink.close()
    assert len({p["seq"] for _, p in backend.wait_received(20)}) == 20
    assert_private(backend.raw(), f"{name}: backend")
    assert_private(caplog.text + str(sink.stats()), f"{name}: logs and stats", positive=False)


# ---------------------------------------------------------------------- dead letters


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_dead_lettered_events_hold_no_disallowed_value_http(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    # The collector's version of the schema wants an integer 'action': it rejects every event.
    stricter = json.loads(json.dumps(SCHEMA))
    stricter["properties"]["action"] = {"type": "integer"}
    collector = CollectorServer(tmp_path / "collector", schemas=[stricter],
                                allowed_schemas={PSID: {"allowed_categories": CATEGORIES}}).start()
    try:
        from telemetry_sinks import HTTPSink

        sink = HTTPSink(url=collector.url, spool_dir=str(tmp_path / "spool"), flush_interval=0.01)
        log = private_log([sink])
        for seq in range(5):
            log.emit(schema_id=PSID, data=private_event(seq))
        assert sink.flush(timeout=20)
        stats = sink.stats()
        sink.close()
    finally:
        collector.stop()
    assert stats["dead_lettered"] == 5, stats
    dead = (tmp_path / "spool" / "dead_letters.jsonl").read_text()
    assert "is not of type" in dead  # the collector's reason is kept
    assert_private(dead, "http dead letters")
    assert_private(caplog.text + str(stats) + collector.all_output().decode(), "logs, stats, collector",
                   positive=False)


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_dead_lettered_events_hold_no_disallowed_value_kafka(backend_factory, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    backend = backend_factory("kafka")
    dead_file = tmp_path / "dead.jsonl"
    sink = backend.make_sink(max_request_size=200, dead_letter_file=str(dead_file))  # every event too big
    log = private_log([sink])
    for seq in range(5):
        log.emit(schema_id=PSID, data=private_event(seq))
    assert sink.flush(timeout=20)
    stats = sink.stats()
    sink.close()
    assert stats["dead_lettered"] == 5, stats
    dead = dead_file.read_text()
    assert all(json.loads(line)["reason"].startswith("message of") for line in dead.splitlines())
    assert_private(dead, "kafka dead letters")
    assert_private(caplog.text + str(stats), "logs and stats", positive=False)


# ---------------------------------------------------------------------- validation errors


def error_for(extra_schema: dict, event: dict) -> str:
    schema = {**json.loads(json.dumps(SCHEMA)), **extra_schema}
    log = EventLog(handlers=[logging.NullHandler()], allowed_schemas=POLICY, load_schema_entry_points=False)
    log.register_schema(schema)
    with pytest.raises(EventValidationError) as error:
        log.emit(schema_id=PSID, data=event)
    return str(error.value) + repr(error.value.args) + str(error.value.reason)


@pytest.mark.parametrize(
    "extra_schema, change",
    [
        ({}, {"seq": "not a number"}),  # another field's type
        ({}, {"files": "not a list"}),
        ({"required": ["seq", "missing"]}, {}),
        ({"additionalProperties": False}, {"unexpected": 1}),
        ({"properties": {**SCHEMA["properties"], "action": {"enum": ["open", "save"]}}}, {}),
        ({"if": {"required": ["email"]}, "then": {"required": ["missing"]}}, {}),
    ],
    ids=["type", "nested-type", "required", "additional", "enum", "if-then"],
)
def test_an_invalid_event_error_does_not_echo_personal_data_of_other_fields(extra_schema, change):
    message = error_for(extra_schema, {**private_event(1), **change})
    leaked = [name for name, value in FORBIDDEN.items() if value in message]
    assert not leaked, f"the error message echoes {leaked}: {message}"


@pytest.mark.parametrize(
    "extra_schema, change",
    [
        ({"anyOf": [{"required": ["a"]}, {"required": ["b"]}]}, {}),
        ({"not": {"required": ["email"]}}, {}),
        ({"maxProperties": 3}, {}),
        ({"properties": {**SCHEMA["properties"],
                         "email": {"type": "string", "maxLength": 5, "categories": CATEGORIES[1:]}}}, {}),
        ({"properties": {**SCHEMA["properties"],
                         "email": {"type": "string", "pattern": "^x$", "categories": CATEGORIES[1:]}}}, {}),
    ],
    ids=["anyOf-object", "not-object", "maxProperties", "same-field-maxLength", "same-field-pattern"],
)
def test_errors_quoting_the_event_or_a_categorized_value_redact_personal_data(extra_schema, change):
    message = error_for(extra_schema, {**private_event(1), **change})
    leaked = [name for name, value in FORBIDDEN.items() if value in message]
    assert not leaked, f"the error message echoes {leaked}: {message}"


# ---------------------------------------------------------------------- pseudonymized and generalized

KEY_ENV = "PRIVACY_REDACTION_TEST_KEY"
TRANSFORMING = {PSID: {
    "allowed_categories": [],
    "category_actions": {"user-identifier": "pseudonymize"},
    "property_actions": {"client.ip": {"generalize": "ip_network"}, "files[].path": "pseudonymize",
                         "email": {"generalize": "truncate", "length": 3}},
}}
#: Raw values the policy above replaces: none may appear anywhere.
RAW = {"username": ALLOWED["username"], "ip": "203.0.113.77", "path": FORBIDDEN["path"],
       "email": FORBIDDEN["email"]}


def transforming_log(handlers, monkeypatch) -> EventLog:
    monkeypatch.setenv(KEY_ENV, "redaction-test-key-" + "x" * 20)
    log = EventLog(handlers=handlers, allowed_schemas=TRANSFORMING, pseudonym_key_env=KEY_ENV,
                   load_schema_entry_points=False)
    log.register_schema(SCHEMA)
    return log


def addressed_event(seq: int) -> dict:
    event = private_event(seq)
    event["client"]["ip"] = RAW["ip"]
    return event


def assert_transformed(output: bytes | str, where: str, log: EventLog) -> None:
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
    leaked = [name for name, value in RAW.items() if value in text]
    assert not leaked, f"{where}: raw values the policy replaces leaked: {leaked}"
    for expected in (log.pseudonym_key.pseudonym(RAW["username"]), "203.0.113.0",
                     log.pseudonym_key.pseudonym(RAW["path"])):
        assert expected in text, f"{where}: {expected!r} missing (is the output really read?)"


@pytest.mark.parametrize("kind", local_kinds())
def test_no_raw_value_of_a_replaced_field_in_a_local_sinks_output(kind, tmp_path, monkeypatch):
    sinks = LocalSinks(tmp_path)
    sink = sinks.make(kind)
    log = transforming_log([sink], monkeypatch)
    for seq in range(20):
        log.emit(schema_id=PSID, data=addressed_event(seq))
    sink.flush()
    sink.close()
    assert_transformed(sinks.output(kind), kind, log)


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_no_raw_value_of_a_replaced_field_in_the_spool_or_dead_letters(backend_factory, tmp_path, caplog,
                                                                     monkeypatch):
    caplog.set_level(logging.DEBUG)
    stricter = json.loads(json.dumps(SCHEMA))
    stricter["properties"]["action"] = {"type": "integer"}  # the collector refuses every event for good
    backend = backend_factory("http", schemas=[stricter],
                              allowed_schemas={PSID: {"allowed_categories": CATEGORIES}})
    spool = tmp_path / "spool"
    sink = backend.make_sink(spool_dir=str(spool))
    log = transforming_log([sink], monkeypatch)
    backend.down()
    for seq in range(10):
        log.emit(schema_id=PSID, data=addressed_event(seq))  # in the spool when emit() returns
    assert sink.stats()["spooled"] == 10
    assert_transformed(b"".join(p.read_bytes() for p in spool.glob("*.wal")), "spool", log)
    backend.up()
    wait_delivered(sink, timeout=60)
    stats = sink.stats()
    sink.close()
    assert stats["dead_lettered"] == 10, stats
    assert_transformed((spool / "dead_letters.jsonl").read_text(), "dead letters", log)
    everything = caplog.text + str(stats) + backend.server.all_output().decode("utf-8", "replace")
    assert not [name for name, value in RAW.items() if value in everything]
