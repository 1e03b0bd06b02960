"""The page as one self-contained HTML document: inline CSS, no scripts, no external assets.

Maps the blocks of :mod:`.page` to HTML and escapes every text; it adds no words.
"""

from __future__ import annotations

import html
from typing import Any

from .page import (
    Badge,
    Block,
    Bullets,
    Code,
    Dash,
    Footer,
    Form,
    Heading,
    Page,
    Para,
    Run,
    Section,
    Sep,
    Strong,
    Table,
)

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

#: Column widths of the property tables (Property, Description, Type, Category, Stored).
_PROPERTY_WIDTHS = (19, 33, 16, 15, 17)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _run(run: Run) -> str:
    if isinstance(run, str):
        return _e(run)
    if isinstance(run, Code):
        return f"<code>{_e(run.text)}</code>"
    if isinstance(run, Strong):
        return f"<strong>{_e(run.text)}</strong>"
    if isinstance(run, Badge):
        return f'<span class="badge {"yes" if run.positive else "no"}">{_e(run.text)}</span>'
    if isinstance(run, Dash):
        return '<span class="muted">-</span>'
    if isinstance(run, Sep):
        return "<br>"
    raise TypeError(f"not a run: {run!r}")


def _runs(runs: list[Run]) -> str:
    return "".join(map(_run, runs))


def _table(table: Table) -> list[str]:
    properties = table.kind == "properties"
    out = ['<table class="props">' if properties else "<table>"]
    if properties:
        out.append("<colgroup>" + "".join(f'<col style="width:{w}%">' for w in _PROPERTY_WIDTHS)
                   + "</colgroup>")
    out.append("<thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in table.columns) + "</tr></thead><tbody>")
    for row in table.rows:
        cells = []
        for index, cell in enumerate(row.cells):
            attrs = ""
            if properties and index == 0 and row.depth:
                attrs = f' style="padding-left:{10 + 22 * row.depth}px"'
            elif properties and index == len(row.cells) - 1:
                attrs = ' class="stored"'
            cells.append(f"<td{attrs}>{_runs(cell)}</td>")
        opening = f'<tr class="{"removed" if row.removed else "kept"}">' if properties else "<tr>"
        out.append(opening + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return out


def _block(block: Block) -> list[str]:
    if isinstance(block, Heading):
        anchor = f' id="{_e(block.anchor)}"' if block.anchor else ""
        return [f"<h{block.level}{anchor}>{_runs(block.runs)}</h{block.level}>"]
    if isinstance(block, Para):
        opening = '<p class="muted">' if block.muted else "<p>"
        return [f"{opening}{_runs(block.runs)}</p>"]
    if isinstance(block, Bullets):
        return ["<ul>", *(f"<li>{_runs(item)}</li>" for item in block.items), "</ul>"]
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Form):
        buttons = [f'<button type="submit" name="{_e(block.name)}" value="{_e(value)}">{_e(label)}</button>'
                   for value, label in block.buttons]
        hidden = [f'<input type="hidden" name="{_e(name)}" value="{_e(value)}">'
                  for name, value in block.hidden]
        return [f'<form method="post" action="{_e(block.action)}">', *hidden, *buttons, "</form>"]
    if isinstance(block, Section):
        tag = "div" if block.kind == "summary" else "section"
        inner = [line for child in block.blocks for line in _block(child)]
        labelled = f' aria-labelledby="{_e(block.labelled_by)}"' if block.labelled_by else ""
        return [f'<{tag} class="{_e(block.kind)}" id="{_e(block.anchor)}"{labelled}>', *inner, f"</{tag}>"]
    if isinstance(block, Footer):
        return [f"<footer>{_runs(block.runs)}</footer>"]
    raise TypeError(f"not a block: {block!r}")


def render_section(section: Section) -> str:
    """One section of a page as an HTML fragment (the consent section, rendered per request)."""
    return "\n".join(_block(section))


def render_html(page: Page, after_summary: str = "", referrer_policy: str = "no-referrer") -> str:
    """``page`` as a complete HTML document; ``after_summary`` (HTML) follows the summary box;
    ``referrer_policy`` is the page's (``same-origin`` where its form must send its origin)."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f'<meta name="referrer" content="{_e(referrer_policy)}">',
             f"<title>{_e(page.title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>", "<main>"]
    for block in page.blocks:
        parts += _block(block)
        if after_summary and isinstance(block, Section) and block.kind == "summary":
            parts.append(after_summary)
    parts += ["</main>", "</body>", "</html>", ""]
    return "\n".join(parts)


__all__ = ["render_html", "render_section"]
