"""Our sinks as handlers of the real jupyter_events.EventLogger and jupyter_telemetry EventLog.

Both libraries replace the formatter of every handler they are given and log the
capsule dict as ``record.msg``.  A sink must write that capsule, encoded by our
rule, whatever the formatter says.
"""

from __future__ import annotations

import datetime as dt
import importlib
import io
import json
import logging
import warnings
from pathlib import Path

import jsonschema
import pytest
from helpers.jsonl import read_jsonl
from jupyter_events.logger import EventLogger
from traitlets.config import Config

from telemetry_sinks import FileSink, RotatingFileSink, StreamSink, load_sinks
from telemetry_sinks.capsule import CAPSULE_FIELDS, encode

with warnings.catch_warnings():
    # jupyter_telemetry 0.1 imports pythonjsonlogger by its deprecated module name.
    warnings.simplefilter("ignore", DeprecationWarning)
    TelemetryEventLog = importlib.import_module("jupyter_telemetry.eventlog").EventLog

KERNEL_ACTIONS_ID = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
DEMO_ID = "http://myapplication.org/example-event"
TELEMETRY_ID = "event.jupyter.org/example-event"


class Capture(logging.Handler):
    """Keeps the ``record.msg`` objects the host logger hands to its handlers."""

    def __init__(self):
        super().__init__()
        self.messages: list = []

    def emit(self, record):
        self.messages.append(record.msg)


@pytest.fixture
def kernel_actions(fixtures_dir) -> Path:
    return fixtures_dir / "jupyter_server/head-9a4d6ee/jupyter_server/event_schemas/kernel_actions/v1.yaml"


@pytest.fixture
def demo(fixtures_dir) -> Path:
    return fixtures_dir / "jupyter_events/docs-demo-147cf71"


@pytest.fixture
def sinks(tmp_path):
    file_sink = FileSink(tmp_path / "file.jsonl")
    rotating = RotatingFileSink(tmp_path / "rotating.jsonl", max_bytes=350, backup_count=100)
    buffer = io.StringIO()
    stream = StreamSink(stream=buffer)
    made = [file_sink, rotating, stream]

    def outputs() -> list[str]:
        """The raw text each sink wrote, rotated files joined in order."""
        rotated = sorted(tmp_path.glob("rotating.jsonl.*"), key=lambda p: -int(p.suffix[1:]))
        return [
            (tmp_path / "file.jsonl").read_text(),
            "".join(p.read_text() for p in [*rotated, tmp_path / "rotating.jsonl"]),
            buffer.getvalue(),
        ]

    yield made, outputs
    for sink in made:
        sink.close()


# --------------------------------------------------------------------------- jupyter_events


def test_jupyter_events_logger_with_our_sinks(sinks, kernel_actions):
    made, outputs = sinks
    capture = Capture()
    logger = EventLogger(handlers=[*made, capture])
    # jupyter_events has taken over the formatters...
    assert all(type(s.formatter).__name__ == "JsonFormatter" for s in made)
    logger.register_event_schema(kernel_actions)

    events = [
        {"action": "start", "msg": "Kernel started", "kernel_id": "k-1", "kernel_name": "python3"},
        {"action": "interrupt", "msg": "Kernel interrupted", "kernel_id": "k-1", "status": "success"},
        {"action": "start", "status": "error", "msg": "No such kernel", "status_code": 404},
        {"action": "shutdown", "msg": "Kernel shut down " + "x" * 200, "kernel_id": "k-1"},
    ]
    returned = [logger.emit(schema_id=KERNEL_ACTIONS_ID, data=e) for e in events]

    assert capture.messages == returned
    for capsule, event in zip(returned, events):
        assert list(capsule)[:4] == list(CAPSULE_FIELDS)
        assert capsule["__schema__"] == KERNEL_ACTIONS_ID
        assert capsule["__timestamp__"].endswith("+00:00Z")  # jupyter_events' own spelling
        assert {k: v for k, v in capsule.items() if k not in CAPSULE_FIELDS} == event
    expected = "".join(encode(c) + "\n" for c in returned)
    # ... but every sink wrote jupyter_events' capsule, not the formatter's output.
    assert outputs() == [expected, expected, expected]


def test_jupyter_events_invalid_event_reaches_no_sink(sinks, kernel_actions):
    made, outputs = sinks
    logger = EventLogger(handlers=made)
    logger.register_event_schema(kernel_actions)
    with pytest.raises(jsonschema.ValidationError, match="kernel_id"):
        # kernel_id is required unless a start failed (the schema's if/then).
        logger.emit(schema_id=KERNEL_ACTIONS_ID, data={"action": "restart", "msg": "m"})
    assert outputs() == ["", "", ""]


