"""Capsules and payloads: the one JSON shape every sink writes.

A *capsule* is what an EventLog emits: ``__timestamp__``, ``__schema__``,
``__schema_version__``, ``__metadata_version__`` followed by the event's fields
(the field names of jupyter_events and jupyter_telemetry).

A *payload* is what a sink writes for any ``logging.LogRecord``: the capsule
itself when ``record.msg`` is a dict, otherwise a small JSON object describing
an ordinary log record.  Sinks build payloads from ``record.msg`` and never from
their formatter, because ``jupyter_events.EventLogger`` replaces the formatter of
every handler it is given.

The JSON encoding rule (``encode``): one line of compact UTF-8 JSON (non-ASCII
characters as themselves, except U+0085, U+2028 and U+2029, which ``str.splitlines``
takes for line breaks; the rare slow path below escapes all non-ASCII), never
raising on odd values:

=====================  ==============================================
value                  encoded as
=====================  ==============================================
datetime               ISO 8601; aware UTC values end in ``Z``
date, time             ISO 8601
UUID, Decimal, Path    ``str(value)`` (Decimal keeps every digit)
Enum                   its ``value`` (encoded by the same rule)
set, frozenset         a list (sorted when the items sort)
tuple, other iterables a list
bytes, bytearray       UTF-8 text; undecodable bytes become ``\\xNN``
NaN, Infinity          ``null`` (JSON has no such numbers)
non-string dict keys   as ``json`` spells them (``null``, ``true``, ``1``), else ``str(key)``
very deep nesting      cut off with ``"<too deeply nested>"``
circular reference     the string ``"<circular reference>"``
anything else          ``str(value)`` (``repr`` if ``str`` fails)
=====================  ==============================================
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import logging
import math
import re
import time as _time
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any
from uuid import UUID

try:
    import orjson
except ImportError:  # pragma: no cover - a platform without orjson wheels: json only
    orjson = None  # type: ignore[assignment]  # the getattr() below read it as absent

METADATA_VERSION = 1
CAPSULE_FIELDS = ("__timestamp__", "__schema__", "__schema_version__", "__metadata_version__")

_UTC = _dt.timezone.utc


_second_cache: tuple[int, str] = (-1, "")


def _now_timestamp() -> str:
    """The current time as ISO 8601 UTC; the date-and-seconds part is formatted once a second."""
    global _second_cache
    now = _time.time_ns() // 1000
    seconds, micros = divmod(now, 1_000_000)
    cached_second, prefix = _second_cache
    if seconds != cached_second:
        prefix = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(seconds))
        _second_cache = (seconds, prefix)
    return f"{prefix}.{micros:06d}Z"


def format_timestamp(when: _dt.datetime | None = None) -> str:
    """Return ``when`` (default: now) as ISO 8601 UTC with microseconds and a ``Z``."""
    if when is None:
        return _now_timestamp()
    if when.tzinfo is None:
        # Naive datetimes are taken to be UTC, like jupyter_telemetry does.
        when = when.replace(tzinfo=_UTC)
    else:
        when = when.astimezone(_UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_TS_LOOSE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?\s*"
    r"([+-]\d{2}(?::?\d{2})?)?\s*(Z|z)?$"
)


def parse_timestamp(text: Any) -> _dt.datetime | None:
    """An ISO 8601 timestamp as an aware UTC datetime, or None if it is not one.

    Naive times are UTC.  Also reads jupyter_events' ``...+00:00Z`` (an offset
    and a ``Z``) and fractions of any length (Python 3.10's ``fromisoformat``
    reads only 3 or 6 digits).
    """
    if not isinstance(text, str):
        return None
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] if _HAS_OFFSET.search(value[:-1]) else value[:-1] + "+00:00"
    try:
        when = _dt.datetime.fromisoformat(value)
    except ValueError:
        match = _TS_LOOSE.match(value)
        if not match:
            return None
        y, mo, d, h, mi, sec, frac, tz, _z = match.groups()
        try:
            when = _dt.datetime(
                int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0),
                int((frac or "0")[:6].ljust(6, "0")),
            )
        except ValueError:
            return None
        if tz:
            sign = -1 if tz[0] == "-" else 1
            digits = tz[1:].replace(":", "")
            offset = _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
            when = when.replace(tzinfo=_dt.timezone(sign * offset))
    if when.tzinfo is None:
        return when.replace(tzinfo=_UTC)
    return when.astimezone(_UTC)


_HAS_OFFSET = re.compile(r"[+-]\d\d:?\d\d$")


def event_timestamp(payload: Any) -> Any:
    """The time field of an event as it is: a capsule's ``__timestamp__`` or a log payload's
    ``timestamp`` (None when it has neither)."""
    if not isinstance(payload, Mapping):
        return None
    return payload.get("__timestamp__", payload.get("timestamp"))


def event_time(payload: Any) -> _dt.datetime | None:
    """The UTC time of a capsule's ``__timestamp__`` or a log payload's ``timestamp``."""
    return parse_timestamp(event_timestamp(payload))


def whole_number(value: Any) -> int | None:
    """An int, or a string of digits as an int (``"3"`` -> 3); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def make_capsule(
    schema_id: str, version: int, event: Mapping[str, Any], timestamp: str | None = None
) -> dict[str, Any]:
    """Wrap an (already validated and redacted) event in its capsule."""
    capsule = {
        "__timestamp__": timestamp or format_timestamp(),
        "__schema__": schema_id,
        "__schema_version__": version,
        "__metadata_version__": METADATA_VERSION,
    }
    capsule.update(event)
    return capsule


