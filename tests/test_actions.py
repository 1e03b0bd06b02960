"""Generalizations as an operator configures them, through EventLog.emit: the values they give,
their edge cases, and invalid values becoming validation errors that do not echo the value."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from traitlets import TraitError

from telemetry_sinks import EventLog, EventValidationError

SID = "https://events.example.org/generalize"
SCHEMA = {
    "$id": SID,
    "version": 1,
    "type": "object",
    "properties": {
        "ip": {"type": "string", "categories": ["network-address"]},
        "ips": {"type": "array", "items": {"type": ["string", "null"]}, "categories": ["network-address"]},
        "at": {"type": "string", "format": "date-time"},
        "day": {"type": "string", "format": "date"},
        "age": {"type": "number"},
        "agent": {"type": "string"},
        "anything": {},
    },
}


def emit(actions: dict, data: dict, *, schema=SCHEMA, **entry) -> dict:
    log = EventLog(handlers=[logging.NullHandler()], load_schema_entry_points=False,
                   allowed_schemas={SID: {"property_actions": actions, **entry}})
    log.register_schema(schema)
    capsule = log.emit(schema_id=SID, data=data)
    fields = {k: v for k, v in capsule.items() if not k.startswith("__")}
    return {**fields, "__timestamp__": capsule["__timestamp__"]}


def generalized(action: dict, value, prop: str = "anything"):
    return emit({prop: action}, {prop: value})[prop]


IP = {"generalize": "ip_network"}


@pytest.mark.parametrize("value, expected", [
    ("203.0.113.77", "203.0.113.0"),
    ("10.1.2.3", "10.1.2.0"),
    ("2001:db8:abcd:12:34:56:78:9a", "2001:db8:abcd::"),
    ("2001:DB8:ABCD:0012::1", "2001:db8:abcd::"),
    ("::ffff:203.0.113.77", "::ffff:203.0.113.0"),  # IPv4-mapped IPv6: the IPv4 prefix applies
    ("::ffff:cb00:714d", "::ffff:203.0.113.0"),     # the same address written in hex
    ("fe80::1234:5678%eth0", "fe80::"),              # the zone (an interface name) goes too
    ("::1", "::"),
])
def test_ip_network_keeps_the_network_and_zeroes_the_host_bits(value, expected):
    assert generalized(IP, value) == expected
    assert generalized(IP, expected) == expected  # applied again: the same


def test_ip_network_prefixes_are_the_operators():
    action = {"generalize": "ip_network", "ipv4_prefix": 16, "ipv6_prefix": 32}
    assert generalized(action, "203.0.113.77") == "203.0.0.0"
    assert generalized(action, "2001:db8:abcd::1") == "2001:db8::"
    assert generalized(action, "::ffff:203.0.113.77") == "::ffff:203.0.0.0"
    assert generalized({**action, "ipv4_prefix": 32}, "203.0.113.77") == "203.0.113.77"
    assert generalized({**action, "ipv4_prefix": 0}, "203.0.113.77") == "0.0.0.0"


def test_ip_network_on_a_category_and_on_arrays_of_addresses():
    got = emit({}, {"ip": "198.51.100.9", "ips": ["192.0.2.1", None, "2001:db8::1"]},
               category_actions={"network-address": IP})
    assert got["ip"] == "198.51.100.0"
    assert got["ips"] == ["192.0.2.0", None, "2001:db8::"]


@pytest.mark.parametrize("value", ["203.0.113.777", "not an address", "203.0.113.77:8080", "", " 10.0.0.1",
                                   "2001:db8::zz"])
def test_an_invalid_address_is_a_validation_error_that_does_not_echo_it(value):
    with pytest.raises(EventValidationError) as error:
        emit({"ip": IP}, {"ip": value})
    assert error.value.path == "$.ip"
    assert "not an IP address" in error.value.reason and "ip_network" in error.value.reason
    if value.strip():
        assert value not in str(error.value)


def test_an_invalid_address_in_an_array_names_its_index():
    with pytest.raises(EventValidationError) as error:
        emit({}, {"ips": ["192.0.2.1", "bogus-address"]}, category_actions={"network-address": IP})
    assert error.value.path == "$.ips[1]"
    assert "bogus-address" not in str(error.value)


def test_a_non_string_address_is_a_validation_error():
    with pytest.raises(EventValidationError, match=r"a number is not an IP address"):
        emit({"anything": IP}, {"anything": 3232235777})


# ---------------------------------------------------------------------- round_time


def minute(unit: str) -> dict:
    return {"generalize": "round_time", "unit": unit}


@pytest.mark.parametrize("unit, value, expected", [
    ("minute", "2024-03-10T12:34:56.789012Z", "2024-03-10T12:34:00.000000Z"),
    ("second", "2024-03-10T12:34:56.789012Z", "2024-03-10T12:34:56.000000Z"),
    ("hour", "2024-03-10T12:34:56Z", "2024-03-10T12:00:00.000000Z"),
    ("day", "2024-03-10T12:34:56+00:00", "2024-03-10T00:00:00.000000Z"),
    ("month", "2024-03-10T12:34:56Z", "2024-03-01T00:00:00.000000Z"),
    ("year", "2024-03-10T12:34:56Z", "2024-01-01T00:00:00.000000Z"),
    # offsets: rounded in UTC, which may be another day than the local one
    ("day", "2024-03-10T23:59:30-05:00", "2024-03-11T00:00:00.000000Z"),
    ("day", "2024-03-11T01:30:00+05:30", "2024-03-10T00:00:00.000000Z"),
    ("hour", "2024-03-10T12:34:56+05:45", "2024-03-10T06:00:00.000000Z"),
    ("minute", "2024-12-31T23:59:59.999999Z", "2024-12-31T23:59:00.000000Z"),
    ("year", "2024-12-31T20:00:00-05:00", "2025-01-01T00:00:00.000000Z"),  # a year boundary in UTC
    ("minute", "2024-03-10 12:34:56", "2024-03-10T12:34:00.000000Z"),  # naive: UTC
    ("minute", "2024-03-10T12:34:56.5+00:00Z", "2024-03-10T12:34:00.000000Z"),  # jupyter_events' form
    # a date alone stays a date
    ("month", "2024-03-10", "2024-03-01"),
    ("year", "2024-03-10", "2024-01-01"),
    ("hour", "2024-03-10", "2024-03-10"),
])
def test_round_time_rounds_down_in_utc(unit, value, expected):
    assert generalized(minute(unit), value) == expected
    assert generalized(minute(unit), expected) == expected


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00:00Z", "2024-02-30", "12:34", ""])
def test_an_unreadable_date_time_is_a_validation_error(value):
    with pytest.raises(EventValidationError) as error:
        emit({"at": minute("hour")}, {"at": value})
    assert error.value.path == "$.at" and "ISO 8601" in error.value.reason


def test_the_capsule_timestamp_is_rounded_per_schema():
    assert emit({}, {"agent": "x"}, round_timestamp="minute")["__timestamp__"].endswith(":00.000000Z")
    log = EventLog(handlers=[logging.NullHandler()], load_schema_entry_points=False,
                   allowed_schemas={SID: {"round_timestamp": "minute"}, "other": {}})
    log.register_schema(SCHEMA)
    late = dt.datetime(2018, 11, 3, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-1)))
    assert log.record_event(SID, 1, {}, late)["__timestamp__"] == "2018-11-04T00:59:00.000000Z"
    assert log.record_event(SID, 1, {}, "2018-11-03T00:00:42+00:00")["__timestamp__"] == \
        "2018-11-03T00:00:00.000000Z"
    with pytest.raises(EventValidationError) as error:
        log.record_event(SID, 1, {}, "not a time")
    assert error.value.path == "$.__timestamp__"


# ---------------------------------------------------------------------- bucket and truncate


@pytest.mark.parametrize("size, value, expected", [
    (10, 37, 30), (10, 30, 30), (10, 0, 0), (10, -7, -10), (10, -10, -10),
    (10, 37.9, 30.0), (0.1, 0.3, 0.3), (0.1, 0.35, 0.3), (0.1, -0.35, -0.4), (2.5, 7, 5.0),
    (1000, 123456789012345678901, 123456789012345678000),
])
def test_bucket_rounds_down_to_a_multiple_of_its_size(size, value, expected):
    got = generalized({"generalize": "bucket", "size": size}, value, "age")
    assert got == expected and type(got) is type(expected)
    assert generalized({"generalize": "bucket", "size": size}, got, "age") == expected


@pytest.mark.parametrize("value, kind", [(True, "a boolean"), ("37", "a string")])
def test_bucket_refuses_what_is_not_a_number(value, kind):
    with pytest.raises(EventValidationError, match=f"{kind} is not a number"):
        emit({"anything": {"generalize": "bucket", "size": 10}}, {"anything": value})


@pytest.mark.parametrize("value, expected", [
    ("Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5"), ("short", "short"), ("", ""),
    ("ünïcødé-😀-text", "ünïcødé-😀"),  # characters, not bytes
])
def test_truncate_keeps_the_first_characters(value, expected):
    assert generalized({"generalize": "truncate", "length": 9}, value, "agent") == expected


def test_null_stays_null_for_every_action():
    schema = {**SCHEMA, "properties": {"v": {"type": ["string", "number", "null"]}}}
    for action in ("drop", "keep", IP, minute("day"), {"generalize": "bucket", "size": 5},
                   {"generalize": "truncate", "length": 2}):
        got = emit({"v": action}, {"v": None}, schema=schema)
        assert got.get("v", "dropped") == ("dropped" if action == "drop" else None)


# ---------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize("entry, words", [
    ({"property_actions": {"ip": "anonymize"}}, "unknown action 'anonymize'"),
    ({"property_actions": {"ip": "ip_network"}}, "a generalization is a dict"),
    ({"property_actions": {"ip": {"generalize": "hash"}}}, "unknown generalization 'hash'"),
    ({"property_actions": {"ip": {"generalize": "ip_network", "prefix": 24}}}, "has no option 'prefix'"),
    ({"property_actions": {"ip": {"generalize": "ip_network", "ipv4_prefix": 33}}}, "from 0 to 32"),
    ({"property_actions": {"age": {"generalize": "bucket"}}}, "bucket needs 'size'"),
    ({"property_actions": {"age": {"generalize": "bucket", "size": 0}}}, "bucket needs 'size'"),
    ({"property_actions": {"agent": {"generalize": "truncate", "length": "8"}}}, "truncate needs 'length'"),
    ({"property_actions": {"at": {"generalize": "round_time", "unit": "fortnight"}}}, "unit must be one of"),
    ({"property_actions": {"drop": "drop", "a..b": "drop"}}, "'a..b' is not a property path"),
    ({"property_actions": {"__timestamp__": "drop"}}, "round_timestamp"),
    ({"property_actions": {"ip": {"action": "drop", "extra": 1}}}, "takes no options"),
    ({"round_timestamp": "week"}, "unit must be one of"),
    ({"category_actions": ["user-identifier"]}, "must be a dict {category: action}"),
    ({"allowed_categories": ["user-identifier"], "category_actions": {"user-identifier": "drop"}},
     "both in 'allowed_categories'"),
    ({"allowed_properties": ["ip"], "property_actions": {"ip": "pseudonymize"}},
     "both in 'allowed_properties'"),
    ({"retention": {"after": "90d"}}, "must be a list of stages"),
    ({"retention": [{"after": "soon", "category_actions": {}}]}, "'soon' is not an age"),
    ({"retention": [{"after": "1d", "drop": ["ip"]}]}, "unknown key 'drop'"),
    ({"actions": {}}, "unknown key 'actions'"),
])
def test_a_bad_action_is_refused_when_configured_with_a_message_naming_it(entry, words):
    with pytest.raises(TraitError) as error:
        EventLog(allowed_schemas={SID: entry}, load_schema_entry_points=False)
    assert words in str(error.value)
    assert SID in str(error.value)


def test_a_description_of_an_action_reads_back_as_the_same_action():
    log = EventLog(handlers=[logging.NullHandler()], load_schema_entry_points=False, allowed_schemas={
        SID: {"property_actions": {"ip": IP, "at": minute("day"),
                                   "agent": {"generalize": "truncate", "length": 3},
                                   "age": {"generalize": "bucket", "size": 5}, "day": "drop"}}})
    log.register_schema(SCHEMA)
    described = log.describe_redaction(SID)["properties"]
    again = EventLog(handlers=[logging.NullHandler()], load_schema_entry_points=False,
                     allowed_schemas={SID: {"property_actions": described}})
    again.register_schema(SCHEMA)
    assert again.describe_redaction(SID)["properties"] == described
    event = {"ip": "192.0.2.55", "at": "2024-01-02T03:04:05Z", "agent": "abcdef", "age": 12,
             "day": "2024-01-02"}
    assert {k: v for k, v in log.emit(schema_id=SID, data=event).items() if not k.startswith("__")} == \
        {k: v for k, v in again.emit(schema_id=SID, data=event).items() if not k.startswith("__")} == \
        {"ip": "192.0.2.0", "at": "2024-01-02T00:00:00.000000Z", "agent": "abc", "age": 10}
