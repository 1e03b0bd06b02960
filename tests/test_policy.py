"""Redaction by category: exact, at every level the schema declares, never mutating the event."""

from __future__ import annotations

import copy
import io
import json
import logging

import pytest
from helpers.paths import FIXTURES
from traitlets import TraitError

from telemetry_sinks import EventLog, EventValidationError, StreamSink
from telemetry_sinks.errors import PolicyError

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


# ---------------------------------------------------------------------- actions beside allowed_categories

KEY = "policy-test-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def _pseudonym_key_in_the_environment(monkeypatch):
    monkeypatch.setenv("POLICY_TEST_KEY", KEY)


def record_with(entry: dict, event: dict = EVENT) -> tuple[dict, EventLog]:
    out = io.StringIO()
    log = EventLog(handlers=[StreamSink(stream=out)], allowed_schemas={SID: entry},
                   pseudonym_key_env="POLICY_TEST_KEY", pseudonym_key_id="t1", load_schema_entry_points=False)
    log.register_schema(SCHEMA)
    before = copy.deepcopy(event)
    capsule = log.record_event(SID, 1, event)
    assert event == before, "the caller's event must not be modified"
    assert json.loads(out.getvalue()) == capsule
    return {k: v for k, v in capsule.items() if not k.startswith("__")}, log


def pseudonym(log: EventLog, value) -> str:
    return log.pseudonym_key.pseudonym_of(value)


def user_fields(got: dict) -> tuple:
    """The user-identifier values at every level: top, nested object, objects in an array."""
    return (got.get("user", "<dropped>"), got["session"].get("owner", "<dropped>"),
            [c.get("name", "<dropped>") for c in got["collaborators"]])


@pytest.mark.parametrize("label", ["user-identifier", "category.jupyter.org/user-identifier"])
@pytest.mark.parametrize("action", ["drop", "keep", "pseudonymize", {"generalize": "truncate", "length": 2}])
def test_a_category_action_applies_at_every_level_the_schema_declares(label, action):
    got, log = record_with({"category_actions": {label: action}})
    expected = {
        "drop": ("<dropped>", "<dropped>", ["<dropped>", "<dropped>"]),
        "keep": ("alice", "alice", ["bob", "carol"]),
        "pseudonymize": (pseudonym(log, "alice"), pseudonym(log, "alice"),
                         [pseudonym(log, "bob"), pseudonym(log, "carol")]),
    }.get(action if isinstance(action, str) else "", ("al", "al", ["bo", "ca"]))
    assert user_fields(got) == expected
    # Everything else is as the plain policy leaves it.
    assert got["session"]["id"] == "s1" and got["session"]["geo"] == {"country": "NZ"}
    assert [c["role"] for c in got["collaborators"]] == ["editor", "viewer"]
    assert "ip" not in got and got["undeclared"] == "kept"
    # 'both' has user-identifier and user-identifiable-information (not allowed): dropped whatever happens.
    assert "both" not in got


def test_of_a_propertys_categories_the_action_keeping_least_wins():
    got, log = record_with({"category_actions": {"user-identifier": "pseudonymize",
                                                 "user-identifiable-information": "keep"}})
    assert got["both"] == pseudonym(log, "alice@192.0.2.1")  # pseudonymize beats keep
    assert got["ip"] == "192.0.2.1" and got["session"]["geo"]["city"] == "Dunedin"
    got, _ = record_with({"category_actions": {"user-identifier": "pseudonymize"}})
    assert "both" not in got  # drop (the default of a category not named) beats pseudonymize
    got, _ = record_with({"category_actions": {
        "user-identifier": {"generalize": "truncate", "length": 3},
        "user-identifiable-information": {"generalize": "truncate", "length": 5}}})
    assert "both" not in got  # two different generalizations cannot both apply: dropped


def test_property_actions_reach_nested_objects_and_arrays_whatever_the_categories():
    got, log = record_with({"allowed_categories": ["user-identifier"], "property_actions": {
        "session.owner": "pseudonymize",                                # categorized, allowed
        "session.geo.city": {"generalize": "truncate", "length": 3},    # categorized, not allowed
        "collaborators[].role": "drop",                                 # no category
        "collaborators[].name": "pseudonymize",
        "action": {"generalize": "truncate", "length": 1},
        "undeclared": "pseudonymize",                                   # not in the schema
    }})
    assert got["action"] == "o" and got["user"] == "alice"
    assert got["session"] == {"id": "s1", "owner": pseudonym(log, "alice"),
                              "geo": {"country": "NZ", "city": "Dun"}}
    assert got["collaborators"] == [{"name": pseudonym(log, "bob")}, {"name": pseudonym(log, "carol")}]
    assert got["undeclared"] == pseudonym(log, "kept")


