"""The Kafka-protocol broker of the relay's tests (Tansu, or ``KAFKA_BOOTSTRAP_SERVERS``)."""

from __future__ import annotations

import pytest
from helpers.servers import kafka_bootstrap

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory):
    """Bootstrap servers of a broker shared by a module's tests."""
    with kafka_bootstrap(tmp_path_factory.mktemp("tansu")) as servers:
        yield servers
