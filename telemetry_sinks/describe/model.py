"""What is recorded, as data: the schemas, the operator's policy and the sinks of an EventLog.

:func:`collect` reads an :class:`~telemetry_sinks.eventlog.EventLog` (its
registered schemas, ``allowed_schemas`` and handlers) into a :class:`Description`;
:mod:`.page` turns that into the page people read.  Nothing here writes prose
for readers beyond a property's type and why it is kept or removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import policy_words
from ..actions import DROP, Action
from ..policy import SchemaPolicy, compile_plan, policy_for, schema_entries
from ..schema import UNRESTRICTED, normalize_category
from .destinations import SinkDescription, sinks_from_handlers
from .words import category_words, phrase

DEFAULT_TITLE = "What this service records"


# --------------------------------------------------------------------------- model


@dataclass
class PropertyInfo:
    """One property of a schema (nested ones have a dotted ``path``; array items ``[]``)."""

    path: str
    name: str
    depth: int
    description: str
    type: str
    categories: tuple[str, ...]  # normalized; () means unrestricted
    stored: bool  # kept by the policy (False for every property of a schema that is not recorded)
    why: str = ""  # why it is removed, or kept despite its categories
    changed: str = ""  # what the policy does to it when it is stored changed ("replaced by a pseudonym")


@dataclass
class SchemaInfo:
    id: str
    title: str
    description: str
    versions: list[int]
    recorded: bool
    allowed_categories: list[str]
    allowed_properties: list[str]
    properties: list[PropertyInfo]
    changes: list[str] = field(default_factory=list)
    sinks: list[str] = field(default_factory=list)  # where its events go (sink names), if recorded
    treatments: list[str] = field(default_factory=list)  # sentences: what happens to personal data
    retention: list[str] = field(default_factory=list)  # sentences: what happens to stored events later

    @property
    def latest(self) -> int:
        return self.versions[-1]

    @property
    def label(self) -> str:
        return self.title or self.id


@dataclass
class Description:
    title: str
    schemas: list[SchemaInfo]
    sinks: list[SinkDescription]
    allowed_not_registered: list[str]

    @property
    def recorded(self) -> list[SchemaInfo]:
        return [s for s in self.schemas if s.recorded]

    @property
    def not_recorded(self) -> list[SchemaInfo]:
        return [s for s in self.schemas if not s.recorded]

    @property
    def stores_anything(self) -> bool:
        return bool(self.recorded and self.sinks)


def _type_text(node: Mapping[str, Any]) -> str:
    if "enum" in node and isinstance(node["enum"], list):
        values = [str(v) if v is not None else "null" for v in node["enum"]]
        shown = ", ".join(values[:12]) + (f", … ({len(values)} values)" if len(values) > 12 else "")
        return f"one of: {shown}"
    if "const" in node:
        return f"always {node['const']}"
    kind = node.get("type")
    if isinstance(kind, list):
        text = " or ".join(map(str, kind))
    elif isinstance(kind, str):
        text = kind
    elif isinstance(node.get("properties"), Mapping):
        text = "object"
    elif isinstance(node.get("$ref"), str):
        text = f"see {node['$ref']}"
    elif any(k in node for k in ("oneOf", "anyOf", "allOf")):
        text = "one of several shapes"
    else:
        text = "any"
    if text == "array" and isinstance(node.get("items"), Mapping):
        inner = _type_text(node["items"])
        text = f"list of {inner}" if not inner.startswith("one of") else f"list, each {inner}"
    fmt = node.get("format")
    if isinstance(fmt, str):
        text += f" ({fmt})"
    return text


def _categories(node: Mapping[str, Any]) -> tuple[str, ...]:
    cats = node.get("categories") or ()
    if not isinstance(cats, list):
        return ()
    found = []
    for c in cats:
        if isinstance(c, str):
            norm = normalize_category(c)
            if norm != UNRESTRICTED and norm not in found:
                found.append(norm)
    return tuple(found)


def _walk(
    node: Mapping[str, Any],
    policy: SchemaPolicy | None,
    prefix: str,
    depth: int,
    removed_parent: str | None,
    whole_parent: str | None,
    actions: Mapping[str, Action] | None = None,
) -> Iterator[PropertyInfo]:
    """Every property with what the policy does to it; ``actions`` are the compiled plan's."""
    props = node.get("properties")
    if not isinstance(props, Mapping):
        return
    actions = actions or {}
    explicit = dict(policy.property_actions) if policy is not None else {}
    for name, sub in props.items():
        if not isinstance(sub, Mapping):
            continue
        path = f"{prefix}{name}"
        cats = _categories(sub)
        why = changed = ""
        if policy is None:
            stored = False
        elif removed_parent is not None:
            stored, why = False, removed_parent
        elif path in actions and actions[path] is DROP:
            stored = False
            missing = [c for c in cats if c not in policy.allowed_categories]
            why = ("the operator removes it" if path in explicit or not missing
                   else "category " + ", ".join(missing) + " is not allowed")
        elif path in actions:
            stored, changed = True, policy_words.action_words(actions[path]).removeprefix("is ")
        elif whole_parent is not None:
            stored, why = True, f"inside {whole_parent}, which the policy keeps whole"
        elif depth == 0 and name in policy.allowed_properties:
            stored = True
            if cats and not set(cats) <= policy.allowed_categories:
                why = "kept whole: named in allowed_properties"
        else:
            stored = True
        description = sub.get("description") or sub.get("title") or ""
        yield PropertyInfo(path, str(name), depth, " ".join(str(description).split()),
                           _type_text(sub), cats, stored, why, changed)
        keep_whole = whole_parent or (path if depth == 0 and policy is not None
                                      and name in policy.allowed_properties else None)
        child_removed = removed_parent
        if child_removed is None and policy is not None and not stored:
            child_removed = f"inside {path}, which is removed"
        elif child_removed is None and changed:
            child_removed = f"inside {path}, which is {changed}"
        if isinstance(sub.get("properties"), Mapping):
            yield from _walk(sub, policy, path + ".", depth + 1, child_removed, keep_whole, actions)
        items = sub.get("items")
        if isinstance(items, Mapping) and isinstance(items.get("properties"), Mapping):
            yield from _walk(items, policy, path + "[].", depth + 1, child_removed, keep_whole, actions)