def test_a_kept_property_keeps_its_nested_data_whole_except_what_is_named():
    got, _ = record_with({"property_actions": {"session": "keep", "session.geo.country": "drop"}})
    assert got["session"] == {"id": "s1", "owner": "alice", "geo": {"city": "Dunedin"}}
    assert "user" not in got


def test_a_whole_object_or_array_can_be_pseudonymized_or_dropped():
    got, log = record_with({"property_actions": {"session": "pseudonymize", "collaborators": "drop"}})
    assert got["session"] == pseudonym(log, EVENT["session"])
    reordered = dict(reversed(list(EVENT["session"].items())))
    assert pseudonym(log, reordered) == pseudonym(log, EVENT["session"])  # canonical JSON: key order ignored
    assert "collaborators" not in got


def test_a_category_generalization_that_cannot_read_the_declared_type_drops_the_property(caplog):
    schema = copy.deepcopy(SCHEMA)
    schema["properties"]["count"] = {"type": "integer", "categories": ["user-identifier"]}
    log = EventLog(handlers=[logging.NullHandler()], load_schema_entry_points=False, allowed_schemas={
        SID: {"category_actions": {"user-identifier": {"generalize": "truncate", "length": 1}}}})
    log.register_schema(schema)
    with caplog.at_level(logging.WARNING, "telemetry_sinks.policy"):
        capsule = log.record_event(SID, 1, {"count": 7, "user": "alice"})
    assert "count" not in capsule and capsule["user"] == "a"
    assert "'count'" in caplog.text and "truncate" in caplog.text and "dropped" in caplog.text


def test_validation_errors_do_not_echo_values_that_property_actions_change():
    schema = copy.deepcopy(SCHEMA)
    schema["version"] = 2
    schema["properties"]["action"] = {"type": "string", "enum": ["open", "save"]}
    log = EventLog(handlers=[logging.NullHandler()], load_schema_entry_points=False,
                   allowed_schemas={SID: {"property_actions": {
                       "action": {"generalize": "truncate", "length": 2}}}})
    log.register_schema(schema)
    with pytest.raises(EventValidationError) as error:
        log.record_event(SID, 2, {"action": "secret-project-name"})
    assert error.value.path == "$.action"
    assert "secret-project-name" not in str(error.value) + error.value.reason


def test_a_pseudonymizing_policy_needs_a_key_and_says_how_to_give_it():
    policy = {SID: {"category_actions": {"user-identifier": "pseudonymize"}}}
    with pytest.raises(PolicyError, match="pseudonym_key_file.*pseudonym_key_env"):
        EventLog(allowed_schemas=policy, load_schema_entry_points=False)
    log = EventLog(allowed_schemas=[SID], load_schema_entry_points=False)
    with pytest.raises(TraitError, match="no pseudonym key"):
        log.allowed_schemas = policy
    assert log.allowed_schemas == [SID]


def test_the_plan_is_described_as_json_data_shaped_like_the_schema():
    _, log = record_with({"allowed_categories": ["user-identifier"], "round_timestamp": "minute",
                          "category_actions": {"user-identifiable-information": {"generalize": "truncate",
                                                                                  "length": 4}},
                          "property_actions": {"collaborators[].name": "pseudonymize"}})
    description = log.describe_redaction(SID)
    assert json.loads(json.dumps(description)) == description
    assert description == {
        "schema_id": SID, "version": 1,
        "timestamp": {"action": "generalize", "generalize": "round_time", "unit": "minute"},
        "properties": {
            "ip": {"action": "generalize", "generalize": "truncate", "length": 4},
            "both": {"action": "generalize", "generalize": "truncate", "length": 4},
            "session": {"properties": {"geo": {"properties": {
                "city": {"action": "generalize", "generalize": "truncate", "length": 4}}}}},
            "collaborators": {"items": {"properties": {"name": {"action": "pseudonymize", "key_id": "t1"}}}},
        },
    }
    assert KEY not in json.dumps(description)


def test_a_plan_compiled_from_the_schemas_redaction_tree_removes_the_same():
    from telemetry_sinks.policy import apply_plan, compile_plan, policy_for

    log = EventLog(handlers=[logging.NullHandler()], load_schema_entry_points=False)
    schema = log.register_schema(SCHEMA)
    for allowed in ([SID], {SID: {"allowed_categories": ["user-identifier"]}},
                    {SID: {"allowed_properties": ["session"]}}):
        policy = policy_for(allowed, SID)
        assert apply_plan(EVENT, compile_plan(schema.redaction, policy)) == \
            apply_plan(EVENT, compile_plan(schema, policy))


