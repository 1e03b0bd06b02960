"""The operator's policy: which schemas are recorded, and what happens to each personal field.

``allowed_schemas`` is either a list of schema ids (each allowed with the
``unrestricted`` category only) or a dict ``{schema_id: entry}``.  The list may
also hold jupyter_telemetry's tuples ``(schema_id, allowed_categories,
allowed_properties)`` (lists of three from a JSON or YAML config), which mean what
the dict's entries mean.  A dict entry holds any of::

    "allowed_categories": ["user-identifier"]          # these categories are kept
    "allowed_properties": ["client"]                   # these top-level properties are kept whole
    "category_actions": {"user-identifier": "pseudonymize",
                         "network-address": {"generalize": "ip_network"}}
    "property_actions": {"client.ip": {"generalize": "ip_network", "ipv4_prefix": 16},
                         "files[].size": {"generalize": "bucket", "size": 1000}}
    "round_timestamp": "minute"                        # the capsule's __timestamp__, rounded down
    "retention": [{"after": "90d", "category_actions": {"user-identifier": "drop"}}]
    "consent": "opt-out"                               # "required", "opt-out" or "opt-in"

The actions (:mod:`.actions`) are ``drop``, ``keep``, ``pseudonymize`` and
``generalize``.  What a property gets:

1. its entry in ``property_actions`` (a path: ``name``, ``parent.name``,
   ``array[].name`` for the objects in an array), whatever its categories;
2. else ``keep`` inside a property kept whole (``allowed_properties`` or a
   ``keep`` property action);
3. else, from each of its categories: ``keep`` if the category is allowed, its
   ``category_actions`` entry if it has one, ``drop`` otherwise; of these the one
   that keeps least (drop, pseudonymize, generalize, keep).  A generalization
   that cannot read the type the schema declares for the property (``bucket`` on
   a string) drops it instead;
4. properties without categories are kept.

Nested objects and arrays of objects are handled at every level the schema
declares.  Category labels may be bare (``user-identifier``) or URIs
(``category.jupyter.org/user-identifier``).  ``retention`` stages say what
happens to stored events once they are older than ``after`` (see
:mod:`.retention`): categories a stage does not name are left as they are.

``consent`` is what the people the events are about may say about a schema:
``"required"`` (they are informed and cannot opt out, e.g. audit logging),
``"opt-out"`` (recorded unless they say no, or their browser sends Global Privacy
Control) or ``"opt-in"`` (recorded only once they say yes).  A schema without the
key takes ``EventLog.default_consent``.  Consent is enforced where the person is
known: the collector, for events that browsers send.

All of this is compiled once per schema version and policy into a
:class:`RedactionPlan`; the emit path only applies it (:func:`apply_plan`),
copying only the levels it changes, so the caller's event is never modified.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .actions import (
    DROP,
    KEEP,
    Action,
    ActionError,
    Pseudonymize,
    RoundTime,
    Transform,
    parse_action,
    strongest,
)
from .errors import PolicyError
from .pseudonym import PseudonymKey
from .schema import UNRESTRICTED, RedactionNode, normalize_category

POLICY_KEYS = ("allowed_categories", "allowed_properties", "consent")
CONSENT_MODES = ("required", "opt-out", "opt-in")
ACTION_KEYS = ("category_actions", "property_actions", "round_timestamp", "retention")
STAGE_KEYS = ("after", "category_actions", "property_actions")

_log = logging.getLogger("telemetry_sinks.policy")


# --------------------------------------------------------------------------- ages

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
_AGE_UNITS = {"s": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60, "minutes": 60,
              "h": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400,
              "w": 7 * 86400, "week": 7 * 86400, "weeks": 7 * 86400, "y": 365 * 86400,
              "year": 365 * 86400, "years": 365 * 86400}


def parse_age(value: Any, where: str = "age") -> float:
    """Seconds in an age: ``"90d"``, ``"12 hours"``, ``"1y"`` (365 days), or a number of days."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value) * 86400
    match = _AGE.match(value.lower()) if isinstance(value, str) else None
    if match is None or (match.group(2) or "d") not in _AGE_UNITS:
        raise PolicyError(
            f"{where}: {value!r} is not an age; write a number and a unit, e.g. \"90d\", \"12h\", "
            "\"30m\", \"2w\" or \"1y\" (a bare number is days)."
        )
    return float(match.group(1)) * _AGE_UNITS[match.group(2) or "d"]


# --------------------------------------------------------------------------- the policy


@dataclass(frozen=True)
class RetentionStage:
    """What happens to stored events of one schema once they are older than ``after`` seconds."""

    after: float
    label: str  # as the operator wrote it, e.g. "90d"
    policy: SchemaPolicy