def _subject(properties: list[PropertyInfo]) -> Callable[[str], str]:
    """What a property holds, in words: its category's words, else its description's first phrase."""
    by_path = {p.path: p for p in properties}

    def subject(path: str) -> str:
        prop = by_path.get(path)
        if prop is None:
            return "the value"
        if prop.categories:
            return category_words(prop.categories[0])
        return phrase(prop) if prop.description else "the value"

    return subject


def _treatments(eventlog: Any, schema: Any, policy: SchemaPolicy,
                properties: list[PropertyInfo]) -> tuple[list[str], list[str]]:
    """Sentences on what the plan changes (replaced or coarsened, not removed) and on retention."""
    plan = eventlog.redaction_plan(schema.id, schema.version)
    subject = _subject(properties)
    out = policy_words.grouped([(path, a) for path, a in (plan.actions() if plan else ()) if a is not DROP],
                               subject)
    if plan is not None and plan.timestamp is not None:
        out.append(policy_words.timestamp_words(plan.timestamp))
    stages = []
    for stage in policy.retention:
        stage_plan = compile_plan(schema, stage.policy, eventlog.pseudonym_key)
        stages.append((stage, list(stage_plan.actions()) if stage_plan else []))
    return out, policy_words.retention_words(stages, subject)


def _paths(body: Mapping[str, Any]) -> list[str]:
    return [p.path for p in _walk(body, None, "", 0, None, None)]


def _changes(eventlog: Any, schema_id: str, versions: list[int]) -> list[str]:
    out = []
    for older, newer in zip(versions, versions[1:]):
        a = _paths(eventlog.schema(schema_id, older).body)
        b = _paths(eventlog.schema(schema_id, newer).body)
        added = [p for p in b if p not in a]
        dropped = [p for p in a if p not in b]
        parts = []
        if added:
            parts.append("adds " + ", ".join(added))
        if dropped:
            parts.append("drops " + ", ".join(dropped))
        out.append(f"version {newer} " + ("; ".join(parts) if parts else "keeps the same properties "
                                          "(allowed values or wording changed)"))
    return out


def collect(
    eventlog: Any, sinks: list[SinkDescription] | None = None, title: str = DEFAULT_TITLE
) -> Description:
    """The structured description of ``eventlog`` (what the renderers show).

    ``sinks`` defaults to the EventLog's own handlers (:func:`sinks_from_handlers`).
    """
    if sinks is None:
        sinks = sinks_from_handlers(eventlog.all_handlers)
    by_id: dict[str, list[int]] = {}
    for sid, version in eventlog.schemas:
        by_id.setdefault(sid, []).append(version)
    schemas = []
    for sid, versions in by_id.items():
        versions.sort()
        latest = eventlog.schema(sid, versions[-1])
        policy = policy_for(eventlog.allowed_schemas, sid)
        body = latest.body
        plan = eventlog.redaction_plan(sid, latest.version) if policy is not None else None
        properties = list(_walk(body, policy, "", 0, None, None, dict(plan.actions()) if plan else {}))
        treatments, retention = (_treatments(eventlog, latest, policy, properties) if policy is not None
                                 else ([], []))
        schemas.append(SchemaInfo(
            id=sid,
            title=" ".join(str(body.get("title") or "").split()),
            description=" ".join(str(body.get("description") or "").split()),
            versions=versions,
            recorded=policy is not None,
            allowed_categories=sorted(policy.allowed_categories - {UNRESTRICTED}) if policy else [],
            allowed_properties=sorted(policy.allowed_properties) if policy else [],
            properties=properties,
            changes=_changes(eventlog, sid, versions),
            sinks=[f"{sink.name} ({sink.destination_text})" if sink.destinations else sink.name
                   for sink in sinks] if policy is not None else [],
            treatments=treatments,
            retention=retention,
        ))
    schemas.sort(key=lambda s: (not s.recorded, s.label.lower(), s.id))
    listed = list(schema_entries(eventlog.allowed_schemas))
    missing = [sid for sid in listed if sid not in by_id]
    return Description(title, schemas, list(sinks), missing)


__all__ = [
    "DEFAULT_TITLE",
    "Description",
    "PropertyInfo",
    "SchemaInfo",
    "collect",
]
