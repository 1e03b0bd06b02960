"""The operator's policy: which schemas are recorded and which categories are kept.

``allowed_schemas`` is either a list of schema ids (each allowed with the
``unrestricted`` category only) or a dict
``{schema_id: {"allowed_categories": [...], "allowed_properties": [...]}}``.
A property is kept when all of its categories are allowed, or when it is named
in ``allowed_properties`` (then it is kept whole).  Nested objects and arrays of
objects are filtered by the categories declared at their own level.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .schema import UNRESTRICTED, RedactionNode, normalize_category

POLICY_KEYS = ("allowed_categories", "allowed_properties")


@dataclass(frozen=True)
class SchemaPolicy:
    """What one schema may record: categories and properties allowed."""

    allowed_categories: frozenset[str] = frozenset({UNRESTRICTED})
    allowed_properties: frozenset[str] = frozenset()


def check_allowed_schemas(value: Any) -> str | None:
    """Return a message describing what is wrong with ``value``, or None if it is valid."""
    if isinstance(value, (list, tuple)):
        for item in value:
            if not isinstance(item, str):
                return f"allowed_schemas list items must be schema ids (strings), not {item!r}."
        return None
    if isinstance(value, Mapping):
        for schema_id, entry in value.items():
            if not isinstance(schema_id, str):
                return f"allowed_schemas keys must be schema ids (strings), not {schema_id!r}."
            if entry is None:
                continue
            if not isinstance(entry, Mapping):
                return (
                    f"allowed_schemas[{schema_id!r}] must be a dict with 'allowed_categories' "
                    f"and/or 'allowed_properties', not {entry!r}."
                )
            for key, items in entry.items():
                if key not in POLICY_KEYS:
                    return (
                        f"allowed_schemas[{schema_id!r}] has unknown key {key!r}; the keys are "
                        "'allowed_categories' and 'allowed_properties'."
                    )
                if not isinstance(items, (list, tuple)) or not all(
                    isinstance(i, str) for i in items
                ):
                    return f"allowed_schemas[{schema_id!r}][{key!r}] must be a list of strings."
        return None
    return (
        "allowed_schemas must be a list of schema ids or a dict "
        "{schema_id: {'allowed_categories': [...], 'allowed_properties': [...]}}, "
        f"not {type(value).__name__}."
    )


def policy_for(allowed_schemas: Any, schema_id: str) -> SchemaPolicy | None:
    """The policy for ``schema_id``, or None when the schema is not allowed at all."""
    if isinstance(allowed_schemas, Mapping):
        if schema_id not in allowed_schemas:
            return None
        entry = allowed_schemas[schema_id] or {}
        cats = {normalize_category(c) for c in entry.get("allowed_categories", ())}
        return SchemaPolicy(
            frozenset(cats | {UNRESTRICTED}), frozenset(entry.get("allowed_properties", ()))
        )
    if schema_id in allowed_schemas:
        return SchemaPolicy()
    return None


def _all_categories(node: RedactionNode) -> set[str]:
    found: set[str] = set()
    for cats in node.categories.values():
        found |= cats
    for child in (*node.children.values(), *node.array_children.values()):
        found |= _all_categories(child)
    return found


def needs_redaction(node: RedactionNode | None, policy: SchemaPolicy) -> bool:
    """False when the policy keeps every property the schema declares (the common fast path)."""
    if node is None:
        return False
    if not _all_categories(node) <= policy.allowed_categories:
        return True
    return False


def redact(data: Mapping[str, Any], node: RedactionNode, policy: SchemaPolicy) -> dict[str, Any]:
    """Return ``data`` without the properties ``policy`` does not allow.

    Copies only the levels it changes; the caller's event is never modified.
    """
    return _redact(data, node, policy, top=True)


def _redact(data: Any, node: RedactionNode, policy: SchemaPolicy, top: bool) -> Any:
    out: dict[str, Any] | None = None
    allowed_cats = policy.allowed_categories
    allowed_props = policy.allowed_properties if top else frozenset()
    for name, cats in node.categories.items():
        if name in data and name not in allowed_props and not cats <= allowed_cats:
            if out is None:
                out = dict(data)
            del out[name]
    current = data if out is None else out
    for name, child in node.children.items():
        value = current.get(name)
        if name in allowed_props or not isinstance(value, Mapping):
            continue
        new = _redact(value, child, policy, top=False)
        if new is not value:
            if out is None:
                out = dict(data)
            out[name] = new
    current = data if out is None else out
    for name, child in node.array_children.items():
        value = current.get(name)
        if name in allowed_props or not isinstance(value, list):
            continue
        new_items = [
            _redact(item, child, policy, top=False) if isinstance(item, Mapping) else item
            for item in value
        ]
        if any(a is not b for a, b in zip(new_items, value)):
            if out is None:
                out = dict(data)
            out[name] = new_items
    return data if out is None else out
