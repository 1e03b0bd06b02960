"""Event schemas: loading, checking, and the compiled form used on the emit path.

A schema is a JSON Schema document (JSON or YAML) with a few conventions shared
with jupyter_events and jupyter_telemetry: ``$id`` (a string), ``version`` (an
integer; ``"1"`` is accepted and means 1), ``type: object``, ``properties``, and
per-property ``categories`` that classify personal data.  Property names that
start with ``__`` are reserved for the capsule.

Validation on the emit path uses ``jsonschema_rs`` (compiled Rust, linear-time
regular expressions, about 100 times faster than pure-Python ``jsonschema``),
which also checks schemas against their draft's meta-schema.  Pure-Python
``jsonschema`` is imported only when needed: for events holding Python objects
the Rust validator cannot read, and for drafts it does not know.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

from .capsule import whole_number
from .errors import EventValidationError, SchemaError

SCHEMA_SUFFIXES = (".json", ".yaml", ".yml")
UNRESTRICTED = "unrestricted"

_RS_VALIDATORS = {
    "http://json-schema.org/draft-04/schema": jsonschema_rs.Draft4Validator,
    "http://json-schema.org/draft-06/schema": jsonschema_rs.Draft6Validator,
    "http://json-schema.org/draft-07/schema": jsonschema_rs.Draft7Validator,
    "https://json-schema.org/draft/2019-09/schema": jsonschema_rs.Draft201909Validator,
    "https://json-schema.org/draft/2020-12/schema": jsonschema_rs.Draft202012Validator,
}


def normalize_category(label: str) -> str:
    """``category.jupyter.org/user-identifier`` and ``user-identifier`` are the same category."""
    return label.rsplit("/", 1)[-1]


def _draft_key(schema: Mapping[str, Any]) -> str:
    uri = schema.get("$schema", "http://json-schema.org/draft-07/schema")
    if not isinstance(uri, str):
        return ""
    return uri.rstrip("#").replace("https://json-schema.org/draft-0", "http://json-schema.org/draft-0")


def json_path(parts: Any) -> str:
    """Render a sequence of keys and indexes as a JSON path: ``$.users[0].name``."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


# --------------------------------------------------------------------------- loading


