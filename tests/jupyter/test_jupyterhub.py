"""A real JupyterHub (DummyAuthenticator, SimpleLocalProcessSpawner, configurable-http-proxy).

* ``configure_hub(c)`` in jupyterhub_config.py: the Hub's server-action events go to a
  Kafka sink (Tansu) through the policy;
* the collector runs as a managed Hub service: it accepts an event from a logged-in
  user's browser (headless chromium through Playwright) and, through the HTTP sink of
  the extension, from a single-user server with its Hub API token, and refuses requests
  without Hub authentication; and as an external service, started by the test with the
  environment the README lists;
* SIGTERM of the Hub: events the Kafka sink still held are delivered before it exits;
* ``c.JupyterHub.log_level = "DEBUG"``: the Hub configures logging after the config file
  built the sinks, which closes them; they reopen.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from helpers.kafka_readback import consume, payloads
from jupyter_apps import JupyterCollector, JupyterHub, jupyter_env, wait_for

from telemetry_sinks.capsule import CANONICAL_TIMESTAMP
from telemetry_sinks.jupyter.schemas import CONTENTS_SERVICE, HUB_SERVER_ACTION

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

CLICK = "https://events.example.org/hub-test/click"
CLICK_SCHEMA = {
    "$id": CLICK,
    "version": 1,
    "type": "object",
    "properties": {
        "target": {"type": "string"},
        "user": {"type": "string", "categories": ["user-identifier"]},
    },
}
TOPIC = f"hub-events-{uuid.uuid4().hex[:8]}"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("jupyterhub")


@pytest.fixture(scope="module")
def hub(workdir, broker):
    (workdir / "click.json").write_text(json.dumps(CLICK_SCHEMA))
    # The collector's config; the Hub starts it as the managed service "telemetry".
    collector = JupyterCollector(
        workdir / "collector", {CONTENTS_SERVICE: {}, CLICK: {}},
        f"c.EventLog.schema_paths.append({str(workdir / 'click.json')!r})\n", hub_service=True,
    )
    # The single-user servers' config: the extension, an HTTP sink to the service.
    user_config = workdir / "user-config"
    user_config.mkdir()
    hub = JupyterHub(workdir / "hub", "")
    service_url = f"{hub.url}/services/telemetry/api/events"
    (user_config / "jupyter_server_config.py").write_text(
        "import os\n"
        "c.ServerApp.jpserver_extensions = {'telemetry_sinks.jupyter': True}\n"
        f"c.EventLog.allowed_schemas = {{{CONTENTS_SERVICE!r}: {{}}}}\n"
        "c.EventLog.sinks = ['http']\n"
        f"c.HTTPSink.url = {service_url!r}\n"
        "c.HTTPSink.token = os.environ['JUPYTERHUB_API_TOKEN']\n"
        "c.HTTPSink.flush_interval = 0.1\n"
    )
    user_env = {k: v for k, v in jupyter_env(workdir / "user").items() if k.startswith("JUPYTER_")}
    user_env["JUPYTER_CONFIG_DIR"] = str(user_config)
    hub.config_file.write_text(hub.config_file.read_text() + f"""
c.Spawner.environment = {user_env!r}
c.JupyterHub.services.append({{
    "name": "telemetry",
    "url": "http://127.0.0.1:{hub.service_port}",
    "command": {collector.argv!r},
    "oauth_no_confirm": True,
}})
c.JupyterHub.load_roles.append(
    {{"name": "user", "scopes": ["self", "access:services!service=telemetry"]}}
)
c.JupyterHub.log_level = "DEBUG"  # applied after this file ran: logging is configured again
c.EventLog.allowed_schemas = {{{HUB_SERVER_ACTION!r}: {{}}}}
c.EventLog.sinks = ["kafka"]
c.KafkaSink.bootstrap_servers = {broker!r}
c.KafkaSink.topic = {TOPIC!r}
c.KafkaSink.flush_interval = 600.0  # held in memory until the Hub stops
from telemetry_sinks.jupyter import configure_hub
configure_hub(c)
""")
    # The same collector as an external service: started here, with the environment the README lists.
    external = JupyterCollector(workdir / "external", {CLICK: {}},
                                f"c.EventLog.schema_paths.append({str(workdir / 'click.json')!r})\n",
                                hub_service=True)
    external_token = "external-service-token-" + uuid.uuid4().hex
    prefix = "/services/telemetry-ext/"
    external.env.update(
        JUPYTERHUB_API_TOKEN=external_token,
        JUPYTERHUB_API_URL=f"http://127.0.0.1:{hub.hub_port}/hub/api",
        JUPYTERHUB_CLIENT_ID="service-telemetry-ext",
        JUPYTERHUB_SERVICE_PREFIX=prefix,
        JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{external.port}",
        JUPYTERHUB_OAUTH_CALLBACK_URL=prefix + "oauth_callback",
    )
    hub.config_file.write_text(hub.config_file.read_text() + f"""
