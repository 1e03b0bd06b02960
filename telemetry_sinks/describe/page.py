"""The page people read, as a tree of blocks: every sentence of it is written here, once.

:func:`build_page` turns a :class:`~.model.Description` into a :class:`Page` of
blocks (headings, paragraphs, lists, tables, sections) whose text is a list of
runs: plain text, :class:`Code`, :class:`Strong`, a :class:`Badge`, a
:class:`Dash` for an empty cell and :class:`Sep` between items of a cell.  The
emitters (:mod:`.html`, :mod:`.markdown`) only map blocks and runs to their
syntax and escape the text; neither writes a word of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import policy_words
from .model import Description, PropertyInfo, SchemaInfo
from .words import CAPSULE_WORDS, category_one, category_short, category_words, join, phrase

# --------------------------------------------------------------------------- runs and blocks


@dataclass(frozen=True)
class Code:
    """A literal: a schema id, a property path, a file name."""

    text: str


@dataclass(frozen=True)
class Strong:
    text: str


@dataclass(frozen=True)
class Badge:
    """A short status next to a heading ("recorded"); ``positive`` picks its colour."""

    text: str
    positive: bool


@dataclass(frozen=True)
class Dash:
    """An empty table cell."""


@dataclass(frozen=True)
class Sep:
    """Between two items of one table cell."""


Run = str | Code | Strong | Badge | Dash | Sep
Runs = list[Run]


@dataclass
class Heading:
    level: int
    runs: Runs
    anchor: str | None = None


@dataclass
class Para:
    runs: Runs
    muted: bool = False


@dataclass
class Bullets:
    items: list[Runs]


@dataclass
class Row:
    cells: list[Runs]
    #: A property the policy removes (shown greyed out).
    removed: bool = False
    #: Nesting depth of a property (its first cell is indented).
    depth: int = 0


@dataclass
class Table:
    columns: list[str]
    rows: list[Row]
    #: "properties" (the schema tables: fixed column widths, a "stored" column) or "plain".
    kind: str = "plain"


@dataclass
class Form:
    """Buttons that post ``name=<value>`` to ``action`` (HTML only: Markdown has no forms)."""

    action: str
    name: str
    buttons: list[tuple[str, str]]  # (value, label)
    hidden: list[tuple[str, str]] = field(default_factory=list)  # (name, value): e.g. an XSRF token


@dataclass
class Section:
    """A group of blocks: the summary box, one schema, the consent choice."""

    kind: str  # "summary", "schema" or "consent"
    anchor: str
    blocks: list[Block]
    #: The anchor of the heading that names the section, if it has one.
    labelled_by: str | None = None


@dataclass
class Footer:
    runs: Runs


Block = Heading | Para | Bullets | Table | Form | Section | Footer


@dataclass
class Page:
    title: str
    blocks: list[Block] = field(default_factory=list)


def _listed(codes: list[str]) -> Runs:
    """``a``, ``b`` as code runs separated by commas."""
    runs: Runs = []
    for index, text in enumerate(codes):
        if index:
            runs.append(", ")
        runs.append(Code(text))
    return runs


# --------------------------------------------------------------------------- the summary


def _lead(d: Description) -> list[str]:
    """The first sentences: what is recorded, what is removed, what is not recorded."""
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
        names = join([s.label for s in recorded])
        lead.append(f"This service records {len(recorded)} kind{'s' if len(recorded) != 1 else ''} of "
                    f"events: {names}. Each recorded event also carries {CAPSULE_WORDS}.")
    if d.stores_anything:
        removed_words = []
        for s in recorded:
            for p in s.properties:
                for cat in p.categories:
                    words = category_words(cat)
                    if not p.stored and not p.why.startswith("inside") and words not in removed_words:
                        removed_words.append(words)
        if removed_words:
            lead.append(f"Before anything is stored, it removes {'; '.join(removed_words)}.")
        if any(s.treatments for s in recorded):
            lead.append("Some personal data is kept only in another form, replaced by a pseudonym or made "
                        "less precise, as said for each kind of event below.")
            if any("pseudonym" in t for s in recorded for t in s.treatments + s.retention):
                lead.append(policy_words.PSEUDONYM_WORDS)
        for sink in d.sinks:
            if sink.kept_for:
                lead.append(f"Events stored by {sink.name} are {sink.kept_for}.")
    if not_recorded:
        lead.append(f"It does not record {join([s.label for s in not_recorded])}: "
                    f"{'these are' if len(not_recorded) > 1 else 'this is'} registered, but not on the "
                    "operator's list of events to record.")
    return lead


def _per_schema(s: SchemaInfo) -> str:
    """One sentence saying what is, and is not, recorded of ``s``'s events."""
    top = [p for p in s.properties if not p.why.startswith("inside")]
    kept = [phrase(p) for p in top if p.stored]
    removed = [phrase(p) + (f" ({category_one(p.categories[0])})" if p.categories else "")
               for p in top if not p.stored]
    sentence = f"For {s.label}, this service records: {'; '.join(kept) or 'no properties'}."
    if removed:
        sentence += f" It does not record: {'; '.join(removed)}."
    return " ".join([sentence, *s.treatments, *s.retention])