def load_schema_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a schema file (.json, .yaml or .yml) into a dict, with errors that name the file."""
    path = Path(path)
    if path.suffix.lower() not in SCHEMA_SUFFIXES:
        raise SchemaError(f"{path}: not a schema file; schema files end in .json, .yaml or .yml.")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read schema file: {exc.strerror or exc}.") from None
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{path}: schema file is not UTF-8 text ({exc.reason}).") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(
                f"{path}, line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}."
            ) from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise SchemaError(f"{path}{where}: invalid YAML: {problem}.") from None
    if not isinstance(data, dict):
        raise SchemaError(
            f"{path}: a schema must be a mapping (JSON object) at the top level, "
            f"not {type(data).__name__} {str(data)[:60]!r}."
        )
    return data


def iter_schema_files(path: str | os.PathLike) -> Iterator[Path]:
    """``path`` itself if it is a file, else every schema file below it, sorted."""
    path = Path(path)
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and child.suffix.lower() in SCHEMA_SUFFIXES:
                yield child
    elif path.exists():
        yield path
    else:
        raise SchemaError(f"{path}: no such schema file or directory.")


# --------------------------------------------------------------------------- checking


def _walk_subschemas(node: Any, path: tuple) -> Iterator[tuple[tuple, dict]]:
    """Yield every dict inside a schema with its path (for structural checks)."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key in ("enum", "const", "examples", "default"):
                continue
            yield from _walk_subschemas(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_subschemas(value, (*path, index))


def _schema_path(path: tuple) -> str:
    return "/".join(str(p) for p in path) or "(root)"


def parse_version(value: Any) -> int | None:
    """An event schema version: an int, or a string of digits (jupyter_events' ``"1"``); else None."""
    return whole_number(value)


def check_schema(schema: Mapping[str, Any], source: str | None = None) -> tuple[str, int]:
    """Check ``schema`` and return its ``($id, version)``; raise :class:`SchemaError` if malformed."""
    where = f"{source}: " if source else ""
    if not isinstance(schema, Mapping):
        raise SchemaError(f"{where}a schema must be a mapping, not {type(schema).__name__}.")
    schema_id = schema.get("$id")
    label = f"schema {schema_id!r}" if isinstance(schema_id, str) else "schema"
    prefix = f"{where}{label}: "
    if not isinstance(schema_id, str) or not schema_id:
        raise SchemaError(
            f"{where}schema has no '$id': add a string '$id' such as "
            "'https://events.example.org/my-app/launch' that names the event kind."
        )
    if "version" not in schema:
        raise SchemaError(f"{prefix}missing 'version': add an integer 'version: 1'.")
    version = parse_version(schema["version"])
    if version is None:
        raise SchemaError(
            f"{prefix}'version' must be an integer (or a string of digits such as \"1\"), "
            f"not {schema['version']!r}."
        )
    if schema.get("type") != "object":
        raise SchemaError(
            f"{prefix}top-level 'type' must be 'object' (an event is a JSON object), "
            f"not {schema.get('type')!r}."
        )
    for path, node in _walk_subschemas(schema, ()):
        props = node.get("properties") if path == () or path[-1] != "properties" else None
        if isinstance(props, Mapping):
            for name, sub in props.items():
                at = _schema_path((*path, "properties", name))
                if isinstance(name, str) and name.startswith("__"):
                    raise SchemaError(
                        f"{prefix}property {name!r} at {at}: names starting with '__' are "
                        "reserved for the capsule; rename the property."
                    )
                if isinstance(sub, Mapping):
                    if "category" in sub and "categories" not in sub:
                        raise SchemaError(
                            f"{prefix}property {name!r} at {at} has 'category'; the keyword "
                            "is 'categories' (a list), e.g. categories: [user-identifier]."
                        )
                    cats = sub.get("categories")
                    if cats is not None and (
                        not isinstance(cats, list) or not all(isinstance(c, str) for c in cats)
                    ):
                        raise SchemaError(
                            f"{prefix}property {name!r} at {at}: 'categories' must be a list "
                            f"of strings, not {cats!r}."
                        )
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            raise SchemaError(
                f"{prefix}'$ref' {ref!r} at {_schema_path(path)} points outside the schema; "
                "references are never fetched. Inline the referenced definition, or use a "
                "local reference such as '#/definitions/name'."
            )

    if not isinstance(schema.get("properties"), Mapping):
        raise SchemaError(f"{prefix}missing 'properties': list the event's fields under 'properties'.")

    _check_against_metaschema(schema, prefix)
    return schema_id, version


_DRAFT_NAMES = {
    "http://json-schema.org/draft-04/schema": "Draft 4",
    "http://json-schema.org/draft-06/schema": "Draft 6",
    "http://json-schema.org/draft-07/schema": "Draft 7",
    "https://json-schema.org/draft/2019-09/schema": "Draft 2019-09",
    "https://json-schema.org/draft/2020-12/schema": "Draft 2020-12",
}


def _check_against_metaschema(schema: Mapping[str, Any], prefix: str) -> None:
    """Check ``schema`` against its draft's meta-schema (draft 7 when ``$schema`` is absent)."""
    key = _draft_key(schema)
    if key in _DRAFT_NAMES:
        try:
            jsonschema_rs.meta.validate({**schema, "$schema": key + "#"})
        except jsonschema_rs.ValidationError as exc:
            at = _schema_path(tuple(exc.instance_path))
            raise SchemaError(
                f"{prefix}not a valid JSON Schema ({_DRAFT_NAMES[key]}) at {at}: {exc.message}."
            ) from None
        return
    import jsonschema  # a draft the Rust validator does not know; never fetched

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        at = _schema_path(tuple(exc.absolute_path))
        raise SchemaError(f"{prefix}not a valid JSON Schema at {at}: {exc.message}.") from None


# --------------------------------------------------------------------------- compiled schema


@dataclass
class RedactionNode:
    """Per-level categories of an object's properties, for policy filtering."""

    categories: dict[str, frozenset[str]] = field(default_factory=dict)
    children: dict[str, RedactionNode] = field(default_factory=dict)
    array_children: dict[str, RedactionNode] = field(default_factory=dict)

    def is_trivial(self) -> bool:
        return (
            not self.categories
            and not any(not c.is_trivial() for c in self.children.values())
            and not any(not c.is_trivial() for c in self.array_children.values())
        )


def _redaction_tree(node: Mapping[str, Any]) -> RedactionNode:
    tree = RedactionNode()
    props = node.get("properties")
    if not isinstance(props, Mapping):
        return tree
    for name, sub in props.items():
        if not isinstance(sub, Mapping):
            continue
        cats = frozenset(normalize_category(c) for c in sub.get("categories", ()) or ())
        cats = cats - {UNRESTRICTED}
        if cats:
            tree.categories[name] = cats
        if isinstance(sub.get("properties"), Mapping):
            child = _redaction_tree(sub)
            if not child.is_trivial():
                tree.children[name] = child
        items = sub.get("items")
        if isinstance(items, Mapping) and isinstance(items.get("properties"), Mapping):
            child = _redaction_tree(items)
            if not child.is_trivial():
                tree.array_children[name] = child
    return tree


class Schema:
    """A registered, compiled event schema: ``$id``, version, validator and redaction tree."""

    __slots__ = ("id", "version", "body", "source", "redaction", "_rs", "_py")

    def __init__(self, body: Mapping[str, Any], source: str | None = None) -> None:
        self.id, self.version = check_schema(body, source)
        self.body = dict(body)
        self.source = source
        rs_cls = _RS_VALIDATORS.get(_draft_key(body), jsonschema_rs.Draft7Validator)
        self._rs: Any
        try:
            self._rs = rs_cls(self.body, validate_formats=False)
        except Exception:  # a schema the Rust validator cannot compile: use jsonschema
            self._rs = None
        self._py: Any = None
        tree = _redaction_tree(self.body)
        self.redaction: RedactionNode | None = None if tree.is_trivial() else tree

    def __repr__(self) -> str:
        return f"<Schema {self.id!r} version {self.version}>"

    @property
    def title(self) -> str:
        return str(self.body.get("title", ""))

    def _py_validator(self) -> Any:
        if self._py is None:
            import jsonschema

            cls = jsonschema.validators.validator_for(self.body, default=jsonschema.Draft7Validator)
            self._py = cls(self.body)
        return self._py

    def check(self, event: Any, max_depth: int) -> None:
        """Raise :class:`EventValidationError` unless ``event`` may be recorded under this schema.

        ``event`` must be a JSON object (a Mapping) that :meth:`validate` accepts, and
        nest objects and arrays at most ``max_depth`` levels deep, without a cycle.
        """
        if not isinstance(event, Mapping):
            self._raise([], f"an event must be a JSON object (dict), not {type(event).__name__}")
        self.validate(event)
        for value in event.values():
            if type(value) not in _SCALARS:  # nested data (any container): check how deep
                self.check_depth(event, max_depth)
                return

    def check_depth(self, event: Any, limit: int) -> None:
        """Raise :class:`EventValidationError` if ``event`` nests deeper than ``limit`` or in a cycle."""
        depth = nesting_depth(event, limit)
        if depth == CIRCULAR:
            self._raise([], "the event contains a circular reference (a container inside itself)")
        if depth > limit:
            self._raise(
                [],
                f"the event nests objects or arrays more than {limit} levels deep "
                "(c.EventLog.max_event_depth)",
            )

    def validate(self, event: Any) -> None:
        """Raise :class:`EventValidationError` if ``event`` does not match this schema."""
        rs = self._rs
        if rs is not None:
            try:
                if rs.is_valid(event):
                    return
                error = next(iter(rs.iter_errors(event)))
                self._raise(list(error.instance_path), error.message, event)
            except (ValueError, TypeError, OverflowError) as exc:
                if isinstance(exc, EventValidationError):
                    raise
                # Python objects (datetime, UUID, ...) the Rust validator cannot read.
        validator = self._py_validator()
        from jsonschema.exceptions import best_match

        try:
            error = best_match(validator.iter_errors(event))
        except RecursionError:
            self._raise([], "the event is nested too deeply to validate")
        if error is not None:
            self._raise(list(error.absolute_path), error.message, event)

    def error(self, path: list, reason: str, event: Any = None) -> EventValidationError:
        """The error for ``event`` being invalid at ``path`` because of ``reason``.

        The reason never quotes a value of a property with a personal-data category.
        """
        where = json_path(path)
        value = _value_at(event, path)
        if isinstance(value, float) and not math.isfinite(value):
            reason = f"{value!r} is not a JSON number; send a finite number or null"
        if self.redaction is not None and event is not None:
            reason = scrub_values(reason, _personal_values(event, self.redaction))
        return EventValidationError(
            f"Event for schema {self.id!r} version {self.version} is invalid at {where}: {reason}",
            schema_id=self.id,
            version=self.version,
            path=where,
            reason=reason,
        )

    def _raise(self, path: list, reason: str, event: Any = None) -> None:
        raise self.error(path, reason, event)

    def same_content(self, other: Mapping[str, Any]) -> bool:
        return _canonical(self.body) == _canonical(other)


def _personal_values(data: Any, node: RedactionNode) -> list[str]:
    """The texts of every value an event holds in a property with a personal-data category."""
    found: list[str] = []
    if not isinstance(data, Mapping):
        return found
    for name in node.categories:
        if name in data:
            _leaf_texts(data[name], found)
    for name, child in node.children.items():
        if name not in node.categories:
            found.extend(_personal_values(data.get(name), child))
    for name, child in node.array_children.items():
        items = data.get(name)
        if name not in node.categories and isinstance(items, list):
            for item in items:
                found.extend(_personal_values(item, child))
    return found


def _leaf_texts(value: Any, found: list[str], depth: int = 0) -> None:
    if depth > 64:
        return
    if isinstance(value, Mapping):
        for item in value.values():
            _leaf_texts(item, found, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _leaf_texts(item, found, depth + 1)
    elif value is not None and not isinstance(value, bool):
        found.append(value if isinstance(value, str) else json.dumps(value, default=str))


def scrub_values(message: str, values: list[str]) -> str:
    """``message`` without any of ``values`` (raw or JSON-escaped): errors must not leak personal data."""
    for text in sorted({v for v in values if v}, key=len, reverse=True):
        for form in (text, json.dumps(text)[1:-1]):
            if form and form in message:
                message = message.replace(form, "<redacted>")
    return message


def _value_at(event: Any, path: list) -> Any:
    """The value at ``path`` inside ``event``, or None."""
    for part in path:
        try:
            event = event[part]
        except (KeyError, IndexError, TypeError):
            return None
    return event


_CONTAINERS = (dict, list, tuple)


CIRCULAR = -1
_CONCRETE = (dict, list, tuple)
_CONCRETE_TYPES = frozenset(_CONCRETE)
_SCALARS = frozenset({str, int, float, bool, type(None)})


def nesting_depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests objects and arrays, counting no further than ``limit + 1``.

    Returns :data:`CIRCULAR` when a container contains itself.  The common case
    (plain dicts and lists within the limit) is one iterative pass over concrete
    types; a cycle shows there as depth over the limit, and only then, or for
    other Mapping types, does the slower exact walk run to tell which it is.
    """
    if type(value) not in _CONCRETE_TYPES:
        return _exact_depth(value, limit)
    deepest = 0
    stack = [(value, 0)]
    pop, push, scalars = stack.pop, stack.append, _SCALARS
    while stack:
        item, depth = pop()
        for child in item.values() if type(item) is dict else item:
            kind = type(child)
            if kind in scalars:
                continue
            if kind is dict or kind is list or kind is tuple:
                if depth >= limit:
                    return _exact_depth(value, limit)
                push((child, depth + 1))
                if depth + 1 > deepest:
                    deepest = depth + 1
            elif isinstance(child, Mapping):
                return _exact_depth(value, limit)
    return deepest


def _exact_depth(value: Any, limit: int, _path: set[int] | None = None) -> int:
    """Like :func:`nesting_depth`, for any Mapping, detecting cycles (slow path)."""
    path = set() if _path is None else _path
    if id(value) in path:
        return CIRCULAR
    if limit < 0:
        return 1
    path.add(id(value))
    try:
        deepest = 0
        children = value.values() if isinstance(value, Mapping) else value
        for child in children:
            if isinstance(child, _CONCRETE) or isinstance(child, Mapping):
                depth = _exact_depth(child, limit - 1, path)
                if depth == CIRCULAR:
                    return CIRCULAR
                deepest = max(deepest, depth + 1)
                if deepest > limit:
                    break
        return deepest
    finally:
        path.discard(id(value))


def _canonical(body: Mapping[str, Any]) -> str:
    data = dict(body)
    data["version"] = parse_version(data.get("version"))
    return json.dumps(data, sort_keys=True, default=str)
