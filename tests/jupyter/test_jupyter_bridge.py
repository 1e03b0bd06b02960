"""JupyterTelemetry on a real jupyter_events.EventLogger with Jupyter Server's real schemas (in process)."""

from __future__ import annotations

import logging
import time

import pytest
from jupyter_events.logger import EventLogger
from traitlets.config import Config

from telemetry_sinks import load_sinks
from telemetry_sinks.capsule import CANONICAL_TIMESTAMP
from telemetry_sinks.jupyter import JupyterTelemetry
from telemetry_sinks.jupyter.schemas import CONTENTS_SERVICE, KERNEL_ACTIONS, jupyter_schemas, with_categories

SCHEMAS = "jupyter_server/head-9a4d6ee/jupyter_server/event_schemas"


class Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.capsules: list[dict] = []

    def emit(self, record):
        self.capsules.append(record.msg)

    def handle_capsule(self, capsule):
        self.capsules.append(capsule)


@pytest.fixture
def event_logger(fixtures_dir):
    logger = EventLogger()
    for name in ("contents_service", "kernel_actions", "gateway_client"):
        logger.register_event_schema(fixtures_dir / SCHEMAS / name / "v1.yaml")
    return logger


def make(allowed, **config) -> tuple[JupyterTelemetry, Capture]:
    c = Config()
    c.EventLog.allowed_schemas = allowed
    for key, value in config.items():
        c.JupyterTelemetry[key] = value
    c.JupyterTelemetry.health_interval = 0.0
    telemetry = JupyterTelemetry(config=c)
    capture = Capture()
    telemetry.eventlog.add_handler(capture)
    return telemetry, capture


def test_policy_categories_and_capsule_shape_apply_to_jupyter_events(event_logger):
    telemetry, capture = make({CONTENTS_SERVICE: {}, KERNEL_ACTIONS: {}})
    telemetry.attach(event_logger)
    raw = event_logger.emit(schema_id=CONTENTS_SERVICE, data={"action": "rename", "path": "ada/b.ipynb",
                                                               "source_path": "ada/a.ipynb"})
    event_logger.emit(schema_id="https://events.jupyter.org/jupyter_server/gateway_client/v1",
                      data={"status": "success", "msg": "not allowed"})
    assert raw["__timestamp__"].endswith("+00:00Z") and raw["__schema_version__"] == "1"
    (capsule,) = capture.capsules
    assert capsule == {
        "__timestamp__": capsule["__timestamp__"], "__schema__": CONTENTS_SERVICE,
        "__schema_version__": 1, "__metadata_version__": 1, "action": "rename",
    }
    assert CANONICAL_TIMESTAMP.fullmatch(capsule["__timestamp__"])
    assert capsule["__timestamp__"][:26] == raw["__timestamp__"][:26]  # the same instant
    assert telemetry.counts == {"recorded": 1, "not_allowed": 1, "invalid": 0, "unknown_schema": 0}


@pytest.mark.parametrize("form", ["dict", "jupyter_telemetry tuple"])
def test_allowed_categories_keep_the_paths(event_logger, form):
    categories = ["user-identifiable-information"]
    if form == "dict":
        allowed = {CONTENTS_SERVICE: {"allowed_categories": categories}}
    else:
        allowed = [(CONTENTS_SERVICE, categories, [])]
    telemetry, capture = make(allowed)
    telemetry.attach(event_logger)
    event_logger.emit(schema_id=CONTENTS_SERVICE, data={"action": "save", "path": "ada/b.ipynb"})
    assert capture.capsules[0]["path"] == "ada/b.ipynb"
    assert telemetry.stats()["allowed_schemas"] == [CONTENTS_SERVICE]


def test_operator_categories_override_the_built_in_table(event_logger):
    categories = {KERNEL_ACTIONS: {"msg": ["free-text"]}}
    telemetry, capture = make({KERNEL_ACTIONS: {}}, property_categories=categories)
    telemetry.attach(event_logger)
    event_logger.emit(schema_id=KERNEL_ACTIONS, data={"action": "start", "kernel_id": "k1", "msg": "hi"})
    assert capture.capsules[0]["kernel_id"] == "k1" and "msg" not in capture.capsules[0]


def test_sinks_given_to_the_event_logger_move_behind_the_policy(event_logger, tmp_path):
    c = Config()
    c.FileSink.filename = str(tmp_path / "events.jsonl")
    sink, = load_sinks(["file"], config=c)
    plain = Capture()
    logger = EventLogger(handlers=[sink, plain])
    for schema_id in event_logger.schemas.schema_ids:
        logger.register_event_schema(event_logger.schemas.get(schema_id)._schema)
    telemetry, _ = make({KERNEL_ACTIONS: {}})
    telemetry.attach(logger)
    assert sink not in logger.handlers and plain in logger.handlers
    logger.emit(schema_id=CONTENTS_SERVICE, data={"action": "save", "path": "secret"})
    logger.emit(schema_id=KERNEL_ACTIONS, data={"action": "start", "kernel_id": "k", "msg": "m"})
    sink.close()
    text = (tmp_path / "events.jsonl").read_text()
    assert "secret" not in text and text.count("\n") == 1 and '"__schema_version__":1' in text
    assert len(plain.capsules) == 2  # a handler that is not a sink is left alone


