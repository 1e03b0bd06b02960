"""The page in Markdown (GitHub-flavoured tables).

Maps the blocks of :mod:`.page` to Markdown and escapes every text so that a
schema's title or description cannot add markup or break a table; it adds no words.
"""

from __future__ import annotations

import re
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

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#])")


def _m(text: Any) -> str:
    """Text with the characters Markdown would interpret escaped, on one line."""
    return _MD_SPECIAL.sub(r"\\\1", re.sub(r"\s+", " ", str(text)))


def _mc(text: Any) -> str:
    """Inline code (pipes escaped, as GFM tables need), or escaped text when ``text`` holds a backtick."""
    text = " ".join(str(text).split())
    return _m(text) if "`" in text else "`" + text.replace("|", "\\|") + "`"


def _run(run: Run) -> str:
    if isinstance(run, str):
        return _m(run)
    if isinstance(run, Code):
        return _mc(run.text)
    if isinstance(run, Strong):
        return f"**{_m(run.text)}**"
    if isinstance(run, Badge):
        return f"({_m(run.text)})"
    if isinstance(run, Dash):
        return "-"
    if isinstance(run, Sep):
        return "; "
    raise TypeError(f"not a run: {run!r}")


def _runs(runs: list[Run]) -> str:
    return "".join(map(_run, runs)).strip()


def _table(table: Table) -> list[str]:
    out = ["| " + " | ".join(_m(c) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    for row in table.rows:
        cells = [_runs(cell) for cell in row.cells]
        cells[0] = "↳ " * row.depth + cells[0]
        out.append("| " + " | ".join(cells) + " |")
    return [*out, ""]


def _block(block: Block) -> list[str]:
    if isinstance(block, Heading):
        return ["#" * block.level + " " + _runs(block.runs), ""]
    if isinstance(block, Para):
        return [_runs(block.runs), ""]
    if isinstance(block, Bullets):
        return [*(f"- {_runs(item)}" for item in block.items), ""]
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Form):
        return []  # a form needs a browser: the HTML page has it
    if isinstance(block, Section):
        return [line for child in block.blocks for line in _block(child)]
    if isinstance(block, Footer):
        return [f"_{_runs(block.runs)}_", ""]
    raise TypeError(f"not a block: {block!r}")


def render_markdown(page: Page) -> str:
    """``page`` as a Markdown document."""
    return "\n".join(line for block in page.blocks for line in _block(block))


__all__ = ["render_markdown"]
