"""Type checking is part of the suite: mypy over telemetry_sinks/ with the configuration in
pyproject.toml, the ``py.typed`` marker shipped, and every suppression with its reason."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "telemetry_sinks"


def test_mypy_finds_no_errors():
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--config-file", str(ROOT / "pyproject.toml")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_the_package_ships_its_type_hints():
    """PEP 561: ``py.typed`` in the package, and in the files the wheel includes."""
    assert (PACKAGE / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'telemetry_sinks = \[[^\]]*"py\.typed"', pyproject)


#: A type-ignore comment names its codes then ``# reason``; a no-qa comment its codes then ``- reason``.
_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<rest>.*)$")
_NOQA = re.compile(r"#\s*noqa(?P<rest>.*)$")


def test_every_suppression_names_its_code_and_reason():
    bare = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{number}"
            ignore = _IGNORE.search(line)
            if ignore and not re.match(r"\[[\w\-, ]+\]\s+#\s*\S", ignore.group("rest")):
                bare.append(where)
            noqa = _NOQA.search(line)
            if noqa and not re.match(r":\s*[A-Z]+\d+(,\s*[A-Z]+\d+)*\s+-\s+\S", noqa.group("rest")):
                bare.append(where)
    assert bare == []
