"""Fixtures of the HTTP sink's tests: a real collector subprocess."""

from __future__ import annotations

import pytest
from helpers.collector_process import CollectorProcess


@pytest.fixture
def collector(tmp_path):
    server = CollectorProcess(tmp_path / "collector").start()
    yield server
    server.stop()
