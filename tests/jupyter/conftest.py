"""Tests that start real Jupyter applications (see jupyter_apps.py); they read Kafka back like
tests/sinks/kafka (helpers.kafka_readback)."""

from __future__ import annotations

import pytest
from helpers.servers import kafka_bootstrap


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """Bootstrap servers of a Kafka-protocol broker for a module (KAFKA_BOOTSTRAP_SERVERS if set)."""
    with kafka_bootstrap(tmp_path_factory.mktemp("tansu")) as servers:
        yield servers
