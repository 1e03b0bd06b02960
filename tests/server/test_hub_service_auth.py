"""The collector as a JupyterHub service refuses every request the Hub does not vouch for.

Without a bearer token configured, a standalone collector treats token-less requests
as browser requests (consent and rate limits apply, no authentication).  As a Hub
service it must not: each request, a browser's included, needs Hub authentication.
The Hub's own auth module (``jupyterhub.services.auth``) is used as in production; no
Hub runs here, so nothing can be vouched for and every request must get 401.
"""

from __future__ import annotations

import pytest
import requests
from helpers.servers import free_port
from traitlets.config import Config

from telemetry_sinks.config import EXAMPLE_SCHEMAS_DIR
from telemetry_sinks.server import Collector

LAUNCH = "https://events.telemetry-sinks.org/example/app-launch"
PREFIX = "/services/telemetry/"


@pytest.fixture
def hub_collector(monkeypatch, tmp_path):
    port = free_port()
    env = {
        "JUPYTERHUB_API_TOKEN": "t" * 32,
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{free_port()}/hub/api",
        "JUPYTERHUB_CLIENT_ID": "service-telemetry",
        "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
        "JUPYTERHUB_OAUTH_CALLBACK_URL": PREFIX + "oauth_callback",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    c = Config()
    c.EventLog.schema_paths = [str(EXAMPLE_SCHEMAS_DIR)]
    c.EventLog.allowed_schemas = [LAUNCH]
    c.EventLog.sinks = ["file"]
    c.FileSink.filename = str(tmp_path / "events.jsonl")
    collector = Collector(config=c, hub_service=True)
    collector.start()
    yield collector, f"http://127.0.0.1:{collector.bound_port}{PREFIX}", tmp_path / "events.jsonl"
    collector.stop()


def test_a_request_without_hub_auth_is_refused_and_records_nothing(hub_collector):
    collector, base, events = hub_collector
    event = {"schema_id": LAUNCH, "version": 1, "data": {"app": "lab", "status": "success"}}
    answer = requests.post(base + "api/events", json=event, timeout=10)
    assert answer.status_code == 401, answer.text
    assert "JupyterHub authentication required" in answer.json()["error"]
    assert not events.exists() or events.read_text() == ""
