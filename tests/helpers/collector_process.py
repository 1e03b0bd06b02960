"""A real collector (``telemetry-sinks serve``) as a subprocess, for the HTTP sink's tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers.servers import ServerProcess, free_port

SCHEMA = {
    "$id": "https://events.example.org/e2e",
    "version": 1,
    "type": "object",
    "required": ["seq"],
    "properties": {
        "seq": {"type": "integer"},
        "producer": {"type": "string"},
        "user": {"type": "string", "categories": ["user-identifier"]},
    },
}


class CollectorProcess(ServerProcess):
    """``telemetry-sinks serve`` writing to ``<dir>/events.jsonl`` through a rotating file sink.

    It knows (and allows) :data:`SCHEMA` and the ``extra_schemas``.
    """

    def __init__(self, directory: Path, port: int | None = None, token: str | None = None,
                 extra_schemas: tuple[dict, ...] = ()) -> None:
        import json

        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, schema in enumerate((SCHEMA, *extra_schemas)):
            path = directory / ("e2e.json" if index == 0 else f"extra-{index}.json")
            path.write_text(json.dumps(schema))
            paths.append(str(path))
        self.events_file = directory / "events.jsonl"
        config = directory / "collector_config.py"
        config.write_text(
            f"c.EventLog.schema_paths = {paths!r}\n"
            f"c.EventLog.allowed_schemas = {[s['$id'] for s in (SCHEMA, *extra_schemas)]!r}\n"
            "c.EventLog.sinks = ['rotating_file']\n"
            f"c.RotatingFileSink.filename = {str(self.events_file)!r}\n"
            "c.RotatingFileSink.max_bytes = 200000\n"
            "c.RotatingFileSink.backup_count = 50\n"
            + (f"c.Collector.token = {token!r}\n" if token else "")
        )
        port = port or free_port()
        argv = [sys.executable, "-m", "telemetry_sinks", "serve", "--config", str(config),
                "--port", str(port)]
        super().__init__("collector", argv, port, directory)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/events"

    def received(self) -> list[dict]:
        """Every line the collector wrote, oldest first, across rotated files."""
        import json

        files = sorted(
            self.events_file.parent.glob(self.events_file.name + ".*"),
            key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0,
        )
        files = [f for f in files if f.suffix[1:].isdigit()] + [self.events_file]
        lines = []
        for path in files:
            if path.exists():
                lines.extend(json.loads(x) for x in path.read_text().splitlines())
        return lines


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )
