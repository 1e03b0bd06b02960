"""What is recorded, in words the people around the events can read.

Events concern end users (it is their data, and they have a right to see what is
collected), operators, developers and analysts.  This module renders, from an
:class:`~telemetry_sinks.eventlog.EventLog`, one page that says:

- in plain language, what the service records and what it does not record;
- which personal-data categories the operator's policy removes (and which it keeps);
- every registered schema: title, description, versions, each property (nested
  ones too) with its description, type and categories, and whether it is stored;
- the schemas that are registered but not recorded;
- where recorded events go: each sink's name and its destination (file path,
  directory, URL host, topic, ...), never a secret.

:func:`describe_html` returns a self-contained HTML page (inline CSS, no scripts,
no external assets, every text escaped); :func:`describe_markdown` the same in
Markdown.  ``telemetry-sinks describe`` prints them and the collector serves the
HTML page at ``GET /``.
"""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .policy import SchemaPolicy, policy_for, schema_entries
from .schema import UNRESTRICTED, normalize_category

__all__ = [
    "Description",
    "PropertyInfo",
    "SchemaInfo",
    "SinkDescription",
    "collect",
    "consent_section_html",
    "describe",
    "describe_html",
    "describe_markdown",
    "sinks_from_config",
    "sinks_from_handlers",
]

#: Personal-data categories in plain words: (name, one item, what it means for a user).
CATEGORY_WORDS: dict[str, tuple[str, str, str]] = {
    UNRESTRICTED: ("no personal data", "not personal", "information that is not about you personally"),
    "user-identifier": ("user identifiers", "a user identifier", "your user name or account identifier"),
    "user-identifiable-information": (
        "identifying information",
        "identifying information",
        "information that could identify you, such as an IP address or a file name",
    ),
    "action-timestamp": ("action times", "an action time", "the exact time of something you did"),
    "content": ("content", "content", "what you write and compute, such as the code of a notebook cell and "
                "its outputs"),
}

#: Capsule fields every recorded event carries, in plain words.
CAPSULE_WORDS = "the time it was recorded, the kind of event (its schema) and the schema's version"

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
class SinkDescription:
    """A sink: its registry name, class and non-secret destination ``[(label, value), ...]``."""

    name: str
    kind: str
    destinations: list[tuple[str, str]] = field(default_factory=list)

    @property
    def destination_text(self) -> str:
        return "; ".join(f"{label} {value}" for label, value in self.destinations) or "-"


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


# --------------------------------------------------------------------------- sinks

#: Options that name where a sink writes, in the order shown: option -> (label, kind).
#: Kinds: "path" (made absolute), "url" (reduced to scheme://host:port), "hosts" (host:port
#: items), "text".  Only these options are ever shown, and never one tagged ``secret``.
DESTINATION_OPTIONS: dict[str, tuple[str, str]] = {
    "filename": ("file", "path"),
    "directory": ("directory", "path"),
    "stream": ("stream", "text"),
    "url": ("URL host", "url"),
    "endpoint_url": ("endpoint host", "url"),
    "api_endpoint": ("endpoint host", "url"),
    "bootstrap_servers": ("servers", "hosts"),
    "hosts": ("hosts", "hosts"),
    "topic": ("topic", "text"),
    "index": ("index", "text"),
    "log_group_name": ("log group", "text"),
    "log_stream_name": ("log stream", "text"),
    "region_name": ("region", "text"),
    "project": ("project", "text"),
    "log_name": ("log name", "text"),
}


def _url_host(value: str) -> str:
    """``scheme://host:port`` of a URL, without user, password, path or query."""
    value = value.strip()
    if "://" not in value:
        return _host_item(value)
    parts = urlsplit(value)
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError:
        host, port = parts.hostname or "", None
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _host_item(value: str) -> str:
    """``host:port`` of ``user:password@host:port/path`` (no credentials, no path)."""
    value = value.strip()
    if "://" in value:
        return _url_host(value)
    return value.rsplit("@", 1)[-1].split("/", 1)[0]


