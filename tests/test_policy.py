"""Redaction by category: exact, at every level the schema declares, never mutating the event."""

from __future__ import annotations

import copy
import io
import json

import pytest
from helpers.paths import FIXTURES

from telemetry_sinks import EventLog, StreamSink

SID = "https://example.org/policy-test"

SCHEMA = {
    "$id": SID,
    "version": 1,
    "type": "object",
    "properties": {
        "action": {"type": "string"},
        "thing": {"type": "string", "categories": ["category.jupyter.org/unrestricted"]},
        "user": {"type": "string", "categories": ["category.jupyter.org/user-identifier"]},
        "ip": {"type": "string", "categories": ["user-identifiable-information"]},
        "both": {"type": "string", "categories": ["user-identifier", "user-identifiable-information"]},
        "session": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "owner": {"type": "string", "categories": ["user-identifier"]},
                "geo": {
                    "type": "object",
                    "properties": {
                        "country": {"type": "string"},
                        "city": {"type": "string", "categories": ["user-identifiable-information"]},
                    },
                },
            },
        },
        "collaborators": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "role": {"type": "string"},
                    "name": {"type": "string", "categories": ["user-identifier"]},
                },
            },
        },
    },
}

EVENT = {
    "action": "open",
    "thing": "notebook",
    "user": "alice",
    "ip": "192.0.2.1",
    "both": "alice@192.0.2.1",
    "session": {"id": "s1", "owner": "alice", "geo": {"country": "NZ", "city": "Dunedin"}},
    "collaborators": [{"role": "editor", "name": "bob"}, {"role": "viewer", "name": "carol"}],
    "undeclared": "kept",
}


def record(allowed) -> dict:
    out = io.StringIO()
    log = EventLog(handlers=[StreamSink(stream=out)], allowed_schemas=allowed)
    log.register_schema(SCHEMA)
    event = copy.deepcopy(EVENT)
    capsule = log.record_event(SID, 1, event)
    assert event == EVENT, "the caller's event must not be modified"
    written = json.loads(out.getvalue())
    assert written == capsule
    return {k: v for k, v in written.items() if not k.startswith("__")}


def test_list_form_allows_only_unrestricted():
    assert record([SID]) == {
        "action": "open",
        "thing": "notebook",
        "session": {"id": "s1", "geo": {"country": "NZ"}},
        "collaborators": [{"role": "editor"}, {"role": "viewer"}],
        "undeclared": "kept",
    }


@pytest.mark.parametrize("label", ["user-identifier", "category.jupyter.org/user-identifier"])
def test_bare_and_uri_labels_mean_the_same_category(label):
    got = record({SID: {"allowed_categories": [label]}})
    assert got["user"] == "alice"
    assert got["session"]["owner"] == "alice"
    assert [c["name"] for c in got["collaborators"]] == ["bob", "carol"]
    assert "ip" not in got and "both" not in got  # needs both categories
    assert got["session"]["geo"] == {"country": "NZ"}


def test_a_property_needs_all_of_its_categories():
    got = record(
        {SID: {"allowed_categories": ["user-identifier", "user-identifiable-information"]}}
    )
    assert got == EVENT


def test_allowed_properties_keeps_a_property_whole():
    got = record({SID: {"allowed_categories": [], "allowed_properties": ["ip", "session"]}})
    assert got["ip"] == "192.0.2.1"
    assert got["session"] == EVENT["session"]
    assert "user" not in got and "both" not in got
    assert got["collaborators"] == [{"role": "editor"}, {"role": "viewer"}]


def test_other_schemas_stay_unrecorded():
    out = io.StringIO()
    log = EventLog(handlers=[StreamSink(stream=out)], allowed_schemas={"other": {}})
    log.register_schema(SCHEMA)
    assert log.record_event(SID, 1, EVENT) is None
    assert out.getvalue() == ""


def test_real_jupyter_telemetry_example_schema():
    schema = FIXTURES / "jupyter_telemetry" / "docs-example-2975fca" / "example-event.yaml"
    sid = "event.jupyter.org/example-event"
    for allowed, expected in [
        ([sid], {"thing": "x"}),
        ({sid: {"allowed_categories": ["user-identifier"]}}, {"thing": "x", "user": "u"}),
        ({sid: {"allowed_properties": ["user"]}}, {"thing": "x", "user": "u"}),
    ]:
        out = io.StringIO()
        log = EventLog(handlers=[StreamSink(stream=out)], allowed_schemas=allowed)
        log.register_schema_file(schema)
        capsule = log.record_event(sid, 1, {"thing": "x", "user": "u"})
        assert {k: v for k, v in capsule.items() if not k.startswith("__")} == expected
        assert ("\"user\"" in out.getvalue()) == ("user" in expected)


def test_changing_the_policy_takes_effect_immediately():
    out = io.StringIO()
    log = EventLog(handlers=[StreamSink(stream=out)], allowed_schemas=[SID])
    log.register_schema(SCHEMA)
    assert "user" not in log.record_event(SID, 1, EVENT)
    log.allowed_schemas = {SID: {"allowed_categories": ["user-identifier"]}}
    assert log.record_event(SID, 1, EVENT)["user"] == "alice"
    log.allowed_schemas = []
    assert log.record_event(SID, 1, EVENT) is None
