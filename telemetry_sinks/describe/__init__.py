"""What is recorded, in words the people around the events can read.

Events concern end users (it is their data, and they have a right to see what is
collected), operators, developers and analysts.  From an
:class:`~telemetry_sinks.eventlog.EventLog` this package renders one page that says:

- in plain language, what the service records and what it does not record;
- which personal-data categories the operator's policy removes (and which it keeps);
- every registered schema: title, description, versions, each property (nested
  ones too) with its description, type and categories, and whether it is stored;
- the schemas that are registered but not recorded;
- where recorded events go: each sink's name and its destination (file path,
  directory, URL host, topic, ...), never a secret.

The rooms: :mod:`.model` collects the facts (:func:`collect`), :mod:`.destinations`
reads each sink's destination options (declared on the sink's traits), :mod:`.page`
writes the page once as blocks of text, and two emitters render it:
:func:`describe_html` a self-contained HTML page (inline CSS, no scripts, no
external assets, every text escaped) and :func:`describe_markdown` Markdown.
``telemetry-sinks describe`` prints them and the collector serves the HTML page
at ``GET /``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .consent import consent_section
from .destinations import SinkDescription, sinks_from_config, sinks_from_handlers
from .html import render_html, render_section
from .markdown import render_markdown
from .model import DEFAULT_TITLE, Description, PropertyInfo, SchemaInfo, collect
from .page import Page, build_page


def page(eventlog: Any, sinks: list[SinkDescription] | None = None, title: str = DEFAULT_TITLE) -> Page:
    """The page describing ``eventlog`` (``sinks``: its own handlers unless given)."""
    return build_page(collect(eventlog, sinks, title), _version())


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
    return render_html(page(eventlog, sinks, title), after_summary=consent_html,
                       referrer_policy=referrer_policy)


def consent_section_html(
    default_mode: str,
    choice: str | None,
    gpc: bool,
    schemas: Mapping[str, Mapping[str, str]],
    titles: Mapping[str, str],
    action: str,
    **options: Any,
) -> str:
    """The consent section (:func:`.consent.consent_section`, with its ``hidden``, ``kept`` and
    ``locked`` options) as an HTML fragment."""
    return render_section(consent_section(default_mode, choice, gpc, schemas, titles, action, **options))


def describe_markdown(
    eventlog: Any, sinks: list[SinkDescription] | None = None, title: str = DEFAULT_TITLE
) -> str:
    """The same description as :func:`describe_html`, in Markdown."""
    return render_markdown(page(eventlog, sinks, title))


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


__all__ = [
    "Description",
    "Page",
    "PropertyInfo",
    "SchemaInfo",
    "SinkDescription",
    "collect",
    "consent_section_html",
    "describe",
    "describe_html",
    "describe_markdown",
    "page",
    "sinks_from_config",
    "sinks_from_handlers",
]
