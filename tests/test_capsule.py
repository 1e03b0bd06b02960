"""The JSON encoding rule every sink uses, and the payload built from a LogRecord."""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import math
import sys
import uuid
from decimal import Decimal
from pathlib import PurePosixPath

import pytest

from telemetry_sinks.capsule import (
    CAPSULE_FIELDS,
    capsule_head,
    encode,
    format_timestamp,
    make_capsule,
    record_payload,
    to_json_data,
)


def _reject_constant(name: str) -> None:
    raise AssertionError(f"encode() produced the non-JSON constant {name}")


def strict_loads(text: str):
    """json.loads that refuses NaN/Infinity, which JSON does not have."""
    return json.loads(text, parse_constant=_reject_constant)


def roundtrip(value):
    text = encode(value)
    assert isinstance(text, str)
    assert "\n" not in text, "a payload must fit on one line"
    return strict_loads(text)


class Color(enum.Enum):
    RED = "red"
    NUMBER = 7
    NESTED = ("a", 1)
    NAN = float("nan")


class Level(enum.IntEnum):
    HIGH = 3


class Unprintable:
    def __str__(self):
        raise RuntimeError("no str for you")


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __str__(self):
        return f"Point({self.x}, {self.y})"


# --------------------------------------------------------------------------- datetimes


def test_naive_datetime_is_iso_without_offset():
    value = dt.datetime(2024, 5, 4, 23, 22, 40, 338884)
    assert roundtrip(value) == "2024-05-04T23:22:40.338884"
    assert dt.datetime.fromisoformat(roundtrip(value)) == value


def test_utc_datetime_ends_in_z():
    value = dt.datetime(2024, 5, 4, 23, 22, 40, 338884, tzinfo=dt.timezone.utc)
    out = roundtrip(value)
    assert out == "2024-05-04T23:22:40.338884Z"
    assert "+00:00" not in out
    # The Z form reads back as the same instant.
    assert dt.datetime.fromisoformat(out.replace("Z", "+00:00")) == value


def test_zero_offset_zone_other_than_utc_also_ends_in_z():
    value = dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(0), "GMT"))
    assert roundtrip(value) == "2024-01-01T12:00:00Z"


def test_aware_non_utc_datetime_keeps_its_offset():
    tz = dt.timezone(dt.timedelta(hours=5, minutes=30))
    value = dt.datetime(2024, 1, 1, 12, 0, 1, tzinfo=tz)
    out = roundtrip(value)
    assert out == "2024-01-01T12:00:01+05:30"
    assert dt.datetime.fromisoformat(out) == value


def test_date_and_time():
    assert roundtrip(dt.date(1999, 12, 31)) == "1999-12-31"
    assert roundtrip(dt.time(8, 5, 3)) == "08:05:03"