def _show(kind: str, value: Any) -> str | None:
    if value is None or value == "" or value == [] or isinstance(value, bool):
        return None
    if kind == "path":
        return os.path.abspath(os.path.expanduser(str(value)))
    if kind in ("url", "hosts"):
        items = value.split(",") if isinstance(value, str) else list(value) if isinstance(
            value, (list, tuple)) else [value]
        shown = [_url_host(str(i)) if kind == "url" else _host_item(str(i)) for i in items]
        return ", ".join(s for s in shown if s) or None
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if hasattr(value, "write"):  # a stream object, e.g. sys.stdout
        name = getattr(value, "name", None)
        return name.strip("<>") if isinstance(name, str) else type(value).__name__
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _destinations(cls: type, get: Callable[[str], Any]) -> list[tuple[str, str]]:
    traits = cls.class_traits() if hasattr(cls, "class_traits") else {}
    found: list[tuple[str, str]] = []
    for option, (label, kind) in DESTINATION_OPTIONS.items():
        trait = traits.get(option)
        if trait is None or trait.metadata.get("secret") or not trait.metadata.get("config"):
            continue
        try:
            shown = _show(kind, get(option))
        except Exception:
            shown = None
        if shown:
            found.append((label, shown))
    return found


def _stdlib_destination(handler: logging.Handler) -> list[tuple[str, str]]:
    filename = getattr(handler, "baseFilename", None)
    if isinstance(filename, str):
        return [("file", filename)]
    stream = getattr(handler, "stream", None)
    name = getattr(stream, "name", None)
    if isinstance(name, str) and name.startswith("<"):
        return [("stream", name.strip("<>"))]
    return []


def sinks_from_handlers(handlers: Iterable[logging.Handler]) -> list[SinkDescription]:
    """Describe handler instances (an EventLog's ``all_handlers``)."""
    from .sinks.base import Sink

    out = []
    for handler in handlers:
        cls = type(handler)
        name = getattr(handler, "sink_name", "") or handler.get_name() or cls.__name__
        if isinstance(handler, Sink):
            dest = _destinations(cls, lambda option, h=handler: getattr(h, option, None))
        else:
            dest = _stdlib_destination(handler)
        out.append(SinkDescription(name, cls.__name__, dest))
    return out


def _config_value(config: Any, cls: type, option: str) -> Any:
    """``option`` of ``cls`` as traitlets would set it from ``config`` (else the trait default)."""
    from traitlets.config import Configurable
    from traitlets.config.loader import LazyConfigValue

    value: Any = None
    found = False
    for klass in reversed(cls.__mro__):  # the most specific section wins, as in traitlets
        if not (isinstance(klass, type) and issubclass(klass, Configurable)):
            continue
        section = config.get(klass.__name__) if hasattr(config, "get") else None
        if isinstance(section, Mapping) and option in section:
            value, found = section[option], True
    if isinstance(value, LazyConfigValue):
        value = value.get_value([] if option in ("hosts", "bootstrap_servers") else None)
    if found:
        return value
    trait = cls.class_traits().get(option)
    default = trait.default() if trait is not None else None
    return None if type(default).__name__ == "Sentinel" else default


def sinks_from_config(config: Any) -> list[SinkDescription]:
    """Describe the sinks ``c.EventLog.sinks`` names, from the config alone.

    Nothing is built or opened: no file is created and no server is contacted.
    """
    from traitlets.config.loader import LazyConfigValue

    from .registry import sink_class

    section = config.get("EventLog", {}) if hasattr(config, "get") else {}
    names = section.get("sinks", []) if isinstance(section, Mapping) else []
    if isinstance(names, LazyConfigValue):
        names = names.get_value([])
    out = []
    for name in names or []:
        cls = sink_class(name)
        dest = _destinations(cls, lambda option, cls=cls: _config_value(config, cls, option))
        out.append(SinkDescription(name, cls.__name__, dest))
    return out


# --------------------------------------------------------------------------- schemas


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


# --------------------------------------------------------------------------- plain language


_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)\.\s+(?=[A-Z])")


def _phrase(prop: PropertyInfo) -> str:
    """A property as a phrase: the first sentence of its description, else its name."""
    text = _SENTENCE_END.split(prop.description.strip(), 1)[0].strip().rstrip(".").strip()
    if not text:
        return prop.path
    first_word = text.split(None, 1)[0]
    if first_word[0].isupper() and not any(c.isupper() for c in first_word[1:]):
        text = text[0].lower() + text[1:]
    return text