def _categories(d: Description, kind: str) -> list[tuple[str, list[str]]]:
    """Personal-data categories kept, removed or changed (``kind``), each with where: "path
    (schema)", and for a changed one how ("path (schema): replaced by a pseudonym")."""
    found: dict[str, list[str]] = {}
    for s in d.recorded:
        for p in s.properties:
            if kind == "changed":
                if not p.changed:
                    continue
                where = f"{p.path} ({s.label}): {p.changed}"
            elif p.changed or p.stored != (kind == "kept"):
                continue
            elif kind == "removed" and p.why.startswith("inside"):
                continue  # said of the property it is inside
            else:
                where = f"{p.path} ({s.label})"
            for cat in p.categories:
                found.setdefault(cat, []).append(where)
    return sorted(found.items())


# --------------------------------------------------------------------------- sections


def _personal_data(d: Description) -> list[Block]:
    blocks: list[Block] = [Heading(2, ["Personal data"], "personal-data")]
    removed, changed, kept = (_categories(d, kind) for kind in ("removed", "changed", "kept"))
    removed_intro: Runs = ["These categories of personal data are removed before anything is stored:"]
    changed_intro: Runs = ["These categories of personal data are kept only in another form:"]
    kept_intro: Runs = ["These categories of personal data are ", Strong("kept"),
                        ", because the operator allows them:"]
    for found, intro, verb, sep in ((removed, removed_intro, "removed from ", ", "),
                                    (changed, changed_intro, "", "; "),
                                    (kept, kept_intro, "kept in ", ", ")):
        if found:
            blocks.append(Para(intro))
            blocks.append(Bullets([
                [Strong(category_short(cat)), " (", Code(cat), f", {category_words(cat)}): "
                 f"{verb}{sep.join(where)}"]
                for cat, where in found
            ]))
    if not (removed or changed or kept):
        blocks.append(Para(["None of the recorded kinds of events declares a property as personal data."]))
    return blocks


def _destinations(d: Description) -> list[Block]:
    blocks: list[Block] = [Heading(2, ["Where the events go"], "destinations")]
    if not d.sinks:
        return [*blocks, Para(["No destination (sink) is configured: nothing is stored."])]
    rows = []
    for sink in d.sinks:
        where: Runs = []
        for label, value in sink.destinations:
            if where:
                where.append(Sep())
            where += [f"{label}: ", Code(value)]
        if sink.kept_for:
            where += [Sep(), f"events {sink.kept_for}"] if where else [f"events {sink.kept_for}"]
        rows.append(Row([[sink.name], [sink.kind], where or [Dash()]]))
    return [*blocks, Para(["Every recorded event is written to each of these destinations:"]),
            Table(["Sink", "Kind", "Destination"], rows)]


def _stored_text(s: SchemaInfo, p: PropertyInfo) -> Runs:
    if p.changed:
        return [f"yes, {p.changed}"]
    if p.stored:
        return ["yes" + (f" ({p.why})" if p.why else "")]
    if s.recorded:
        return [Strong("no"), f", removed ({p.why})"]
    return ["no"]