def test_a_schema_registered_after_attach_is_found_on_its_first_event(event_logger, tmp_path):
    telemetry, capture = make({"https://events.example.org/late": {}})
    telemetry.attach(event_logger)
    event_logger.register_event_schema(
        {"$id": "https://events.example.org/late", "version": "2", "type": "object",
         "properties": {"n": {"type": "integer"}}}
    )
    event_logger.emit(schema_id="https://events.example.org/late", data={"n": 3})
    assert capture.capsules[0]["n"] == 3 and capture.capsules[0]["__schema_version__"] == 2


def test_operator_schemas_are_registered_on_the_event_logger(event_logger, tmp_path):
    (tmp_path / "op.json").write_text(
        '{"$id": "https://events.example.org/op", "version": 3, "type": "object",'
        ' "properties": {"x": {"type": "string", "categories": ["user-identifier"]}}}'
    )
    telemetry, capture = make({"https://events.example.org/op": {}})
    telemetry.eventlog.register_schema_file(tmp_path / "op.json")
    telemetry.attach(event_logger)
    assert event_logger.schemas.get("https://events.example.org/op").version == "3"
    event_logger.emit(schema_id="https://events.example.org/op", data={"x": "ada"})
    assert "x" not in capture.capsules[0]


def test_health_reports_a_sink_that_cannot_reach_its_backend(event_logger, caplog):
    from helpers.servers import free_port

    from telemetry_sinks import HTTPSink

    telemetry, _ = make({KERNEL_ACTIONS: {}})
    sink = HTTPSink(url=f"http://127.0.0.1:{free_port()}/api/events", flush_interval=0.0,
                    retry_initial_backoff=0.05, max_queue_events=2, close_timeout=0.2)
    sink.set_name("collector")
    telemetry.eventlog.add_handler(sink)
    telemetry.attach(event_logger)
    try:
        with caplog.at_level(logging.INFO):
            telemetry.check_health()
            for n in range(5):
                data = {"action": "start", "kernel_id": str(n), "msg": "m"}
                event_logger.emit(schema_id=KERNEL_ACTIONS, data=data)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not sink.stats()["last_error"]:
                time.sleep(0.05)
            telemetry.check_health()
            deadline = time.monotonic() + 10  # the sink's own report of its drops, from its worker
            while time.monotonic() < deadline and "dropped" not in caplog.text:
                time.sleep(0.05)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        unreachable = [w for w in warnings if "'collector' cannot reach its backend" in w]
        assert unreachable and "Connection" in unreachable[0], warnings
        assert any("'collector' dropped" in w for w in warnings), warnings
        health = telemetry.stats()
        assert health["ok"] is False and "cannot reach" in health["sinks"]["collector"]["problem"]
    finally:
        sink.close()


def test_with_categories_makes_personal_properties_optional():
    (contents,) = [s for s in jupyter_schemas() if s["$id"] == CONTENTS_SERVICE]
    assert contents["required"] == ["action"]
    assert contents["properties"]["path"]["categories"] == ["user-identifiable-information"]
    body = {"$id": "x", "version": 1, "type": "object", "required": ["a", "b"],
            "properties": {"a": {"type": "string", "categories": ["unrestricted"]}, "b": {"type": "string"}}}
    assert with_categories(body, {"b": ["user-identifier"]})["required"] == ["a"]
    assert body["required"] == ["a", "b"]  # a copy


def test_configure_hub_puts_the_policy_in_front_of_the_hubs_event_logger(tmp_path):
    """What jupyterhub_config.py does, then what JupyterHub does with c.EventLogger (in process)."""
    from telemetry_sinks.jupyter import configure_hub
    from telemetry_sinks.jupyter.hub import hub_schema_dir
    from telemetry_sinks.jupyter.schemas import HUB_SERVER_ACTION

    library = logging.getLogger("telemetry_sinks")
    parent = library.parent
    c = Config()
    c.FileSink.filename = str(tmp_path / "old-snippet.jsonl")
    c.EventLogger.handlers = load_sinks(["file"], config=c)  # the README's old line, kept
    c.EventLog.allowed_schemas = {HUB_SERVER_ACTION: {}}
    c.JupyterTelemetry.health_interval = 0.0
    try:
        telemetry = configure_hub(c)
        hub_logger = EventLogger(config=c)  # as JupyterHub.init_eventlog does
        for path in sorted(hub_schema_dir().glob("**/*.yaml")):
            hub_logger.register_event_schema(path)
        hub_logger.emit(schema_id=HUB_SERVER_ACTION,
                        data={"action": "start", "username": "ada", "servername": ""})
        telemetry.close()
    finally:
        library.parent = parent
    (line,) = (tmp_path / "old-snippet.jsonl").read_text().splitlines()
    assert '"username"' not in line and '"action":"start"' in line and '"__schema_version__":1' in line
