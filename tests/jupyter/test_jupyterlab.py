"""The JupyterLab extension in a real JupyterLab, driven in headless chromium.

One JupyterLab for the module (default consent opt-out); every test is a new browser context,
so a new Jupyter user with their own choice.  A notebook is opened from the file browser, a
cell run, the notebook saved, renamed and closed; the events arrive in the server's sink with
the policy applied.  Denying in the notification stops recording, and the server enforces it;
Global Privacy Control is honoured; the Help menu opens the page of what is recorded; the
notebook's metadata changes nothing; the extension writes nothing to the console.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from lab_env import (
    ACTIVE_PANEL,
    CELL_EXECUTED,
    COMMAND_EXECUTED,
    DOCUMENT,
    JupyterLab,
    records_nothing,
    settle,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
SECRET = "thesis-of-ada-lovelace"
CODE = "secret_total = 6 * 7\nsecret_total"
ALLOWED = {
    DOCUMENT: {"allowed_categories": ["user-identifiable-information"]},  # paths kept
    COMMAND_EXECUTED: {},  # paths in arguments removed
    CELL_EXECUTED: {},  # no path, no code, no outputs
    ACTIVE_PANEL: {},
}
# What jupyterlab-pioneer reads from a notebook to choose its exporters: here it must change nothing.
HOSTILE_METADATA = {
    "jupyterlab-pioneer-config": {"activeEvents": [{"name": "CellExecuteEvent", "logWholeNotebook": True}],
                                  "exporters": [{"type": "remote_exporter",
                                                 "args": {"url": "http://127.0.0.1:9/steal"}}]},
    "telemetry_sinks": {"allowed_schemas": {CELL_EXECUTED: {"allowed_categories": ["content"]}},
                        "browser_sinks": [{"type": "http", "url": "http://127.0.0.1:9/steal"}],
                        "consent": "granted"},
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    app = JupyterLab(tmp_path_factory.mktemp("jupyterlab"), ALLOWED).start()
    yield app
    app.stop()


@pytest.fixture
def user(users, lab):
    return lambda **context: users(lab, **context)


def arrived(page, lab, since, predicate, what):
    """Wait until the events recorded since ``since`` satisfy ``predicate`` (flushing the page)."""
    def check():
        page.flush()
        return predicate(lab.events(since=since))

    return wait_for(check, 30, 0.5, what)


def test_a_notebook_opened_run_saved_renamed_closed_is_recorded_as_the_policy_allows(user, lab):
    name, renamed = f"{SECRET}.ipynb", f"{SECRET}-final.ipynb"
    lab.write_notebook(name, [CODE], HOSTILE_METADATA)
    page = user()
    toast = page.notification("unless you say no")
    toast.get_by_role("button", name="Allow").click()
    page.wait_choice("granted")
    wait_for(lambda: page.setting() == "granted", 15, what="the setting following the choice")
    before = len(lab.events())

    page.open_notebook(name)
    page.run_cells()
    page.page.keyboard.press("Control+s")
    arrived(page, lab, before, lambda events: any(e.get("action") == "saved" for e in events), "saved")
    page.command("docmanager:rename", wait=False)
    dialog = page.page.locator(".jp-Dialog input")
    dialog.fill(renamed)
    page.page.keyboard.press("Enter")
    wait_for(lambda: lab.api("GET", f"/api/contents/{renamed}").status_code == 200, 30, what="the rename")
    page.page.locator(".lm-TabBar-tab.lm-mod-current .lm-TabBar-tabCloseIcon").click()
    settle()
    assert page.flush() is True

    events = lab.events(since=before)
    docs = [e for e in events if e["__schema__"] == DOCUMENT]
    assert [e["action"] for e in docs][:1] == ["opened"] and {"saved", "renamed", "closed"} <= {
        e["action"] for e in docs}, docs
    assert len({e["document_id"] for e in docs}) == 1, "one document id relates its events"
    opened = docs[0]
    assert opened["path"] == name and opened["file_type"] == "notebook"  # the policy keeps document paths
    rename = next(e for e in docs if e["action"] == "renamed")
    assert (rename["old_path"], rename["path"]) == (name, renamed)
    assert next(e for e in docs if e["action"] == "closed")["path"] == renamed

    cells = [e for e in events if e["__schema__"] == CELL_EXECUTED]
    assert len(cells) == 1, cells
    cell = cells[0]
    assert cell["status"] == "ok" and cell["kernel_name"] == "python3" and cell["language"] == "python"
    assert cell["execution_count"] == 1 and cell["output_types"] == ["execute_result"]
    assert cell["document_id"] == opened["document_id"] and cell["duration_ms"] >= 0
    for removed in ("path", "code", "outputs"):  # not allowed: removed before leaving the page
        assert removed not in cell

    commands = [e for e in events if e["__schema__"] == COMMAND_EXECUTED]
    ran = {e["command"] for e in commands}
    assert {"notebook:run-cell-and-select-next", "docmanager:save", "docmanager:rename"} <= ran, ran
    assert not [c for c in ran if c.endswith(":get-kernel") or c.startswith("router:")], "ignored commands"
    for event in commands:
        assert set(event.get("args", {})) <= {"isPalette", "isContextMenu", "isToolbar", "factory",
                                              "kernelName"}, event  # only listed args, paths removed
    panels = [e for e in events if e["__schema__"] == ACTIVE_PANEL]
    assert any(e["kind"] == "notebook" and e["document_id"] == opened["document_id"] for e in panels)
    assert all("path" not in e for e in panels)

    # The file name is personal data: only the document events, which the policy lets keep it, hold it.
    for event in events:
        if SECRET in json.dumps(event):
            assert event["__schema__"] == DOCUMENT, event
    assert "secret_total" not in lab.events_file.read_text(), "no code anywhere"
    # The notebook's metadata chose no exporter and no sink: every request stayed on the server.
    elsewhere = [u for u in page.requests if u.startswith(("http:", "https:")) and not u.startswith(lab.url)]
    assert elsewhere == []
    assert page.our_warnings() == []
    # JupyterLab itself looks for the notebook under its old name after the rename (its 404s).
    assert {f.split("?")[0] for f in page.failed} <= {f"404 GET {lab.url}/api/contents/{name}"}, page.failed


def test_deny_in_the_notification_records_nothing_more_and_the_server_enforces_it(user, lab):
    lab.write_notebook("deny.ipynb", ["1 + 1"])
    page = user()
    toast = page.notification("unless you say no")
    toast.get_by_role("button", name="Do not record").click()
    page.wait_choice("denied")

    def work():
        page.open_notebook("deny.ipynb")
        page.run_cells()
        page.command("docmanager:save")

    records_nothing(page, lab, work)
    assert not page.asked()
    before = len(lab.events())

    # A page that sends anyway (another extension, a script): the server checks the user's choice.
    forged = [{"schema_id": DOCUMENT, "version": 1, "data": {"action": "opened"}}]
    answer = page.api("POST", "/api/telemetry/events", forged)
    assert answer["status"] == 200 and answer["json"]["results"][0] == {
        "index": 0, "status": "not_recorded", "reason": "consent denied (opt-out)"}
    settle()
    assert lab.events(since=before) == []

    # Without the XSRF header, Jupyter refuses a change (another site cannot choose for the user).
    unprotected = page.quiet_api("POST", "/api/telemetry/consent", {"choice": "granted"}, xsrf=False)
    assert unprotected.status == 403 and "_xsrf" in unprotected.text()
    assert page.choice() == "denied"

    # The setting shows the choice; after a reload there is no question any more.
    page.page.reload()
    page.page.wait_for_function("window.telemetrySinks !== undefined", timeout=60_000)
    settle(2)
    assert not page.asked()
    assert page.page.evaluate("window.telemetrySinks.consent.state") == "denied"


def test_delivery_retries_a_failed_request_and_sends_what_is_queued_when_the_tab_goes(user, lab):
    page = user()
    page.notification("unless you say no").get_by_role("button", name="Allow").click()
    page.wait_choice("granted")
    page.flush()
    refused: list[str] = []

    def flaky(route):
        if len(refused) < 2:
            refused.append(route.request.url)
            route.abort()  # the network fails: no answer
        else:
            route.continue_()

    page.page.context.route("**/api/telemetry/events*", flaky)
    before = len(lab.events())
    page.command("launcher:create")
    arrived(page, lab, before, lambda events: any(e.get("command") == "launcher:create" for e in events),
            "the command, after two failed requests")
    assert len(refused) == 2
    page.page.context.unroute("**/api/telemetry/events*")
    page.console[:] = [c for c in page.console if "ERR_FAILED" not in c[1]]  # the two refused above
    before = len(lab.events())
    page.command("launcher:create")  # queued (batches leave every second) ...
    page.page.goto("about:blank")  # ... and the tab goes: sent at once with keepalive
    wait_for(lambda: any(e.get("command") == "launcher:create" for e in lab.events(since=before)), 20,
             what="the events queued when the tab went")
    ids = [e["__event_id__"] for e in lab.events()]
    assert len(ids) == len(set(ids)), "no event recorded twice"


def test_global_privacy_control_is_honoured_without_asking(user, lab):
    page = user(extra_http_headers={"Sec-GPC": "1"},
                init_script="Object.defineProperty(navigator, 'globalPrivacyControl', {value: true})")
    settle(2)
    assert not page.asked()
    policy = page.api("GET", "/api/telemetry/policy")["json"]
    assert policy["consent"]["gpc"] is True and {s["state"] for s in policy["schemas"]} == {"denied"}
    records_nothing(page, lab, lambda: page.command("launcher:create"))
    answer = page.api("POST", "/api/telemetry/events",
                      [{"schema_id": ACTIVE_PANEL, "version": 1, "data": {"kind": "launcher"}}])
    assert answer["json"]["results"][0]["status"] == "not_recorded"


def test_the_help_menu_opens_what_is_recorded_and_the_page_changes_the_choice(user, lab, tmp_path):
    """Also takes the README's screenshots (``TELEMETRY_SINKS_UPDATE_SCREENSHOT=1`` saves them in docs/)."""
    page = user()
    page.notification("unless you say no")
    page.command("launcher:create")
    page.page.locator(".jp-Launcher:visible").first.wait_for(timeout=30_000)
    page.page.wait_for_timeout(1500)  # the toast has slid in
    page.page.screenshot(path=tmp_path / "jupyterlab-notification.png")
    page.page.get_by_text("Help", exact=True).click()
    with page.page.context.expect_page() as popup:
        page.page.locator("#jp-mainmenu-help").get_by_text("What is recorded", exact=True).click()
    recorded = popup.value
    recorded.wait_for_load_state()
    assert recorded.url == f"{lab.url}/telemetry"
    text = recorded.locator("body").inner_text()
    assert "What this Jupyter server records" in text
    for title in ("JupyterLab command run", "JupyterLab document opened, saved, renamed or closed",
                  "Notebook cell run", "JupyterLab tab activated"):
        assert title in text
    assert re.search(r"content.*removed from.*Notebook cell run", text, re.S), "code and outputs are removed"
    assert "You have not made a choice." in text
    recorded.set_viewport_size({"width": 1280, "height": 1500})
    recorded.screenshot(path=tmp_path / "jupyterlab-recorded.png")
    if os.environ.get("TELEMETRY_SINKS_UPDATE_SCREENSHOT") == "1":
        for name in ("jupyterlab-notification.png", "jupyterlab-recorded.png"):
            shutil.copy(tmp_path / name, REPO / "docs" / name)
    recorded.get_by_role("button", name="Turn recording off").click()
    recorded.wait_for_load_state()
    assert "You turned recording off." in recorded.locator("body").inner_text()
    assert page.choice() == "denied"
    recorded.close()


