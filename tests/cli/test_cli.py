"""The telemetry-sinks command line, run as a user would run it."""

from __future__ import annotations

import json

from helpers.cli import run
from helpers.paths import FIXTURES

LAUNCH_V1 = FIXTURES / "binderhub" / "launch-history" / "v1-3da0f0c" / "launch.json"
ARCHIVE = FIXTURES / "mybinder_archive" / "from-sydney-lesson-e1a67d9" / "events-2018-11-03.jsonl"


def test_emit_example_writes_rotating_jsonl_under_events(tmp_path):
    result = run("emit", "--example", cwd=tmp_path)
    assert "4 recorded, 0 not recorded" in result.stdout
    assert "1 rejected" in result.stdout
    assert "line 5: REJECTED" in result.stdout and "$.status" in result.stdout
    assert result.returncode == 1  # one example line is invalid on purpose
    written = [json.loads(x) for x in (tmp_path / "events" / "events.jsonl").read_text().splitlines()]
    assert len(written) == 4
    launch = written[0]
    assert launch["app"] == "jupyterlab"
    # The default policy records no personal data: username and the client IP are redacted.
    assert "username" not in launch and "ip" not in launch["client"]
    assert all("path" not in e for e in written)


def test_emit_with_config_file_and_stdin(tmp_path):
    config = tmp_path / "config.py"
    out = tmp_path / "out.jsonl"
    config.write_text(
        f"c.EventLog.schema_paths = [{str(LAUNCH_V1)!r}]\n"
        "c.EventLog.allowed_schemas = ['binderhub.jupyter.org/launch']\n"
        "c.EventLog.sinks = ['file']\n"
        f"c.FileSink.filename = {str(out)!r}\n"
    )
    bodies = []
    for line in ARCHIVE.read_text().splitlines():
        rec = json.loads(line)
        data = {k: v for k, v in rec.items() if k not in ("timestamp", "schema", "version")}
        bodies.append(json.dumps({"schema_id": rec["schema"], "version": rec["version"], "data": data}))
    bodies.append('{"schema_id": "binderhub.jupyter.org/launch", "version": 2, "data": {}}')
    bodies.append("not json")
    result = run("emit", "--config", config, stdin="\n".join(bodies) + "\n")
    assert result.returncode == 1
    assert "3 recorded, 0 not recorded" in result.stdout and "2 rejected" in result.stdout
    assert "line 4: REJECTED" in result.stdout and "registered versions: 1" in result.stdout
    assert "line 5: REJECTED invalid JSON" in result.stdout
    written = [json.loads(x) for x in out.read_text().splitlines()]
    assert [w["spec"] for w in written] == [
        "Qiskit/qiskit-tutorial/master",
        "ipython/ipython-in-depth/master",
        "QISKit/qiskit-tutorial/master",
    ]


def test_validate_schema_and_events(tmp_path):
    result = run("validate", LAUNCH_V1, ARCHIVE)
    assert result.returncode == 0, result.stdout
    assert "3 valid, 0 invalid" in result.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"provider": "GitHub"}\n\n{"provider": "Nope"}\n{"spec": 5}\n{oops\n')
    result = run("validate", LAUNCH_V1, bad)
    assert result.returncode == 1
    assert "line 3: INVALID at $.provider" in result.stdout
    assert "line 4: INVALID at $.spec" in result.stdout
    assert "line 5: INVALID invalid JSON" in result.stdout
    assert "1 valid, 3 invalid" in result.stdout


def test_validate_reports_a_bad_schema():
    bad = FIXTURES / "jupyter_events/head-147cf71/tests/schemas/bad/reserved-property.yaml"
    result = run("validate", bad)
    assert result.returncode == 1
    assert "__badName" in result.stdout


def test_sinks_table():
    result = run("sinks")
    assert result.returncode == 0
    header, rule, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "INSTALLED", "EXTRA"]
    names = [r.split()[0] for r in rows]
    assert {"file", "rotating_file", "timed_rotating_file", "stream"} <= set(names)


def test_bad_config_is_exit_code_2_with_a_message(tmp_path):
    config = tmp_path / "config.py"
    config.write_text("c.EventLog.sinks = ['rotating_fil']\n")
    result = run("emit", "--config", config, stdin="")
    assert result.returncode == 2
    assert "Did you mean 'rotating_file'?" in result.stderr
    result = run("emit", "--config", tmp_path / "missing.py", stdin="")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_help_has_examples():
    result = run("emit", "--help")
    assert result.returncode == 0 and "telemetry-sinks emit --example" in result.stdout
