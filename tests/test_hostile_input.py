"""Hostile and malformed input: each gets a precise error, and nothing already accepted is lost."""

from __future__ import annotations

import io
import json
import math
import time
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry_sinks import EventLog, EventValidationError, SchemaError, StreamSink

SID = "https://events.example.org/hostile"
SCHEMA = {
    "$id": SID,
    "version": 1,
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 1000},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "anything": {},
        "code": {"type": "string", "pattern": "^(a+)+$"},
        "secret": {"type": "string", "categories": ["user-identifier"]},
    },
}


def make_log(**kwargs):
    out = io.StringIO()
    log = EventLog(handlers=[StreamSink(stream=out)], allowed_schemas=[SID], **kwargs)
    log.register_schema(SCHEMA)
    return log, out


def written(out) -> list[dict]:
    return [json.loads(line, parse_constant=_reject) for line in out.getvalue().splitlines()]


def _reject(name):
    raise AssertionError(f"{name} written: not JSON")


@pytest.mark.parametrize(
    "data, path, fragment",
    [
        ({"name": 5}, "$.name", "not of type"),
        ({}, "$", '"name" is a required property'),
        ({"name": "x", "count": "3"}, "$.count", "not of type"),
        ({"name": "x", "count": 1.5}, "$.count", "not of type"),
        ({"name": "x" * 1001}, "$.name", "longer than"),
        ({"name": "x", "ratio": math.nan}, "$.ratio", "nan is not a JSON number"),
        ({"name": "x", "ratio": math.inf}, "$.ratio", "inf is not a JSON number"),
        ({"name": b"\xff\xfe"}, "$.name", "not of type"),
    ],
)
def test_invalid_events_get_a_precise_error_and_nothing_is_written(data, path, fragment):
    log, out = make_log()
    log.emit(schema_id=SID, data={"name": "before"})
    with pytest.raises(EventValidationError) as info:
        log.emit(schema_id=SID, data=data)
    assert info.value.path == path
    assert fragment in info.value.reason
    log.emit(schema_id=SID, data={"name": "after"})
    assert [e["name"] for e in written(out)] == ["before", "after"]


def test_deeply_nested_events_are_rejected_with_the_limit_named():
    log, out = make_log()
    deep: dict = {}
    cursor = deep
    for _ in range(10_000):
        cursor["a"] = {}
        cursor = cursor["a"]
    with pytest.raises(EventValidationError, match="more than 64 levels deep"):
        log.emit(schema_id=SID, data={"name": "x", "anything": deep})
    shallow = {"a": {"b": [{"c": 1}]}}
    assert log.emit(schema_id=SID, data={"name": "x", "anything": shallow})["anything"] == shallow
    # Any Mapping counts as an object, at the top or inside the event.
    for event in (
        MappingProxyType({"name": "x", "anything": deep}),
        {"name": "x", "anything": MappingProxyType(deep)},
        {"name": "x", "anything": [MappingProxyType({"a": deep})]},
    ):
        with pytest.raises(EventValidationError, match="levels deep|nested too deeply"):
            log.emit(schema_id=SID, data=event)
    assert len(written(out)) == 1


def test_odd_values_in_untyped_properties_never_crash_and_are_valid_json():
    log, out = make_log()
    circular: list = []
    circular.append(circular)

    class Opaque:
        def __str__(self):
            return "opaque!"

    for value in (math.nan, -math.inf, b"\xff\xfe", Opaque(), {1: "int key"}, {"x"}):
        log.emit(schema_id=SID, data={"name": "odd", "anything": value})
    values = [e["anything"] for e in written(out)]
    assert values[0] is None and values[1] is None
    assert values[2] == "\\xff\\xfe"
    assert values[3] == "opaque!"
    assert values[4] == {"1": "int key"}
    assert values[5] == ["x"]
    with pytest.raises(EventValidationError, match="circular reference"):
        log.emit(schema_id=SID, data={"name": "odd", "anything": {"list": circular}})
    assert len(written(out)) == 6


def test_huge_strings_pass_through_intact():
    log, out = make_log()
    big = "y" * 5_000_000
    log.emit(schema_id=SID, data={"name": "big", "anything": big})
    assert written(out)[0]["anything"] == big


def test_pathological_regex_does_not_backtrack_catastrophically():
    log, _ = make_log()
    start = time.perf_counter()
    with pytest.raises(EventValidationError, match=r"\$\.code"):
        log.emit(schema_id=SID, data={"name": "x", "code": "a" * 5000 + "!"})
    assert time.perf_counter() - start < 1.0


def test_capsule_fields_cannot_be_overwritten():
    loose = {**SCHEMA, "$id": SID + "-loose", "additionalProperties": True}
    log, out = make_log()
    log.allowed_schemas = [SID, loose["$id"]]
    log.register_schema(loose)
    for field in ("__schema__", "__timestamp__", "__schema_version__", "__metadata_version__"):
        with pytest.raises(EventValidationError, match="reserved"):
            log.emit(schema_id=loose["$id"], data={"name": "x", field: "forged"})
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    "schema, fragment",
    [
        ({**SCHEMA, "properties": {"a": {"$ref": "https://example.com/remote.json"}}}, "never fetched"),
        ({**SCHEMA, "properties": {"a": {"$ref": "file:///etc/passwd"}}}, "never fetched"),
        ({**SCHEMA, "properties": {"a": {"$ref": "../other.yaml"}}}, "never fetched"),
        ({**SCHEMA, "properties": {"a": {"type": "string", "pattern": "("}}}, "not a valid JSON Schema"),
        ({**SCHEMA, "properties": {"a": {"type": 12}}}, "not a valid JSON Schema"),
    ],
)
def test_hostile_schemas_are_refused(schema, fragment, monkeypatch):
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("a schema reference was fetched")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(SchemaError, match=fragment):
        EventLog().register_schema(schema)


def test_duplicate_registration_with_other_content_is_refused():
    log = EventLog()
    log.register_schema(SCHEMA)
    changed = {**SCHEMA, "required": []}
    with pytest.raises(SchemaError, match="already registered with different content"):
        log.register_schema(changed)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    name=st.text(max_size=50),
    anything=JSON_VALUES,
    secret=st.text(min_size=1, max_size=30),
    # Undeclared properties only: a declared one ("code") has a type of its own to respect.
    extra=st.dictionaries(
        st.text(min_size=1, max_size=10).filter(
            lambda k: not k.startswith("__") and k not in SCHEMA["properties"]
        ),
        JSON_VALUES,
        max_size=3,
    ),
)
def test_property_capsule_round_trips_and_redaction_never_leaks(name, anything, secret, extra):
    log, out = make_log()
    data = {**extra, "name": name, "anything": anything, "secret": secret}
    capsule = log.emit(schema_id=SID, data=data)
    (line,) = written(out)
    assert line == json.loads(json.dumps(capsule))
    assert "secret" not in line  # the category is not allowed: the value never reaches a sink
    assert {k: v for k, v in line.items() if not k.startswith("__")} == json.loads(
        json.dumps({k: v for k, v in data.items() if k != "secret"})
    )