@dataclass(frozen=True)
class SchemaPolicy:
    """What one schema may record: categories and properties allowed, and the actions on the rest.

    ``default`` is the action of a category that is neither allowed nor named:
    ``drop`` on the emit path, ``keep`` in a retention stage.
    """

    allowed_categories: frozenset[str] = frozenset({UNRESTRICTED})
    allowed_properties: frozenset[str] = frozenset()
    category_actions: tuple[tuple[str, Action], ...] = ()
    property_actions: tuple[tuple[str, Action], ...] = ()
    round_timestamp: RoundTime | None = None
    retention: tuple[RetentionStage, ...] = ()
    default: Action = DROP
    consent: str | None = None  # None: the EventLog's default_consent

    def category_action(self, category: str) -> Action:
        if category in self.allowed_categories:
            return KEEP
        for name, action in self.category_actions:
            if name == category:
                return action
        return self.default

    def uses_pseudonyms(self) -> bool:
        """Whether this policy (or one of its retention stages) pseudonymizes anything."""
        own = any(isinstance(a, Pseudonymize) for _, a in (*self.category_actions, *self.property_actions))
        return own or any(stage.policy.uses_pseudonyms() for stage in self.retention)


_PATH_SEGMENT = re.compile(r"^[^.\[\]]+(\[\])?$")


def split_path(path: str) -> list[tuple[str, bool]]:
    """``"files[].path"`` -> ``[("files", True), ("path", False)]`` (True: into the array's objects)."""
    parts = path.split(".")
    if not path or not all(_PATH_SEGMENT.match(p) for p in parts) or parts[-1].endswith("[]"):
        raise ValueError(path)
    return [(p[:-2], True) if p.endswith("[]") else (p, False) for p in parts]


def _parse_actions(items: Any, where: str, paths: bool) -> tuple[tuple[str, Action], ...]:
    if not isinstance(items, Mapping):
        kind = "{property path: action}" if paths else "{category: action}"
        raise PolicyError(f"{where} must be a dict {kind}, not {type(items).__name__}.")
    out = []
    for name, spec in items.items():
        if not isinstance(name, str) or not name:
            raise PolicyError(f"{where} keys must be non-empty strings, not {name!r}.")
        if paths:
            try:
                split_path(name)
            except ValueError:
                raise PolicyError(
                    f"{where}: {name!r} is not a property path; write 'name', 'parent.name' or "
                    "'array[].name' (the objects in an array). The capsule's own time is set with "
                    "'round_timestamp'."
                ) from None
            if name.startswith("__"):
                raise PolicyError(f"{where}: {name!r} is a capsule field, not a property; the capsule's "
                                  "time is rounded with 'round_timestamp'.")
        key = name if paths else normalize_category(name)
        out.append((key, parse_action(spec, f"{where}[{name!r}]")))
    return tuple(out)


