"""The describe page says, in plain words, what happens to each personal field, and it says only what
the service does: every sentence comes from the compiled plan the emit path applies."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

import pytest
from test_describe import page_text

from telemetry_sinks import EventLog
from telemetry_sinks.describe import collect, describe_html, describe_markdown
from telemetry_sinks.sinks.archive import ArchiveSink

pytestmark = pytest.mark.timeout(60)

SID = "https://events.example.org/app/session"
SCHEMA = {
    "$id": SID, "version": 1, "type": "object", "title": "Notebook session",
    "properties": {
        "user": {"type": "string", "description": "Who opened the notebook.",
                 "categories": ["user-identifier"]},
        "email": {"type": "string", "categories": ["user-identifiable-information"]},
        "client": {"type": "object", "properties": {
            "ip": {"type": "string", "description": "The IP address of the browser."},
            "agent": {"type": "string", "description": "The browser's user agent."}}},
        "started_at": {"type": "string", "format": "date-time", "description": "When the session started."},
        "peers": {"type": "array", "items": {"type": "object", "properties": {
            "user": {"type": "string", "categories": ["user-identifier"]},
            "role": {"type": "string"}}}},
        "cells": {"type": "integer", "description": "How many cells the notebook has."},
        "session": {"type": "object", "properties": {"token": {"type": "string"}}},
        "action": {"type": "string", "description": "What was done."},
    },
}
POLICY = {SID: {
    "category_actions": {"user-identifier": "pseudonymize"},
    "property_actions": {"client.ip": {"generalize": "ip_network"},
                         "started_at": {"generalize": "round_time", "unit": "hour"},
                         "client.agent": {"generalize": "truncate", "length": 7},
                         "cells": {"generalize": "bucket", "size": 10},
                         "session": "pseudonymize"},
    "round_timestamp": "minute",
    "retention": [{"after": "90d", "category_actions": {"user-identifier": "drop"}},
                  {"after": "1y", "property_actions": {"client.ip": "drop"}}],
}}
EVENT = {"user": "alice", "email": "alice@example.org",
         "client": {"ip": "203.0.113.77", "agent": "Mozilla/5.0 (X11)"},
         "started_at": "2026-03-05T12:34:56Z", "peers": [{"user": "bob", "role": "viewer"}],
         "cells": 37, "session": {"token": "t0k"}, "action": "open"}


@pytest.fixture
def eventlog(tmp_path, monkeypatch):
    monkeypatch.setenv("DESCRIBE_TEST_KEY", secrets.token_hex(32))
    log = EventLog(handlers=[ArchiveSink(directory=str(tmp_path / "archive"), max_age="2y")],
                   allowed_schemas=POLICY, pseudonym_key_env="DESCRIBE_TEST_KEY",
                   load_schema_entry_points=False)
    log.register_schema(SCHEMA)
    yield log
    log.close()
    for handler in log.handlers:
        handler.close()


def test_the_page_says_what_happens_to_each_personal_field(eventlog):
    text = page_text(describe_html(eventlog)).text
    for sentence in [
        "Your user name or account identifier (user, peers[].user) is replaced by a pseudonym.",
        "The IP address of the browser (client.ip) is kept as its network only, the last part removed.",
        "When the session started (started_at) is rounded down to the hour.",
        "The browser's user agent (client.agent) is cut to its first 7 characters.",
        "How many cells the notebook has (cells) is rounded down to a multiple of 10.",
        "The time of each event is rounded down to the minute.",
        "After 90 days, your user name or account identifier (user, peers[].user) is removed.",
        "After 1 year, the IP address of the browser (client.ip) is removed.",
        "Events stored by archive are deleted after 2 years.",
        "A pseudonym stands for the same value every time",
    ]:
        assert sentence in text, sentence
    md = describe_markdown(eventlog)
    assert "- After 90 days, your user name or account identifier (user, peers\\[\\].user) is removed." in md
    assert ("| ↳ `client.ip` | The IP address of the browser. | string | unrestricted | yes, kept as its "
            "network only, the last part removed |") in md
    assert ("| ↳ `session.token` | - | string | unrestricted | **no**, removed (inside session, which is "
            "replaced by a pseudonym) |") in md
    assert "directory: `" in md and "; events deleted after 2 years |" in md


def test_the_page_says_only_what_the_service_does(eventlog):
    """Each property the page calls removed is absent from a recorded event, each one it calls changed
    differs from what was sent, and each one it calls stored as it is holds what was sent."""
    capsule = eventlog.emit(schema_id=SID, data=EVENT)
    [schema] = collect(eventlog).schemas

    def values(data, path):
        head, _, rest = path.partition(".")
        if not isinstance(data, dict):
            return []
        if head.endswith("[]"):
            return [v for item in data.get(head[:-2], []) for v in values(item, rest)]
        if head not in data:
            return []
        return values(data[head], rest) if rest else [data[head]]

    checked = 0
    for prop in schema.properties:
        sent, recorded = values(EVENT, prop.path), values(capsule, prop.path)
        if not sent or prop.type.startswith(("object", "list")):
            continue  # the values of the properties, not of their containers
        checked += 1
        if not prop.stored:
            assert recorded == [] or prop.why.startswith("inside"), prop
        elif prop.changed:
            assert recorded and recorded != sent, prop
        elif not any(p.changed and prop.path.startswith(p.path) for p in schema.properties):
            assert recorded == sent, prop
    assert checked >= 10


def test_describe_from_a_config_file_reads_max_age_without_opening_the_sinks(tmp_path):
    schema = tmp_path / "session.json"
    schema.write_text(json.dumps(SCHEMA))
    (tmp_path / "key").write_text(secrets.token_hex(32))
    config = tmp_path / "config.py"
    config.write_text(
        f"c.EventLog.schema_paths = [{str(schema)!r}]\nc.EventLog.load_schema_entry_points = False\n"
        f"c.EventLog.pseudonym_key_file = {str(tmp_path / 'key')!r}\n"
        f"c.EventLog.allowed_schemas = {POLICY!r}\n"
        "c.EventLog.sinks = ['archive', 'rotating_file']\n"
        f"c.ArchiveSink.directory = {str(tmp_path / 'archive')!r}\nc.ArchiveSink.max_age = '90d'\n"
        f"c.RotatingFileSink.filename = {str(tmp_path / 'e.jsonl')!r}\n"
    )
    done = subprocess.run([sys.executable, "-m", "telemetry_sinks", "describe", "--config", str(config),
                           "--format", "md"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Events stored by archive are deleted after 90 days." in done.stdout
    assert "Events stored by rotating\\_file are" not in done.stdout  # it keeps its files
    assert not (tmp_path / "archive").exists() and not (tmp_path / "e.jsonl").exists()
