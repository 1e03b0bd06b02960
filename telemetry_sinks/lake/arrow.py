"""One Arrow schema per event schema version, derived from its JSON Schema; capsules fitted to it.

:class:`EventTable` is the table of one ``($id, version)``: its columns, their Arrow
types and metadata, and :meth:`EventTable.fit`, which turns a capsule into a row.

Columns
-------

==========================  =====================================================
``__timestamp__``           ``timestamp[us, tz=UTC]``
``__schema__``              ``string``
``__schema_version__``      ``int64`` (jupyter_events' ``"1"`` is read as 1)
``__metadata_version__``    ``int64``
one column per property     derived from the property's JSON Schema, below
``__extra__``               ``string``: JSON text of what did not fit, or null
==========================  =====================================================

Property types:

* ``string`` → ``string``; ``integer`` → ``int64``; ``number`` → ``float64``;
  ``boolean`` → ``bool``; ``["T", "null"]`` → ``T`` (nullable);
  ``["integer", "number"]`` → ``float64``.
* ``enum`` (or ``const``) of strings → ``dictionary<int32, string>`` (dictionary
  encoded; pandas reads a Categorical, DuckDB a VARCHAR); of integers → ``int64``.
* ``object`` with ``properties`` → ``struct`` of them (recursively);
  ``object`` whose only shape is ``additionalProperties: {schema}`` → ``map<string, T>``.
* ``array`` with an ``items`` schema → ``list<T>``.
* local ``$ref`` → the type of its target.
* Everything else, where no single Arrow type holds every valid value (a union such
  as ``["string", "number"]``, ``anyOf``/``oneOf``/``allOf``, no ``type`` at all,
  ``items`` as a list, a recursive ``$ref``) → ``string`` holding the value's JSON
  text; such a field has the metadata ``encoding: json``.

Nothing is lost
---------------

A value that does not fit its column is kept in ``__extra__``, a JSON object
shaped like the event that holds only those values: properties the schema does not
declare (``additionalProperties``, at any level of nested objects), a value of
another type than declared (an event of another version exported under this one,
an integer beyond 64 bits), an unreadable ``__timestamp__``, and every property of
an event whose schema is not known (then the table has only the capsule columns).
An array or map any of whose items does not fit goes to ``__extra__`` whole.  The
event is the typed columns deep-merged with ``__extra__`` (:meth:`EventTable.restore`).
What is not kept: the difference between a property set to ``null`` and one left
out (both read as null), and timestamp digits below the microsecond.

A top-level property named like a partition key (``schema``, ``version``,
``date``) would be hidden by the partition column in DuckDB and refused by
pyarrow's dataset reader; its column is that name with a ``_`` appended, and the
field's ``property`` metadata gives the property's name.

Metadata
--------

Every field carries ``description``, ``title``, ``categories`` (a JSON list) and
``enum`` (a JSON list) when its JSON Schema has them.  The file carries
``telemetry_sinks.schema.id``, ``.version``, ``.title``, ``.description``,
``.json_schema`` (the whole JSON Schema) and ``telemetry_sinks.columns`` (``{column
path: {description, categories}}``, for readers such as DuckDB's
``parquet_kv_metadata`` that do not show field metadata).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

from ..capsule import CANONICAL_TIMESTAMP, encode, format_timestamp, parse_timestamp, whole_number

__all__ = [
    "EXTRA",
    "PARTITION_KEYS",
    "EventTable",
    "Misfit",
    "as_capsule",
    "deep_merge",
    "restore_events",
]

EXTRA = "__extra__"
#: The Hive partition keys of the layout (see :mod:`telemetry_sinks.lake.store`).
PARTITION_KEYS = ("schema", "version", "date")
LAYOUT_VERSION = "1"

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_DEPTH = 32  # deeper schema nesting is stored as JSON text


class Misfit(Exception):
    """A value does not fit its column's type (it goes to ``__extra__``)."""


_MISFIT = Misfit()


# --------------------------------------------------------------------------- kinds


class Kind:
    """How one JSON Schema node is stored: its Arrow type, how a value fits it and reads back."""

    arrow: pa.DataType = pa.string()
    #: ``type(value) is fast`` means the value fits as it is (the common case, checked inline).
    fast: type | None = None

    def fit(self, value: Any) -> Any:
        """The column value for ``value`` (never None here); raise :class:`Misfit` if it does not fit."""
        raise NotImplementedError

    def restore(self, value: Any) -> Any:
        """The JSON value of a column value read back (``to_pylist``)."""
        return value

    def metadata(self) -> dict[str, str]:
        return {}


