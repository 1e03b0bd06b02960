"""Fixtures of the privacy tests: the real backends of ``tests/reliability/sink_harness.py``."""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "reliability"))

from sink_harness import BACKENDS, aws_test_environment  # noqa: E402


@pytest.fixture(autouse=True)
def no_cloud_configuration(monkeypatch, tmp_path):
    """Dummy AWS credentials; nothing from the machine's AWS or Google configuration."""
    aws_test_environment(monkeypatch, tmp_path)


@pytest.fixture
def backend_factory(tmp_path):
    """``backend_factory(name, **kwargs)``: a started backend; all stopped at teardown."""
    started = []

    def make(name: str, **kwargs):
        backend = BACKENDS[name][0](tmp_path / f"backend-{name}-{len(started)}", **kwargs)
        started.append(backend)
        return backend.start()

    yield make
    for backend in started:
        backend.stop()
