"""EventLog: default-deny, capsules, validation errors, routing, robustness."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re

import pytest
from helpers.paths import FIXTURES
from traitlets import TraitError
from traitlets.config import Config

from telemetry_sinks import (
    EventLog,
    EventRouter,
    EventValidationError,
    FileSink,
    StreamSink,
    UnknownSchemaError,
)

LAUNCH = FIXTURES / "binderhub" / "launch-history"
LAUNCH_ID = "binderhub.jupyter.org/launch"
EVENT = {"provider": "GitHub", "spec": "org/repo/main", "status": "success"}
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def out():
    return io.StringIO()


def make_log(out, **kwargs) -> EventLog:
    log = EventLog(handlers=[StreamSink(stream=out)], **kwargs)
    for version in ("v1-3da0f0c", "v4-42002ed", "v6-a0c55e8"):
        log.register_schema_file(LAUNCH / version / "launch.json")
    return log


def test_nothing_is_recorded_by_default(out):
    log = make_log(out)
    assert log.record_event(LAUNCH_ID, 6, EVENT) is None
    assert log.emit(schema_id=LAUNCH_ID, data=EVENT) is None
    assert out.getvalue() == ""


def test_nothing_is_recorded_without_handlers():
    log = EventLog(allowed_schemas=[LAUNCH_ID])
    log.register_schema_file(LAUNCH / "v6-a0c55e8" / "launch.json")
    assert log.record_event(LAUNCH_ID, 6, EVENT) is None


def test_capsule_shape_and_what_reaches_the_sink(out):
    log = make_log(out, allowed_schemas=[LAUNCH_ID])
    capsule = log.record_event(LAUNCH_ID, 4, {**EVENT, "ref": "abc123"})
    assert list(capsule)[:4] == [
        "__timestamp__",
        "__schema__",
        "__schema_version__",
        "__metadata_version__",
    ]
    assert TS.match(capsule["__timestamp__"])
    assert capsule["__schema__"] == LAUNCH_ID
    assert capsule["__schema_version__"] == 4
    assert capsule["__metadata_version__"] == 1
    assert {k: v for k, v in capsule.items() if not k.startswith("__")} == {**EVENT, "ref": "abc123"}
    assert lines(out) == [capsule]


def test_emit_without_version_uses_the_newest(out):
    log = make_log(out, allowed_schemas=[LAUNCH_ID])
    assert log.emit(schema_id=LAUNCH_ID, data=EVENT)["__schema_version__"] == 6
    assert log.emit(schema_id=LAUNCH_ID, data=EVENT, version=1)["__schema_version__"] == 1


def test_timestamp_override(out):
    log = make_log(out, allowed_schemas=[LAUNCH_ID])
    when = dt.datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)
    assert log.record_event(LAUNCH_ID, 6, EVENT, when)["__timestamp__"] == "2026-11-22T10:00:00.123456Z"
    other_zone = when.astimezone(dt.timezone(dt.timedelta(hours=5)))
    assert log.record_event(LAUNCH_ID, 6, EVENT, other_zone)["__timestamp__"].startswith(
        "2026-11-22T10:00:00"
    )


def test_invalid_event_raises_and_reaches_no_sink(out):
    log = make_log(out, allowed_schemas=[LAUNCH_ID])
    with pytest.raises(EventValidationError) as info:
        log.record_event(LAUNCH_ID, 6, {**EVENT, "provider": "Dropbox"})
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.schema_id, err.version, err.path) == (LAUNCH_ID, 6, "$.provider")
    assert "Dropbox" in err.reason
    assert f"{LAUNCH_ID!r} version 6" in str(err) and "$.provider" in str(err)
    with pytest.raises(EventValidationError, match="must be a JSON object"):
        log.record_event(LAUNCH_ID, 6, ["not", "a", "dict"])
    assert out.getvalue() == ""


def test_unknown_schema_or_version_lists_what_is_registered(out):
    log = make_log(out, allowed_schemas=[LAUNCH_ID])
    with pytest.raises(UnknownSchemaError) as info:
        log.record_event(LAUNCH_ID, 3, EVENT)
    assert "registered versions: 1, 4, 6" in str(info.value)
    with pytest.raises(UnknownSchemaError, match="'nope' is not registered.*binderhub"):
        log.emit(schema_id="nope", data={})


def test_reserved_property_in_event_data_cannot_overwrite_capsule_fields(out):
    log = make_log(out, allowed_schemas=[LAUNCH_ID])
    with pytest.raises(EventValidationError, match="reserved"):
        log.record_event(LAUNCH_ID, 6, {**EVENT, "__schema__": "evil"})
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    "value",
    [
        "binderhub",  # a bare string
        {"x": ["unrestricted"]},  # a list instead of the policy dict
        {"x": {"allowed_category": []}},  # a misspelled key
        {"x": {"allowed_categories": "user-identifier"}},  # a string instead of a list
        [1, 2],
    ],
)
def test_bad_allowed_schemas_is_a_clear_trait_error(value):
    with pytest.raises(TraitError) as info:
        EventLog(allowed_schemas=value)
    assert "allowed_schemas" in str(info.value)


def test_a_failing_handler_does_not_break_emit_or_other_handlers(out, caplog):
    class Broken(logging.Handler):
        def emit(self, record):
            raise RuntimeError("disk on fire")

        def handle(self, record):
            raise RuntimeError("handler exploded")

    log = EventLog(handlers=[Broken(), StreamSink(stream=out)], allowed_schemas=[LAUNCH_ID])
    log.register_schema_file(LAUNCH / "v6-a0c55e8" / "launch.json")
    with caplog.at_level(logging.ERROR, logger="telemetry_sinks.eventlog"):
        capsule = log.record_event(LAUNCH_ID, 6, EVENT)
    assert lines(out) == [capsule]
    assert "handler exploded" in caplog.text


def test_plain_logging_handlers_receive_the_capsule_as_record_msg(out):
    received = []

    class Collect(logging.Handler):
        def emit(self, record):
            received.append(record.msg)

    log = make_log(out, allowed_schemas=[LAUNCH_ID])
    log.add_handler(Collect())
    capsule = log.record_event(LAUNCH_ID, 6, EVENT)
    assert received == [capsule]


def test_sink_filters_and_levels_are_honoured(out):
    sink = StreamSink(stream=out)
    sink.addFilter(lambda record: record.msg.get("status") == "success")
    log = EventLog(handlers=[sink], allowed_schemas=[LAUNCH_ID])
    log.register_schema_file(LAUNCH / "v6-a0c55e8" / "launch.json")
    log.record_event(LAUNCH_ID, 6, EVENT)
    log.record_event(LAUNCH_ID, 6, {**EVENT, "status": "failure"})
    assert [e["status"] for e in lines(out)] == ["success"]
    sink.setLevel(logging.WARNING)
    log.record_event(LAUNCH_ID, 6, EVENT)
    assert len(lines(out)) == 1


def test_sinks_by_name_from_traitlets_config(tmp_path):
    c = Config()
    c.EventLog.sinks = ["file"]
    c.EventLog.allowed_schemas = [LAUNCH_ID]
    c.EventLog.schema_paths = [str(LAUNCH / "v6-a0c55e8" / "launch.json")]
    c.FileSink.filename = str(tmp_path / "out.jsonl")
    log = EventLog(config=c)
    capsule = log.record_event(LAUNCH_ID, 6, EVENT)
    log.close()
    assert [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()] == [capsule]
    assert isinstance(log.all_handlers[0], FileSink)


def test_router_records_into_each_log_with_its_own_policy(tmp_path):
    schema = FIXTURES / "jupyter_telemetry" / "docs-example-2975fca" / "example-event.yaml"
    sid = "event.jupyter.org/example-event"
    public, private = io.StringIO(), io.StringIO()
    log_public = EventLog(handlers=[StreamSink(stream=public)], allowed_schemas=[sid])
    log_private = EventLog(
        handlers=[StreamSink(stream=private)],
        allowed_schemas={sid: {"allowed_categories": ["user-identifier"]}},
    )
    log_none = EventLog(handlers=[StreamSink(stream=io.StringIO())])
    for log in (log_public, log_private, log_none):
        log.register_schema_file(schema)
    router = EventRouter([log_public, log_private, log_none])
    caps = router.record_event(sid, 1, {"thing": "t", "user": "alice"})
    assert caps[2] is None
    assert lines(public) == [caps[0]] and "user" not in caps[0]
    assert lines(private) == [caps[1]] and caps[1]["user"] == "alice"
    assert caps[0]["__timestamp__"] == caps[1]["__timestamp__"]
    # An invalid event raises before anything reaches any log.
    with pytest.raises(EventValidationError):
        router.record_event(sid, 1, {"thing": "t"})
    assert len(lines(public)) == 1 and len(lines(private)) == 1


def test_emit_does_not_mutate_or_keep_the_callers_event(out):
    log = make_log(out, allowed_schemas=[LAUNCH_ID])
    event = dict(EVENT)
    capsule = log.record_event(LAUNCH_ID, 6, event)
    assert event == EVENT
    capsule["spec"] = "changed"
    assert event["spec"] == "org/repo/main"


def test_a_version_given_as_a_string_compiles_the_redaction_plan_once(monkeypatch):
    """jupyter_events callers pass ``version="1"``: the policy's plan is still compiled once."""
    import telemetry_sinks.eventlog as eventlog_module

    compiled = []
    real = eventlog_module.compile_plan

    def counting(*args, **kwargs):
        compiled.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(eventlog_module, "compile_plan", counting)
    schema = {
        "$id": "https://events.example.org/plan-cache", "version": 1, "type": "object",
        "properties": {"app": {"type": "string"},
                       "user": {"type": "string", "categories": ["user-identifier"]}},
    }
    captured = []

    class Keep(logging.Handler):
        def emit(self, record):
            captured.append(record.msg)

    log = EventLog(handlers=[Keep()], allowed_schemas=[schema["$id"]], load_schema_entry_points=False)
    log.register_schema(schema)
    for version in ("1", "1", 1, None, "1"):
        log.emit(schema_id=schema["$id"], version=version, data={"app": "lab", "user": "ada"})
    assert len(compiled) == 1
    assert len(captured) == 5
    assert all(c["app"] == "lab" and "user" not in c and c["__schema_version__"] == 1 for c in captured)