def _category_words(cat: str) -> str:
    return CATEGORY_WORDS.get(cat, (cat, cat, f"personal data of category {cat}"))[2]


def _category_one(cat: str) -> str:
    return CATEGORY_WORDS.get(cat, (cat, cat, cat))[1]


def _category_short(cat: str) -> str:
    return CATEGORY_WORDS.get(cat, (cat, cat, cat))[0]


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


@dataclass
class _Summary:
    """Sentences for end users; each item is a list of (text, is_code) runs."""

    lead: list[str]
    per_schema: list[str]  # one sentence per recorded schema
    removed_categories: list[tuple[str, list[str]]]  # category, ["schema label: path", ...]
    kept_categories: list[tuple[str, list[str]]]


def _summary(d: Description) -> _Summary:
    lead: list[str] = []
    recorded, not_recorded = d.recorded, d.not_recorded
    if not d.schemas:
        lead.append("No kinds of events are registered with this service, so it records nothing.")
    elif not recorded:
        lead.append("This service records nothing: none of its registered kinds of events is on the "
                    "operator's list of events to record.")
    elif not d.sinks:
        lead.append("This service stores nothing: no destination (sink) is configured, so even the "
                    "events it would record are discarded.")
    else:
        names = _join([s.label for s in recorded])
        lead.append(f"This service records {len(recorded)} kind{'s' if len(recorded) != 1 else ''} of "
                    f"events: {names}. Each recorded event also carries {CAPSULE_WORDS}.")
    if d.stores_anything:
        removed_words = []
        for s in recorded:
            for p in s.properties:
                for cat in p.categories:
                    words = _category_words(cat)
                    if not p.stored and not p.why.startswith("inside") and words not in removed_words:
                        removed_words.append(words)
        if removed_words:
            lead.append(f"Before anything is stored, it removes {'; '.join(removed_words)}.")
    if not_recorded:
        lead.append(f"It does not record {_join([s.label for s in not_recorded])}: "
                    f"{'these are' if len(not_recorded) > 1 else 'this is'} registered, but not on the "
                    "operator's list of events to record.")
    per_schema = []
    removed: dict[str, list[str]] = {}
    kept: dict[str, list[str]] = {}
    for s in recorded:
        top = [p for p in s.properties if not p.why.startswith("inside")]
        kept_phrases = [_phrase(p) for p in top if p.stored]
        removed_phrases = [_phrase(p) + (f" ({_category_one(p.categories[0])})" if p.categories else "")
                           for p in top if not p.stored]
        sentence = f"For {s.label}, this service records: {'; '.join(kept_phrases) or 'no properties'}."
        if removed_phrases:
            sentence += f" It does not record: {'; '.join(removed_phrases)}."
        per_schema.append(sentence)
        for p in s.properties:
            for cat in p.categories:
                target = kept if p.stored else removed
                if p.stored or not p.why.startswith("inside"):
                    target.setdefault(cat, []).append(f"{p.path} ({s.label})")
    return _Summary(lead, per_schema, sorted(removed.items()), sorted(kept.items()))


# --------------------------------------------------------------------------- HTML

_CSS = """
:root { color-scheme: light; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
  color: #1d232a; background: #f6f7f9; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 1.9em; margin: 0.2em 0 0.4em; }
h2 { font-size: 1.35em; margin-top: 1.8em; border-bottom: 2px solid #e3e7ec; padding-bottom: 0.2em; }
h3 { font-size: 1.15em; margin: 1.4em 0 0.3em; }
.summary { background: #eef6ff; border-left: 5px solid #2f6fb3; padding: 12px 18px; border-radius: 4px; }
.summary p { margin: 0.4em 0; }
.badge { display: inline-block; font-size: 0.8em; font-weight: 600; padding: 1px 8px; border-radius: 10px;
  vertical-align: middle; }
.yes { background: #dff3e4; color: #14532d; }
.no { background: #fde2e1; color: #7f1d1d; }
.muted { color: #5b6470; }
code { font: 0.9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f1f3f5;
  padding: 0 4px; border-radius: 3px; overflow-wrap: break-word; }
table { border-collapse: collapse; width: 100%; margin: 0.6em 0 1em; font-size: 0.95em; }
table.props { table-layout: fixed; }
table.props td { overflow-wrap: break-word; }
th, td { text-align: left; vertical-align: top; padding: 6px 10px; border-bottom: 1px solid #e3e7ec; }
th { background: #f1f3f5; font-weight: 600; }
tr.removed td { color: #6b7280; }
tr.removed td.stored { color: #7f1d1d; font-weight: 600; }
ul { margin: 0.3em 0 0.8em; padding-left: 1.4em; }
section.schema { border: 1px solid #e3e7ec; border-radius: 6px; padding: 4px 18px 8px; margin: 1em 0; }
footer { margin-top: 2.5em; font-size: 0.85em; color: #5b6470; }
section.consent { border: 2px solid #2f6fb3; border-radius: 6px; padding: 4px 18px 12px; margin: 1.2em 0; }
section.consent button { font: inherit; padding: 4px 14px; margin-right: 8px; }
"""


