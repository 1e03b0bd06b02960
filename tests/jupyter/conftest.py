"""Tests that start real Jupyter applications (see jupyter_apps.py); they read Kafka back like tests/kafka."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kafka"))

import pytest  # noqa: E402
from backends import kafka_bootstrap  # noqa: E402


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """Bootstrap servers of a Kafka-protocol broker for a module (KAFKA_BOOTSTRAP_SERVERS if set)."""
    with kafka_bootstrap(tmp_path_factory.mktemp("tansu")) as servers:
        yield servers
