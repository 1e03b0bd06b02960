"""The README's policy configuration, traitlets and dictConfig forms, run as written (paths aside)."""

from __future__ import annotations

import json
import logging
import logging.config
import re
import secrets
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
SID = "https://events.example.org/app/session"
SCHEMA = {
    "$id": SID, "version": 1, "type": "object",
    "properties": {
        "user": {"type": "string", "categories": ["user-identifier"]},
        "email": {"type": "string", "categories": ["user-identifiable-information"]},
        "client": {"type": "object", "properties": {"ip": {"type": "string"}}},
        "started_at": {"type": "string", "format": "date-time"},
        "files": {"type": "array", "items": {"type": "object", "properties": {"size": {"type": "integer"}}}},
        "user_agent": {"type": "string"},
        "action": {"type": "string"},
    },
}
EVENT = {"user": "alice", "email": "alice@example.org", "client": {"ip": "203.0.113.77"},
         "started_at": "2026-03-05T12:34:56.789+01:00", "files": [{"size": 123456}],
         "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101", "action": "open"}


def policy_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Drop, keep, pseudonymize, generalize"):]
    section = section[: section.index("\n## ")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_traitlets_form_runs_as_written(tmp_path):
    block = policy_blocks()[0]
    key = tmp_path / "key"
    key.write_text(secrets.token_hex(32))
    schema = tmp_path / "session.json"
    schema.write_text(json.dumps(SCHEMA))
    config = tmp_path / "telemetry_config.py"
    config.write_text(
        block.replace("/run/secrets/telemetry-pseudonym-key", str(key))
        + f"c.EventLog.schema_paths = [{str(schema)!r}]\n"
        "c.EventLog.load_schema_entry_points = False\n"
        "c.EventLog.sinks = ['archive', 'rotating_file']\n"
        f"c.ArchiveSink.directory = {str(tmp_path / 'archive')!r}\n"
        f"c.RotatingFileSink.filename = {str(tmp_path / 'events.jsonl')!r}\n"
    )
    events = tmp_path / "in.jsonl"
    events.write_text(json.dumps({"schema_id": SID, "version": 1, "data": EVENT}) + "\n")
    argv = [sys.executable, "-m", "telemetry_sinks", "emit", "--config", str(config), str(events)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 recorded" in done.stdout
    capsule = json.loads((tmp_path / "events.jsonl").read_text())
    assert capsule["user"].startswith("2025-01:") and len(capsule["user"]) == 8 + 32
    assert "email" not in capsule
    assert capsule["client"] == {"ip": "203.0.113.0"}
    assert capsule["started_at"] == "2026-03-05T11:00:00.000000Z"
    assert capsule["files"] == [{"size": 123000}]
    assert capsule["user_agent"] == "Mozilla/5.0 (X11; Li"
    assert capsule["action"] == "open"
    assert capsule["__timestamp__"].endswith(":00.000000Z")
    [day] = (tmp_path / "archive").glob("events-*.jsonl")
    assert json.loads(day.read_text()) == capsule


def test_the_dictconfig_form_runs_as_written(tmp_path, monkeypatch):
    # A non-incremental dictConfig closes every handler of the process: not other tests' handlers.
    monkeypatch.setattr(logging.config, "_clearExistingHandlers", lambda: None, raising=False)
    block = policy_blocks()[1]
    assert '"disable_existing_loggers": False' in block  # else it silences telemetry_sinks' own loggers
    monkeypatch.setenv("TELEMETRY_PSEUDONYM_KEY", secrets.token_hex(32))
    code = block.replace("/srv/events", str(tmp_path / "archive")).replace(
        "/var/log/events.jsonl", str(tmp_path / "events.jsonl"))
    from telemetry_sinks import EventLog

    scope = {"logging": logging, "EventLog": EventLog}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    eventlog = scope["eventlog"]
    try:
        eventlog.register_schema(SCHEMA)
        capsule = eventlog.emit(schema_id=SID, data=EVENT)
        assert capsule["user"] == eventlog.pseudonym_key.pseudonym("alice")
        assert "email" not in capsule and capsule["client"] == EVENT["client"]
        eventlog.flush()
        assert json.loads((tmp_path / "events.jsonl").read_text()) == capsule
        handlers = logging.getLogger("myapp.events").handlers
        assert [h.max_age for h in handlers] == ["2y", "30d"]
    finally:
        for handler in list(logging.getLogger("myapp.events").handlers):
            logging.getLogger("myapp.events").removeHandler(handler)
            handler.close()
