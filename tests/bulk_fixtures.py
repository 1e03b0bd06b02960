"""Fixtures shared by the Elasticsearch and OpenSearch sinks' tests (one bulk mechanism, one set)."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def prefix():
    """A unique index prefix for one test."""
    return f"ts-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def close_sinks_after_test(monkeypatch):
    """Close every sink a test made, also when the test fails.

    A sink left open with undelivered events would hold up a later
    ``logging.config.dictConfig()``, which flushes every handler of the process.
    """
    from telemetry_sinks.sinks._bulk import BulkIndexSink

    made = []
    original = BulkIndexSink.__init__

    def recording_init(self, **options):
        made.append(self)
        original(self, **options)

    monkeypatch.setattr(BulkIndexSink, "__init__", recording_init)
    yield
    for sink in made:
        sink.close()