_DASH = '<span class="muted">-</span>'


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_schema(s: SchemaInfo) -> str:
    anchor = "schema-" + re.sub(r"[^A-Za-z0-9_-]+", "-", s.id).strip("-")
    badge = ('<span class="badge yes">recorded</span>' if s.recorded
             else '<span class="badge no">not recorded</span>')
    out = [f'<section class="schema" id="{_e(anchor)}">',
           f"<h3>{_e(s.label)} {badge}</h3>",
           f'<p class="muted">Schema <code>{_e(s.id)}</code>; versions '
           f"{_e(', '.join(map(str, s.versions)))} (properties of version {s.latest} shown).</p>"]
    if s.description:
        out.append(f"<p>{_e(s.description)}</p>")
    if s.recorded:
        cats = ", ".join(s.allowed_categories) or "none"
        policy = f"Personal-data categories the operator allows: {_e(cats)}."
        if s.allowed_properties:
            policy += f" Properties kept whole: {_e(', '.join(s.allowed_properties))}."
        out.append(f"<p>{policy}</p>")
        where = "; ".join(s.sinks) or "nowhere: no sink is configured"
        out.append(f"<p>These events go to: {_e(where)}.</p>")
    else:
        out.append("<p>The operator does not record this kind of event: none of these properties "
                   "is stored.</p>")
    if s.properties:
        out.append('<table class="props"><colgroup><col style="width:19%"><col style="width:33%">'
                   '<col style="width:16%"><col style="width:15%"><col style="width:17%"></colgroup>'
                   "<thead><tr><th>Property</th><th>Description</th><th>Type</th>"
                   "<th>Personal data category</th><th>Stored</th></tr></thead><tbody>")
        for p in s.properties:
            cats = ", ".join(p.categories) or "unrestricted"
            if p.stored:
                stored = "yes" + (f" ({p.why})" if p.why else "")
            elif s.recorded:
                stored = f"no, removed ({p.why})"
            else:
                stored = "no"
            pad = f' style="padding-left:{10 + 22 * p.depth}px"' if p.depth else ""
            out.append(f'<tr class="{"kept" if p.stored else "removed"}"><td{pad}><code>{_e(p.path)}'
                       f"</code></td><td>{_e(p.description) or _DASH}</td>"
                       f"<td>{_e(p.type)}</td><td>{_e(cats)}</td>"
                       f'<td class="stored">{_e(stored)}</td></tr>')
        out.append("</tbody></table>")
    if s.changes:
        out.append("<p><strong>Versions:</strong></p><ul>")
        out.extend(f"<li>{_e(c)}</li>" for c in s.changes)
        out.append("</ul>")
    out.append("</section>")
    return "\n".join(out)


