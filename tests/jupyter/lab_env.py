"""A real JupyterLab (``python -m jupyterlab``, the server extension enabled) driven in Debian's
headless chromium through Playwright, for the tests of the JupyterLab extension.

Each browser context is a new Jupyter user: Jupyter Server's identity provider gives every
token login its own user name, so each test's consent is its own.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from jupyter_apps import JupyterServer, read_jsonl, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))
from browser_env import CHROMIUM_ARGS, chromium_path  # noqa: E402

from telemetry_sinks.jupyter.lab import (  # noqa: E402
    ACTIVE_PANEL,
    CELL_EXECUTED,
    COMMAND_EXECUTED,
    DOCUMENT,
    LAB_PACKAGE,
)

__all__ = ["ACTIVE_PANEL", "CELL_EXECUTED", "CHROMIUM_ARGS", "COMMAND_EXECUTED", "DOCUMENT", "JupyterLab",
           "chromium_path", "lab_page", "notebook", "records_nothing", "wait_for"]

PLUGIN = f"{LAB_PACKAGE}:plugin"
CURRENT = ".jp-NotebookPanel:not(.lm-mod-hidden)"
NEWS_OFF = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


class JupyterLab(JupyterServer):
    """``python -m jupyterlab`` recording to ``events.jsonl`` with ``allowed`` (c.EventLog.allowed_schemas).

    ``overrides`` is the administrator's overrides.json (JupyterLab's news are off in every test);
    ``base_url`` the server's (``/user/<name>/`` under JupyterHub).
    """

    def __init__(self, directory: Path, allowed: dict, config: str = "", overrides: dict | None = None,
                 name: str = "jupyterlab", base_url: str = "/") -> None:
        self.base = base_url.rstrip("/")
        self.events_file = directory / "events.jsonl"
        settings = directory / "app-settings"
        settings.mkdir(parents=True, exist_ok=True)
        (settings / "overrides.json").write_text(json.dumps({**NEWS_OFF, **(overrides or {})}))
        lab_config = f"""
            c.ServerApp.jpserver_extensions = {{"telemetry_sinks.jupyter": True}}
            c.ServerApp.base_url = {base_url!r}
            c.LabApp.expose_app_in_browser = True
            c.LabApp.app_settings_dir = {str(settings)!r}
            c.EventLog.allowed_schemas = {allowed!r}
            c.EventLog.sinks = ["file"]
            c.FileSink.filename = {str(self.events_file)!r}
        """
        super().__init__(directory, textwrap.dedent(lab_config) + textwrap.dedent(config), name=name)
        self.argv = [sys.executable, "-m", "jupyterlab"]

    @property
    def url(self) -> str:
        """The server's root: its address and base_url."""
        return super().url + self.base

    def start(self) -> JupyterLab:
        super().start()
        self.wait_ready(self.url + "/lab", self.headers, status=200)
        return self

    @property
    def lab_url(self) -> str:
        return f"{self.url}/lab?token={self.token}"

    def events(self, schema: str | None = None, since: int = 0) -> list[dict]:
        lines = read_jsonl(self.events_file)[since:]
        return [e for e in lines if schema is None or e["__schema__"] == schema]

    def post(self, path: str, data: bytes, content_type: str) -> Any:
        import requests

        return requests.post(self.url + path, data=data, timeout=60,
                             headers={**self.headers, "Content-Type": content_type})

    def write_notebook(self, name: str, cells: list[str], metadata: dict | None = None) -> None:
        body = {"type": "notebook", "content": notebook(cells, metadata)}
        answer = self.api("PUT", f"/api/contents/{name}", json=body)
        assert answer.status_code in (200, 201), answer.text


def notebook(cells: list[str], metadata: dict | None = None) -> dict:
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     **(metadata or {})},
        "cells": [{"cell_type": "code", "id": f"cell-{i}", "metadata": {}, "execution_count": None,
                   "outputs": [], "source": source} for i, source in enumerate(cells)],
    }