def test_the_endpoints_check_what_they_receive_and_are_no_activity(lab):
    url = "/api/telemetry/events"
    idle_since = lab.api("GET", "/api/status").json()["last_activity"]
    big = lab.post(url, b"[" + b" " * (1024 * 1024) + b"]", "application/json")
    assert big.status_code == 413 and "c.JupyterLabTelemetry.max_body_bytes" in big.json()["error"]
    assert lab.post(url, b"[]", "text/plain").status_code == 415
    unknown = lab.api("POST", url, json=[{"schema_id": "https://example.org/nope", "data": {}}])
    assert unknown.status_code == 400 and unknown.json()["results"][0]["status"] == "rejected"
    invalid = lab.api("POST", url, json=[{"schema_id": DOCUMENT, "data": {"action": "deleted"}}])
    assert invalid.status_code == 400 and "$.data.action" in invalid.json()["error"]
    choice = lab.api("POST", "/api/telemetry/consent", json={"choice": "maybe"})
    assert choice.status_code == 400
    anonymous = __import__("requests").get(lab.url + "/api/telemetry/policy", timeout=10)
    assert anonymous.status_code == 403, "Jupyter's authentication applies"
    # Recording what a user does is not activity: an idle server stays idle for culling.
    assert lab.api("GET", "/api/status").json()["last_activity"] == idle_since
    health = lab.api("GET", "/api/telemetry/health").json()
    assert health["jupyterlab"]["events"]["rejected"] >= 2