def describe_html(
    eventlog: Any,
    sinks: list[SinkDescription] | None = None,
    title: str = DEFAULT_TITLE,
    consent_html: str = "",
    referrer_policy: str = "no-referrer",
) -> str:
    """A self-contained HTML page (inline CSS, no scripts or external assets) describing
    what ``eventlog`` records, what it removes and where events go.

    ``consent_html`` (from :func:`consent_section_html`) is placed after the summary;
    ``referrer_policy`` is the page's (``same-origin`` where its form must send its origin)."""
    d = collect(eventlog, sinks, title)
    summary = _summary(d)
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f'<meta name="referrer" content="{_e(referrer_policy)}">',
             f"<title>{_e(d.title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>", "<main>",
             f"<h1>{_e(d.title)}</h1>", '<div class="summary" id="summary">']
    parts.extend(f"<p>{_e(sentence)}</p>" for sentence in summary.lead)
    if d.stores_anything:
        parts.extend(f"<p>{_e(sentence)}</p>" for sentence in summary.per_schema)
    parts.append("</div>")
    if consent_html:
        parts.append(consent_html)

    parts.append('<h2 id="personal-data">Personal data</h2>')
    if summary.removed_categories:
        parts.append("<p>These categories of personal data are removed before anything is stored:</p><ul>")
        for cat, where in summary.removed_categories:
            parts.append(f"<li><strong>{_e(_category_short(cat))}</strong> "
                         f"(<code>{_e(cat)}</code>, {_e(_category_words(cat))}): removed from "
                         f"{_e(', '.join(where))}</li>")
        parts.append("</ul>")
    if summary.kept_categories:
        parts.append("<p>These categories of personal data are <strong>kept</strong>, because the "
                     "operator allows them:</p><ul>")
        for cat, where in summary.kept_categories:
            parts.append(f"<li><strong>{_e(_category_short(cat))}</strong> (<code>{_e(cat)}</code>, "
                         f"{_e(_category_words(cat))}): kept in {_e(', '.join(where))}</li>")
        parts.append("</ul>")
    if not summary.removed_categories and not summary.kept_categories:
        parts.append("<p>None of the recorded kinds of events declares a property as personal data.</p>")

    parts.append('<h2 id="destinations">Where the events go</h2>')
    if d.sinks:
        parts.append("<p>Every recorded event is written to each of these destinations:</p>")
        parts.append("<table><thead><tr><th>Sink</th><th>Kind</th><th>Destination</th></tr></thead><tbody>")
        for sink in d.sinks:
            dest = "<br>".join(f"{_e(label)}: <code>{_e(value)}</code>" for label, value in sink.destinations)
            parts.append(f"<tr><td>{_e(sink.name)}</td><td>{_e(sink.kind)}</td>"
                         f"<td>{dest or _DASH}</td></tr>")
        parts.append("</tbody></table>")
    else:
        parts.append("<p>No destination (sink) is configured: nothing is stored.</p>")

    parts.append('<h2 id="recorded">Kinds of events recorded</h2>')
    if d.recorded:
        parts.extend(_html_schema(s) for s in d.recorded)
    else:
        parts.append("<p>None.</p>")
    parts.append('<h2 id="not-recorded">Registered but not recorded</h2>')
    if d.not_recorded:
        parts.append("<p>Applications may send these kinds of events, but this service discards them: "
                     "they are not on the operator's list of events to record.</p>")
        parts.extend(_html_schema(s) for s in d.not_recorded)
    else:
        parts.append("<p>None: every registered kind of event is recorded.</p>")
    if d.allowed_not_registered:
        parts.append('<p class="muted">The operator&#x27;s list also names schemas that are not '
                     "registered (nothing can be recorded for them): "
                     + ", ".join(f"<code>{_e(sid)}</code>" for sid in d.allowed_not_registered) + ".</p>")
    parts.append('<h2 id="analysts">For analysts</h2>')
    parts.append("<p>Each recorded event is one JSON object with <code>__timestamp__</code> (ISO 8601, "
                 "UTC), <code>__schema__</code>, <code>__schema_version__</code> and "
                 "<code>__metadata_version__</code>, followed by the stored properties. Check "
                 "<code>__schema__</code> and <code>__schema_version__</code> before reading the other "
                 "fields: properties differ between versions.</p>")
    parts.append(f"<footer>Generated by telemetry-sinks {_e(_version())} from the operator's "
                 "configuration.</footer>")
    parts.extend(["</main>", "</body>", "</html>", ""])
    return "\n".join(parts)


# --------------------------------------------------------------------------- Markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#])")


