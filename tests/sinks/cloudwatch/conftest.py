"""The CloudWatch Logs backend for the CloudWatch sink's integration tests.

The suite starts moto's server (``python -m moto.server``, from the test extra)
on a free 127.0.0.1 port and reads events back with boto3's own
``filter_log_events``.  With ``AWS_ENDPOINT_URL`` set (e.g. LocalStack from
docker-compose.test.yml), the tests that do not need to stop the backend use
that endpoint instead.  Credentials are dummies; the region is us-east-1.
"""

from __future__ import annotations

import uuid

import pytest
from helpers.aws_fault_proxy import AWSFaultProxy
from helpers.cloudwatch import REGION, moto_server
from helpers.servers import env, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def aws_test_credentials(monkeypatch, tmp_path):
    """Dummy credentials and the test region; no real AWS configuration is read."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def endpoint(tmp_path_factory):
    """The CloudWatch Logs endpoint shared by the tests that never stop it."""
    external = env("AWS_ENDPOINT_URL")
    if external:
        yield external
        return
    server = moto_server(free_port(), tmp_path_factory.mktemp("moto")).start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture
def local_moto(tmp_path):
    """A moto server this test owns: it may stop and restart it (same port)."""
    server = moto_server(free_port(), tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def proxy(endpoint):
    """A fault-injecting proxy, enforcing CloudWatch's request rules, in front of ``endpoint``."""
    server = AWSFaultProxy(endpoint, aws_rules=True).start()
    yield server
    server.stop()


@pytest.fixture
def group():
    return f"/telemetry-test/{uuid.uuid4().hex[:12]}"
