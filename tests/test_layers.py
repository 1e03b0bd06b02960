"""The import arrows of ARCHITECTURE.md: every module imports only its own room and the rooms below.

Read from the source (imports inside functions count too), so that an upward import
cannot hide behind a lazy ``import`` statement.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "telemetry_sinks"

#: The rooms, bottom first; a module may import its own room and those listed before it.
ROOMS = [
    ("leaves", ["capsule", "errors", "masking", "fileio", "dedup"]),
    ("delivery", ["delivery"]),
    ("core", ["schema", "actions", "pseudonym", "policy", "policy_words", "retention", "config",
              "archive_index", "lake", "kafka_options"]),
    ("sinks", ["sinks"]),
    ("registry", ["registry"]),
    ("eventlog", ["eventlog", "instrumentation"]),
    ("describe", ["describe"]),
    ("entry points", ["server", "cli", "jupyter", "relay", "__init__", "__main__"]),
]
RANK = {top: rank for rank, (_, tops) in enumerate(ROOMS) for top in tops}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> int:
    parts = module.split(".")
    return RANK[parts[1] if len(parts) > 1 else "__init__"]


def imported(path: Path, module: str) -> set[str]:
    """The modules of the package that ``path`` imports (absolute names)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(n for n in names if n.startswith("telemetry_sinks."))
    return found


def test_every_module_is_in_a_room():
    for path in PACKAGE.rglob("*.py"):
        room(module_name(path))  # KeyError names a module ARCHITECTURE.md does not place


def test_no_module_imports_a_room_above_its_own():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        for target in imported(path, module):
            top = target.split(".")[1]
            if top in RANK and RANK[top] > room(module):
                upward.append(f"{module} -> {target}")
    assert upward == []