def _m(text: Any) -> str:
    """Markdown text with the characters Markdown would interpret escaped, on one line."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _mc(text: Any) -> str:
    """Inline code (pipes escaped, as GFM tables need), or escaped text when ``text`` holds a backtick."""
    text = " ".join(str(text).split())
    return _m(text) if "`" in text else "`" + text.replace("|", "\\|") + "`"


def _md_schema(s: SchemaInfo) -> list[str]:
    out = [f"### {_m(s.label)} ({'recorded' if s.recorded else 'not recorded'})", "",
           f"Schema {_mc(s.id)}; versions {', '.join(map(str, s.versions))} "
           f"(properties of version {s.latest} shown).", ""]
    if s.description:
        out += [_m(s.description), ""]
    if s.recorded:
        allowed = ", ".join(s.allowed_categories) or "none"
        line = f"Personal-data categories the operator allows: {_m(allowed)}."
        if s.allowed_properties:
            line += f" Properties kept whole: {_m(', '.join(s.allowed_properties))}."
        where = "; ".join(s.sinks) or "nowhere: no sink is configured"
        out += [line, "", f"These events go to: {_m(where)}.", ""]
    else:
        out += ["The operator does not record this kind of event: none of these properties is stored.", ""]
    if s.properties:
        out += ["| Property | Description | Type | Personal data category | Stored |",
                "|---|---|---|---|---|"]
        for p in s.properties:
            cats = ", ".join(p.categories) or "unrestricted"
            if p.stored:
                stored = "yes" + (f" ({p.why})" if p.why else "")
            elif s.recorded:
                stored = f"**no**, removed ({p.why})"
            else:
                stored = "no"
            indent = "↳ " * p.depth
            out.append(f"| {indent}{_mc(p.path)} | {_m(p.description) or '-'} | {_m(p.type)} | "
                       f"{_m(cats)} | {stored if stored.startswith('**') else _m(stored)} |")
        out.append("")
    if s.changes:
        out += ["Versions:", ""] + [f"- {_m(c)}" for c in s.changes] + [""]
    return out


def describe_markdown(
    eventlog: Any, sinks: list[SinkDescription] | None = None, title: str = DEFAULT_TITLE
) -> str:
    """The same description as :func:`describe_html`, in Markdown."""
    d = collect(eventlog, sinks, title)
    summary = _summary(d)
    out = [f"# {_m(d.title)}", ""]
    for sentence in summary.lead:
        out += [_m(sentence), ""]
    if d.stores_anything:
        for sentence in summary.per_schema:
            out += [_m(sentence), ""]
    out += ["## Personal data", ""]
    if summary.removed_categories:
        out += ["These categories of personal data are removed before anything is stored:", ""]
        for cat, where in summary.removed_categories:
            out.append(f"- **{_m(_category_short(cat))}** ({_mc(cat)}, {_m(_category_words(cat))}): "
                       f"removed from {_m(', '.join(where))}")
        out.append("")
    if summary.kept_categories:
        out += ["These categories of personal data are **kept**, because the operator allows them:", ""]
        for cat, where in summary.kept_categories:
            out.append(f"- **{_m(_category_short(cat))}** ({_mc(cat)}, {_m(_category_words(cat))}): "
                       f"kept in {_m(', '.join(where))}")
        out.append("")
    if not summary.removed_categories and not summary.kept_categories:
        out += ["None of the recorded kinds of events declares a property as personal data.", ""]
    out += ["## Where the events go", ""]
    if d.sinks:
        out += ["Every recorded event is written to each of these destinations:", "",
                "| Sink | Kind | Destination |", "|---|---|---|"]
        for sink in d.sinks:
            dest = "; ".join(f"{_m(label)}: {_mc(value)}" for label, value in sink.destinations) or "-"
            out.append(f"| {_m(sink.name)} | {_m(sink.kind)} | {dest} |")
        out.append("")
    else:
        out += ["No destination (sink) is configured: nothing is stored.", ""]
    out += ["## Kinds of events recorded", ""]
    if d.recorded:
        for s in d.recorded:
            out += _md_schema(s)
    else:
        out += ["None.", ""]
    out += ["## Registered but not recorded", ""]
    if d.not_recorded:
        out += ["Applications may send these kinds of events, but this service discards them: they are "
                "not on the operator's list of events to record.", ""]
        for s in d.not_recorded:
            out += _md_schema(s)
    else:
        out += ["None: every registered kind of event is recorded.", ""]
    if d.allowed_not_registered:
        out += ["The operator's list also names schemas that are not registered (nothing can be recorded "
                "for them): " + ", ".join(_mc(s) for s in d.allowed_not_registered) + ".", ""]
    out += ["## For analysts", "",
            "Each recorded event is one JSON object with `__timestamp__` (ISO 8601, UTC), `__schema__`, "
            "`__schema_version__` and `__metadata_version__`, followed by the stored properties. Check "
            "`__schema__` and `__schema_version__` before reading the other fields: properties differ "
            "between versions.", "",
            f"_Generated by telemetry-sinks {_m(_version())} from the operator's configuration._", ""]
    return "\n".join(out)


def describe(
    eventlog: Any,
    format: str = "html",
    sinks: list[SinkDescription] | None = None,
    title: str = DEFAULT_TITLE,
) -> str:
    """:func:`describe_html` (``format="html"``) or :func:`describe_markdown` (``"md"``)."""
    if format in ("md", "markdown"):
        return describe_markdown(eventlog, sinks, title)
    if format == "html":
        return describe_html(eventlog, sinks, title)
    raise ValueError(f"unknown format {format!r}; use 'html' or 'md'")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("telemetry-sinks")
    except Exception:
        return "(unknown version)"


# --------------------------------------------------------------------------- consent (HTML)

_MODE_WORDS = {
    "required": "always recorded: the operator offers no way to turn it off",
    "opt-out": "recorded unless you turn it off",
    "opt-in": "recorded only if you allow it",
}
_STATE_WORDS = {
    "required": "recorded (required)",
    "granted": "recorded",
    "denied": "not recorded",
    "pending": "not recorded until you allow it",
}


def consent_section_html(
    default_mode: str,
    choice: str | None,
    gpc: bool,
    schemas: Mapping[str, Mapping[str, str]],
    titles: Mapping[str, str],
    action: str,
    hidden: Mapping[str, str] | None = None,
    kept: str = "in a cookie of this service, in this browser; turning recording off also stops pages "
    "that use this service from sending events",
    locked: bool = False,
) -> str:
    """The consent part of the page: the person's current choice, what it means for each kind of
    event (``schemas``: ``{schema_id: {"mode", "state"}}``), and a plain form (no JavaScript)
    that posts ``choice=granted|denied|clear`` (and the ``hidden`` fields) to ``action``.

    ``kept`` says where the choice is kept; ``locked``: the administrator made the choice, no form."""
    if locked:
        current = ("Your administrator allowed recording for everyone." if choice == "granted"
                   else "Your administrator turned recording off for everyone.")
    elif choice == "granted":
        current = "You allowed recording."
    elif choice == "denied":
        current = "You turned recording off."
    else:
        current = "You have not made a choice."
    if gpc and choice != "granted":
        current += (" Your browser sends Global Privacy Control, which counts as turning recording off "
                    "(except for what the operator requires) unless you allow it here.")
    out = ['<section class="consent" id="consent" aria-labelledby="consent-title">',
           '<h2 id="consent-title">Your choice</h2>', f"<p><strong>{_e(current)}</strong></p>"]
    if schemas:
        out.append("<ul>")
        for sid, entry in schemas.items():
            label = titles.get(sid) or sid
            mode = _MODE_WORDS.get(entry["mode"], entry["mode"])
            state = _STATE_WORDS.get(entry["state"], entry["state"])
            out.append(f"<li><strong>{_e(label)}</strong>: {_e(mode)}; "
                       f"now <strong>{_e(state)}</strong>.</li>")
        out.append("</ul>")
    choosable = any(entry["mode"] != "required" for entry in schemas.values())
    if locked:
        out.append("<p>Your administrator made this choice; it cannot be changed here.</p>")
    elif choosable:
        out.append(f'<form method="post" action="{_e(action)}">')
        out.extend(f'<input type="hidden" name="{_e(name)}" value="{_e(value)}">'
                   for name, value in (hidden or {}).items())
        out.append('<button type="submit" name="choice" value="granted">Allow recording</button>')
        out.append('<button type="submit" name="choice" value="denied">Turn recording off</button>')
        if choice is not None:
            out.append('<button type="submit" name="choice" value="clear">Forget my choice</button>')
        out.append("</form>")
        out.append(f'<p class="muted">Your choice is kept {_e(kept)}.</p>')
    else:
        out.append("<p>Every kind of event recorded here is required by the operator: there is no "
                   "choice to make.</p>")
    out.append(f'<p class="muted">Default for kinds of events without their own setting: '
               f"{_e(_MODE_WORDS.get(default_mode, default_mode))}.</p>")
    out.append("</section>")
    return "\n".join(out)