c.JupyterHub.services.append({{
    "name": "telemetry-ext",
    "url": "http://127.0.0.1:{external.port}",
    "api_token": {external_token!r},
    "oauth_client_id": "service-telemetry-ext",
    "oauth_redirect_uri": "{hub.url}{prefix}oauth_callback",
}})
""")
    hub.collector = collector
    hub.external = external
    external.launch()  # before the Hub, which waits for its external services at start
    external.wait_ready(f"http://127.0.0.1:{external.port}{prefix}")
    hub.start()
    yield hub
    external.stop()
    hub.stop()


def test_single_user_server_events_reach_the_hub_service_with_its_token(hub):
    hub.start_server("ada")
    user_url = f"{hub.url}/user/ada"
    body = {"type": "file", "format": "text", "content": "x"}
    headers = {"Authorization": f"token {hub.admin_token}"}
    saved = requests.put(f"{user_url}/api/contents/secret-plan.txt", json=body, headers=headers, timeout=60)
    assert saved.status_code in (200, 201), saved.text

    def saves():
        return [e for e in hub.collector.received()
                if e["__schema__"] == CONTENTS_SERVICE and e["action"] == "save"]

    (save,) = wait_for(saves, 60, what="the server's event in the collector")
    assert "path" not in save and CANONICAL_TIMESTAMP.fullmatch(save["__timestamp__"])
    assert "secret-plan" not in hub.collector.events_file.read_text()


def test_the_service_refuses_requests_without_hub_auth(hub):
    url = f"{hub.url}/services/telemetry/api/events"
    event = {"schema_id": CLICK, "version": 1, "data": {"target": "anonymous"}}
    assert requests.post(url, json=event, timeout=30).status_code == 401
    bad = requests.post(url, json=event, headers={"Authorization": "token not-a-hub-token"}, timeout=30)
    assert bad.status_code == 401
    # A Hub API token (here a service's) is accepted.
    good = requests.post(url, json=event, headers={"Authorization": f"token {hub.admin_token}"}, timeout=30)
    assert good.status_code == 200, good.text
    targets = [e.get("target") for e in hub.collector.received() if e["__schema__"] == CLICK]
    assert targets == ["anonymous"]  # the refused ones recorded nothing


def test_an_external_hub_service_authenticates_with_the_hub_too(hub):
    url = f"{hub.url}/services/telemetry-ext/api/events"
    event = {"schema_id": CLICK, "version": 1, "data": {"target": "external"}}
    assert requests.post(url, json=event, timeout=30).status_code == 401
    good = requests.post(url, json=event, headers={"Authorization": f"Bearer {hub.admin_token}"}, timeout=30)
    assert good.status_code == 200, good.text
    assert [e["target"] for e in hub.external.received()] == ["external"]


def test_a_logged_in_browser_posts_through_the_hub_service(hub):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{hub.url}/hub/login")
            page.fill("input[name=username]", "grace")
            page.fill("input[name=password]", hub.password)
            page.click("#login_submit")
            page.wait_for_url("**/hub/**", timeout=60_000)
            # Through the Hub's OAuth to the service, which answers who is logged in.
            page.goto(f"{hub.url}/services/telemetry/api/session")
            session = json.loads(page.inner_text("body"))
            assert session["name"] == "grace" and session["kind"] == "user"
            result = page.evaluate(
                """async ([url, xsrf, schema]) => {
                    const post = (headers) => fetch(url, {method: "POST", credentials: "same-origin",
                        headers: {"Content-Type": "application/json", ...headers},
                        body: JSON.stringify({schema_id: schema, version: 1,
                                              data: {target: "run-button", user: "grace"}})});
                    const withXsrf = await post({"X-XSRFToken": xsrf});
                    const withoutXsrf = await post({});
                    return [withXsrf.status, await withXsrf.json(), withoutXsrf.status];
                }""",
                [f"{hub.url}/services/telemetry/api/events", session["xsrf_token"], CLICK],
            )
        finally:
            browser.close()
    status, answer, without_xsrf = result
    assert status == 200 and answer["accepted"] == 1, answer
    assert without_xsrf in (401, 403)  # a cookie alone does not authenticate a POST
    clicks = [e for e in hub.collector.received() if e["__schema__"] == CLICK and e["target"] == "run-button"]
    assert len(clicks) == 1 and "user" not in clicks[0]


def test_server_actions_in_kafka_and_sigterm_delivers_what_the_hub_held(hub, broker):
    hub.start_server("bob")
    hub.stop_server("bob")
    assert hub.terminate() == 0
    log = hub.log_text()
    events = [e for e in payloads(consume(broker, TOPIC, expected=4)) if e["__schema__"] == HUB_SERVER_ACTION]
    started = [e for e in events if e["action"] == "start"]
    stopped = [e for e in events if e["action"] == "stop"]
    assert len(started) >= 2 and len(stopped) >= 1, (events, log[-3000:])
    for event in events:
        assert "username" not in event  # user-identifier, not allowed by the policy
        assert CANONICAL_TIMESTAMP.fullmatch(event["__timestamp__"]) and event["__schema_version__"] == 1
    assert "telemetry_sinks: recording" in log and "dropped" not in log
    assert "sink 'kafka' was closed" in log and "reopened" in log  # by the Hub's logging setup
