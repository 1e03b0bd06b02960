"""Fixtures of the privacy tests: the real backends of ``tests/helpers/harness.py``."""

from __future__ import annotations

from helpers.harness import backend_factory, no_cloud_configuration  # noqa: F401 - fixtures
