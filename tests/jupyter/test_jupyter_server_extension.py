"""A real Jupyter Server (jupyterlab, jupyter_server_terminals, ... installed) with the extension.

Files are saved, renamed and deleted and a kernel started through the server's REST
API; the events must arrive in a rotating file, in Kafka (Tansu) and through the
HTTP sink in the collector, each as the operator's policy allows.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from helpers.kafka_readback import consume, payloads
from helpers.servers import free_port
from jupyter_apps import JupyterCollector, JupyterServer, read_jsonl, wait_for

from telemetry_sinks.capsule import CANONICAL_TIMESTAMP
from telemetry_sinks.jupyter.schemas import CONTENTS_SERVICE, GATEWAY_CLIENT, KERNEL_ACTIONS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BUTTON = "https://events.example.org/jupyter-test/button"
HIDDEN = "https://events.example.org/jupyter-test/not-allowed"
OPERATOR_SCHEMAS = {
    "button.yaml": (
        f'"$id": {BUTTON}\nversion: 1\ntitle: Button clicked\ntype: object\n'
        "required: [name]\nproperties:\n  name: {type: string}\n"
        "  user: {type: string, categories: [user-identifier]}\n"
    ),
    "hidden.yaml": (
        f'"$id": {HIDDEN}\nversion: 1\ntitle: Not allowed\ntype: object\n'
        "properties:\n  name: {type: string}\n"
    ),
}
TOPIC = f"jupyter-server-{uuid.uuid4().hex[:8]}"
SECRET = "thesis-of-ada-lovelace"  # in file names: a path, which the policy removes


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("jupyter-server")
    schemas = directory / "operator-schemas"
    schemas.mkdir()
    for name, text in OPERATOR_SCHEMAS.items():
        (schemas / name).write_text(text)
    return directory


@pytest.fixture(scope="module")
def collector(workdir):
    allowed = {CONTENTS_SERVICE: {}, KERNEL_ACTIONS: {}, BUTTON: {}}
    extra = f"c.EventLog.schema_paths.append({str(workdir / 'operator-schemas')!r})\n"
    server = JupyterCollector(workdir / "collector", allowed, extra).start()
    yield server
    server.stop()


def policy_config(workdir) -> str:
    allowed = {CONTENTS_SERVICE: {}, KERNEL_ACTIONS: {}, BUTTON: {"allowed_categories": []}}
    return f"""
        c.EventLog.schema_paths = [{str(workdir / 'operator-schemas')!r}]
        c.EventLog.allowed_schemas = {allowed!r}
    """


@pytest.fixture(scope="module")
def server(workdir, broker, collector):
    """The extension enabled in the config file; sinks built from c.EventLog.sinks."""
    directory = workdir / "server"
    config = policy_config(workdir) + f"""
        c.ServerApp.jpserver_extensions = {{"telemetry_sinks.jupyter": True}}
        c.EventLog.sinks = ["rotating_file", "kafka", "http"]
        c.RotatingFileSink.filename = {str(directory / 'events.jsonl')!r}
        c.RotatingFileSink.max_bytes = 1500
        c.RotatingFileSink.backup_count = 100
        c.KafkaSink.bootstrap_servers = {broker!r}
        c.KafkaSink.topic = {TOPIC!r}
        c.KafkaSink.flush_interval = 0.1
        # Held in memory until the server stops: SIGTERM must deliver them.
        c.HTTPSink.url = {collector.url!r}
        c.HTTPSink.flush_interval = 600.0
        c.HTTPSink.max_batch_events = 100000
        c.JupyterTelemetry.health_interval = 0.5
    """
    app = JupyterServer(directory, config).start()
    app.events_file = directory / "events.jsonl"
    yield app
    app.stop()


def drive(server: JupyterServer, tag: str) -> None:
    """Save, rename and delete a file and start and stop a kernel through the REST API."""
    name = f"{SECRET}-{tag}.txt"
    body = {"type": "file", "format": "text", "content": "chapter 1"}
    assert server.api("PUT", f"/api/contents/{name}", json=body).status_code in (200, 201)
    renamed = f"renamed-{name}"
    assert server.api("PATCH", f"/api/contents/{name}", json={"path": renamed}).status_code == 200
    assert server.api("DELETE", f"/api/contents/{renamed}").status_code == 204
    kernel = server.api("POST", "/api/kernels", json={"name": "python3"})
    assert kernel.status_code == 201, kernel.text
    assert server.api("DELETE", f"/api/kernels/{kernel.json()['id']}").status_code == 204


def actions(capsules: list[dict], schema_id: str) -> list[str]:
    return [c["action"] for c in capsules if c["__schema__"] == schema_id]


def assert_project_shape(capsule: dict) -> None:
    assert CANONICAL_TIMESTAMP.fullmatch(capsule["__timestamp__"]), capsule["__timestamp__"]
    assert capsule["__schema_version__"] == 1 and capsule["__metadata_version__"] == 1


def test_jupyter_events_reach_file_and_kafka_as_the_policy_allows(server, broker):
    drive(server, "a")
    expected_contents = ["save", "rename", "delete"]

    def file_events():
        events = read_jsonl(server.events_file)
        done = actions(events, KERNEL_ACTIONS).count("shutdown") >= 1
        return events if done and set(expected_contents) <= set(actions(events, CONTENTS_SERVICE)) else None

    recorded = wait_for(file_events, 60, what="events in the rotating file")
    assert list(server.events_file.parent.glob("events.jsonl.*")), "the file sink rotated"
    for capsule in recorded:
        assert_project_shape(capsule)
        assert capsule["__schema__"] in (CONTENTS_SERVICE, KERNEL_ACTIONS)
        if capsule["__schema__"] == CONTENTS_SERVICE:
            assert "path" not in capsule and "source_path" not in capsule  # declared personal: removed
    contents = actions(recorded, CONTENTS_SERVICE)
    assert [a for a in contents if a in expected_contents] == expected_contents
    kernel = [c for c in recorded if c["__schema__"] == KERNEL_ACTIONS]
    assert [c["action"] for c in kernel if c.get("status") == "success"] == ["start", "shutdown"]
    assert all(c["kernel_id"] for c in kernel)  # not personal data: kept
    assert SECRET not in server.events_file.read_text()

    in_kafka = payloads(consume(broker, TOPIC, expected=len(recorded)))
    assert sorted(map(json.dumps, in_kafka)) == sorted(map(json.dumps, recorded))
    assert not any(c["__schema__"] == GATEWAY_CLIENT for c in in_kafka)


def test_post_api_events_takes_operator_schemas_and_refuses_unknown_ones(server, broker):
    event = {"schema_id": BUTTON, "version": 1, "data": {"name": "run-all", "user": "ada"}}
    answer = server.api("POST", "/api/events", json=event)
    assert answer.status_code == 204, answer.text
    not_allowed = {"schema_id": HIDDEN, "version": 1, "data": {"name": "hidden"}}
    assert server.api("POST", "/api/events", json=not_allowed).status_code == 204
    unknown = {"schema_id": "https://events.example.org/unknown", "version": 1, "data": {}}
    refused = server.api("POST", "/api/events", json=unknown)
    assert refused.status_code == 400 and "unknown" in refused.text

    def buttons():
        events = read_jsonl(server.events_file)
        return [c for c in events if c["__schema__"] == BUTTON and c["name"] == "run-all"]

    (button,) = wait_for(buttons, 30, what="the operator's event")
    assert_project_shape(button)
    assert button["name"] == "run-all" and "user" not in button  # user-identifier not allowed
    assert not any(c["__schema__"] == HIDDEN for c in read_jsonl(server.events_file))
    in_kafka = payloads(consume(broker, TOPIC, expected=10_000, timeout=5))
    assert [c["name"] for c in in_kafka if c["__schema__"] == BUTTON].count("run-all") == 1
    assert not any(c["__schema__"] == HIDDEN for c in in_kafka)


def test_health_endpoint_is_authenticated_and_shows_every_sink(server):
    for schema_id in (BUTTON, HIDDEN):  # one event recorded, one not allowed
        event = {"schema_id": schema_id, "version": 1, "data": {"name": "health"}}
        assert server.api("POST", "/api/events", json=event).status_code == 204
    anonymous = requests.get(server.url + "/api/telemetry/health", timeout=30)
    assert anonymous.status_code == 403
    health = wait_for(lambda: (lambda h: h if h["sinks"]["kafka"]["sent"] else None)(
        server.api("GET", "/api/telemetry/health").json()), 30, what="kafka sent")
    assert health["ok"] is True
    assert set(health["sinks"]) == {"RotatingFileSink", "kafka", "http"}
    assert health["sinks"]["kafka"]["sent"] >= 1 and health["sinks"]["kafka"]["dropped"] == 0
    assert health["sinks"]["http"]["queue_events"] >= 1  # held until the server stops
    assert health["events"]["recorded"] >= 1 and health["events"]["not_allowed"] >= 1
    assert CONTENTS_SERVICE in health["allowed_schemas"] and BUTTON in health["registered_schemas"]
    assert server.token not in json.dumps(health)


def test_sigterm_delivers_what_the_http_sink_still_holds(server, collector):
    held = server.api("GET", "/api/telemetry/health").json()["sinks"]["http"]["queue_events"]
    recorded = read_jsonl(server.events_file)
    assert held == len(recorded) > 0
    assert server.terminate() == 0
    received = collector.received()
    assert len(received) == len(recorded)
    for sent, got in zip(recorded, received):
        assert {k: v for k, v in got.items() if k != "__event_id__"} == sent
    log = server.log_text()
    assert "telemetry_sinks.jupyter | extension was successfully loaded" in log
    assert "dropped" not in log


def test_readme_snippet_with_log_level_debug_loses_nothing(workdir, broker, collector):
    """``c.EventLogger.handlers = load_sinks(...)`` without the extension, log_level DEBUG.

    Jupyter's extension apps configure logging (dictConfig) after the config file built
    the sinks, which closes them; they must reopen.  No policy applies on this path.
    """
    directory = workdir / "readme-server"
    topic = f"readme-{uuid.uuid4().hex[:8]}"
    config = f"""
        c.ServerApp.log_level = "DEBUG"
        from telemetry_sinks import load_sinks
        c.RotatingFileSink.filename = {str(directory / 'events.jsonl')!r}
        c.KafkaSink.bootstrap_servers = {broker!r}
        c.KafkaSink.topic = {topic!r}
        c.KafkaSink.flush_interval = 600.0  # held until SIGTERM
        c.HTTPSink.url = {collector.url!r}
        c.HTTPSink.flush_interval = 0.1
        c.EventLogger.handlers = load_sinks(["rotating_file", "kafka", "http"], config=c)
    """
    before = len(collector.received())
    app = JupyterServer(directory, config, name="readme-server").start()
    try:
        drive(app, "b")
        recorded = wait_for(
            lambda: (lambda e: e if actions(e, KERNEL_ACTIONS).count("shutdown") else None)(
                read_jsonl(directory / "events.jsonl")
            ),
            60,
            what="events in the rotating file",
        )
        assert {"save", "rename", "delete"} <= set(actions(recorded, CONTENTS_SERVICE))
        wait_for(lambda: len(collector.received()) - before >= len(recorded), 60,
                 what="events in the collector")
        assert app.terminate() == 0
    finally:
        app.stop()
    log = app.log_text()
    assert "dropped" not in log  # (the reopen notice is INFO: without the extension it is not routed)
    in_kafka = payloads(consume(broker, topic, expected=len(recorded)))
    assert sorted(map(json.dumps, in_kafka)) == sorted(map(json.dumps, recorded))
    # jupyter_events' own capsule shape on this path; the collector normalises what it records.
    assert recorded[0]["__timestamp__"].endswith("+00:00Z")
    received = collector.received()[before:]
    assert len(received) == len(recorded)
    for capsule in received:
        assert_project_shape(capsule)
        assert "path" not in capsule  # the collector's policy


def test_a_sink_in_trouble_is_reported_in_the_server_log(workdir):
    directory = workdir / "troubled-server"
    # Enabled the other documented way: a file in jupyter_server_config.d.
    enabling = directory / "config" / "jupyter_server_config.d"
    enabling.mkdir(parents=True)
    (enabling / "telemetry_sinks.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"telemetry_sinks.jupyter": True}}})
    )
    config = policy_config(workdir) + f"""
        c.EventLog.sinks = ["http"]
        c.HTTPSink.url = "http://127.0.0.1:{free_port()}/api/events"  # nothing listens there
        c.HTTPSink.flush_interval = 0.0
        c.HTTPSink.retry_initial_backoff = 0.05
        c.HTTPSink.max_queue_events = 2
        c.HTTPSink.close_timeout = 0.5
        c.JupyterTelemetry.health_interval = 0.3
    """
    app = JupyterServer(directory, config, name="troubled-server").start()
    try:
        drive(app, "c")

        def reported():
            log = app.log_text()
            return "sink 'http' cannot reach its backend: " in log and "sink 'http' dropped" in log

        wait_for(reported, 60, what="warnings in the server log")
        health = app.api("GET", "/api/telemetry/health").json()
        assert health["ok"] is False and health["sinks"]["http"]["dropped"] > 0
    finally:
        app.stop()
    line = next(x for x in app.log_text().splitlines() if "cannot reach its backend" in x)
    assert line.startswith("[W ") and "ServerApp" in line and "Connection" in line
