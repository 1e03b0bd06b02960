"""Fixtures of the reliability tests: real backends for every available network sink."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from sink_harness import BACKENDS, aws_test_environment  # noqa: E402


@pytest.fixture(autouse=True)
def no_cloud_configuration(monkeypatch, tmp_path):
    """Dummy AWS credentials; nothing from the machine's AWS or Google configuration."""
    aws_test_environment(monkeypatch, tmp_path)


@pytest.fixture
def backend_factory(tmp_path):
    """``backend_factory(name)``: a started backend of that sink type; all stopped at teardown."""
    started = []

    def make(name: str, **kwargs):
        backend = BACKENDS[name][0](tmp_path / f"backend-{name}-{len(started)}", **kwargs)
        started.append(backend)
        return backend.start()

    yield make
    for backend in started:
        backend.stop()
