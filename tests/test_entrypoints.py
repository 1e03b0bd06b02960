"""A third-party sink package registered through the ``telemetry_sinks.sinks`` entry points.

The example package in ``entrypoints/telemetry-sinks-example`` is really installed
(into a temporary directory, with pip) and used from a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "entrypoints" / "telemetry-sinks-example"
KERNEL_ACTIONS_ID = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The example package, pip-installed into a directory of its own."""
    work = tmp_path_factory.mktemp("example-install")
    source = work / "src"
    # Build from a copy, so that build/ and *.egg-info do not land in the repository.
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    result = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
            "--disable-pip-version-check", "--no-input", "--target", str(target), str(source),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    hint = ""
    if "bdist_wheel" in result.stderr:
        hint = "\n(--no-build-isolation builds with this venv's setuptools: it needs setuptools>=70.1)"
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}{hint}"
    assert (target / "telemetry_sinks_example" / "__init__.py").is_file()
    return target


def run_python(code: str, pythonpath: Path | None, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, f"subprocess failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


LIST_SINKS = """
    import json
    from telemetry_sinks import available_sinks
    rows = {
        row.name: {
            "class_path": row.class_path, "importable": row.importable, "error": row.error,
            "distribution": row.distribution, "install_command": row.install_command,
        }
        for row in available_sinks()
    }
    print(json.dumps(rows))
"""


def test_example_sink_is_listed_only_when_installed(installed):
    without = run_python(LIST_SINKS, None)
    assert "example" not in without
    assert {"file", "rotating_file", "timed_rotating_file", "stream"} <= set(without)

    rows = run_python(LIST_SINKS, installed)
    assert rows["example"] == {
        "class_path": "telemetry_sinks_example:SequencedFileSink",
        "importable": True,
        "error": None,
        "distribution": "telemetry-sinks-example",
        "install_command": "pip install telemetry-sinks-example",
    }
    # Installing a plugin does not disturb the built-in sinks.
    assert {name: row for name, row in rows.items() if name != "example"} == without


def test_get_sink_builds_the_example_sink(installed, tmp_path):
    out = tmp_path / "numbered.jsonl"
    result = run_python(
        """
        import json, logging, sys
        from telemetry_sinks import SinkConfigError, get_sink, sink_class
        path = sys.argv[1]
        sink = get_sink("example", filename=path, seq_field="n", start=10)
        log = logging.getLogger("plugin-test")
        log.propagate = False
        log.setLevel(logging.INFO)
        log.addHandler(sink)
        log.info({"__schema__": "s", "a": 1})
        log.warning("plain %s", "record")
        sink.close()
        errors = []
        for bad in ({"filename": path, "seq_feld": "x"}, {"filename": path, "start": "ten"},
                    {"seq_field": "n"}, {"filename": path, "seq_field": ""}):
            try:
                get_sink("example", **bad)
                errors.append(None)
            except SinkConfigError as exc:
                errors.append(str(exc))
        print(json.dumps({
            "class": type(sink).__name__,
            "module": type(sink).__module__,
            "same_class": sink_class("example") is type(sink),
            "errors": errors,
        }))
        """,
        installed,
        str(out),
    )
    assert result["class"] == "SequencedFileSink"
    assert result["module"] == "telemetry_sinks_example"
    assert result["same_class"] is True
    bad_name, bad_type, missing, empty = result["errors"]
    assert "SequencedFileSink" in bad_name and "Did you mean 'seq_field'" in bad_name
    assert "SequencedFileSink" in bad_type and "start" in bad_type
    assert "SequencedFileSink" in missing and "filename" in missing
    assert "SequencedFileSink" in empty and "seq_field" in empty

    first, second = (json.loads(line) for line in out.read_text().splitlines())
    assert list(first) == ["n", "__schema__", "a"]
    assert first == {"n": 10, "__schema__": "s", "a": 1}
    assert second["n"] == 11 and second["message"] == "plain record" and second["level"] == "WARNING"


RECORD_WITH_CONFIG = """
    import json, sys
    from traitlets.config import Config
    from telemetry_sinks import EventLog
    path, schema, schema_id = sys.argv[1:4]
    c = Config()
    c.EventLog.sinks = ["example"]
    c.EventLog.schema_paths = [schema]
    c.EventLog.allowed_schemas = [schema_id]
    c.SequencedFileSink.filename = path
    c.SequencedFileSink.start = 100
    log = EventLog(config=c)
    capsules = [
        log.record_event(schema_id, 1, {"action": "start", "msg": "started", "kernel_id": "k-%d" % i})
        for i in range(3)
    ]
    log.close()
    print(json.dumps({
        "sinks": [type(h).__name__ for h in log.all_handlers],
        "start": log.all_handlers[0].start,
        "capsules": capsules,
    }))
"""


def test_traitlets_config_selects_and_configures_the_example_sink(installed, tmp_path, fixtures_dir):
    out = tmp_path / "events" / "numbered.jsonl"
    schema = fixtures_dir / "jupyter_server/head-9a4d6ee/jupyter_server/event_schemas/kernel_actions/v1.yaml"
    args = (str(out), str(schema), KERNEL_ACTIONS_ID)

    first = run_python(RECORD_WITH_CONFIG, installed, *args)
    assert first["sinks"] == ["SequencedFileSink"]
    assert first["start"] == 100
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line.pop("__seq__") for line in lines] == [100, 101, 102]
    assert lines == first["capsules"]
    assert [line["kernel_id"] for line in lines] == ["k-0", "k-1", "k-2"]
    assert all(line["__schema__"] == KERNEL_ACTIONS_ID for line in lines)

    # A restarted process continues the numbering of the existing file.
    second = run_python(RECORD_WITH_CONFIG, installed, *args)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["__seq__"] for line in lines] == [100, 101, 102, 103, 104, 105]
    assert [{k: v for k, v in line.items() if k != "__seq__"} for line in lines[3:]] == second["capsules"]


def test_unknown_sink_in_config_is_an_error_without_the_plugin(tmp_path):
    result = run_python(
        """
        import json, sys
        from traitlets.config import Config
        from telemetry_sinks import EventLog, UnknownSinkError
        c = Config()
        c.EventLog.sinks = ["example"]
        c.SequencedFileSink.filename = sys.argv[1]
        try:
            EventLog(config=c)
            print(json.dumps({"error": None}))
        except UnknownSinkError as exc:
            print(json.dumps({"error": str(exc)}))
        """,
        None,
        str(tmp_path / "x.jsonl"),
    )
    assert result["error"] is not None and "'example'" in result["error"]
    assert not (tmp_path / "x.jsonl").exists()
