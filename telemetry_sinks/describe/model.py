"""What is recorded, as data: the schemas, the operator's policy and the sinks of an EventLog.

:func:`collect` reads an :class:`~telemetry_sinks.eventlog.EventLog` (its
registered schemas, ``allowed_schemas`` and handlers) into a :class:`Description`;
:mod:`.page` turns that into the page people read.  Nothing here writes prose
for readers beyond a property's type and why it is kept or removed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..policy import SchemaPolicy, policy_for, schema_entries
from ..schema import UNRESTRICTED, normalize_category
from .destinations import SinkDescription, sinks_from_handlers

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
) -> Iterator[PropertyInfo]:
    props = node.get("properties")
    if not isinstance(props, Mapping):
        return
    for name, sub in props.items():
        if not isinstance(sub, Mapping):
            continue
        path = f"{prefix}{name}"
        cats = _categories(sub)
        why = ""
        if policy is None:
            stored = False
        elif removed_parent is not None:
            stored, why = False, f"inside {removed_parent}, which is removed"
        elif whole_parent is not None:
            stored, why = True, f"inside {whole_parent}, which the policy keeps whole"
        elif depth == 0 and name in policy.allowed_properties:
            stored = True
            if cats and not set(cats) <= policy.allowed_categories:
                why = "kept whole: named in allowed_properties"
        elif set(cats) <= policy.allowed_categories:
            stored = True
        else:
            missing = [c for c in cats if c not in policy.allowed_categories]
            stored, why = False, "category " + ", ".join(missing) + " is not allowed"
        description = sub.get("description") or sub.get("title") or ""
        yield PropertyInfo(path, str(name), depth, " ".join(str(description).split()),
                           _type_text(sub), cats, stored, why)
        keep_whole = whole_parent or (path if depth == 0 and policy is not None
                                      and name in policy.allowed_properties else None)
        child_removed = removed_parent or (path if policy is not None and not stored else None)
        if isinstance(sub.get("properties"), Mapping):
            yield from _walk(sub, policy, path + ".", depth + 1, child_removed, keep_whole)
        items = sub.get("items")
        if isinstance(items, Mapping) and isinstance(items.get("properties"), Mapping):
            yield from _walk(items, policy, path + "[].", depth + 1, child_removed, keep_whole)


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
        schemas.append(SchemaInfo(
            id=sid,
            title=" ".join(str(body.get("title") or "").split()),
            description=" ".join(str(body.get("description") or "").split()),
            versions=versions,
            recorded=policy is not None,
            allowed_categories=sorted(policy.allowed_categories - {UNRESTRICTED}) if policy else [],
            allowed_properties=sorted(policy.allowed_properties) if policy else [],
            properties=list(_walk(body, policy, "", 0, None, None)),
            changes=_changes(eventlog, sid, versions),
            sinks=[f"{sink.name} ({sink.destination_text})" if sink.destinations else sink.name
                   for sink in sinks] if policy is not None else [],
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
