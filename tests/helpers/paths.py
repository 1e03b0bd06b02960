"""Where the third-party fixture data is, and the files the tests use most."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
#: ``tests/fixtures``: real schemas and events copied unchanged from other projects
#: (each file's source, commit and licence are in its SOURCES.md).
FIXTURES = TESTS / "fixtures"
#: BinderHub's launch schema, every version it had (one directory per version and commit).
BINDER_LAUNCH_HISTORY = FIXTURES / "binderhub" / "launch-history"
#: jupyter_server's kernel_actions schema (``version: "1"``).
KERNEL_ACTIONS = FIXTURES / "jupyter_server/head-9a4d6ee/jupyter_server/event_schemas/kernel_actions/v1.yaml"
#: jupyter_telemetry's documented example schema.
TELEMETRY_EXAMPLE = FIXTURES / "jupyter_telemetry" / "docs-example-2975fca" / "example-event.yaml"

__all__ = ["BINDER_LAUNCH_HISTORY", "FIXTURES", "KERNEL_ACTIONS", "TELEMETRY_EXAMPLE", "TESTS"]
