"""What the administrator decides for JupyterLab's users, in real JupyterLabs in headless chromium:
a preset in overrides.json (and Global Privacy Control outweighing a "granted" preset), the
user's later change in the Settings Editor, the choice locked for everyone on the server, and
a policy that keeps the content category (code, outputs, error names).
"""

from __future__ import annotations

import pytest
from jupyter_apps import JupyterCollector
from lab_env import (
    ACTIVE_PANEL,
    CELL_EXECUTED,
    CHROMIUM_ARGS,
    DOCUMENT,
    PLUGIN,
    JupyterLab,
    chromium_path,
    lab_page,
    settle,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CONTENT_KEPT = {
    CELL_EXECUTED: {"consent": "opt-in", "allowed_categories": ["content"]},
    DOCUMENT: {"consent": "opt-in"},
}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    """The operator's collector (``telemetry-sinks serve``), where the server forwards what it records."""
    allowed = {CELL_EXECUTED: {"allowed_categories": ["content"]}}
    app = JupyterCollector(tmp_path_factory.mktemp("collector"), allowed)
    yield app.start()
    app.stop()


@pytest.fixture(scope="module")
def preset_lab(tmp_path_factory, collector):
    """Opt-in schemas, content kept; overrides.json presets every user's setting to "granted";
    the server records to its file and forwards to the collector."""
    forward = f"""
        c.EventLog.sinks = ["file", "http"]
        c.HTTPSink.url = {collector.url!r}
        c.HTTPSink.flush_interval = 0.1
    """
    app = JupyterLab(tmp_path_factory.mktemp("preset-lab"), CONTENT_KEPT, forward,
                     overrides={PLUGIN: {"consent": "granted"}}).start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def locked_lab(tmp_path_factory):
    allowed = {DOCUMENT: {}, ACTIVE_PANEL: {}}  # opt-out (the default)
    app = JupyterLab(tmp_path_factory.mktemp("locked-lab"), allowed,
                     'c.JupyterLabTelemetry.locked_consent = "denied"\n').start()
    yield app
    app.stop()


@pytest.fixture
def contexts():
    opened = []
    yield opened
    for ctx, page in opened:
        assert page.our_errors() == [], page.our_errors()
        ctx.close()


def open_lab(browser, lab, contexts, **options):
    ctx, page = lab_page(browser, lab, **options)
    contexts.append((ctx, page))
    return page


def run_cells(page, lab, name, cells):
    lab.write_notebook(name, cells)
    page.page.locator(".jp-DirListing-item", has_text=name).dblclick()
    page.page.wait_for_function(
        "window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
        timeout=60_000)
    page.command("notebook:run-all-cells")
    wait_for(lambda: page.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output").count()
             >= len(cells), 60, what="the outputs")


def asked(page) -> bool:
    return page.page.locator(".Toastify__toast", has_text="How you use").count() + page.page.locator(
        ".Toastify__toast", has_text="May JupyterLab record").count() > 0


def test_the_preset_is_each_users_choice_and_the_content_category_keeps_code(browser, preset_lab, contexts,
                                                                           collector):
    page = open_lab(browser, preset_lab, contexts)
    wait_for(lambda: page.api("GET", "/api/telemetry/consent")["json"]["choice"] == "granted", 20,
             what="the preset stored as the user's choice")
    settle(1)
    assert not asked(page), "a preset answers the question"
    before = len(preset_lab.events())
    run_cells(page, preset_lab, "content.ipynb", ["print('forty-two')", "1 / 0"])
    wait_for(lambda: page.flush() and len(preset_lab.events(CELL_EXECUTED, before)) == 2, 30,
             what="two cell events")
    ok, failed = preset_lab.events(CELL_EXECUTED, before)
    assert ok["code"] == "print('forty-two')" and ok["status"] == "ok"
    assert ok["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "forty-two\n"}]
    assert failed["status"] == "error" and failed["error_name"] == "ZeroDivisionError"
    assert failed["output_types"] == ["error"] and failed["outputs"][0]["ename"] == "ZeroDivisionError"
    assert "path" not in ok, "content is allowed, paths are not"
    # The operator's collector got the same events from the server's HTTP sink.
    received = wait_for(lambda: [e for e in collector.received() if e["__schema__"] == CELL_EXECUTED][-2:]
                        if len(collector.received()) >= 2 else None, 30, what="events at the collector")
    assert [e["code"] for e in received] == ["print('forty-two')", "1 / 0"]


def test_global_privacy_control_outweighs_a_granted_preset(browser, preset_lab, contexts):
    page = open_lab(browser, preset_lab, contexts, extra_http_headers={"Sec-GPC": "1"})
    settle(2)
    assert page.api("GET", "/api/telemetry/consent")["json"]["choice"] is None
    assert not asked(page)
    assert page.page.evaluate("window.telemetrySinks.consent.state") == "denied"
    before = len(preset_lab.events())
    run_cells(page, preset_lab, "gpc.ipynb", ["2 + 2"])
    settle(1.5)
    page.flush()
    assert preset_lab.events(since=before) == []


def test_the_user_turns_recording_off_in_the_settings_editor(browser, preset_lab, contexts):
    page = open_lab(browser, preset_lab, contexts)
    wait_for(lambda: page.api("GET", "/api/telemetry/consent")["json"]["choice"] == "granted", 20,
             what="the preset")
    page.command("settingeditor:open", {"query": "Usage recording"}, wait=False)
    page.page.get_by_text("Usage recording", exact=True).first.click()
    page.page.locator("select[id$='plugin_consent']").select_option(label="No, do not record it")
    wait_for(lambda: page.api("GET", "/api/telemetry/consent")["json"]["choice"] == "denied", 20,
             what="the setting's change stored on the server")
    before = len(preset_lab.events())
    run_cells(page, preset_lab, "after-settings.ipynb", ["3 + 3"])
    settle(1.5)
    page.flush()
    assert preset_lab.events(since=before) == []


def test_a_locked_choice_is_not_asked_cannot_be_changed_and_is_enforced(browser, locked_lab, contexts):
    page = open_lab(browser, locked_lab, contexts)
    page.notification("Your administrator turned off")
    assert not asked(page)
    policy = page.api("GET", "/api/telemetry/policy")["json"]
    assert policy["consent"]["locked"] is True and policy["consent"]["choice"] == "denied"
    refused = page.quiet_api("POST", "/api/telemetry/consent", {"choice": "granted"})
    assert refused.status == 403 and "c.JupyterLabTelemetry.locked_consent" in refused.json()["error"]
    before = len(locked_lab.events())
    page.command("launcher:create")
    forged = page.api("POST", "/api/telemetry/events",
                      [{"schema_id": DOCUMENT, "version": 1, "data": {"action": "opened"}}])
    assert forged["json"]["results"][0]["status"] == "not_recorded"
    settle(1.5)
    page.flush()
    assert locked_lab.events(since=before) == []
    recorded = page.page.context.new_page()
    recorded.goto(f"{locked_lab.url}/telemetry")
    text = recorded.locator("body").inner_text()
    assert "Your administrator turned recording off for everyone." in text
    assert recorded.get_by_role("button", name="Allow recording").count() == 0
    recorded.close()
