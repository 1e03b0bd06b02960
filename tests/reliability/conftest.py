"""Fixtures of the reliability tests: real backends for every available network sink."""

from __future__ import annotations

from helpers.harness import backend_factory, no_cloud_configuration  # noqa: F401 - fixtures
