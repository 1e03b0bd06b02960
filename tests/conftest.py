"""Shared test setup: the location of the real third-party fixture data."""

from __future__ import annotations

from pathlib import Path

import pytest

#: ``<repo>/../shared/fixtures``: real schemas and events copied from other projects
#: (see its SOURCES.md).  The suite fails, rather than skips, when it is missing.
FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures"

if not (FIXTURES / "SOURCES.md").is_file():
    raise RuntimeError(
        f"The shared fixture data is missing: expected {FIXTURES.resolve()}/SOURCES.md. "
        "The tests need the real third-party schemas and events stored there."
    )


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The shared fixture directory (``<repo>/../shared/fixtures``)."""
    return FIXTURES.resolve()