def test_matches_the_real_jupyter_events_output(sinks, demo):
    """Re-emit the docs demo's events and compare with the lines EventLogger printed in 2024."""
    made, outputs = sinks
    logger = EventLogger(handlers=made)
    logger.register_event_schema(demo / "example-event.yaml")
    recorded = read_jsonl(demo / "emitted-events.jsonl")
    for line in recorded:
        when = dt.datetime.fromisoformat(line["__timestamp__"].removesuffix("Z"))
        data = {k: v for k, v in line.items() if not k.startswith("__")}
        logger.emit(schema_id=DEMO_ID, data=data, timestamp_override=when)

    for text in outputs():
        ours = [json.loads(x) for x in text.splitlines()]
        assert len(ours) == len(recorded)
        for mine, real in zip(ours, recorded):
            assert list(mine) == list(real)  # same fields, same order
            # jupyter_events made the schema version a string in 2024-12; all else is identical.
            assert mine["__schema_version__"] == str(real["__schema_version__"])
            assert {**mine, "__schema_version__": None} == {**real, "__schema_version__": None}


def test_jupyter_events_modifiers_are_applied_before_sinks(sinks, fixtures_dir):
    made, outputs = sinks
    logger = EventLogger(handlers=made)
    logger.register_event_schema(fixtures_dir / "jupyter_events/head-147cf71/tests/schemas/good/user.yaml")

    def redact(schema_id, data):
        return {**data, "username": "<redacted>"}

    logger.add_modifier(schema_id="http://event.jupyter.org/user", modifier=redact)
    capsule = logger.emit(schema_id="http://event.jupyter.org/user", data={"username": "ada"})
    assert capsule["username"] == "<redacted>"
    assert all(json.loads(text) == capsule for text in outputs())


def test_jupyter_events_logger_from_traitlets_config(tmp_path, kernel_actions):
    """The usage load_sinks() documents: c.EventLogger.handlers = load_sinks([...], config=c)."""
    c = Config()
    c.RotatingFileSink.filename = str(tmp_path / "server-events.jsonl")
    c.EventLogger.handlers = load_sinks(["rotating_file"], config=c)
    logger = EventLogger(config=c)
    (sink,) = logger.handlers
    try:
        assert isinstance(sink, RotatingFileSink)
        logger.register_event_schema(kernel_actions)
        data = {"action": "start", "msg": "m", "kernel_id": "k"}
        capsule = logger.emit(schema_id=KERNEL_ACTIONS_ID, data=data)
    finally:
        sink.close()
    assert (tmp_path / "server-events.jsonl").read_text() == encode(capsule) + "\n"


# --------------------------------------------------------------------------- jupyter_telemetry


def test_jupyter_telemetry_eventlog_with_our_sinks(sinks, fixtures_dir):
    made, outputs = sinks
    capture = Capture()
    eventlog = TelemetryEventLog(handlers=[*made, capture], allowed_schemas=[TELEMETRY_ID])
    assert all(type(s.formatter).__name__ == "JsonFormatter" for s in made)
    eventlog.register_schema_file(
        str(fixtures_dir / "jupyter_telemetry/docs-example-2975fca/example-event.yaml")
    )
    events = [{"thing": "button clicked", "user": "ada"}, {"thing": "x" * 300, "user": "grace"}]
    for event in events:
        eventlog.record_event(TELEMETRY_ID, 1, event)
    eventlog.record_event(
        TELEMETRY_ID, 1, {"thing": "late", "user": "bob"},
        timestamp_override=dt.datetime(2020, 1, 2, 3, 4, 5, 6),
    )

    capsules = capture.messages
    assert len(capsules) == 3
    for capsule, event in zip(capsules, events):
        assert capsule["__schema__"] == TELEMETRY_ID and capsule["__schema_version__"] == 1
        assert {k: v for k, v in capsule.items() if k not in CAPSULE_FIELDS} == event
    assert capsules[2]["__timestamp__"] == "2020-01-02T03:04:05.000006Z"
    expected = "".join(encode(c) + "\n" for c in capsules)
    assert outputs() == [expected, expected, expected]


def test_jupyter_telemetry_skips_schemas_not_allowed(sinks, fixtures_dir):
    made, outputs = sinks
    eventlog = TelemetryEventLog(handlers=made, allowed_schemas=[])
    eventlog.register_schema_file(
        str(fixtures_dir / "jupyter_telemetry/docs-example-2975fca/example-event.yaml")
    )
    eventlog.record_event(TELEMETRY_ID, 1, {"thing": "t", "user": "u"})
    assert outputs() == ["", "", ""]
