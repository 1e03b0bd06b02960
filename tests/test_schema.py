"""Schema registration and validation, against real schemas written by other projects."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest
import yaml
from helpers.paths import FIXTURES

from telemetry_sinks import EventLog, EventValidationError, SchemaError
from telemetry_sinks.schema import Schema, load_schema_file

BINDERHUB = FIXTURES / "binderhub" / "launch-history"
JE_HEAD = FIXTURES / "jupyter_events" / "head-147cf71"
JE_INT = FIXTURES / "jupyter_events" / "history-int-version-f613554"
JS_HEAD = FIXTURES / "jupyter_server" / "head-9a4d6ee" / "jupyter_server" / "event_schemas"
WIKI = FIXTURES / "wikimedia_schemas-event-primary" / "jsonschema"
WIKI2 = FIXTURES / "wikimedia_schemas-event-secondary" / "jsonschema"
ARCHIVE = FIXTURES / "mybinder_archive"


def test_fixtures_present():
    assert (FIXTURES / "SOURCES.md").is_file(), f"shared fixtures missing at {FIXTURES}"


GOOD = sorted(
    [*BINDERHUB.glob("*/launch.json")]
    + [*(JE_HEAD / "tests" / "schemas" / "good").iterdir()]
    + [*(JE_INT / "tests" / "schemas" / "good").iterdir()]
    + [*JS_HEAD.rglob("*.yaml")]
    + [*(FIXTURES / "jupyterhub").rglob("*.yaml")]
    + [*(FIXTURES / "jupyterhub").rglob("*.json")]
    + [FIXTURES / "jupyter_telemetry" / "docs-example-2975fca" / "example-event.yaml"]
)


@pytest.mark.parametrize("path", GOOD, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_real_schemas_register(path):
    log = EventLog()
    (schema,) = log.register_schema_file(path)
    raw = load_schema_file(path)
    assert schema.id == raw["$id"]
    assert schema.version == int(raw["version"])
    assert log.schema(schema.id).version == schema.version


def test_string_and_int_versions_mean_the_same():
    # jupyter_events switched from version: 1 to version: "1"; both are version 1.
    log = EventLog()
    (new,) = log.register_schema_file(JS_HEAD / "kernel_actions" / "v1.yaml")
    assert load_schema_file(JS_HEAD / "kernel_actions" / "v1.yaml")["version"] == "1"
    assert new.version == 1 and isinstance(new.version, int)
    old = FIXTURES / "jupyter_server/history-int-version-e544fa1/jupyter_server/event_schemas"
    # Same content apart from the version's type: registering both is not a conflict.
    assert log.register_schema_file(old / "kernel_actions" / "v1.yaml")[0] is new


@pytest.mark.parametrize(
    "relpath, expected",
    [
        ("jupyter_events/head-147cf71/tests/schemas/bad/invalid.yaml", "must be a mapping"),
        ("jupyter_events/head-147cf71/tests/schemas/bad/reserved-property.yaml", "'__badName'"),
        (
            "jupyter_events/head-147cf71/tests/schemas/bad/nested-reserved-property.yaml",
            "properties/users/items/properties/hobbies/items/properties/__badName",
        ),
        (
            "jupyter_telemetry/docs-example-2975fca/JEP-kernel_lifecycle_event.json",
            "schema has no '$id'",
        ),
        (
            "wikimedia_schemas-event-primary/jsonschema/test/event/1.0.0.yaml",
            "missing 'version'",
        ),
        (
            "jupyter_events/head-147cf71/jupyter_events/schemas/event-metaschema.yml",
            "never fetched",
        ),
    ],
)
def test_real_bad_schemas_are_rejected_with_a_precise_message(relpath, expected):
    path = FIXTURES / relpath
    with pytest.raises(SchemaError) as info:
        EventLog().register_schema_file(path)
    message = str(info.value)
    assert str(path) in message  # names the file
    assert expected in message


def test_same_id_and_version_with_different_content_is_a_conflict():
    # BinderHub added "Gist" to the v1 enum without bumping the version.
    log = EventLog()
    log.register_schema_file(BINDERHUB / "v1-3da0f0c" / "launch.json")
    with pytest.raises(SchemaError) as info:
        log.register_schema_file(BINDERHUB / "v1-ba15091" / "launch.json")
    message = str(info.value)
    assert "binderhub.jupyter.org/launch" in message and "version 1" in message
    assert "v1-3da0f0c" in message  # where the first one came from
    assert "Bump 'version'" in message


def test_identical_registration_is_idempotent():
    log = EventLog()
    first = log.register_schema_file(BINDERHUB / "v6-a0c55e8" / "launch.json")
    again = log.register_schema_file(BINDERHUB / "v6-a0c55e8" / "launch.json")
    assert first == again


def test_directory_registers_every_schema_file():
    log = EventLog()
    registered = log.register_schema_file(JS_HEAD)
    assert sorted(s.id.rsplit("/", 2)[-2] for s in registered) == [
        "contents_service",
        "gateway_client",
        "kernel_actions",
    ]


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = _write(tmp_path, "broken.yaml", '"$id": x\nversion: 1\nproperties:\n  a: [1, 2\n')
    with pytest.raises(SchemaError) as info:
        load_schema_file(path)
    assert str(path) in str(info.value)
    assert "line 5" in str(info.value) or "line 4" in str(info.value)


def test_json_syntax_error_names_file_and_line(tmp_path):
    path = _write(tmp_path, "broken.json", '{\n  "$id": "x",\n  "version": 1,\n}\n')
    with pytest.raises(SchemaError, match=r"broken\.json, line 4"):
        load_schema_file(path)


BASE = {"$id": "https://example.org/e", "version": 1, "type": "object", "properties": {}}


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"type": "array"}, "top-level 'type' must be 'object'"),
        ({"version": "one"}, "'version' must be an integer"),
        ({"version": None}, "'version' must be an integer"),
        ({"$id": 5}, "no '$id'"),
        ({"properties": {"user": {"type": "string", "category": ["user-identifier"]}}}, "'categories'"),
        ({"properties": {"user": {"categories": "user-identifier"}}}, "must be a list of strings"),
        ({"properties": {"a": {"$ref": "https://evil.example/schema.json"}}}, "never fetched"),
        ({"properties": {"a": {"$ref": "other.yaml#/x"}}}, "never fetched"),
        ({"properties": {"a": {"type": "strin"}}}, "not a valid JSON Schema"),
        ({"properties": {"a": {"minimum": "zero"}}}, "properties/a/minimum"),
    ],
)
def test_malformed_schemas(change, expected):
    schema = {**BASE, **change}
    with pytest.raises(SchemaError) as info:
        EventLog().register_schema(schema)
    assert expected in str(info.value)
    if isinstance(schema.get("$id"), str):
        assert "https://example.org/e" in str(info.value)


def test_missing_version_suggests_the_fix():
    schema = dict(BASE)
    del schema["version"]
    with pytest.raises(SchemaError, match="add an integer 'version: 1'"):
        EventLog().register_schema(schema)


def test_local_refs_are_allowed_and_used():
    schema = {
        **BASE,
        "definitions": {"name": {"type": "string", "maxLength": 3}},
        "properties": {"a": {"$ref": "#/definitions/name"}},
    }
    compiled = Schema(schema)
    compiled.validate({"a": "abc"})
    with pytest.raises(EventValidationError, match=r"\$\.a"):
        compiled.validate({"a": "abcd"})


def test_kernel_actions_if_then_semantics():
    # From SOURCES.md: kernel_id is required except for a start without status.
    schema = Schema(load_schema_file(JS_HEAD / "kernel_actions" / "v1.yaml"))
    schema.validate({"action": "start", "msg": "m"})
    with pytest.raises(EventValidationError) as info:
        schema.validate({"action": "start", "status": "success", "msg": "m"})
    assert "kernel_id" in info.value.reason
    assert info.value.schema_id.endswith("kernel_actions/v1") and info.value.version == 1


def test_error_path_into_nested_arrays():
    schema = Schema(load_schema_file(JE_HEAD / "tests" / "schemas" / "good" / "nested-array.yaml"))
    event = {"users": [{"name": "a", "hobbies": [{"sport": "x"}, {"sport": 5}]}]}
    with pytest.raises(EventValidationError) as info:
        schema.validate(event)
    assert info.value.path == "$.users[0].hobbies[1].sport"
    assert "5 is not of type" in info.value.reason
    assert "http://event.jupyter.org/test" in str(info.value)


@pytest.mark.parametrize("archive", sorted(ARCHIVE.rglob("events-*.jsonl")), ids=lambda p: p.name)
def test_mybinder_archive_lines_validate_against_their_version(archive):
    log = EventLog()
    for path in sorted(BINDERHUB.glob("*/launch.json")):
        try:
            log.register_schema_file(path)
        except SchemaError:
            pass  # the unbumped variants (Gist, Zenodo, CKAN) conflict by design
    lines = archive.read_text().splitlines()
    assert lines
    for line in lines:
        record = json.loads(line)
        payload = {k: v for k, v in record.items() if k not in ("timestamp", "schema", "version")}
        log.schema(record["schema"], record["version"]).validate(payload)


def test_wikimedia_materialised_schema_validates_its_own_examples():
    # Wikimedia schemas carry the version in $id, not a 'version' key; add one to register.
    raw = load_schema_file(WIKI / "mediawiki" / "recentchange" / "1.0.1.yaml")
    body = {**copy.deepcopy(raw), "version": 1}
    schema = EventLog().register_schema(body)
    assert raw["examples"]
    for example in raw["examples"]:
        schema.validate(example)
    bad = copy.deepcopy(raw["examples"][0])
    bad["namespace"] = "not a number"
    with pytest.raises(EventValidationError, match=r"\$\.namespace"):
        schema.validate(bad)


def test_wikimedia_current_yaml_with_fragment_refs_is_refused():
    raw = load_schema_file(WIKI2 / "analytics" / "legacy" / "test" / "current.yaml")
    with pytest.raises(SchemaError, match="points outside the schema"):
        EventLog().register_schema({**raw, "version": 1})


def test_python_objects_in_events_fall_back_to_the_python_validator():
    schema = Schema({**BASE, "properties": {"when": {}, "name": {"type": "string"}}})
    schema.validate({"when": dt.datetime(2026, 1, 1), "name": "x"})
    with pytest.raises(EventValidationError, match=r"\$\.name"):
        schema.validate({"when": dt.datetime(2026, 1, 1), "name": dt.date(2026, 1, 1)})


def test_draft_is_taken_from_dollar_schema():
    # prefixItems only exists in 2020-12; under draft 7 it is ignored.
    body = {
        **BASE,
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "properties": {"pair": {"type": "array", "prefixItems": [{"type": "integer"}]}},
    }
    with pytest.raises(EventValidationError):
        Schema(body).validate({"pair": ["x"]})
    draft7 = {k: v for k, v in body.items() if k != "$schema"}
    Schema(draft7).validate({"pair": ["x"]})


def test_yaml_and_json_forms_register_the_same_schema(tmp_path):
    # (jupyter_events' own basic.yaml and basic.json differ by a trailing newline in
    # the description, so they are a conflict; a faithful YAML copy is not.)
    raw = load_schema_file(JE_HEAD / "tests" / "schemas" / "good" / "basic.json")
    path = tmp_path / "basic.yml"
    path.write_text(yaml.safe_dump(raw))
    log = EventLog()
    (a,) = log.register_schema_file(path)
    (b,) = log.register_schema_file(JE_HEAD / "tests" / "schemas" / "good" / "basic.json")
    assert a is b
