"""What the browser tests run: Debian's chromium through Playwright, a real collector process,
and a web application on another origin that loads the module from the collector."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from helpers.servers import ServerProcess, free_port

from telemetry_sinks.config import EXAMPLE_SCHEMAS_DIR

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LAUNCH = "https://events.telemetry-sinks.org/example/app-launch"
SAVE = "https://events.telemetry-sinks.org/example/file-save"
BINDER = "binderhub.jupyter.org/launch"  # registered from tests/fixtures, never allowed


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed: run the suite with `bash scripts/run-tests.sh`, which "
                    "installs it, or apt-get install -y chromium")
    return found


class CollectorProcess(ServerProcess):
    """``telemetry-sinks serve --config`` on a fixed port, writing to ``<dir>/events.jsonl``."""

    def __init__(self, directory: Path, binder_schema: Path, allowed: dict, collector: dict | None = None,
                 port: int | None = None, eventlog: dict | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.events_file = directory / "events.jsonl"
        lines = [
            f"c.EventLog.schema_paths = [{str(EXAMPLE_SCHEMAS_DIR)!r}, {str(binder_schema)!r}]",
            "c.EventLog.load_schema_entry_points = False",
            f"c.EventLog.allowed_schemas = {allowed!r}",
            "c.EventLog.sinks = ['file']",
            f"c.FileSink.filename = {str(self.events_file)!r}",
        ]
        lines += [f"c.Collector.{name} = {value!r}" for name, value in (collector or {}).items()]
        lines += [f"c.EventLog.{name} = {value!r}" for name, value in (eventlog or {}).items()]
        config = directory / "collector_config.py"
        config.write_text("\n".join(lines) + "\n")
        port = port or free_port()
        super().__init__("collector", [sys.executable, "-m", "telemetry_sinks", "serve", "--config",
                                       str(config), "--port", str(port)], port, directory)
        self.url = f"http://127.0.0.1:{port}"

    def lines(self) -> list[dict]:
        if not self.events_file.exists():
            return []
        return [json.loads(x) for x in self.events_file.read_text().splitlines() if x.strip()]

    def wait_for(self, predicate: Callable[[list[dict]], bool], timeout: float = 15.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if predicate(lines) or time.monotonic() > deadline:
                return lines
            time.sleep(0.1)

    def health(self) -> dict:
        return requests.get(f"{self.url}/api/health", timeout=5).json()


class AppServer:
    """A web application on its own origin: pages (path -> (html, headers)) and scripts."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, str, dict[str, str]]] = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                if path not in files:
                    self.send_error(404)
                    return
                body, kind, headers = files[path]
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def page(self, path: str, html: str, **headers: str) -> str:
        self.files[path] = (html, "text/html; charset=utf-8", headers)
        return self.origin + path

    def script(self, path: str, code: str) -> None:
        self.files[path] = (code, "text/javascript; charset=utf-8", {})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def app_page(app: AppServer, collector_url: str, csp: str | None = None) -> str:
    """``/app.html``: loads the module from the collector as a cross-origin module script and
    exposes it as ``window.TS``; CSP violations are collected in ``window.violations``."""
    app.script("/first.js", "window.violations = [];\n"
               "document.addEventListener('securitypolicyviolation', (e) => "
               "window.violations.push(e.violatedDirective + ' ' + e.blockedURI));\n")
    app.script("/app.js", f"import * as TS from '{collector_url}/static/telemetry-sinks.js';\n"
               "window.TS = TS;\nwindow.ready = true;\n")
    headers = {"Content-Security-Policy": csp} if csp else {}
    html = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>app</title>"
            "<script src='/first.js'></script><script type='module' src='/app.js'></script></head>"
            "<body><h1>An application</h1><a id='away' href='/other.html'>away</a></body></html>")
    app.page("/other.html", "<!DOCTYPE html><title>other</title><p>another page</p>")
    return app.page("/app.html", html, **headers)
