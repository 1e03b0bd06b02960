"""What the operator's policy does with one property: drop, keep, pseudonymize or generalize.

An action is written in the configuration as a string or a dict:

=================================================  ==========================================
``"drop"``                                         removed (what happens to a category that is
                                                   not allowed)
``"keep"``                                         kept as it is (what ``allowed_categories``
                                                   and ``allowed_properties`` do)
``"pseudonymize"``                                 replaced by ``<key id>:<32 hex digits>``, a
                                                   keyed HMAC-SHA256 (:mod:`.pseudonym`)
``{"generalize": "ip_network",                     an IP address kept as its network: the host
"ipv4_prefix": 24, "ipv6_prefix": 48}``            bits set to zero (``192.0.2.0``); an
                                                   IPv4-mapped IPv6 address by the IPv4 prefix
``{"generalize": "round_time", "unit": "minute"}`` an ISO 8601 date-time rounded down (in UTC)
                                                   to the second, minute, hour, day, month or
                                                   year; a date alone stays a date
``{"generalize": "bucket", "size": 10}``           a number rounded down to a multiple of
                                                   ``size`` (37 -> 30)
``{"generalize": "truncate", "length": 8}``        a string cut to its first ``length``
                                                   characters
=================================================  ==========================================

``{"action": "drop"}`` and ``{"action": "generalize", "generalize": "bucket", "size": 10}``
are accepted too: that is how :meth:`Action.as_json` describes an action, so a
description reads back as the same action.

A value an action cannot read (``"not an address"`` to ``ip_network``, a number to
``truncate``) makes the event invalid: :class:`ActionError`, which the EventLog
turns into an :class:`~telemetry_sinks.errors.EventValidationError` naming the
property.  ``null`` stays ``null``; an array of values is transformed value by
value; every action gives the same result when applied again (a pseudonym is not
pseudonymized twice), so stored data can be processed again safely.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, ClassVar

from .capsule import CANONICAL_TIMESTAMP, format_timestamp, parse_timestamp
from .errors import PolicyError
from .pseudonym import PSEUDONYM, PseudonymKey, is_pseudonym

ACTION_NAMES = ("drop", "keep", "pseudonymize", "generalize")
TIME_UNITS = ("second", "minute", "hour", "day", "month", "year")

_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "a number", float: "a number", type(None): "null"}
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}\Z")


class ActionError(ValueError):
    """A value the action cannot read; ``path`` is filled in on the way out of nested data."""

    def __init__(self, reason: str, path: tuple[Any, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path


def _kind(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


class Action:
    """One action.  ``rank`` orders them from keeping most to keeping least."""

    name: ClassVar[str]
    rank: ClassVar[int]

    def apply(self, value: Any) -> Any:
        """The transformed value (only actions that transform values implement it)."""
        raise NotImplementedError

    def fits(self, types: frozenset[str]) -> bool:
        """Whether a property declared with JSON ``types`` (empty: undeclared) can hold values it reads."""
        return True

    def as_json(self) -> dict[str, Any]:
        return {"action": self.name}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Action) and type(other) is type(self) and other.as_json() == self.as_json()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.as_json().items())))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.as_json()}>"


class Keep(Action):
    name, rank = "keep", 0


class Drop(Action):
    name, rank = "drop", 3


KEEP = Keep()
DROP = Drop()


class Transform(Action):
    """An action that replaces a value: ``apply`` takes one value, ``apply_each`` arrays too."""

    def apply_one(self, value: Any) -> Any:
        raise NotImplementedError

    def apply(self, value: Any) -> Any:
        if value is None:
            return None
        if type(value) is list or isinstance(value, (list, tuple)):
            out = []
            for index, item in enumerate(value):
                try:
                    out.append(None if item is None else self.apply_one(item))
                except ActionError as exc:
                    raise ActionError(exc.reason, (index, *exc.path)) from None
            return out
        return self.apply_one(value)


class Pseudonymize(Transform):
    """Replace a value by its keyed pseudonym; a value that already is one is left alone."""

    name, rank = "pseudonymize", 2

    def __init__(self, key: PseudonymKey | None = None) -> None:
        self.key = key
        self._one: Callable[[str], str] = key.pseudonym if key is not None else self._no_key

    @staticmethod
    def _no_key(text: str) -> str:
        raise PolicyError("pseudonymize needs a key (Pseudonymize.with_key)")

    def with_key(self, key: PseudonymKey | None) -> Pseudonymize:
        if key is None:
            raise PolicyError(
                "the policy pseudonymizes personal data but no pseudonym key is configured: set "
                "c.EventLog.pseudonym_key_file (a file holding the key) or c.EventLog.pseudonym_key_env "
                "(the name of an environment variable holding it)."
            )
        return Pseudonymize(key)

    def apply(self, value: Any) -> Any:
        if type(value) is str:  # the common case, first; is_pseudonym's test, inlined
            if len(value) < 34 or value[-33] != ":" or PSEUDONYM.match(value) is None:
                return self._one(value)
            return value
        return super().apply(value)

    def apply_one(self, value: Any) -> Any:
        if isinstance(value, str) and is_pseudonym(value):
            return value
        if self.key is None:
            return self._no_key(str(value))
        return self.key.pseudonym_of(value)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": "pseudonymize"}
        if self.key is not None:
            out["key_id"] = self.key.id
        return out

    def __eq__(self, other: object) -> bool:
        return type(other) is Pseudonymize

    def __hash__(self) -> int:
        return hash("pseudonymize")


class Generalize(Transform):
    """A generalization: ``method`` names it, ``params`` are its options with their defaults."""

    name, rank = "generalize", 1
    method: ClassVar[str]
    params: ClassVar[dict[str, Any]] = {}
    types: ClassVar[frozenset[str]] = frozenset({"string"})

    def __init__(self, **options: Any) -> None:
        self.options = {**self.params, **options}

    @staticmethod
    def check(options: Mapping[str, Any], where: str) -> None:
        """Raise :class:`PolicyError` naming ``where`` when ``options`` are not valid."""

    def fits(self, types: frozenset[str]) -> bool:
        declared = types - {"null"}
        return not declared or bool(declared & self.types)

    def as_json(self) -> dict[str, Any]:
        return {"action": "generalize", "generalize": self.method, **self.options}


class IpNetwork(Generalize):
    method = "ip_network"
    params = {"ipv4_prefix": 24, "ipv6_prefix": 48}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._v4 = int(self.options["ipv4_prefix"])
        self._v6 = int(self.options["ipv6_prefix"])
        self._v4_mask = (0xFFFFFFFF << (32 - self._v4)) & 0xFFFFFFFF
        self._v6_mask = ((1 << 128) - 1) ^ ((1 << (128 - self._v6)) - 1)

    @staticmethod
    def check(options: Mapping[str, Any], where: str) -> None:
        for name, top in (("ipv4_prefix", 32), ("ipv6_prefix", 128)):
            value = options.get(name, 0)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
                raise PolicyError(f"{where}: {name} must be a whole number from 0 to {top}, not {value!r}.")

    def apply_one(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise ActionError(f"{_kind(value)} is not an IP address (the policy keeps IP addresses as "
                              "their network: ip_network)")
        quad = _DOTTED_QUAD.match(value)
        if quad is not None:  # the common case, read as ipaddress reads it, a few times faster
            a, b, c, d = quad.groups()
            n = ((int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)) & self._v4_mask
            return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ActionError("not an IP address (the policy keeps IP addresses as their network: "
                              "ip_network)") from None
        if isinstance(address, ipaddress.IPv4Address):
            return str(ipaddress.IPv4Address(int(address) & self._v4_mask))
        mapped = address.ipv4_mapped
        if mapped is not None:
            return "::ffff:" + str(ipaddress.IPv4Address(int(mapped) & self._v4_mask))
        return str(ipaddress.IPv6Address(int(address) & self._v6_mask))  # the scope id goes too


_CANONICAL_CUT = {"second": (19, ".000000Z"), "minute": (16, ":00.000000Z"), "hour": (13, ":00:00.000000Z"),
                  "day": (10, "T00:00:00.000000Z"), "month": (8, "01T00:00:00.000000Z"),
                  "year": (5, "01-01T00:00:00.000000Z")}


class RoundTime(Generalize):
    method = "round_time"
    params = {"unit": "hour"}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.unit = self.options["unit"]
        self._cut, self._tail = _CANONICAL_CUT[self.unit]

    @staticmethod
    def check(options: Mapping[str, Any], where: str) -> None:
        if options.get("unit", "hour") not in TIME_UNITS:
            raise PolicyError(f"{where}: unit must be one of {', '.join(TIME_UNITS)}, "
                              f"not {options.get('unit')!r}.")

    def round(self, when: _dt.datetime) -> _dt.datetime:
        """``when`` (aware, UTC) rounded down to the unit."""
        unit = self.unit
        when = when.replace(microsecond=0)
        if unit in ("minute", "hour", "day", "month", "year"):
            when = when.replace(second=0)
        if unit in ("hour", "day", "month", "year"):
            when = when.replace(minute=0)
        if unit in ("day", "month", "year"):
            when = when.replace(hour=0)
        if unit in ("month", "year"):
            when = when.replace(day=1)
        if unit == "year":
            when = when.replace(month=1)
        return when

    def apply_one(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise ActionError(f"{_kind(value)} is not an ISO 8601 date-time "
                              "(the policy rounds it: round_time)")
        if len(value) == 27 and CANONICAL_TIMESTAMP.fullmatch(value):  # format_timestamp's form
            return value[: self._cut] + self._tail
        if _DATE_ONLY.match(value):
            try:
                day = _dt.date.fromisoformat(value)
            except ValueError:
                raise ActionError("not an ISO 8601 date (the policy rounds it: round_time)") from None
            if self.unit == "year":
                day = day.replace(month=1, day=1)
            elif self.unit == "month":
                day = day.replace(day=1)
            return day.isoformat()
        when = parse_timestamp(value)
        if when is None:
            raise ActionError("not an ISO 8601 date-time (the policy rounds it: round_time)")
        return format_timestamp(self.round(when))


class Bucket(Generalize):
    method = "bucket"
    params: ClassVar[dict[str, Any]] = {}
    types = frozenset({"integer", "number"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.size = self.options["size"]
        self._whole = isinstance(self.size, int)
        self._dsize = Decimal(repr(self.size))

    @staticmethod
    def check(options: Mapping[str, Any], where: str) -> None:
        size = options.get("size")
        number = isinstance(size, (int, float)) and not isinstance(size, bool)
        if not (number and isinstance(size, (int, float)) and math.isfinite(size) and size > 0):
            raise PolicyError(f"{where}: bucket needs 'size', a number above 0 (e.g. 10), not {size!r}.")

    def apply_one(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ActionError(f"{_kind(value)} is not a number (the policy puts numbers in buckets: bucket)")
        if self._whole and isinstance(value, int):
            return value - value % self.size
        if not math.isfinite(value):
            raise ActionError("not a finite number (the policy puts numbers in buckets: bucket)")
        # Decimal arithmetic on the shortest repr: 0.3 in buckets of 0.1 is 0.3, not 0.2.
        exact = Decimal(repr(value))
        steps = exact // self._dsize  # rounds toward zero: one step lower below zero
        if exact < 0 and exact % self._dsize:
            steps -= 1
        return float(steps * self._dsize)


class Truncate(Generalize):
    method = "truncate"
    params: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.length = self.options["length"]

    @staticmethod
    def check(options: Mapping[str, Any], where: str) -> None:
        length = options.get("length")
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise PolicyError(f"{where}: truncate needs 'length', a whole number of characters above 0 "
                              f"(e.g. 8), not {length!r}.")

    def apply_one(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise ActionError(f"{_kind(value)} is not a string (the policy shortens it: truncate)")
        return value[: self.length]


GENERALIZATIONS: dict[str, type[Generalize]] = {
    cls.method: cls for cls in (IpNetwork, RoundTime, Bucket, Truncate)
}
_REQUIRED = {"bucket": ("size",), "truncate": ("length",)}


def parse_action(spec: Any, where: str = "action") -> Action:
    """The action ``spec`` configures; :class:`PolicyError` naming ``where`` and the fix if it is bad.

    A ``pseudonymize`` action comes back without a key: the EventLog gives it its key
    (:meth:`Pseudonymize.with_key`) when the plan is compiled.
    """
    if isinstance(spec, str):
        if spec in ("drop", "keep", "pseudonymize"):
            return {"drop": DROP, "keep": KEEP}.get(spec) or Pseudonymize()
        if spec in GENERALIZATIONS or spec == "generalize":
            raise PolicyError(
                f"{where}: a generalization is a dict naming the method and its options, e.g. "
                '{"generalize": "ip_network", "ipv4_prefix": 24} or {"generalize": "round_time", '
                '"unit": "minute"}.'
            )
        raise PolicyError(f"{where}: unknown action {spec!r}; the actions are 'drop', 'keep', "
                          "'pseudonymize' and {\"generalize\": METHOD, ...} with METHOD one of "
                          f"{', '.join(GENERALIZATIONS)}.")
    if not isinstance(spec, Mapping):
        raise PolicyError(f"{where}: an action is 'drop', 'keep', 'pseudonymize' or a dict "
                          f"{{\"generalize\": METHOD, ...}}, not {type(spec).__name__}.")
    options = dict(spec)
    name = options.pop("action", "generalize" if "generalize" in options else None)
    if name in ("drop", "keep", "pseudonymize"):
        options.pop("key_id", None)  # a description of a pseudonymize action names its key
        if options:
            raise PolicyError(f"{where}: action {name!r} takes no options, got {sorted(options)}.")
        return parse_action(name, where)
    if name != "generalize":
        raise PolicyError(f"{where}: unknown action {name!r}; the actions are {', '.join(ACTION_NAMES)}.")
    method = options.pop("generalize", None)
    cls = GENERALIZATIONS.get(method) if isinstance(method, str) else None
    if cls is None:
        raise PolicyError(f"{where}: unknown generalization {method!r}; the methods are "
                          f"{', '.join(GENERALIZATIONS)}.")
    allowed = set(cls.params) | set(_REQUIRED.get(cls.method, ()))
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise PolicyError(f"{where}: generalization {method!r} has no option {unknown[0]!r}; its options "
                          f"are {', '.join(sorted(allowed))}.")
    cls.check(options, where)
    return cls(**options)


def strongest(actions: list[Action]) -> Action:
    """The action that keeps least of ``actions``: drop, then pseudonymize, then generalize, then keep.

    Two different generalizations of one property cannot both apply: it is dropped.
    """
    top = max(actions, key=lambda a: a.rank)
    if top.rank == Generalize.rank and any(a != top for a in actions if a.rank == Generalize.rank):
        return DROP
    return top