def _string_list(entry: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
    items = entry.get(key, ())
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise PolicyError(f"{where}[{key!r}] must be a list of strings.")
    return frozenset(items)


def parse_entry(schema_id: str, entry: Mapping[str, Any] | None) -> SchemaPolicy:
    """The :class:`SchemaPolicy` of one dict entry of ``allowed_schemas``; :class:`PolicyError` if bad."""
    where = f"allowed_schemas[{schema_id!r}]"
    if entry is None:
        return SchemaPolicy()
    if not isinstance(entry, Mapping):
        raise PolicyError(
            f"{where} must be a dict with 'allowed_categories' and/or 'allowed_properties', not {entry!r}."
        )
    for key in entry:
        if key not in POLICY_KEYS and key not in ACTION_KEYS:
            raise PolicyError(
                f"{where} has unknown key {key!r}; the keys are "
                + ", ".join(repr(k) for k in (*POLICY_KEYS, *ACTION_KEYS)) + "."
            )
    cats = {normalize_category(c) for c in _string_list(entry, "allowed_categories", where)}
    props = _string_list(entry, "allowed_properties", where)
    category_actions = _parse_actions(entry.get("category_actions", {}), f"{where}['category_actions']",
                                      paths=False)
    property_actions = _parse_actions(entry.get("property_actions", {}), f"{where}['property_actions']",
                                      paths=True)
    for name, action in category_actions:
        if name in cats and action is not KEEP:
            raise PolicyError(
                f"{where}: category {name!r} is both in 'allowed_categories' (kept) and in "
                f"'category_actions' ({action.name}); remove it from one of them."
            )
    for name, action in property_actions:
        if name in props and action is not KEEP:
            raise PolicyError(
                f"{where}: property {name!r} is both in 'allowed_properties' (kept whole) and in "
                f"'property_actions' ({action.name}); remove it from one of them."
            )
    round_timestamp = None
    if entry.get("round_timestamp") is not None:
        options = {"unit": entry["round_timestamp"]}
        RoundTime.check(options, f"{where}['round_timestamp']")
        round_timestamp = RoundTime(**options)
    stages = _parse_retention(entry.get("retention", ()), f"{where}['retention']")
    consent = entry.get("consent")
    if "consent" in entry:
        problem = check_consent_mode(consent, f"{where}['consent']")
        if problem:
            raise PolicyError(problem)
    return SchemaPolicy(frozenset(cats | {UNRESTRICTED}), props, category_actions, property_actions,
                        round_timestamp, stages, consent=consent)


def check_consent_mode(value: Any, where: str) -> str | None:
    """A message if ``value`` is not one of :data:`CONSENT_MODES`, else None."""
    if value in CONSENT_MODES:
        return None
    return f"{where} must be one of {', '.join(repr(m) for m in CONSENT_MODES)}, not {value!r}."


def _parse_retention(items: Any, where: str) -> tuple[RetentionStage, ...]:
    if not isinstance(items, (list, tuple)):
        raise PolicyError(f"{where} must be a list of stages such as "
                          '{"after": "90d", "category_actions": {"user-identifier": "drop"}}.')
    stages = []
    for number, stage in enumerate(items):
        at = f"{where}[{number}]"
        if not isinstance(stage, Mapping) or "after" not in stage:
            raise PolicyError(f"{at} must be a dict with 'after' (an age such as \"90d\") and "
                              "'category_actions' and/or 'property_actions'.")
        unknown = sorted(set(stage) - set(STAGE_KEYS))
        if unknown:
            raise PolicyError(f"{at} has unknown key {unknown[0]!r}; a stage has "
                              + ", ".join(repr(k) for k in STAGE_KEYS) + ".")
        after = parse_age(stage["after"], f"{at}['after']")
        policy = SchemaPolicy(
            allowed_categories=frozenset(),
            category_actions=_parse_actions(stage.get("category_actions", {}), f"{at}['category_actions']",
                                            paths=False),
            property_actions=_parse_actions(stage.get("property_actions", {}), f"{at}['property_actions']",
                                            paths=True),
            default=KEEP,
        )
        stages.append(RetentionStage(after, str(stage["after"]), policy))
    stages.sort(key=lambda s: s.after)
    return tuple(stages)


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
            try:
                parse_entry(schema_id, entry)
            except PolicyError as exc:
                return str(exc)
        return None
    return (
        "allowed_schemas must be a list of schema ids (or (schema_id, allowed_categories, "
        "allowed_properties) tuples) or a dict "
        "{schema_id: {'allowed_categories': [...], 'allowed_properties': [...]}}, "
        f"not {type(value).__name__}."
    )


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
    return parse_entry(schema_id, entries[schema_id])


def uses_pseudonyms(allowed_schemas: Any) -> bool:
    """Whether any entry of ``allowed_schemas`` pseudonymizes (so a key is needed)."""
    entries = schema_entries(allowed_schemas)
    return any(parse_entry(sid, entry).uses_pseudonyms() for sid, entry in entries.items())


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class RedactionPlan:
    """What one policy does to one schema, compiled once: the emit path only applies it.

    ``drop`` are the properties removed at this level, ``transform`` the ones
    replaced (pseudonymized or generalized); ``children`` and ``array_children``
    hold plans only for the nested objects that change.  ``timestamp`` (top level
    only) rounds the capsule's ``__timestamp__``.
    """

    drop: tuple[str, ...] = ()
    transform: tuple[tuple[str, Transform], ...] = ()
    children: tuple[tuple[str, RedactionPlan], ...] = ()
    array_children: tuple[tuple[str, RedactionPlan], ...] = ()
    timestamp: RoundTime | None = None

    def actions(self, prefix: str = "") -> Iterator[tuple[str, Action]]:
        """``(path, action)`` of every property the plan changes; paths as in ``property_actions``."""
        for name in self.drop:
            yield prefix + name, DROP
        for name, action in self.transform:
            yield prefix + name, action
        for name, child in self.children:
            yield from child.actions(f"{prefix}{name}.")
        for name, child in self.array_children:
            yield from child.actions(f"{prefix}{name}[].")

    def as_json(self) -> dict[str, Any]:
        """The plan as JSON data, shaped like the schema: ``{"properties": {name: ...}}``.

        A property that changes maps to its action (:meth:`Action.as_json`); a nested
        object to ``{"properties": ...}``; an array of objects to ``{"items":
        {"properties": ...}}``.  Keys never appear here: a pseudonymize action names
        its key id.
        """
        props: dict[str, Any] = {}
        for name in self.drop:
            props[name] = DROP.as_json()
        for name, action in self.transform:
            props[name] = action.as_json()
        for name, child in self.children:
            props.setdefault(name, {}).update(child.as_json())
        for name, child in self.array_children:
            props.setdefault(name, {})["items"] = child.as_json()
        return {"properties": props}


def _types(sub: Mapping[str, Any]) -> frozenset[str]:
    """The JSON types a property's schema declares (its items' types for an array); empty if none."""
    declared = sub.get("type")
    types = frozenset([declared] if isinstance(declared, str) else
                      [t for t in declared if isinstance(t, str)] if isinstance(declared, list) else [])
    items = sub.get("items")
    if "array" in types and isinstance(items, Mapping):
        return _types(items)
    return types


def _categories(sub: Mapping[str, Any]) -> frozenset[str]:
    cats = sub.get("categories") or ()
    return frozenset(normalize_category(c) for c in cats if isinstance(c, str)) - {UNRESTRICTED}


@dataclass
class _Explicit:
    """The ``property_actions`` of one level, as a tree."""

    action: Action | None = None
    children: dict[str, _Explicit] = field(default_factory=dict)
    items: dict[str, _Explicit] = field(default_factory=dict)


def _explicit_tree(property_actions: tuple[tuple[str, Action], ...]) -> dict[str, _Explicit]:
    root: dict[str, _Explicit] = {}
    for path, action in property_actions:
        level = root
        parts = split_path(path)
        for index, (name, into_items) in enumerate(parts):
            node = level.setdefault(name, _Explicit())
            if index == len(parts) - 1:
                node.action = action
            else:
                level = node.items if into_items else node.children
    return root


class _Compiler:
    def __init__(self, policy: SchemaPolicy, key: PseudonymKey | None, label: str) -> None:
        self.policy = policy
        self.key = key
        self.label = label

    def bind(self, action: Action) -> Action:
        return action.with_key(self.key) if isinstance(action, Pseudonymize) else action

    def level(
        self,
        node: Mapping[str, Any] | None,
        explicit: dict[str, _Explicit],
        whole: bool,
        top: bool,
        prefix: str,
    ) -> RedactionPlan | None:
        props = node.get("properties") if isinstance(node, Mapping) else None
        declared = isinstance(props, Mapping)  # the schema says what this level holds
        props = props if isinstance(props, Mapping) else {}
        drop: list[str] = []
        transform: list[tuple[str, Transform]] = []
        children: list[tuple[str, RedactionPlan]] = []
        array_children: list[tuple[str, RedactionPlan]] = []
        names = list(props) + [n for n in explicit if n not in props]
        for name in names:
            sub = props.get(name)
            sub = sub if isinstance(sub, Mapping) else {}
            mine = explicit.get(name)
            path = prefix + name
            if declared and name not in props:
                _log.warning("%s: property_actions names %r, which the schema does not declare; the "
                             "action applies to events that have it", self.label, path)
            action: Action | None = mine.action if mine is not None else None
            keeps_whole = whole or (action is KEEP) or (top and name in self.policy.allowed_properties)
            if action is None and not whole and not keeps_whole:
                cats = _categories(sub)
                if cats:
                    action = strongest([self.policy.category_action(c) for c in sorted(cats)])
                    if not action.fits(_types(sub)):
                        _log.warning("%s: %r (categories %s) is declared as %s, which %s cannot read: it "
                                     "is dropped; name it in property_actions to choose", self.label, path,
                                     ", ".join(sorted(cats)), "/".join(sorted(_types(sub))),
                                     action.as_json().get("generalize", action.name))
                        action = DROP
            if action is DROP:
                drop.append(name)
                continue
            if isinstance(action, Transform):
                bound = self.bind(action)
                assert isinstance(bound, Transform)
                transform.append((name, bound))
                continue
            child = self.level(sub, mine.children if mine else {}, keeps_whole, False, path + ".")
            if child is not None:
                children.append((name, child))
            items = sub.get("items")
            if (isinstance(items, Mapping) and isinstance(items.get("properties"), Mapping)) or (
                mine is not None and mine.items
            ):
                child = self.level(items if isinstance(items, Mapping) else {}, mine.items if mine else {},
                                   keeps_whole, False, path + "[].")
                if child is not None:
                    array_children.append((name, child))
        if not (drop or transform or children or array_children):
            return None
        return RedactionPlan(tuple(drop), tuple(transform), tuple(children), tuple(array_children))


def _node_body(node: RedactionNode) -> dict[str, Any]:
    """A schema-shaped dict of a :class:`RedactionNode` (categories and nesting, no types)."""
    props: dict[str, Any] = {}
    for name, cats in node.categories.items():
        props[name] = {"categories": sorted(cats)}
    for name, child in node.children.items():
        props.setdefault(name, {}).update(_node_body(child))
    for name, child in node.array_children.items():
        props.setdefault(name, {})["items"] = _node_body(child)
    return {"properties": props}


def compile_plan(
    schema: Any,
    policy: SchemaPolicy,
    key: PseudonymKey | None = None,
    label: str = "",
) -> RedactionPlan | None:
    """The plan doing what ``policy`` says to events of ``schema`` (a Schema, a schema dict, or None).

    None when nothing would change (the common fast path: no copy at all).  With
    ``schema`` None (a schema that is not registered) only ``property_actions``
    apply.  ``key`` is the pseudonym key, needed when the policy pseudonymizes
    (:class:`PolicyError` otherwise).
    """
    body = getattr(schema, "body", schema)
    if isinstance(body, RedactionNode):  # a schema's redaction tree (its categories only) works too
        body = _node_body(body)
    if not label:
        sid = body.get("$id") if isinstance(body, Mapping) else None
        label = f"schema {sid!r} version {body.get('version')}" if sid else "policy"
    compiler = _Compiler(policy, key, label)
    plan = compiler.level(body, _explicit_tree(policy.property_actions), False, True, "")
    if policy.round_timestamp is not None:
        plan = RedactionPlan(*(plan.drop, plan.transform, plan.children, plan.array_children)
                             if plan else ((), (), (), ()), timestamp=policy.round_timestamp)
    return plan


def redact(data: Mapping[str, Any], schema: Any, policy: SchemaPolicy,
           key: PseudonymKey | None = None) -> Mapping[str, Any]:
    """Return ``data`` as ``policy`` records it; the caller's event is never modified."""
    plan = compile_plan(schema, policy, key)
    return data if plan is None else apply_plan(data, plan)


def apply_plan(data: Mapping[str, Any], plan: RedactionPlan) -> Mapping[str, Any]:
    """``data`` with ``plan`` applied; copies only the levels it changes.

    A value an action cannot read raises :class:`ActionError` with its path.
    """
    out: dict[str, Any] | None = None
    for name in plan.drop:
        if name in data:
            if out is None:
                out = dict(data)
            del out[name]
    for name, action in plan.transform:
        value = data.get(name)
        if value is not None:
            try:
                new = action.apply(value)
            except ActionError as exc:
                raise ActionError(exc.reason, (name, *exc.path)) from None
            if new is value or (type(new) is type(value) and new == value):
                continue  # already as the policy wants it (stored data processed again)
            if out is None:
                out = dict(data)
            out[name] = new
    for name, child in plan.children:
        value = data.get(name)
        if type(value) is dict or (value is not None and isinstance(value, Mapping)):
            try:
                new = apply_plan(value, child)
            except ActionError as exc:
                raise ActionError(exc.reason, (name, *exc.path)) from None
            if new is not value:
                if out is None:
                    out = dict(data)
                out[name] = new
    for name, child in plan.array_children:
        value = data.get(name)
        if not isinstance(value, list):
            continue
        new_items = []
        for index, item in enumerate(value):
            if type(item) is dict or isinstance(item, Mapping):
                try:
                    item = apply_plan(item, child)
                except ActionError as exc:
                    raise ActionError(exc.reason, (name, index, *exc.path)) from None
            new_items.append(item)
        if any(a is not b for a, b in zip(new_items, value)):
            if out is None:
                out = dict(data)
            out[name] = new_items
    return data if out is None else out


def touched_values(data: Any, plan: RedactionPlan) -> list[str]:
    """The texts of every value ``plan`` drops or transforms in ``data`` (to keep them out of errors)."""
    from .schema import _leaf_texts

    found: list[str] = []
    if not isinstance(data, Mapping):
        return found
    for name in (*plan.drop, *(n for n, _ in plan.transform)):
        if name in data:
            _leaf_texts(data[name], found)
    for name, child in plan.children:
        found.extend(touched_values(data.get(name), child))
    for name, child in plan.array_children:
        items = data.get(name)
        if isinstance(items, list):
            for item in items:
                found.extend(touched_values(item, child))
    return found
