"""Fixtures for the delivery-core tests: sinks are always closed, even when a test fails."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers.delivery import MemorySink

#: Fast defaults for tests: no batching delay, small backoffs, quick close.
FAST = {
    "flush_interval": 0.0,
    "retry_initial_backoff": 0.01,
    "retry_max_backoff": 0.05,
    "close_timeout": 2.0,
}


@pytest.fixture
def make_sink() -> Iterator[Any]:
    """``make_sink(behavior=None, **options)``: a MemorySink with FAST defaults, closed at the end."""
    sinks: list[MemorySink] = []

    def make(behavior: Any = None, **options: Any) -> MemorySink:
        sink = MemorySink(behavior, **{**FAST, **options})
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink._engine._close_timeout = min(sink.close_timeout, 0.5)
        sink.close()
