"""Shared test setup: the location of the real third-party fixture data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.paths import FIXTURES

if not (FIXTURES / "SOURCES.md").is_file():
    raise RuntimeError(
        f"The fixture data is missing: expected {FIXTURES}/SOURCES.md. "
        "It is part of the repository; restore it with `git checkout -- tests/fixtures`."
    )


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The fixture directory (``tests/fixtures``)."""
    return FIXTURES


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With ``CI`` set (``.ci/run`` sets it), a skipped test fails: a backend, binary or system
    feature the suite needs is missing on the machine, and that must not pass silently."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() in ("", "0", "false") or not report.skipped:
        return
    if hasattr(report, "wasxfail"):  # an expected failure is not a skip
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under CI ({reason}): install or start what the test needs"
