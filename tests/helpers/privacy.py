"""A schema with personal data at every nesting level, and the local (non-network) sinks."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

PSID = "https://events.example.org/privacy"
CATEGORIES = ["user-identifier", "user-identifiable-information"]

SCHEMA = {
    "$id": PSID,
    "version": 1,
    "type": "object",
    "required": ["seq"],
    "properties": {
        "seq": {"type": "integer"},
        "action": {"type": "string"},
        "username": {"type": "string", "categories": ["user-identifier"]},
        "email": {"type": "string", "categories": ["user-identifiable-information"]},
        "client": {
            "type": "object",
            "properties": {
                "agent": {"type": "string"},
                "ip": {"type": "string", "categories": ["user-identifiable-information"]},
                "location": {
                    "type": "object",
                    "properties": {
                        "country": {"type": "string"},
                        "city": {"type": "string", "categories": ["user-identifiable-information"]},
                    },
                },
            },
        },
        "files": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "size": {"type": "integer"},
                    "path": {"type": "string", "categories": ["user-identifiable-information"]},
                },
            },
        },
        "session": {
            "type": "object",
            "categories": ["user-identifiable-information"],
            "properties": {"token": {"type": "string"}},
        },
    },
}

#: Values of properties whose category the policy below does not allow (they must never appear).
FORBIDDEN = {
    "email": "pii-email-4f1c@example.org",
    "ip": "pii-ip-203.0.113.77",
    "city": "pii-city-Llanfair",
    "path": "pii-path-/home/ada/thesis.ipynb",
    "session": "pii-session-9b2e",
}
#: Values that are allowed (a positive control: the output is really being read).
ALLOWED = {
    "username": "ok-user-ada",
    "agent": "ok-agent-firefox",
    "country": "ok-country-UK",
    "action": "ok-action-save",
}
#: The operator's policy: user names are allowed, anything identifying a person otherwise is not.
POLICY = {PSID: {"allowed_categories": ["user-identifier"]}}


def private_event(seq: int) -> dict[str, Any]:
    return {
        "seq": seq,
        "action": ALLOWED["action"],
        "username": ALLOWED["username"],
        "email": FORBIDDEN["email"],
        "client": {
            "agent": ALLOWED["agent"],
            "ip": FORBIDDEN["ip"],
            "location": {"country": ALLOWED["country"], "city": FORBIDDEN["city"]},
        },
        "files": [{"size": 10, "path": FORBIDDEN["path"]}, {"size": 20, "path": FORBIDDEN["path"] + "2"}],
        "session": {"token": FORBIDDEN["session"]},
    }


def assert_private(output: bytes | str, where: str, *, positive: bool = True) -> None:
    """No forbidden value in ``output``; with ``positive``, every allowed value is there."""
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
    leaked = [name for name, value in FORBIDDEN.items() if value in text]
    assert not leaked, f"{where}: personal data of a disallowed category leaked: {leaked}"
    if positive:
        missing = [name for name, value in ALLOWED.items() if value not in text]
        assert not missing, f"{where}: allowed values missing (is the output really read?): {missing}"


class LocalSinks:
    """Every local sink type, writing under ``directory``; ``output()`` is all they wrote."""

    KINDS = ("file", "rotating_file", "timed_rotating_file", "stream", "archive")

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.stream = io.StringIO()

    def make(self, kind: str) -> Any:
        from telemetry_sinks import get_sink

        out = self.directory / kind
        out.mkdir(parents=True, exist_ok=True)
        if kind == "stream":
            return get_sink("stream", stream=self.stream)
        if kind == "archive":
            return get_sink("archive", directory=str(out))
        options: dict[str, Any] = {"filename": str(out / "events.jsonl")}
        if kind == "rotating_file":
            options.update(max_bytes=300, backup_count=100)
        if kind == "timed_rotating_file":
            options.update(when="S", backup_count=0)
        return get_sink(kind, **options)

    def output(self, kind: str) -> bytes:
        if kind == "stream":
            return self.stream.getvalue().encode()
        import gzip

        data = b""
        for path in sorted((self.directory / kind).rglob("*")):
            if path.is_file():
                raw = path.read_bytes()
                data += gzip.decompress(raw) if path.suffix == ".gz" else raw
        return data


def local_kinds() -> list[str]:
    """The local sink types that are installed (the archive sink is new)."""
    from telemetry_sinks.registry import available_sinks

    names = {info.name for info in available_sinks() if info.importable}
    return [kind for kind in LocalSinks.KINDS if kind in names]
