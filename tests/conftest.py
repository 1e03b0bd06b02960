"""Shared test setup: the location of the real third-party fixture data."""

from __future__ import annotations

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