def test_format_timestamp_is_utc_with_z():
    aware = dt.datetime(2024, 2, 29, 1, 2, 3, 4, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
    assert format_timestamp(aware) == "2024-02-29T03:02:03.000004Z"
    # Naive values are taken to be UTC.
    assert format_timestamp(dt.datetime(2024, 2, 29, 1, 2, 3)) == "2024-02-29T01:02:03.000000Z"
    now = format_timestamp()
    parsed = dt.datetime.strptime(now, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    assert abs((dt.datetime.now(dt.timezone.utc) - parsed).total_seconds()) < 60


# --------------------------------------------------------------------------- scalars


def test_uuid_is_its_canonical_string():
    value = uuid.uuid4()
    assert roundtrip(value) == str(value)
    assert uuid.UUID(roundtrip(value)) == value


@pytest.mark.parametrize(
    "text",
    [
        "3.14159265358979323846264338327950288419716939937510",
        "0.1",
        "-12345678901234567890.000000000000000001",
        "1E+2",
        "NaN",
    ],
)
def test_decimal_keeps_every_digit(text):
    out = roundtrip(Decimal(text))
    assert out == text
    if text != "NaN":
        assert Decimal(out) == Decimal(text)


def test_enum_is_its_value():
    assert roundtrip(Color.RED) == "red"
    assert roundtrip(Color.NUMBER) == 7
    assert roundtrip(Color.NESTED) == ["a", 1]
    assert roundtrip(Color.NAN) is None
    assert roundtrip(Level.HIGH) == 3
    assert roundtrip({"c": [Color.RED, Level.HIGH]}) == {"c": ["red", 3]}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_become_null(value):
    assert roundtrip(value) is None
    assert roundtrip({"x": value, "ok": 1.5}) == {"x": None, "ok": 1.5}
    assert roundtrip([1, value, 2]) == [1, None, 2]


def test_ordinary_json_values_are_unchanged():
    value = {"s": "naïve ☃ \"quoted\"\n", "i": 2**70, "f": 0.1, "b": True, "n": None, "l": [1, "2"]}
    assert roundtrip(value) == value


def test_bool_keeps_its_type():
    assert roundtrip([True, False]) == [True, False]
    assert roundtrip({"x": True, "nan": float("nan")}) == {"x": True, "nan": None}


def test_path_is_its_string():
    assert roundtrip(PurePosixPath("/srv/data/x.ipynb")) == "/srv/data/x.ipynb"


# --------------------------------------------------------------------------- containers


def test_set_becomes_sorted_list_when_sortable():
    assert roundtrip({3, 1, 2}) == [1, 2, 3]
    assert roundtrip(frozenset({"b", "a"})) == ["a", "b"]


def test_unsortable_set_keeps_all_items():
    out = roundtrip({1, "a", None})
    assert sorted(out, key=repr) == sorted([1, "a", None], key=repr)


def test_tuple_and_iterables_become_lists():
    assert roundtrip((1, (2, 3))) == [1, [2, 3]]
    assert roundtrip(range(3)) == [0, 1, 2]
    assert roundtrip(x * 2 for x in range(3)) == [0, 2, 4]


def test_valid_utf8_bytes_are_text():
    assert roundtrip("grüße ☃".encode()) == "grüße ☃"
    assert roundtrip(bytearray(b"abc")) == "abc"
    assert roundtrip(memoryview(b"mv")) == "mv"


def test_invalid_utf8_bytes_are_escaped_not_lost():
    out = roundtrip(b"ok\xff\xfeend")
    assert out == "ok\\xff\\xfeend"
    # Nothing is silently dropped: the escaped text still carries every byte.
    assert out.encode("ascii").decode("unicode_escape").encode("latin-1") == b"ok\xff\xfeend"


def test_non_string_keys_become_strings():
    out = roundtrip({1: "a", 2.5: "b", uuid.UUID(int=1): "c", (1, 2): "d", Color.RED: "e"})
    assert all(isinstance(k, str) for k in out)
    assert out["1"] == "a"
    assert out["2.5"] == "b"
    assert out[str(uuid.UUID(int=1))] == "c"
    assert out[str((1, 2))] == "d"
    assert out[str(Color.RED)] == "e"


@pytest.mark.parametrize("key", [None, True, False, 1, 2.5])
def test_a_key_is_encoded_the_same_whatever_its_siblings(key):
    """A key must not change spelling because another value needed the slow path."""
    alone = roundtrip({key: 1})
    with_odd_sibling = roundtrip({key: 1, "odd": float("nan")})
    with_odd_key = roundtrip({key: 1, (9, 9): 2})
    (name,) = alone
    assert name in with_odd_sibling and name in with_odd_key
    assert with_odd_sibling[name] == 1 and with_odd_key[name] == 1


def test_circular_references_do_not_raise():
    d: dict = {"name": "loop"}
    d["self"] = d
    out = roundtrip(d)
    assert out["name"] == "loop"
    assert isinstance(out["self"], str) and "circular" in out["self"]

    lst: list = [1]
    lst.append(lst)
    out = roundtrip({"l": lst})
    assert out["l"][0] == 1 and "circular" in out["l"][1]


def test_shared_but_not_circular_values_are_kept():
    shared = {"v": 1}
    assert roundtrip({"a": shared, "b": [shared, shared], "nan": float("nan")}) == {
        "a": {"v": 1},
        "b": [{"v": 1}, {"v": 1}],
        "nan": None,
    }


def test_arbitrary_objects_use_str_then_repr():
    assert roundtrip(Point(1, 2)) == "Point(1, 2)"
    out = roundtrip({"u": Unprintable()})
    assert "Unprintable object at" in out["u"]


def test_very_deep_nesting_does_not_raise():
    deep: list = []
    for _ in range(sys.getrecursionlimit() * 20):
        deep = [deep]
    out = roundtrip({"deep": deep, "ok": 1})
    assert out["ok"] == 1
    # Descend: the structure is kept as far as it goes, then cut off with a marker.
    node, depth = out["deep"], 0
    while isinstance(node, list) and node:
        node, depth = node[0], depth + 1
    assert depth >= 50
    assert isinstance(node, str) or node == []


def test_nested_combination():
    when = dt.datetime(2030, 6, 1, 0, 0, tzinfo=dt.timezone.utc)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    value = {
        "when": when,
        "items": ({"id": ident, "price": Decimal("19.990"), "tags": {"b", "a"}},),
        "blob": b"\x00\xffx",
        "color": Color.RED,
        "stats": {"mean": float("nan"), 3: [float("inf"), dt.date(2030, 1, 2)]},
        "obj": Point(0, 0),
    }
    assert roundtrip(value) == {
        "when": "2030-06-01T00:00:00Z",
        "items": [{"id": str(ident), "price": "19.990", "tags": ["a", "b"]}],
        "blob": "\x00\\xffx",
        "color": "red",
        "stats": {"mean": None, "3": [None, "2030-01-02"]},
        "obj": "Point(0, 0)",
    }
    assert to_json_data(value) == roundtrip(value)


ODD_VALUES = [
    float("nan"),
    {float("nan"): 1},
    {None: float("inf")},
    [b"\xc3\x28", bytearray(b"\xff")],
    {frozenset({1}): {1, 2}},
    object(),
    Unprintable(),
    Color,
    type,
    print,
    Decimal("sNaN"),
    {"a": {"b": {"c": [Unprintable(), float("-inf"), Color.NAN]}}},
    complex(1, 2),
    ...,
]


@pytest.mark.parametrize("value", ODD_VALUES, ids=lambda v: type(v).__name__)
def test_never_raises_and_is_strict_json(value):
    roundtrip(value)
    roundtrip({"wrapped": value})
    roundtrip([value, value])


def test_output_is_compact_single_line_utf8():
    value = "☃\n\r\x85\u2028\u2029\x1e\x0b"
    text = encode({"a": [1, 2], "s": value})
    assert text.startswith('{"a":[1,2],"s":"☃\\n')
    assert text.splitlines() == [text] and json.loads(text)["s"] == value


def test_values_the_fast_encoder_refuses_take_the_json_path_with_the_same_rule():
    # non-string keys, integers beyond 64 bits and lone surrogates: orjson refuses them
    text = encode({1: 2**70, "s": "\ud800", None: dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)})
    assert json.loads(text) == {"1": 2**70, "s": "\ud800", "null": "2026-01-02T00:00:00Z"}


# --------------------------------------------------------------------------- capsules and payloads


def test_make_capsule_field_order_and_contents():
    capsule = make_capsule("https://x.org/s", 3, {"a": 1}, timestamp="2024-01-01T00:00:00.000000Z")
    assert list(capsule) == [*CAPSULE_FIELDS, "a"]
    assert capsule == {
        "__timestamp__": "2024-01-01T00:00:00.000000Z",
        "__schema__": "https://x.org/s",
        "__schema_version__": 3,
        "__metadata_version__": 1,
        "a": 1,
    }


def _record(msg, *args, exc_info=None, extra=None, name="app.sub", level=logging.WARNING):
    logger = logging.getLogger(name)
    record = logger.makeRecord(name, level, __file__, 10, msg, args, exc_info, extra=extra)
    return record


def test_dict_msg_is_the_payload_as_is():
    capsule = make_capsule("s", 1, {"x": [1, 2]})
    record = _record(capsule, extra={"ignored": True})
    assert record_payload(record) is capsule


def test_ordinary_record_payload():
    record = _record("user %s did %d things", "ada", 3, extra={"request_id": "r-1", "n": 2})
    record.created = dt.datetime(2024, 3, 1, 12, 0, 0, 500000, tzinfo=dt.timezone.utc).timestamp()
    payload = record_payload(record)
    assert payload == {
        "timestamp": "2024-03-01T12:00:00.500000Z",
        "level": "WARNING",
        "logger": "app.sub",
        "message": "user ada did 3 things",
        "request_id": "r-1",
        "n": 2,
    }
    # No LogRecord internals leak into the payload.
    for internal in ("args", "msg", "pathname", "lineno", "exc_info", "created", "process"):
        assert internal not in payload


def test_record_payload_includes_exception_text():
    try:
        raise ValueError("boom 42")
    except ValueError:
        record = _record("it failed", exc_info=sys.exc_info(), level=logging.ERROR)
    payload = record_payload(record)
    assert payload["level"] == "ERROR"
    assert payload["message"] == "it failed"
    assert payload["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: boom 42" in payload["exception"]
    roundtrip(payload)


def test_record_payload_with_non_string_message_and_odd_extra():
    record = _record(Point(1, 1), extra={"when": dt.date(2020, 2, 2), "nan": math.nan})
    out = roundtrip(record_payload(record))
    assert out["message"] == "Point(1, 1)"
    assert out["when"] == "2020-02-02"
    assert out["nan"] is None


@pytest.mark.parametrize("schema_id", ["https://x.org/launch", 'odd "quoted" \\ id', "ünïcode/ß"])
def test_capsule_head_reads_the_metadata_without_decoding(schema_id):
    capsule = make_capsule(schema_id, 7, {"a": 1, "__not": "x"})
    timestamp, schema, version = capsule_head(encode(capsule))
    assert (timestamp, schema, int(version)) == (capsule["__timestamp__"], schema_id, 7)


@pytest.mark.parametrize(
    "data", ["{}", '{"a":1}', '{"__schema__":"x","__timestamp__":"t","__schema_version__":1,"a":1}']
)
def test_capsule_head_is_none_for_anything_else(data):
    assert capsule_head(data) is None
