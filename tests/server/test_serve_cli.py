"""``telemetry-sinks serve`` as a real subprocess: start, receive an event, stop on SIGTERM."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import requests
from helpers.serve_process import ServeProcess

from telemetry_sinks.config import EXAMPLE_EVENTS

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(sys.platform == "win32", reason="sends SIGTERM"),
]


def start_serve(cwd: Path, env: dict | None = None) -> ServeProcess:
    """``telemetry-sinks serve --port 0`` in ``cwd``."""
    return ServeProcess(["--port", "0"], cwd, env)


def test_serve_with_the_embedded_default(tmp_path):
    server = start_serve(tmp_path)
    try:
        assert "(POST /api/events)" in server.stdout[0]
        first_line = EXAMPLE_EVENTS.read_text().splitlines()[0]
        response = requests.post(f"{server.url}/api/events", data=first_line,
                                 headers={"Content-Type": "application/json"}, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1
    finally:
        code, stdout, stderr = server.terminate()
    assert code == 0, stderr
    assert "rotating_file" in stdout and "stopped" in stdout
    [line] = [json.loads(x) for x in (tmp_path / "events" / "events.jsonl").read_text().splitlines()]
    assert line["__schema__"] == "https://events.telemetry-sinks.org/example/app-launch"
    assert line["app"] == "jupyterlab"
    assert "username" not in line and "ip" not in line["client"]  # the default policy


def test_serve_with_a_token_from_the_environment_never_prints_it(tmp_path):
    token = "env-t0ken-which-must-not-leak"
    server = start_serve(tmp_path, env={"TELEMETRY_SINKS_TOKEN": token})
    try:
        url = f"{server.url}/api/events"
        event = EXAMPLE_EVENTS.read_text().splitlines()[0]
        denied = requests.post(url, data=event, timeout=10,
                               headers={"Content-Type": "application/json", "Authorization": "Bearer x"})
        assert denied.status_code == 401
        allowed = requests.post(url, data=event, timeout=10, headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        assert allowed.status_code == 200
    finally:
        code, stdout, stderr = server.terminate()
    assert code == 0
    assert "bearer token required" in stdout
    assert "401 POST /api/events" in stderr
    assert token not in stdout and token not in stderr