# --------------------------------------------------------------------------- the tuple form


@pytest.mark.parametrize(
    ("as_tuple", "as_dict"),
    [
        ((SID, ["user-identifier"], []), {"allowed_categories": ["user-identifier"]}),
        ((SID, [], ["ip", "session"]), {"allowed_categories": [], "allowed_properties": ["ip", "session"]}),
        (
            [SID, ["category.jupyter.org/user-identifier", "user-identifiable-information"], ["client"]],
            {"allowed_categories": ["user-identifier", "user-identifiable-information"],
             "allowed_properties": ["client"]},
        ),
        ((SID, (), ()), None),
    ],
)
def test_a_tuple_means_what_the_dict_entry_means(as_tuple, as_dict):
    assert record(["https://example.org/other", as_tuple]) == record({SID: as_dict})


def test_tuples_with_categories_and_properties_mixed_with_plain_ids():
    got = record(["https://example.org/other", (SID, ["user-identifier"], ["ip"])])
    assert got["user"] == "alice" and got["ip"] == "192.0.2.1"
    assert "both" not in got  # needs user-identifiable-information too
    assert got["session"]["owner"] == "alice" and "city" not in got["session"]["geo"]
    # The plain id next to it is recorded with unrestricted properties only.
    out = io.StringIO()
    log = EventLog(handlers=[StreamSink(stream=out)], load_schema_entry_points=False,
                   allowed_schemas=[("https://example.org/other", [], []), SID])  # fmt: skip
    log.register_schema(SCHEMA)
    assert "user" not in log.record_event(SID, 1, EVENT)


def test_the_tuple_form_from_a_json_config_file(tmp_path):
    from telemetry_sinks.config import load_config_file

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"EventLog": {"allowed_schemas": [
        [SID, ["user-identifier"], ["ip"]], "https://example.org/other"]}}))  # fmt: skip
    out = io.StringIO()
    log = EventLog(config=load_config_file(path), handlers=[StreamSink(stream=out)],
                   load_schema_entry_points=False)  # fmt: skip
    log.register_schema(SCHEMA)
    capsule = log.record_event(SID, 1, EVENT)
    assert capsule["user"] == "alice" and capsule["ip"] == "192.0.2.1" and "both" not in capsule


def test_the_describe_page_reads_the_tuple_form():
    from telemetry_sinks.describe import collect

    allowed = [(SID, ["user-identifier"], ["ip"]), ("https://example.org/unknown", [], [])]
    log = EventLog(load_schema_entry_points=False, allowed_schemas=allowed)
    log.register_schema(SCHEMA)
    description = collect(log)
    [schema] = description.schemas
    assert schema.recorded and schema.allowed_categories == ["user-identifier"]
    assert schema.allowed_properties == ["ip"]
    assert description.allowed_not_registered == ["https://example.org/unknown"]


TRIPLE = "(schema_id, allowed_categories, allowed_properties)"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([(SID, ["user-identifier"])],
         f"allowed_schemas item ('{SID}', ['user-identifier']) must be {TRIPLE}: 3 items, not 2."),
        ([(1, [], [])],
         "allowed_schemas item (1, [], []): the first item must be the schema id (a string), not 1."),
        ([(SID, "user-identifier", [])],
         f"allowed_schemas item for '{SID}': allowed_categories must be a list of strings, "
         "not 'user-identifier'."),
        ([(SID, [], [3])],
         f"allowed_schemas item for '{SID}': allowed_properties must be a list of strings, not [3]."),
        ([SID, (SID, ["user-identifier"], [])],
         f"allowed_schemas lists '{SID}' twice with different policies"),
        ((SID, ["user-identifier"], []),
         f"A single {TRIPLE} entry goes inside the list: allowed_schemas = [(...)]."),
        ([{SID: {}}],
         f"allowed_schemas list items must be schema ids (strings) or {TRIPLE} tuples, not {{"),
    ],
)  # fmt: skip
def test_a_malformed_tuple_is_a_precise_trait_error(value, message):
    from traitlets import TraitError

    with pytest.raises(TraitError) as info:
        EventLog(allowed_schemas=value, load_schema_entry_points=False)
    assert message in str(info.value)


def test_the_same_policy_twice_is_not_an_error():
    log = EventLog(allowed_schemas=[SID, (SID, [], []), [SID, [], []]], load_schema_entry_points=False)
    log.register_schema(SCHEMA)
    log.handlers = [StreamSink(stream=io.StringIO())]
    assert "user" not in log.record_event(SID, 1, EVENT)
