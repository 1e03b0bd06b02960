"""Sinks as ordinary ``logging`` handlers: logger trees, dictConfig, and traitlets config."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import uuid
from pathlib import Path

import pytest
from helpers.jsonl import read_jsonl
from traitlets.config import Config

from telemetry_sinks import (
    EventLog,
    FileSink,
    RotatingFileSink,
    SinkConfigError,
    StreamSink,
    TimedRotatingFileSink,
    get_sink,
    load_sinks,
)
from telemetry_sinks.capsule import encode

KERNEL_ACTIONS_ID = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"


@pytest.fixture
def kernel_actions(fixtures_dir) -> Path:
    """jupyter_server's real kernel_actions schema (``version: "1"``)."""
    path = fixtures_dir / "jupyter_server/head-9a4d6ee/jupyter_server/event_schemas/kernel_actions/v1.yaml"
    assert path.is_file(), path
    return path


@pytest.fixture
def tree():
    """A fresh logger tree ``<root>``, ``<root>.child``; handlers are closed afterwards."""
    root = logging.getLogger(f"tsinks_it_{uuid.uuid4().hex}")
    child = logging.getLogger(root.name + ".child")
    yield root, child
    for log in (root, child):
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()
        log.setLevel(logging.NOTSET)
        log.propagate = True


def _make(kind: str, tmp_path: Path):
    """One sink of each kind, plus a function reading back what it wrote."""
    if kind == "stream":
        buffer = io.StringIO()
        return StreamSink(stream=buffer), lambda: [json.loads(x) for x in buffer.getvalue().splitlines()]
    path = tmp_path / f"{kind}.jsonl"
    cls = {"file": FileSink, "rotating": RotatingFileSink, "timed": TimedRotatingFileSink}[kind]
    return cls(path), lambda: read_jsonl(path)


@pytest.mark.parametrize("kind", ["file", "rotating", "timed", "stream"])
def test_every_sink_works_in_a_logger_tree(tree, tmp_path, kind):
    root, child = tree
    root.setLevel(logging.INFO)
    root.propagate = False
    sink, written = _make(kind, tmp_path)
    sink.setLevel(logging.INFO)
    # A formatter does not change what a sink writes: payloads come from the record.
    sink.setFormatter(logging.Formatter("IGNORED %(message)s"))
    root.addHandler(sink)

    child.debug("not recorded: below the logger level")
    child.info("user %s logged in", "ada", extra={"session": 7})
    root.info({"__schema__": "https://x.org/e", "__schema_version__": 1, "n": 1})
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        child.exception("division failed")
    sink.flush()

    first, second, third = written()
    assert first["message"] == "user ada logged in"
    assert first["logger"] == child.name and first["level"] == "INFO" and first["session"] == 7
    assert second == {"__schema__": "https://x.org/e", "__schema_version__": 1, "n": 1}
    assert third["level"] == "ERROR" and "ZeroDivisionError" in third["exception"]
    assert not any("IGNORED" in json.dumps(x) for x in (first, second, third))


def test_handler_level_filters_records(tree, tmp_path):
    root, child = tree
    root.setLevel(logging.DEBUG)
    root.propagate = False
    everything = FileSink(tmp_path / "all.jsonl")
    errors = FileSink(tmp_path / "errors.jsonl", level="ERROR")
    root.addHandler(everything)
    root.addHandler(errors)
    child.debug("d")
    child.warning("w")
    child.error("e")
    assert [r["message"] for r in read_jsonl(tmp_path / "all.jsonl")] == ["d", "w", "e"]
    assert [r["message"] for r in read_jsonl(tmp_path / "errors.jsonl")] == ["e"]


# --------------------------------------------------------------------------- dictConfig


# These tests call the real dictConfig, which closes every handler of the process; the
# sinks of other tests' long-lived fixtures reopen on their next event.