class LabPage:
    """One user's JupyterLab tab: its console messages and every request it made."""

    def __init__(self, page: Any, lab: JupyterLab) -> None:
        self.page = page
        self.lab = lab
        self.console: list[tuple[str, str]] = []
        self.requests: list[str] = []
        page.on("console", lambda m: self.console.append((m.type, m.text, m.location.get("url", ""))))
        page.on("pageerror", lambda e: self.console.append(("pageerror", str(e), "")))
        page.on("request", lambda r: self.requests.append(r.url))
        self.failed: list[str] = []
        page.on("response", lambda r: r.status >= 400 and self.failed.append(
            f"{r.status} {r.request.method} {r.url}"))

    def open(self) -> LabPage:
        self.page.goto(self.lab.lab_url)
        self.page.wait_for_function("window.jupyterapp && window.telemetrySinks !== undefined",
                                    timeout=90_000)
        self.page.wait_for_function("window.jupyterapp.restored !== undefined", timeout=30_000)
        self.page.evaluate("window.jupyterapp.restored")
        return self

    def choice(self) -> str | None:
        """The user's choice as the server keeps it."""
        return self.api("GET", "/api/telemetry/consent")["json"]["choice"]

    def wait_choice(self, choice: str | None, what: str = "the choice stored on the server") -> None:
        wait_for(lambda: self.choice() == choice, 20, 0.2, what)

    def open_notebook(self, name: str) -> None:
        """Open ``name`` from the file browser (a double click) and wait for its kernel."""
        self.page.locator(".jp-DirListing-item", has_text=name).dblclick()
        self.page.wait_for_function(
            "window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
            timeout=60_000)

    def run_cells(self, count: int = 1) -> None:
        """Run the first cell with Shift+Enter (or all with the Run menu's command) and wait for outputs."""
        if count == 1:
            self.page.locator(f"{CURRENT} .jp-Cell .cm-content").first.click()
            self.page.keyboard.press("Shift+Enter")
        else:
            self.command("notebook:run-all-cells")
        outputs = self.page.locator(f"{CURRENT} .jp-OutputArea-output")
        wait_for(lambda: outputs.count() >= count, 60, 0.2, "the outputs")

    def asked(self) -> bool:
        """Whether a notification asks the user to choose."""
        return self.page.locator(".Toastify__toast", has_text="unless you").count() > 0

    def command(self, command: str, args: dict | None = None, wait: bool = True) -> Any:
        """Run a JupyterLab command; ``wait=False`` for those that open a dialog."""
        script = ("([c, a]) => window.jupyterapp.commands.execute(c, a)" if wait
                  else "([c, a]) => { window.jupyterapp.commands.execute(c, a); }")
        return self.page.evaluate(script, [command, args or {}])

    def setting(self) -> str | None:
        """The user's own value of the extension's setting (None: not set, the default or a preset)."""
        return self.page.evaluate(f"window.jupyterapp.serviceManager.settings.fetch('{PLUGIN}')"
                                  ".then(s => (s.settings || {}).consent ?? null)")

    def flush(self) -> bool:
        return self.page.evaluate("window.telemetrySinks.flush(10000)")

    def stats(self) -> dict:
        return self.page.evaluate("window.telemetrySinks.stats()")

    def notification(self, text: str, timeout: float = 30_000) -> Any:
        toast = self.page.locator(".Toastify__toast", has_text=text)
        toast.first.wait_for(state="visible", timeout=timeout)
        return toast.first

    def api(self, method: str, path: str, body: Any = None, headers: dict | None = None,
            xsrf: bool = True) -> dict:
        """A request from the page (``path`` below the server's base_url) with the page's own
        credentials (login cookie, XSRF header)."""
        path = self.lab.base + path
        return self.page.evaluate(
            """async ([method, path, body, headers, withXsrf]) => {
                const xsrf = withXsrf && (document.cookie.match(/\\b_xsrf=([^;]*)/) || [])[1];
                const init = { method, credentials: "same-origin",
                  headers: { "Content-Type": "application/json", ...(xsrf ? { "X-XSRFToken": xsrf } : {}),
                             ...headers } };
                if (body !== null) init.body = typeof body === "string" ? body : JSON.stringify(body);
                const r = await fetch(path, init);
                const text = await r.text();
                let json = null;
                try { json = JSON.parse(text); } catch {}
                return { status: r.status, json, text };
            }""", [method, path, body, headers or {}, xsrf])

    def quiet_api(self, method: str, path: str, body: Any = None, xsrf: bool = True) -> Any:
        """The same request with the context's cookies, outside the page (nothing in its console):
        for requests a test expects to be refused."""
        cookies = {c["name"]: c["value"] for c in self.page.context.cookies()}
        headers = {"Content-Type": "application/json"}
        if xsrf and "_xsrf" in cookies:
            headers["X-XSRFToken"] = cookies["_xsrf"]
        return self.page.context.request.fetch(self.lab.url + path, method=method, headers=headers,
                                               data=None if body is None else json.dumps(body))

    def our_errors(self) -> list[str]:
        """Uncaught exceptions, console errors other than failed loads, and failed requests of the
        extension (its files, its endpoints, its page): JupyterLab's own failed loads are not ours."""
        def ours(kind: str, text: str, url: str) -> bool:
            failed_load = text.startswith("Failed to load resource")
            return kind == "pageerror" or (kind == "error" and (not failed_load or "telemetry" in url))

        found = [f"{kind}: {text} ({url})" for kind, text, url in self.console if ours(kind, text, url)]
        return found + [f for f in self.failed if "telemetry" in f]

    def our_warnings(self) -> list[str]:
        return [text for kind, text, _ in self.console if "telemetry-sinks" in text and kind != "debug"]


def lab_page(
    browser: Any, lab: JupyterLab, init_script: str | None = None, **context: Any
) -> tuple[Any, LabPage]:
    """A new browser context (a new Jupyter user) with JupyterLab open in it."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, **context)
    if init_script:
        ctx.add_init_script(init_script)
    page = LabPage(ctx.new_page(), lab)
    return ctx, page.open()


def settle(seconds: float = 0.5) -> None:
    time.sleep(seconds)


def records_nothing(page: LabPage, lab: JupyterLab, action: Any) -> None:
    """After ``action()``, neither the page sends an event nor the server records one."""
    page.flush()
    settle(1)
    before, emitted = len(lab.events()), page.stats()["emitted"]
    action()
    settle(1.5)
    page.flush()
    assert lab.events(since=before) == []
    assert page.stats()["emitted"] == emitted, "nothing leaves the page either"
