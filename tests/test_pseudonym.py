"""Pseudonyms: HMAC-SHA256 under the operator's key, the same in every process that loads the key,
different after a rotation, and a key that is read from a file or the environment only."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import secrets
import subprocess
import sys

import pytest

from telemetry_sinks.actions import Pseudonymize
from telemetry_sinks.errors import PolicyError
from telemetry_sinks.pseudonym import PseudonymKey, load_key

SID = "https://events.example.org/login"
SCHEMA = {
    "$id": SID, "version": 1, "type": "object",
    "properties": {
        "user": {"type": "string", "categories": ["category.jupyter.org/user-identifier"]},
        "uid": {"type": "integer", "categories": ["user-identifier"]},
        "team": {"type": "array", "items": {"type": "object", "properties": {
            "member": {"type": "string", "categories": ["user-identifier"]}}}},
        "outcome": {"type": "string"},
    },
}
POLICY = {SID: {"category_actions": {"user-identifier": "pseudonymize"}}}
EVENT = {"user": "ada", "uid": 1815, "team": [{"member": "charles"}, {"member": "ada"}], "outcome": "ok"}

#: A child process: an EventLog configured only through traitlets options, printing one capsule.
CHILD = """
import json, logging, sys
from telemetry_sinks import EventLog
options, schema, policy, event = (json.loads(a) for a in sys.argv[1:5])
log = EventLog(handlers=[logging.NullHandler()], allowed_schemas=policy, load_schema_entry_points=False,
               **options)
log.register_schema(schema)
print(json.dumps(log.emit(schema_id=schema["$id"], data=event)))
"""


def in_a_child(options: dict, env: dict | None = None) -> dict:
    argv = [sys.executable, "-c", CHILD, *(json.dumps(x) for x in (options, SCHEMA, POLICY, EVENT))]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    capsule = json.loads(done.stdout)
    return {k: capsule[k] for k in ("user", "uid", "team", "outcome")}


def test_the_same_value_gets_the_same_pseudonym_in_every_process_and_another_after_rotation(tmp_path):
    key = secrets.token_hex(32)
    (tmp_path / "key").write_text(key + "\n")  # as `... > key` writes it
    a = in_a_child({"pseudonym_key_file": str(tmp_path / "key"), "pseudonym_key_id": "2025-01"})
    b = in_a_child({"pseudonym_key_env": "EVENTS_KEY", "pseudonym_key_id": "2025-01"}, {"EVENTS_KEY": key})
    assert a == b
    assert a["outcome"] == "ok"
    assert a["team"][1]["member"] == a["user"]  # the same user, wherever the value sits
    assert a["user"] != a["team"][0]["member"]
    # The documented definition: the key id, ':', the first 128 bits of HMAC-SHA256(key, value) in hex.
    digest = hmac.new(key.encode(), b"ada", hashlib.sha256).hexdigest()[:32]
    assert a["user"] == f"2025-01:{digest}"
    assert a["uid"] == "2025-01:" + hmac.new(key.encode(), b"1815", hashlib.sha256).hexdigest()[:32]

    (tmp_path / "key2").write_text(secrets.token_hex(32))
    rotated = in_a_child({"pseudonym_key_file": str(tmp_path / "key2"), "pseudonym_key_id": "2025-07"})
    assert rotated["user"].startswith("2025-07:") and rotated["user"][8:] != a["user"][8:]
    assert rotated["team"][1]["member"] == rotated["user"]
    # Without a key id, the id is derived from the key: a new key shows as a new id.
    c = in_a_child({"pseudonym_key_file": str(tmp_path / "key")})
    d = in_a_child({"pseudonym_key_file": str(tmp_path / "key2")})
    assert c["user"].split(":")[0] != d["user"].split(":")[0]
    assert c["user"].split(":")[1] == a["user"].split(":")[1]


def test_a_pseudonym_is_not_pseudonymized_again():
    key = PseudonymKey(b"0123456789abcdef0123", "k1")
    action = Pseudonymize().with_key(key)
    once = action.apply("ada")
    assert action.apply(once) == once
    assert action.apply(["ada", None, once]) == [once, None, once]


@pytest.mark.parametrize("setup, words", [
    (lambda p: {"file": str(p / "missing")}, "cannot read the pseudonym key file"),
    (lambda p: {"env": "NO_SUCH_VARIABLE_FOR_KEYS"}, "NO_SUCH_VARIABLE_FOR_KEYS (pseudonym_key_env) is not"),
    (lambda p: {"file": str(p / "short")}, "is 9 bytes long; use at least 16"),
    (lambda p: {"file": str(p / "key"), "env": "X"}, "not both"),
    (lambda p: {"file": str(p / "key"), "key_id": "has spaces"}, "must be 1 to 32 letters"),
])
def test_key_errors_name_the_file_or_variable_and_the_fix_never_the_content(tmp_path, setup, words):
    (tmp_path / "short").write_text("shortkey9")
    (tmp_path / "key").write_text("a-perfectly-fine-key-0123456789")
    with pytest.raises(PolicyError) as error:
        load_key(**setup(tmp_path))
    assert words in str(error.value)
    assert "shortkey9" not in str(error.value) and "a-perfectly-fine-key" not in str(error.value)


def test_a_key_file_others_can_read_is_warned_about(tmp_path, caplog):
    path = tmp_path / "key"
    path.write_text("k" * 40)
    path.chmod(0o644)
    load_key(file=str(path))
    assert "can be read by other users (mode 644)" in caplog.text and "chmod 600" in caplog.text
    caplog.clear()
    path.chmod(0o600)
    load_key(file=str(path))
    assert "other users" not in caplog.text


def test_the_key_is_not_pickled_and_its_repr_shows_only_its_id(tmp_path):
    (tmp_path / "key").write_text("k" * 40)
    key = load_key(file=str(tmp_path / "key"), key_id="main")
    assert repr(key) == f"<PseudonymKey id='main' from file {tmp_path / 'key'}>"
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(key)
    assert not hasattr(key, "__dict__")
