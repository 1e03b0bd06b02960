"""The Cloud Logging backend of the Stackdriver sink's tests: a local stand-in for the API.

Google ships no emulator for Cloud Logging; ``fake_logging_api.FakeLoggingAPI``
implements the ``entries.write`` wire contract (REST and gRPC) on 127.0.0.1,
started and stopped by these fixtures.  No Google credentials are ever looked up.
"""

from __future__ import annotations

import pytest
from helpers import fake_logging_api
from helpers.fake_logging_api import FakeLoggingAPI
from helpers.servers import free_port, python_server

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def no_google_environment(monkeypatch, tmp_path):
    """Nothing from the machine's Google configuration is used."""
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud-config"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")


@pytest.fixture
def fake_api():
    """The fake Logging API (HTTP), owned by one test: it may stop and start it."""
    server = FakeLoggingAPI().start()
    yield server
    server.stop()


@pytest.fixture
def fake_grpc_api():
    """The fake Logging API serving gRPC too."""
    server = FakeLoggingAPI(grpc=True).start()
    yield server
    server.stop()


@pytest.fixture
def fake_api_process(tmp_path):
    """The fake Logging API in its own process (killed and restarted by outage tests)."""
    script = fake_logging_api.__file__
    port = free_port()
    server = python_server("fake-logging-api", [script, "--port", str(port)], port, tmp_path)
    server.start()
    yield server
    server.stop()