def _schema(s: SchemaInfo) -> Section:
    anchor = "schema-" + re.sub(r"[^A-Za-z0-9_-]+", "-", s.id).strip("-")
    blocks: list[Block] = [
        Heading(3, [s.label, " ", Badge("recorded" if s.recorded else "not recorded", s.recorded)]),
        Para(["Schema ", Code(s.id), f"; versions {', '.join(map(str, s.versions))} "
              f"(properties of version {s.latest} shown)."], muted=True),
    ]
    if s.description:
        blocks.append(Para([s.description]))
    if s.recorded:
        policy = f"Personal-data categories the operator allows: {', '.join(s.allowed_categories) or 'none'}."
        if s.allowed_properties:
            policy += f" Properties kept whole: {', '.join(s.allowed_properties)}."
        where = "; ".join(s.sinks) or "nowhere: no sink is configured"
        blocks += [Para([policy]), Para([f"These events go to: {where}."])]
        if s.treatments or s.retention:
            blocks += [Para(["What happens to personal data:"]),
                       Bullets([[sentence] for sentence in [*s.treatments, *s.retention]])]
    else:
        blocks.append(Para(["The operator does not record this kind of event: none of these properties "
                            "is stored."]))
    if s.properties:
        rows = [Row([[Code(p.path)], [p.description] if p.description else [Dash()], [p.type],
                     [", ".join(p.categories) or "unrestricted"], _stored_text(s, p)],
                    removed=not p.stored, depth=p.depth)
                for p in s.properties]
        blocks.append(Table(["Property", "Description", "Type", "Personal data category", "Stored"], rows,
                            kind="properties"))
    if s.changes:
        blocks += [Para([Strong("Versions:")]), Bullets([[change] for change in s.changes])]
    return Section("schema", anchor, blocks)


def build_page(d: Description, version: str) -> Page:
    """The whole page for ``d``; ``version`` is telemetry-sinks' (named in the footer)."""
    summary: list[Block] = [Para([sentence]) for sentence in _lead(d)]
    if d.stores_anything:
        summary += [Para([_per_schema(s)]) for s in d.recorded]
    page = Page(d.title, [Heading(1, [d.title]), Section("summary", "summary", summary)])
    page.blocks += _personal_data(d)
    page.blocks += _destinations(d)
    page.blocks.append(Heading(2, ["Kinds of events recorded"], "recorded"))
    page.blocks += [_schema(s) for s in d.recorded] or [Para(["None."])]
    page.blocks.append(Heading(2, ["Registered but not recorded"], "not-recorded"))
    if d.not_recorded:
        page.blocks.append(Para(["Applications may send these kinds of events, but this service discards "
                                 "them: they are not on the operator's list of events to record."]))
        page.blocks += [_schema(s) for s in d.not_recorded]
    else:
        page.blocks.append(Para(["None: every registered kind of event is recorded."]))
    if d.allowed_not_registered:
        page.blocks.append(Para(["The operator's list also names schemas that are not registered (nothing "
                                 "can be recorded for them): ", *_listed(d.allowed_not_registered), "."],
                                muted=True))
    page.blocks += [
        Heading(2, ["For analysts"], "analysts"),
        Para(["Each recorded event is one JSON object with ", Code("__timestamp__"), " (ISO 8601, UTC), ",
              Code("__schema__"), ", ", Code("__schema_version__"), " and ", Code("__metadata_version__"),
              ", followed by the stored properties. Check ", Code("__schema__"), " and ",
              Code("__schema_version__"), " before reading the other fields: properties differ between "
              "versions."]),
        Footer([f"Generated by telemetry-sinks {version} from the operator's configuration."]),
    ]
    return page


__all__ = [
    "Badge",
    "Block",
    "Bullets",
    "Code",
    "Dash",
    "Footer",
    "Form",
    "Heading",
    "Page",
    "Para",
    "Row",
    "Run",
    "Section",
    "Sep",
    "Strong",
    "Table",
    "build_page",
]