class StringKind(Kind):
    arrow = pa.string()
    fast = str

    def fit(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        raise _MISFIT


class EnumKind(StringKind):
    arrow = pa.dictionary(pa.int32(), pa.string())


class IntKind(Kind):
    arrow = pa.int64()  # no fast path: the range is checked

    def fit(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise _MISFIT
        if isinstance(value, int):
            if _INT64_MIN <= value <= _INT64_MAX:
                return value
        elif isinstance(value, float) and value.is_integer() and _INT64_MIN <= value <= _INT64_MAX:
            return int(value)
        raise _MISFIT


class FloatKind(Kind):
    arrow = pa.float64()
    fast = float

    def fit(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise _MISFIT
        if isinstance(value, float):
            return value
        if isinstance(value, int) and abs(value) <= 2**53:
            return float(value)
        raise _MISFIT  # a larger integer would lose digits as a float


class BoolKind(Kind):
    arrow = pa.bool_()
    fast = bool

    def fit(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        raise _MISFIT


class JsonKind(Kind):
    """Any JSON value, stored as its JSON text."""

    arrow = pa.string()

    def fit(self, value: Any) -> Any:
        return encode(value)

    def restore(self, value: Any) -> Any:
        return None if value is None else json.loads(value)

    def metadata(self) -> dict[str, str]:
        return {"encoding": "json"}


class TimestampKind(Kind):
    """``__timestamp__``: kept as canonical text until the column is built, then a UTC timestamp."""

    arrow = pa.timestamp("us", tz="UTC")

    def fit(self, value: Any) -> Any:
        if isinstance(value, str):
            if CANONICAL_TIMESTAMP.fullmatch(value):
                return value
            when = parse_timestamp(value)
        elif isinstance(value, _dt.datetime):
            when = value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)
        else:
            when = None
        if when is None:
            raise _MISFIT
        return format_timestamp(when)

    def restore(self, value: Any) -> Any:
        return None if value is None else format_timestamp(value)


class VersionKind(IntKind):
    """A schema or metadata version: an integer, or jupyter_events' string of digits."""

    def fit(self, value: Any) -> Any:
        number = whole_number(value)
        if number is None or not _INT64_MIN <= number <= _INT64_MAX:
            raise _MISFIT
        return number


class ListKind(Kind):
    def __init__(self, item: Kind) -> None:
        self.item = item
        self.arrow = pa.list_(pa.field("item", item.arrow, metadata=item.metadata() or None))

    def fit(self, value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _MISFIT
        fit = self.item.fit
        return [None if v is None else fit(v) for v in value]

    def restore(self, value: Any) -> Any:
        return None if value is None else [self.item.restore(v) for v in value]


class MapKind(Kind):
    def __init__(self, value: Kind) -> None:
        self.value = value
        self.arrow = pa.map_(pa.string(), value.arrow)

    def fit(self, value: Any) -> Any:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise _MISFIT
        fit = self.value.fit
        return [(k, None if v is None else fit(v)) for k, v in value.items()]

    def restore(self, value: Any) -> Any:
        return None if value is None else {k: self.value.restore(v) for k, v in value}


class Field:
    """One column, or one field of a struct: name, property name, kind and metadata."""

    __slots__ = ("name", "key", "kind", "meta")

    def __init__(self, name: str, key: str, kind: Kind, meta: dict[str, str]) -> None:
        self.name, self.key, self.kind, self.meta = name, key, kind, meta

    def arrow(self) -> pa.Field:
        return pa.field(self.name, self.kind.arrow, metadata={**self.meta, **self.kind.metadata()} or None)


class StructKind(Kind):
    def __init__(self, fields: list[Field]) -> None:
        self.fields = fields
        self.by_key = {f.key: f for f in fields}
        self.arrow = pa.struct([f.arrow() for f in fields])

    def fit_parts(self, value: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """``(typed, extra)``: the declared fields that fit, and the rest (None when nothing is left)."""
        if not isinstance(value, Mapping):
            raise _MISFIT
        typed: dict[str, Any] = {}
        extra: dict[str, Any] | None = None
        by_key = self.by_key
        for key, item in value.items():
            field = by_key.get(key)
            if field is None:
                extra = extra or {}
                extra[key] = item
                continue
            if item is None:
                continue
            kind = field.kind
            if type(item) is kind.fast:
                typed[field.name] = item
                continue
            try:
                if isinstance(kind, StructKind):
                    typed[field.name], rest = kind.fit_parts(item)
                    if rest is not None:
                        extra = extra or {}
                        extra[key] = rest
                else:
                    typed[field.name] = kind.fit(item)
            except Misfit:
                extra = extra or {}
                extra[key] = item
        return typed, extra

    def fit_whole(self, value: Any) -> Any:
        """``value`` as a struct, or :class:`Misfit` if any part of it does not fit."""
        typed, extra = self.fit_parts(value)
        if extra is not None:
            raise _MISFIT
        return typed

    fit = fit_whole

    def restore(self, value: Any) -> Any:
        if value is None:
            return None
        out = {}
        for field in self.fields:
            item = value.get(field.name)
            if item is not None:
                out[field.key] = field.kind.restore(item)
        return out


_SCALARS: dict[str, Callable[[], Kind]] = {
    "string": StringKind,
    "integer": IntKind,
    "number": FloatKind,
    "boolean": BoolKind,
}


# --------------------------------------------------------------------------- derivation


class _Deriver:
    """Walks one JSON Schema; resolves local ``$ref``s."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.resolving: set[str] = set()

    def resolve(self, ref: str) -> Any:
        node: Any = self.root
        for part in ref.lstrip("#").split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    def kind(self, node: Any, depth: int = 0) -> Kind:
        if not isinstance(node, Mapping) or depth > _MAX_DEPTH:
            return JsonKind()
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = self.resolve(ref) if ref.startswith("#") else None
            if target is None or ref in self.resolving:
                return JsonKind()  # unresolvable, or recursive
            self.resolving.add(ref)
            try:
                return self.kind(target, depth + 1)
            finally:
                self.resolving.discard(ref)
        if any(key in node for key in ("anyOf", "oneOf", "allOf")) and "type" not in node:
            return JsonKind()
        types = node.get("type")
        if isinstance(types, list):
            concrete = {t for t in types if t != "null"}
            if concrete == {"integer", "number"}:
                concrete = {"number"}
            types = concrete.pop() if len(concrete) == 1 else None
            if types is None:
                return JsonKind()
        if types is None:
            values = node["enum"] if isinstance(node.get("enum"), list) else (
                [node["const"]] if "const" in node else None)
            if values is not None:
                return _enum_kind(values)
            if isinstance(node.get("properties"), Mapping):
                types = "object"
            elif isinstance(node.get("items"), Mapping):
                types = "array"
            else:
                return JsonKind()
        if types == "string":
            return EnumKind() if isinstance(node.get("enum"), list) or "const" in node else StringKind()
        if types in _SCALARS:
            return _SCALARS[types]()
        if types == "object":
            props = node.get("properties")
            if isinstance(props, Mapping) and props:
                return StructKind(self.fields(props, depth + 1))
            extra = node.get("additionalProperties")
            if isinstance(extra, Mapping) and extra:
                return MapKind(self.kind(extra, depth + 1))
            return JsonKind()
        if types == "array":
            items = node.get("items")
            if isinstance(items, Mapping) and items:
                return ListKind(self.kind(items, depth + 1))
            return JsonKind()
        return JsonKind()

    def fields(self, props: Mapping[str, Any], depth: int, reserved: tuple[str, ...] = ()) -> list[Field]:
        fields = []
        for key, sub in props.items():
            if not isinstance(key, str):
                continue
            name = key + "_" if key in reserved else key
            meta = _field_metadata(sub)
            if name != key:
                meta["property"] = key
            fields.append(Field(name, key, self.kind(sub, depth), meta))
        return fields


def _enum_kind(values: list[Any]) -> Kind:
    concrete = [v for v in values if v is not None]
    if concrete and all(isinstance(v, str) for v in concrete):
        return EnumKind()
    if concrete and all(isinstance(v, int) and not isinstance(v, bool) for v in concrete):
        return IntKind()
    if concrete and all(isinstance(v, bool) for v in concrete):
        return BoolKind()
    return JsonKind()


def _field_metadata(node: Any) -> dict[str, str]:
    if not isinstance(node, Mapping):
        return {}
    meta: dict[str, str] = {}
    for key in ("description", "title"):
        if isinstance(node.get(key), str):
            meta[key] = node[key]
    if isinstance(node.get("categories"), list):
        meta["categories"] = json.dumps(node["categories"])
    if isinstance(node.get("enum"), list):
        meta["enum"] = encode(node["enum"])
    return meta


# --------------------------------------------------------------------------- the table


_CAPSULE_KINDS: tuple[tuple[str, Kind, str], ...] = (
    ("__timestamp__", TimestampKind(), "When the event was emitted (UTC)."),
    ("__schema__", StringKind(), "The $id of the event's schema."),
    ("__schema_version__", VersionKind(), "The version of the event's schema."),
    ("__metadata_version__", VersionKind(), "The version of the capsule's own fields."),
)


class EventTable:
    """The Arrow schema of one event schema version, and the fitting of capsules to it.

    ``body`` is the JSON Schema, or None for a schema that is not known: then the
    table has the capsule columns and ``__extra__`` only.
    """

    def __init__(self, schema_id: str | None, version: int | None, body: Mapping[str, Any] | None) -> None:
        self.schema_id, self.version, self.body = schema_id, version, body
        fields = [Field(name, name, kind, {"description": text}) for name, kind, text in _CAPSULE_KINDS]
        if body is not None:
            props = body.get("properties")
            if isinstance(props, Mapping):
                fields += _Deriver(body).fields(props, 1, reserved=PARTITION_KEYS)
        fields.append(Field(EXTRA, EXTRA, StringKind(),
                            {"description": "JSON object of the event's values that do not fit the "
                             "typed columns (deep-merge it with them to get the event back).",
                             "encoding": "json"}))
        self.fields = fields
        self.struct = StructKind(fields[:-1])
        self._index = {f.key: i for i, f in enumerate(fields[:-1])}
        self._fast = [f.kind.fast for f in fields]
        self._kinds = [f.kind for f in fields]
        self._width = len(fields)
        self.arrow = pa.schema([f.arrow() for f in fields], metadata=self._file_metadata())

    def __repr__(self) -> str:
        return f"<EventTable {self.schema_id!r} version {self.version}: {len(self.fields)} columns>"

    # ------------------------------------------------------------------ metadata

    def _file_metadata(self) -> dict[str, str]:
        meta = {"telemetry_sinks.layout": LAYOUT_VERSION}
        if self.schema_id is not None:
            meta["telemetry_sinks.schema.id"] = self.schema_id
        if self.version is not None:
            meta["telemetry_sinks.schema.version"] = str(self.version)
        body = self.body
        if body is not None:
            for key in ("title", "description"):
                if isinstance(body.get(key), str):
                    meta[f"telemetry_sinks.schema.{key}"] = body[key]
            meta["telemetry_sinks.schema.json_schema"] = encode(body)
        columns: dict[str, dict[str, Any]] = {}
        _column_docs(self.fields, "", columns)
        meta["telemetry_sinks.columns"] = encode(columns)
        return meta

    # ------------------------------------------------------------------ rows

    def fit(self, capsule: Mapping[str, Any]) -> list[Any]:
        """A row (one value per column, ``__extra__`` last) for ``capsule``."""
        row: list[Any] = [None] * self._width
        index, fast, kinds = self._index, self._fast, self._kinds
        extra: dict[str, Any] | None = None
        for key, value in capsule.items():
            i = index.get(key)
            if i is None:
                extra = extra or {}
                extra[key] = value
                continue
            if value is None:
                continue
            if type(value) is fast[i]:
                row[i] = value
                continue
            kind = kinds[i]
            try:
                if isinstance(kind, StructKind):
                    row[i], rest = kind.fit_parts(value)
                    if rest is not None:
                        extra = extra or {}
                        extra[key] = rest
                else:
                    row[i] = kind.fit(value)
            except Misfit:
                extra = extra or {}
                extra[key] = value
        if extra is not None:
            row[-1] = encode(extra)
        return row

    def to_arrow(self, rows: list[list[Any]]) -> pa.Table:
        """The Arrow table of rows made by :meth:`fit`."""
        if not rows:
            return self.arrow.empty_table()
        columns = list(zip(*rows))
        arrays = []
        for field, values in zip(self.fields, columns):
            kind = field.kind
            if isinstance(kind, TimestampKind):
                arrays.append(pa.array(values, pa.string()).cast(kind.arrow))
            else:
                arrays.append(pa.array(values, kind.arrow))
        return pa.Table.from_arrays(arrays, schema=self.arrow)

    def restore(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The event of a row read back as a dict of column values (``Table.to_pylist()``)."""
        event = self.struct.restore(row)
        extra = row.get(EXTRA)
        return deep_merge(event, json.loads(extra)) if extra else event

    def same_columns(self, schema: pa.Schema) -> bool:
        """Whether a file with Arrow ``schema`` has exactly this table's columns and types."""
        return schema.remove_metadata().equals(self.arrow.remove_metadata(), check_metadata=False) and [
            f.name for f in schema] == [f.name for f in self.arrow]


def restore_events(table: pa.Table) -> list[dict[str, Any]]:
    """The events of a table read from a lake file, whatever version of the writer made it.

    The kinds of the columns come from the Arrow schema and its field metadata
    (``encoding: json``, ``property``), so this needs no JSON Schema.
    """
    fields = [_field_of_arrow(f) for f in table.schema if f.name != EXTRA]
    struct = StructKind(fields) if fields else None
    events = []
    for row in table.to_pylist():
        event = struct.restore(row) if struct is not None else {}
        extra = row.get(EXTRA)
        events.append(deep_merge(event, json.loads(extra)) if extra else event)
    return events


def _field_of_arrow(field: pa.Field) -> Field:
    meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
    return Field(field.name, meta.get("property", field.name), _kind_of_arrow(field.type, meta), meta)


def _kind_of_arrow(kind: pa.DataType, meta: dict[str, str]) -> Kind:
    if pa.types.is_timestamp(kind):
        return TimestampKind()
    if meta.get("encoding") == "json":
        return JsonKind()
    if pa.types.is_struct(kind):
        return StructKind([_field_of_arrow(kind.field(i)) for i in range(kind.num_fields)])
    if pa.types.is_map(kind):
        return MapKind(_kind_of_arrow(kind.item_type, {}))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return ListKind(_field_of_arrow(kind.value_field).kind)
    return Kind()


def _column_docs(fields: list[Field], prefix: str, out: dict[str, dict[str, Any]]) -> None:
    for field in fields:
        path = prefix + field.name
        doc: dict[str, Any] = {}
        if "description" in field.meta:
            doc["description"] = field.meta["description"]
        if "categories" in field.meta:
            doc["categories"] = json.loads(field.meta["categories"])
        if "property" in field.meta:
            doc["property"] = field.meta["property"]
        if isinstance(field.kind, JsonKind) or field.name == EXTRA:
            doc["encoding"] = "json"
        if doc:
            out[path] = doc
        kind = field.kind
        while isinstance(kind, (ListKind, MapKind)):
            kind = kind.item if isinstance(kind, ListKind) else kind.value
        if isinstance(kind, StructKind):
            _column_docs(kind.fields, path + ".", out)


# --------------------------------------------------------------------------- helpers


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in (objects merged key by key; other values replaced)."""
    out = dict(base)
    for key, value in extra.items():
        mine = out.get(key)
        if isinstance(mine, dict) and isinstance(value, Mapping):
            out[key] = deep_merge(mine, value)
        else:
            out[key] = value
    return out


_LEGACY = ("timestamp", "schema", "version")


def as_capsule(payload: Any) -> Any:
    """``payload`` with the capsule's field names.

    BinderHub's events, as in the mybinder.org archive, carry ``timestamp``,
    ``schema`` and ``version``: they become ``__timestamp__``, ``__schema__`` and
    ``__schema_version__`` (a payload that already has ``__schema__`` is returned as
    it is, and so is anything without a string ``schema`` and a whole ``version``).
    """
    if not isinstance(payload, dict) or "__schema__" in payload:
        return payload
    schema, version = payload.get("schema"), payload.get("version")
    if not isinstance(schema, str) or whole_number(version) is None:
        return payload
    capsule = {"__timestamp__": payload.get("timestamp"), "__schema__": schema, "__schema_version__": version}
    capsule.update((k, v) for k, v in payload.items() if k not in _LEGACY)
    if capsule["__timestamp__"] is None:
        del capsule["__timestamp__"]
    return capsule
