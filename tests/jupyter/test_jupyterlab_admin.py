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
    DOCUMENT,
    PLUGIN,
    JupyterLab,
    records_nothing,
    settle,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CONTENT_KEPT = {
    CELL_EXECUTED: {"consent": "opt-in", "allowed_categories": ["content"]},
    DOCUMENT: {"consent": "opt-in"},
}


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
    """Under a base_url, as a JupyterHub user's server is."""
    allowed = {DOCUMENT: {}, ACTIVE_PANEL: {}}  # opt-out (the default)
    app = JupyterLab(tmp_path_factory.mktemp("locked-lab"), allowed,
                     'c.JupyterLabTelemetry.locked_consent = "denied"\n', base_url="/user/ada/").start()
    yield app
    app.stop()


def test_the_preset_is_each_users_choice_and_the_content_category_keeps_code(users, preset_lab,
                                                                           collector):
    page = users(preset_lab)
    page.wait_choice("granted", "the preset stored as the user's choice")
    settle(1)
    assert not page.asked(), "a preset answers the question"
    before = len(preset_lab.events())
    preset_lab.write_notebook("content.ipynb", ["print('forty-two')", "1 / 0"])
    page.open_notebook("content.ipynb")
    page.run_cells(2)
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


def test_global_privacy_control_outweighs_a_granted_preset(users, preset_lab):
    page = users(preset_lab, extra_http_headers={"Sec-GPC": "1"})
    settle(2)
    assert page.choice() is None
    assert not page.asked()
    assert page.page.evaluate("window.telemetrySinks.consent.state") == "denied"
    preset_lab.write_notebook("gpc.ipynb", ["2 + 2"])
    records_nothing(page, preset_lab, lambda: (page.open_notebook("gpc.ipynb"), page.run_cells()))


def test_the_user_turns_recording_off_in_the_settings_editor(users, preset_lab):
    page = users(preset_lab)
    page.wait_choice("granted", "the preset")
    page.command("settingeditor:open", {"query": "Usage recording"}, wait=False)
    page.page.get_by_text("Usage recording", exact=True).first.click()
    page.page.locator("select[id$='plugin_consent']").select_option(label="No, do not record it")
    page.wait_choice("denied", "the setting's change stored on the server")
    preset_lab.write_notebook("after-settings.ipynb", ["3 + 3"])
    records_nothing(page, preset_lab,
                    lambda: (page.open_notebook("after-settings.ipynb"), page.run_cells()))


def test_a_locked_choice_is_not_asked_cannot_be_changed_and_is_enforced(users, locked_lab):
    page = users(locked_lab)
    assert page.page.url.startswith(f"{locked_lab.url}/lab"), "JupyterLab under the base_url"
    page.notification("Your administrator turned off")
    assert not page.asked()
    policy = page.api("GET", "/api/telemetry/policy")["json"]
    assert policy["consent"]["locked"] is True and policy["consent"]["choice"] == "denied"
    refused = page.quiet_api("POST", "/api/telemetry/consent", {"choice": "granted"})
    assert refused.status == 403 and "c.JupyterLabTelemetry.locked_consent" in refused.json()["error"]
    records_nothing(page, locked_lab, lambda: page.command("launcher:create"))
    forged = page.api("POST", "/api/telemetry/events",
                      [{"schema_id": DOCUMENT, "version": 1, "data": {"action": "opened"}}])
    assert forged["json"]["results"][0]["status"] == "not_recorded"
    recorded = page.page.context.new_page()
    recorded.goto(f"{locked_lab.url}/telemetry")
    text = recorded.locator("body").inner_text()
    assert "Your administrator turned recording off for everyone." in text
    assert recorded.get_by_role("button", name="Allow recording").count() == 0
    recorded.close()