def _dict_config(logger_name: str, handler: dict) -> dict:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(message)s"}},
        "handlers": {"events": handler},
        "loggers": {logger_name: {"handlers": ["events"], "level": "INFO", "propagate": False}},
    }


def test_dictconfig_with_class_and_options(tree, tmp_path):
    root, child = tree
    path = tmp_path / "logs" / "events.jsonl"
    logging.config.dictConfig(
        _dict_config(
            root.name,
            {
                "class": "telemetry_sinks.sinks.file.RotatingFileSink",
                "filename": str(path),
                "max_bytes": 400,
                "backup_count": 50,
                "compress": False,
                "level": "INFO",
                "formatter": "plain",
            },
        )
    )
    (sink,) = root.handlers
    assert isinstance(sink, RotatingFileSink)
    assert (sink.filename, sink.max_bytes, sink.backup_count) == (str(path), 400, 50)
    sent = [{"__schema__": "s", "i": i, "text": "z" * 60} for i in range(30)]
    for capsule in sent:
        child.info(capsule)
    child.debug({"below": "level"})
    sink.flush()
    rotated = sorted(path.parent.glob("events.jsonl.*"), key=lambda p: -int(p.suffix[1:]))
    assert rotated, "max_bytes from dictConfig must take effect"
    assert [r for p in [*rotated, path] for r in read_jsonl(p)] == sent


def test_dictconfig_with_registry_factory(tree, tmp_path, capsys):
    root, child = tree
    path = tmp_path / "factory.jsonl"
    logging.config.dictConfig(
        _dict_config(
            root.name,
            {
                "()": "telemetry_sinks.get_sink",
                "name": "rotating_file",
                "filename": str(path),
                "max_bytes": 10_000,
                "backup_count": 1,
            },
        )
    )
    (sink,) = root.handlers
    assert type(sink) is RotatingFileSink and sink.max_bytes == 10_000 and sink.backup_count == 1
    child.warning("hello %s", "world")
    assert read_jsonl(path)[0]["message"] == "hello world"

    stream_name = root.name + ".stream"
    logging.config.dictConfig(
        _dict_config(stream_name, {"()": "telemetry_sinks.get_sink", "name": "stream", "stream": "stdout"})
    )
    stream_logger = logging.getLogger(stream_name)
    try:
        stream_logger.info({"x": 1})
        assert capsys.readouterr().out == '{"x":1}\n'
    finally:
        for handler in list(stream_logger.handlers):
            stream_logger.removeHandler(handler)
            handler.close()


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (
            {"class": "telemetry_sinks.sinks.file.RotatingFileSink", "filename": "x.jsonl", "max_bites": 1},
            "Did you mean 'max_bytes'",
        ),
        (
            {"()": "telemetry_sinks.get_sink", "name": "rotating_file", "filename": "x", "max_bytes": -1},
            "max_bytes",
        ),
        ({"()": "telemetry_sinks.get_sink", "name": "file"}, "filename"),
    ],
)
def test_dictconfig_errors_name_the_option(tree, tmp_path, monkeypatch, handler, expected):
    monkeypatch.chdir(tmp_path)
    root, _ = tree
    with pytest.raises(ValueError, match="Unable to configure handler 'events'") as info:
        logging.config.dictConfig(_dict_config(root.name, handler))
    assert isinstance(info.value.__cause__, SinkConfigError)
    assert expected in str(info.value.__cause__)


def test_get_sink_passes_options():
    sink = get_sink("stream", stream="stdout", level="WARNING")
    assert isinstance(sink, StreamSink) and sink.stream == "stdout" and sink.level == logging.WARNING


# --------------------------------------------------------------------------- traitlets config


def _config(tmp_path: Path, schema: Path) -> Config:
    c = Config()
    c.EventLog.sinks = ["rotating_file"]
    c.EventLog.schema_paths = [str(schema)]
    c.EventLog.allowed_schemas = [KERNEL_ACTIONS_ID]
    c.RotatingFileSink.filename = str(tmp_path / "events" / "events.jsonl")
    c.RotatingFileSink.max_bytes = 300
    c.RotatingFileSink.backup_count = 20
    return c


