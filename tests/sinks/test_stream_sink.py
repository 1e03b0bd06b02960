"""StreamSink: JSON lines to stdout, stderr or a file object."""

from __future__ import annotations

import io
import json
import logging
import sys
import uuid

import pytest

from telemetry_sinks.capsule import encode, make_capsule
from telemetry_sinks.sinks.stream import StreamSink

CAPSULE = make_capsule("https://events.example.org/s", 2, {"a": [1, 2], "nan": float("nan")})


@pytest.fixture
def logger():
    log = logging.getLogger(f"test_stream_sink.{uuid.uuid4().hex}")
    log.setLevel(logging.INFO)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def _lines(text: str) -> list[dict]:
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("name", ["stdout", "stderr"])
def test_named_streams(capsys, logger, name):
    logger.addHandler(StreamSink(stream=name))
    logger.info(CAPSULE)
    out, err = capsys.readouterr()
    written, silent = (out, err) if name == "stdout" else (err, out)
    assert silent == ""
    assert written == encode(CAPSULE) + "\n"
    assert _lines(written) == [{**CAPSULE, "nan": None}]


def test_default_is_stderr(capsys):
    sink = StreamSink()
    sink.handle_capsule(CAPSULE)
    out, err = capsys.readouterr()
    assert out == "" and _lines(err)[0]["__schema__"] == CAPSULE["__schema__"]


def test_stream_name_is_resolved_when_writing(monkeypatch):
    """A sink made before sys.stdout is replaced (pytest, Jupyter) writes to the new one."""
    sink = StreamSink(stream="stdout")
    replacement = io.StringIO()
    monkeypatch.setattr(sys, "stdout", replacement)
    sink.handle_capsule({"x": 1})
    assert replacement.getvalue() == '{"x":1}\n'


def test_file_object(tmp_path, logger):
    buffer = io.StringIO()
    logger.addHandler(StreamSink(stream=buffer))
    logger.info(CAPSULE)
    logger.error("plain %s", "message")
    first, second = _lines(buffer.getvalue())
    assert first == {**CAPSULE, "nan": None}
    assert second["message"] == "plain message" and second["level"] == "ERROR"

    path = tmp_path / "out.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        sink = StreamSink(stream=fh)
        sink.handle_capsule({"y": 2})
        # Flushed after each line, so it is on disk while the file is still open.
        assert path.read_text() == '{"y":2}\n'


def test_object_without_flush_is_accepted():
    class Collector:
        def __init__(self):
            self.parts = []

        def write(self, text):
            self.parts.append(text)

    target = Collector()
    sink = StreamSink(stream=target)
    sink.handle_capsule({"z": 3})
    sink.flush()
    assert "".join(target.parts) == '{"z":3}\n'
