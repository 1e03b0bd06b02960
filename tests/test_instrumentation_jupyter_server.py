"""The decorators inside a real Jupyter Server: its contents manager instrumented, driven by REST.

The server's own handlers call the recorded methods; what they answer must not
change (a 404 stays a 404 with Jupyter's message), and each call is one event.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import requests
from helpers.servers import ServerProcess, free_port

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "telemetry_sinks" / "examples" / "instrumentation" / "file-action.yaml"
SID = "https://events.telemetry-sinks.org/example/file-action"
TOKEN = "instrument-test-token"

CONTENTS_MODULE = '''
import os

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager

from telemetry_sinks import EventLog, FileSink, instrument, record

SID = "https://events.telemetry-sinks.org/example/file-action"
log = EventLog(
    handlers=[FileSink(filename=os.environ["RECORDED_EVENTS"])],
    allowed_schemas=[(SID, ["user-identifiable-information"], [])],
    schema_paths=[os.environ["RECORDED_SCHEMA"]],
    load_schema_entry_points=False,
)


@instrument("save", "delete")  # inherited from Jupyter Server's own contents manager
class RecordedContents(AsyncLargeFileManager):
    eventlog = log
    eventschema = SID
    eventkeys = ["path"]

    @record(keys={"path": "new_path", "source_path": "old_path"})
    async def rename(self, old_path, new_path):
        return await super().rename(old_path, new_path)
'''


@pytest.fixture
def server(tmp_path, monkeypatch):
    code = tmp_path / "code"
    code.mkdir()
    (code / "recorded_contents.py").write_text(CONTENTS_MODULE)
    config = tmp_path / "jupyter_server_config.py"
    config.write_text('c.ServerApp.contents_manager_class = "recorded_contents.RecordedContents"\n')
    root = tmp_path / "root"
    root.mkdir()
    events = tmp_path / "events.jsonl"
    for name in ("CONFIG", "DATA", "RUNTIME"):
        (tmp_path / name.lower()).mkdir()
        monkeypatch.setenv(f"JUPYTER_{name}_DIR", str(tmp_path / name.lower()))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(code), str(REPO)]))
    monkeypatch.setenv("RECORDED_EVENTS", str(events))
    monkeypatch.setenv("RECORDED_SCHEMA", str(SCHEMA))
    port = free_port()
    argv = [sys.executable, "-m", "jupyter_server", f"--config={config}", f"--ServerApp.port={port}",
            "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
            "--ServerApp.open_browser=False", "--allow-root"]  # fmt: skip
    process = ServerProcess("jupyter-server", argv, port, tmp_path).start(timeout=90)
    base = f"http://127.0.0.1:{port}"
    session = requests.Session()
    session.headers["Authorization"] = f"token {TOKEN}"
    deadline = time.monotonic() + 60
    while session.get(f"{base}/api/status", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, process.log_path.read_text()[-3000:]
        time.sleep(0.2)
    try:
        yield base, session, events, root
    finally:
        process.stop()


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jupyter_server_contents_calls_become_events_and_answer_as_before(server):
    base, session, events, root = server
    api = f"{base}/api/contents"
    assert session.put(f"{api}/notes", json={"type": "directory"}, timeout=30).status_code == 201
    created = session.put(f"{api}/notes/today.md", timeout=30,
                          json={"type": "file", "format": "text", "content": "my secret notes"})  # fmt: skip
    assert created.status_code == 201 and created.json()["path"] == "notes/today.md"
    renamed = session.patch(f"{api}/notes/today.md", json={"path": "notes/done.md"}, timeout=30)
    assert renamed.status_code == 200 and renamed.json()["name"] == "done.md"
    missing = session.delete(f"{api}/notes/nothing.md", timeout=30)
    assert missing.status_code == 404  # Jupyter's own answer, untouched
    assert "nothing.md" in missing.json()["message"]
    assert session.delete(f"{api}/notes/done.md", timeout=30).status_code == 204
    assert (root / "notes").is_dir() and not (root / "notes" / "done.md").exists()

    got = read_events(events)
    assert all(e["__schema__"] == SID and e["duration_ms"] >= 0 for e in got)
    assert [(e["action"], e["path"], e.get("source_path"), e["status"], e.get("exception")) for e in got] == [
        ("save", "notes", None, "success", None),
        ("save", "notes/today.md", None, "success", None),
        ("rename", "notes/done.md", "notes/today.md", "success", None),
        ("delete", "/notes/nothing.md", None, "failure", "tornado.web.HTTPError"),  # as Jupyter passes it
        ("delete", "/notes/done.md", None, "success", None),
    ]
    assert "my secret notes" not in events.read_text()  # the model is not a named argument