def test_eventlog_builds_sinks_from_traitlets_config(tmp_path, kernel_actions):
    log = EventLog(config=_config(tmp_path, kernel_actions))
    try:
        (sink,) = log.all_handlers
        assert isinstance(sink, RotatingFileSink)
        assert (sink.max_bytes, sink.backup_count) == (300, 20)
        sent = [
            {"action": "start", "msg": "kernel started", "kernel_id": f"k-{i}", "status": "success"}
            for i in range(8)
        ]
        capsules = [log.record_event(KERNEL_ACTIONS_ID, 1, event) for event in sent]
    finally:
        log.close()
    base = tmp_path / "events" / "events.jsonl"
    rotated = sorted(base.parent.glob("events.jsonl.*"), key=lambda p: -int(p.suffix[1:]))
    assert rotated, "c.RotatingFileSink.max_bytes must reach the sink"
    lines = [line for p in [*rotated, base] for line in read_jsonl(p)]
    assert lines == capsules
    assert [{k: v for k, v in line.items() if not k.startswith("__")} for line in lines] == sent
    assert all(line["__schema__"] == KERNEL_ACTIONS_ID and line["__schema_version__"] == 1 for line in lines)
    # The bytes on disk are exactly the encoding rule applied to each capsule.
    assert "".join(p.read_text() for p in [*rotated, base]) == "".join(encode(c) + "\n" for c in capsules)


def test_eventlog_records_nothing_for_schemas_not_allowed(tmp_path, kernel_actions):
    c = _config(tmp_path, kernel_actions)
    c.EventLog.allowed_schemas = []
    log = EventLog(config=c)
    try:
        assert log.record_event(KERNEL_ACTIONS_ID, 1, {"action": "start", "msg": "m"}) is None
    finally:
        log.close()
    assert (tmp_path / "events" / "events.jsonl").read_text() == ""


def test_eventlog_with_two_configured_sinks(tmp_path, kernel_actions, capsys):
    c = _config(tmp_path, kernel_actions)
    c.EventLog.sinks = ["rotating_file", "stream"]
    c.StreamSink.stream = "stdout"
    log = EventLog(config=c)
    try:
        data = {"action": "restart", "msg": "m", "kernel_id": "k"}
        capsule = log.emit(schema_id=KERNEL_ACTIONS_ID, data=data)
    finally:
        log.close()
    assert capsys.readouterr().out == encode(capsule) + "\n"
    assert read_jsonl(tmp_path / "events" / "events.jsonl") == [capsule]


def test_load_sinks_for_host_event_loggers(tmp_path):
    c = Config()
    c.RotatingFileSink.filename = str(tmp_path / "a.jsonl")
    c.RotatingFileSink.backup_count = 3
    c.TimedRotatingFileSink.filename = str(tmp_path / "b.jsonl")
    c.TimedRotatingFileSink.when = "H"
    c.StreamSink.stream = "stdout"
    rotating, timed, stream = load_sinks(["rotating_file", "timed_rotating_file", "stream"], config=c)
    try:
        assert type(rotating) is RotatingFileSink and rotating.backup_count == 3
        assert rotating.filename == str(tmp_path / "a.jsonl")
        assert type(timed) is TimedRotatingFileSink and timed.when == "H"
        assert type(stream) is StreamSink and stream.stream == "stdout"
        rotating.handle_capsule({"k": 1})
        assert read_jsonl(tmp_path / "a.jsonl") == [{"k": 1}]
    finally:
        for sink in (rotating, timed, stream):
            sink.close()


def test_load_sinks_reports_config_errors(tmp_path):
    c = Config()
    c.RotatingFileSink.max_bytes = 10  # but no filename
    with pytest.raises(SinkConfigError, match=r"c\.RotatingFileSink\.filename"):
        load_sinks(["rotating_file"], config=c)
