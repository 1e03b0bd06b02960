"""Dead-letter replay: events the collector refused reach it once the cause is fixed.

A real collector subprocess that does not know the application's new schema yet
refuses its events for good (400, "schema ... is not registered"): the HTTP sink dead-letters
them.  Once the collector knows the schema (its operator deployed it),
``telemetry-sinks dead-letters replay`` delivers them under their original event ids.
(Refused credentials are not dead-lettered at all: they are retried, see
``tests/reliability/test_credentials.py``.)
"""

from __future__ import annotations

import json
import os

import pytest
from helpers.collector_process import SCHEMA, CollectorProcess
from helpers.servers import free_port, wait_delivered

from telemetry_sinks import EventLog
from telemetry_sinks.cli import main
from telemetry_sinks.delivery.replay import ReplayError, replay_dead_letters
from telemetry_sinks.sinks.http import HTTPSink

FAST = {"flush_interval": 0.05, "retry_initial_backoff": 0.05, "retry_max_backoff": 0.2}
#: The application's new schema, which the collector does not know until its operator deploys it.
NEW = {**SCHEMA, "$id": "https://events.example.org/e2e-new"}


@pytest.fixture
def collector(tmp_path):
    """A collector without the new schema; ``collector.deploy()`` restarts it with it."""
    directory = tmp_path / "collector"
    server = CollectorProcess(directory, token="right-token-123").start()

    def deploy():
        server.stop()
        fixed = CollectorProcess(directory, port=server.port, token="right-token-123", extra_schemas=(NEW,))
        fixed.start()
        holder["server"] = fixed
        return fixed

    holder = {"server": server}
    server.deploy = deploy
    yield server
    holder["server"].stop()


def refused_events(url: str, dead: str, count: int = 30) -> list[dict]:
    """Emit ``count`` events of the new schema: the collector refuses all, they end up in ``dead``."""
    sink = HTTPSink(url=url, token="right-token-123", dead_letter_file=dead, **FAST)
    log = EventLog(handlers=[sink], allowed_schemas=[NEW["$id"]])
    log.register_schema(NEW)
    sent = [log.emit(schema_id=NEW["$id"], data={"seq": n}) for n in range(count)]
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["dead_lettered"] == count, stats
    return sent


def write_config(path, url: str, dead: str, token: str, allowed: bool = True, name: str = "http") -> str:
    path.write_text(
        f"c.EventLog.allowed_schemas = {[NEW['$id']] if allowed else []!r}\n"
        f"c.EventLog.sinks = [{name!r}]\n"
        f"c.HTTPSink.url = {url!r}\n"
        f"c.HTTPSink.token = {token!r}\n"
        f"c.HTTPSink.dead_letter_file = {dead!r}\n"
        "c.HTTPSink.flush_interval = 0.05\n"
        "c.HTTPSink.retry_initial_backoff = 0.05\n"
    )
    return str(path)