# --------------------------------------------------------------------------- encoding


def _default(value: Any) -> Any:
    """``json`` fallback for values JSON cannot encode (see the module docstring)."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None and value.utcoffset() == _dt.timedelta(0):
            return value.replace(tzinfo=None).isoformat() + "Z"
        return value.isoformat()
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (UUID, Decimal, PurePath)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    if hasattr(value, "__iter__") and not isinstance(value, str):
        try:
            return list(value)
        except Exception:
            pass
    try:
        return str(value)
    except Exception:
        return object.__repr__(value)


_MAX_DEPTH = 200  # the slow path cuts off deeper nesting instead of overflowing the stack


def _key(key: Any) -> str:
    """A dict key as ``json`` spells it when it can, so the fast and slow paths agree."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return "null" if key is None else ("true" if key else "false")
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float) and math.isfinite(key):
        return float.__repr__(key)
    return str(key)


def _sanitize(value: Any, seen: set[int], depth: int = 0) -> Any:
    """Slow path: turn ``value`` into plain JSON data, whatever it holds."""
    if depth > _MAX_DEPTH:
        return "<too deeply nested>"
    if value is None or isinstance(value, (str, bool, int)):
        if isinstance(value, int) and not isinstance(value, bool) and type(value) is not int:
            return int(value)
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dict, list, tuple)) or isinstance(value, Mapping):
        if id(value) in seen:
            return "<circular reference>"
        seen.add(id(value))
        try:
            if isinstance(value, Mapping):
                return {_key(k): _sanitize(v, seen, depth + 1) for k, v in value.items()}
            return [_sanitize(v, seen, depth + 1) for v in value]
        finally:
            seen.discard(id(value))
    converted = _default(value)
    if converted is value or isinstance(converted, str):
        return converted
    return _sanitize(converted, seen, depth + 1)


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_default)

# The C encoder of ``json``, built once: ``JSONEncoder.encode`` rebuilds it on every
# call.  Without circular-reference markers a cycle ends in RecursionError, which
# sends the payload to the slow path below like any other odd value.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE = (
    _c_make_encoder(
        None, _default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False
    )
    if _c_make_encoder is not None
    else None
)


# orjson first (several times faster than ``json`` on the emit path); what it refuses
# (non-string keys, integers beyond 64 bits, lone surrogates, > 254 levels) goes to ``json``.
# Dates and dataclasses are passed to ``_default`` so both paths follow the same rule.
_ORJSON_DUMPS = getattr(orjson, "dumps", None)
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS if orjson is not None else 0
)


def encode(payload: Any) -> str:
    """Encode ``payload`` as one line of compact JSON, never raising on odd values."""
    if _ORJSON_DUMPS is not None:
        try:
            text = _ORJSON_DUMPS(payload, _default, _ORJSON_OPTIONS).decode()
        except TypeError:  # orjson.JSONEncodeError: let json try, then the slow path
            pass
        else:
            if text.isascii():
                return text
            # Characters str.splitlines() breaks at, which JSON leaves as they are: escape
            # them so that every reader sees one event per line.
            return text.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace(
                "\u2029", "\\u2029"
            )
    try:
        if _C_ENCODE is not None:
            return "".join(_C_ENCODE(payload, 0))
        return _ENCODER.encode(payload)
    except (ValueError, TypeError, RecursionError):
        return _ENCODER.encode(_sanitize(payload, set()))


# An encoded capsule starts with its metadata, in make_capsule's order.
_CAPSULE_HEAD = re.compile(
    r'\{"__timestamp__":"([^"\\]*)","__schema__":("(?:[^"\\]|\\.)*"),"__schema_version__":(-?\d+),'
)
#: format_timestamp's output: RFC 3339 UTC with microseconds.
CANONICAL_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def capsule_head(data: str) -> tuple[str, str, str] | None:
    """``(__timestamp__, __schema__, __schema_version__)`` read from the start of an encoded capsule.

    Sinks that need only the metadata read it here instead of decoding the whole
    event; None when ``data`` does not start like ``encode(make_capsule(...))``.
    """
    match = _CAPSULE_HEAD.match(data)
    if match is None:
        return None
    timestamp, schema, version = match.groups()
    schema = json.loads(schema) if "\\" in schema else schema[1:-1]
    return timestamp, schema, version


def to_json_data(value: Any) -> Any:
    """Return ``value`` as plain JSON data (what ``json.loads(encode(value))`` gives)."""
    return json.loads(encode(value))


# --------------------------------------------------------------------------- payloads

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None)).keys()
) | {"message", "asctime", "taskName"}


def record_payload(record: logging.LogRecord) -> dict[str, Any]:
    """The payload a sink writes for ``record``.

    A dict in ``record.msg`` (a capsule from telemetry_sinks, jupyter_events or
    jupyter_telemetry) is the payload as it is.  Any other record becomes
    ``{"timestamp", "level", "logger", "message"}`` plus its ``extra`` fields, so
    that a sink can sit in an ordinary ``logging`` tree.
    """
    msg = record.msg
    if isinstance(msg, dict):
        return msg
    payload: dict[str, Any] = {
        "timestamp": format_timestamp(_dt.datetime.fromtimestamp(record.created, _UTC)),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
    }
    if record.exc_info and record.exc_info[0] is not None:
        payload["exception"] = logging.Formatter().formatException(record.exc_info)
    for key, value in record.__dict__.items():
        if key not in _RECORD_ATTRS and key not in payload:
            payload[key] = value
    return payload
