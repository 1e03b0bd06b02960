"""The operator's policy: which schemas are recorded and which categories are kept.

``allowed_schemas`` is either a list of schema ids (each allowed with the
``unrestricted`` category only) or a dict
``{schema_id: {"allowed_categories": [...], "allowed_properties": [...], "consent": MODE}}``.
The list may also hold jupyter_telemetry's tuples
``(schema_id, allowed_categories, allowed_properties)`` (lists of three from a
JSON or YAML config), which mean what the dict's entries mean.
A property is kept when all of its categories are allowed, or when it is named
in ``allowed_properties`` (then it is kept whole).  Nested objects and arrays of
objects are filtered by the categories declared at their own level.

``consent`` is what the people the events are about may say about a schema:
``"required"`` (they are informed and cannot opt out, e.g. audit logging),
``"opt-out"`` (recorded unless they say no, or their browser sends Global Privacy
Control) or ``"opt-in"`` (recorded only once they say yes).  A schema without the
key takes ``EventLog.default_consent``.  Consent is enforced where the person is
known: the collector, for events that browsers send.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .schema import UNRESTRICTED, RedactionNode, normalize_category

POLICY_KEYS = ("allowed_categories", "allowed_properties", "consent")
CONSENT_MODES = ("required", "opt-out", "opt-in")


@dataclass(frozen=True)
class SchemaPolicy:
    """What one schema may record: categories and properties allowed."""

    allowed_categories: frozenset[str] = frozenset({UNRESTRICTED})
    allowed_properties: frozenset[str] = frozenset()
    consent: str | None = None  # None: the EventLog's default_consent


def check_allowed_schemas(value: Any) -> str | None:
    """Return a message describing what is wrong with ``value``, or None if it is valid."""
    if isinstance(value, (list, tuple)):
        seen: dict[str, Any] = {}
        for item in value:
            if isinstance(item, (list, tuple)):
                problem = _check_triple(item)
                if problem:
                    if len(value) == 3 and isinstance(value[0], str):
                        problem += (" A single (schema_id, allowed_categories, allowed_properties) "
                                    "entry goes inside the list: allowed_schemas = [(...)].")  # fmt: skip
                    return problem
                schema_id, entry = item[0], _triple_entry(item)
            elif isinstance(item, str):
                schema_id, entry = item, None
            else:
                return (
                    "allowed_schemas list items must be schema ids (strings) or "
                    f"(schema_id, allowed_categories, allowed_properties) tuples, not {item!r}."
                )
            meaning = policy_for({schema_id: entry}, schema_id)
            if seen.setdefault(schema_id, meaning) != meaning:
                return f"allowed_schemas lists {schema_id!r} twice with different policies; keep one."
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
                        "'allowed_categories', 'allowed_properties' and 'consent'."
                    )
                if key == "consent":
                    problem = check_consent_mode(items, f"allowed_schemas[{schema_id!r}]['consent']")
                    if problem:
                        return problem
                    continue
                if not isinstance(items, (list, tuple)) or not all(
                    isinstance(i, str) for i in items
                ):
                    return f"allowed_schemas[{schema_id!r}][{key!r}] must be a list of strings."
        return None
    return (
        "allowed_schemas must be a list of schema ids (or (schema_id, allowed_categories, "
        "allowed_properties) tuples) or a dict "
        "{schema_id: {'allowed_categories': [...], 'allowed_properties': [...]}}, "
        f"not {type(value).__name__}."
    )


def check_consent_mode(value: Any, where: str) -> str | None:
    """A message if ``value`` is not one of :data:`CONSENT_MODES`, else None."""
    if value in CONSENT_MODES:
        return None
    return f"{where} must be one of {', '.join(repr(m) for m in CONSENT_MODES)}, not {value!r}."


def _check_triple(item: list | tuple) -> str | None:
    if len(item) != 3:
        return (
            f"allowed_schemas item {item!r} must be (schema_id, allowed_categories, "
            f"allowed_properties): 3 items, not {len(item)}."
        )
    schema_id = item[0]
    if not isinstance(schema_id, str):
        return (
            f"allowed_schemas item {item!r}: the first item must be the schema id (a string), "
            f"not {schema_id!r}."
        )
    for key, items in zip(POLICY_KEYS, item[1:]):
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            return f"allowed_schemas item for {schema_id!r}: {key} must be a list of strings, not {items!r}."
    return None


def _triple_entry(item: list | tuple) -> dict[str, list[str]]:
    return {"allowed_categories": list(item[1]), "allowed_properties": list(item[2])}


def schema_entries(allowed_schemas: Any) -> Mapping[str, Mapping[str, Any] | None]:
    """``allowed_schemas`` in its dict form, ``{schema_id: entry or None}``, whichever form it has."""
    if isinstance(allowed_schemas, Mapping):
        return allowed_schemas
    return {
        item[0] if isinstance(item, (list, tuple)) else item: (
            _triple_entry(item) if isinstance(item, (list, tuple)) else None
        )
        for item in allowed_schemas
    }


def policy_for(allowed_schemas: Any, schema_id: str) -> SchemaPolicy | None:
    """The policy for ``schema_id``, or None when the schema is not allowed at all."""
    entries = schema_entries(allowed_schemas)
    if schema_id not in entries:
        return None
    entry = entries[schema_id] or {}
    cats = {normalize_category(c) for c in entry.get("allowed_categories", ())}
    return SchemaPolicy(
        frozenset(cats | {UNRESTRICTED}),
        frozenset(entry.get("allowed_properties", ())),
        entry.get("consent"),
    )


@dataclass(frozen=True)
class RedactionPlan:
    """What one policy removes from one schema, compiled once: the emit path only applies it.

    ``drop`` are the properties removed at this level; ``children`` and
    ``array_children`` hold plans only for the nested objects that lose something.
    """

    drop: tuple[str, ...] = ()
    children: tuple[tuple[str, RedactionPlan], ...] = ()
    array_children: tuple[tuple[str, RedactionPlan], ...] = ()


def compile_plan(
    node: RedactionNode | None, policy: SchemaPolicy, top: bool = True
) -> RedactionPlan | None:
    """The plan removing what ``policy`` does not allow from ``node``'s level and below.

    None when nothing would be removed (the common fast path: no copy at all).
    Properties named in ``allowed_properties`` (top level only) are kept whole.
    """
    if node is None:
        return None
    allowed_cats = policy.allowed_categories
    kept_whole = policy.allowed_properties if top else frozenset()
    drop = tuple(
        name
        for name, cats in node.categories.items()
        if name not in kept_whole and not cats <= allowed_cats
    )
    dropped = set(drop)

    def nested(children: dict[str, RedactionNode]) -> tuple[tuple[str, RedactionPlan], ...]:
        plans = []
        for name, child in children.items():
            if name in kept_whole or name in dropped:
                continue
            plan = compile_plan(child, policy, top=False)
            if plan is not None:
                plans.append((name, plan))
        return tuple(plans)

    plan = RedactionPlan(drop, nested(node.children), nested(node.array_children))
    if not (plan.drop or plan.children or plan.array_children):
        return None
    return plan


def redact(data: Mapping[str, Any], node: RedactionNode, policy: SchemaPolicy) -> Mapping[str, Any]:
    """Return ``data`` without the properties ``policy`` does not allow.

    Copies only the levels it changes; the caller's event is never modified.
    """
    plan = compile_plan(node, policy)
    return data if plan is None else apply_plan(data, plan)


def apply_plan(data: Mapping[str, Any], plan: RedactionPlan) -> Mapping[str, Any]:
    """``data`` with ``plan`` applied; copies only the levels it changes."""
    out: dict[str, Any] | None = None
    for name in plan.drop:
        if name in data:
            if out is None:
                out = dict(data)
            del out[name]
    for name, child in plan.children:
        value = data.get(name)
        if type(value) is dict or (value is not None and isinstance(value, Mapping)):
            new = apply_plan(value, child)
            if new is not value:
                if out is None:
                    out = dict(data)
                out[name] = new
    for name, child in plan.array_children:
        value = data.get(name)
        if not isinstance(value, list):
            continue
        new_items = [
            apply_plan(item, child)
            if type(item) is dict or isinstance(item, Mapping)
            else item
            for item in value
        ]
        if any(a is not b for a, b in zip(new_items, value)):
            if out is None:
                out = dict(data)
            out[name] = new_items
    return data if out is None else out