def letters(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def test_replay_after_the_fix_delivers_every_event_under_its_own_id(collector, tmp_path, capsys):
    dead = str(tmp_path / "dead.jsonl")
    sent = refused_events(collector.url, dead)
    first = letters(dead)
    assert all("HTTP 400" in letter["reason"] and "is not registered" in letter["reason"] for letter in first)
    config = write_config(tmp_path / "config.py", collector.url, dead, "right-token-123")
    fixed = collector.deploy()

    assert main(["dead-letters", "replay", dead, "--config", config]) == 0
    out = capsys.readouterr().out
    assert "30 resent (http: 30): 30 delivered, 0 refused again" in out

    received = fixed.received()
    assert sorted(e["seq"] for e in received) == list(range(30))
    # The original ids travel with the events, so a receiver can still drop duplicates.
    assert sorted(e["__event_id__"] for e in received) == sorted(letter["event_id"] for letter in first)
    by_seq = {e["seq"]: {k: v for k, v in e.items() if k != "__event_id__"} for e in received}
    assert all(by_seq[c["seq"]] == c for c in sent)
    assert not os.path.exists(dead) and not list(tmp_path.glob("dead.jsonl.replaying-*"))


def test_replay_refused_again_keeps_every_event_with_the_new_reason(collector, tmp_path, capsys):
    dead = str(tmp_path / "dead.jsonl")
    refused_events(collector.url, dead, count=12)
    ids = sorted(letter["event_id"] for letter in letters(dead))
    config = write_config(tmp_path / "config.py", collector.url, dead, "right-token-123")

    assert main(["dead-letters", "replay", dead, "--config", config]) == 1  # not fixed yet
    assert "12 refused again" in capsys.readouterr().out
    again = letters(dead)
    assert sorted(letter["event_id"] for letter in again) == ids  # same events, nothing lost
    assert all("is not registered" in letter["reason"] for letter in again)
    assert collector.received() == []
    assert "right-token-123" not in open(dead).read()  # secrets stay out of dead letters


def test_lines_that_cannot_be_sent_now_are_written_back_unchanged(collector, tmp_path, capsys):
    dead = str(tmp_path / "dead.jsonl")
    refused_events(collector.url, dead, count=3)
    original = open(dead).read()
    with open(dead, "a") as file:
        file.write('{"torn": tru\n')
    fixed = collector.deploy()
    config = write_config(tmp_path / "config.py", fixed.url, dead, "right-token-123", name="http")
    # The config's policy no longer allows the schema: nothing is sent, everything is kept.
    config_denied = write_config(tmp_path / "denied.py", fixed.url, dead, "right-token-123", allowed=False)

    assert main(["dead-letters", "replay", dead, "--config", config_denied]) == 1
    out = capsys.readouterr().out
    assert "3 kept" in out and "not in allowed_schemas" in out and "not a dead-letter line" in out
    assert open(dead).read() == original + '{"torn": tru\n'
    assert fixed.received() == []

    # With the schema allowed, the three are delivered and only the torn line stays.
    assert main(["dead-letters", "replay", dead, "--config", config]) == 1
    assert "3 delivered" in capsys.readouterr().out
    assert open(dead).read() == '{"torn": tru\n'
    assert sorted(e["seq"] for e in fixed.received()) == [0, 1, 2]


def test_a_backend_that_does_not_answer_loses_nothing(tmp_path, capsys):
    dead = str(tmp_path / "dead.jsonl")
    with open(dead, "w") as file:
        for n in range(5):
            capsule = {"__timestamp__": "2026-01-01T00:00:00.000000Z", "__schema__": SCHEMA["$id"],
                       "__schema_version__": 1, "__metadata_version__": 1, "seq": n}
            file.write(json.dumps({"time": "t", "sink": "http", "event_id": f"p-{n}",
                                   "reason": "HTTP 403", "payload": capsule}) + "\n")
    url = f"http://127.0.0.1:{free_port()}/api/events"  # nothing listens
    config = write_config(tmp_path / "config.py", url, dead, "tok")
    assert main(["dead-letters", "replay", dead, "--config", config, "--timeout", "1"]) == 1
    capsys.readouterr()
    # Not delivered within the timeout and no spool: back in the dead-letter file, same ids.
    assert sorted(letter["event_id"] for letter in letters(dead)) == [f"p-{n}" for n in range(5)]


def test_an_interrupted_replay_is_named_instead_of_being_overwritten(tmp_path):
    dead = tmp_path / "dead.jsonl"
    dead.write_text("")
    leftover = tmp_path / "dead.jsonl.replaying-4242"
    leftover.write_text('{"sink": "http", "event_id": "x-1", "payload": {}}\n')
    with pytest.raises(ReplayError, match="replaying-4242"):
        replay_dead_letters(str(dead), {})
    with pytest.raises(ReplayError, match="no dead-letter file"):
        replay_dead_letters(str(tmp_path / "missing.jsonl"), {})
    assert leftover.read_text().startswith('{"sink"')
