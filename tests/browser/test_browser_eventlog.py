"""The browser EventLog in Debian's headless chromium (Playwright), against real collector
processes: what lands in the collector's files, what every request body carries (captured by
the browser), consent (deny, GPC, opt-in), delivery across navigation, outages and reloads,
a strict Content-Security-Policy, two tabs, and the consent form without JavaScript."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time

import pytest
from browser_env import (
    BINDER,
    CHROMIUM_ARGS,
    LAUNCH,
    SAVE,
    AppServer,
    CollectorProcess,
    app_page,
    chromium_path,
)
from helpers.servers import free_port, wait_for_port
from traitlets.config import Config

from telemetry_sinks import EventLog
from telemetry_sinks.config import EXAMPLE_SCHEMAS_DIR

pytestmark = pytest.mark.timeout(120)

STRICT_CSP = ("default-src 'none'; script-src 'self' {collector}; connect-src {collector}; "
              "style-src 'none'; img-src 'none'; base-uri 'none'; form-action 'none'; "
              "require-trusted-types-for 'script'")
ALLOWED = {LAUNCH: {"allowed_categories": [], "consent": "opt-out"}, SAVE: {"consent": "opt-in"}}
PERSONAL = {"username": "ada-lovelace-71", "client": {"user_agent": "Firefox/133.0", "ip": "192.0.2.147"}}


def launch_event(app: str, **extra: object) -> dict:
    return {"schema_id": LAUNCH, "version": 1, "data": {"app": app, "status": "success", **extra}}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def app():
    server = AppServer()
    yield server
    server.close()


@pytest.fixture
def collectors(tmp_path, fixtures_dir, app):
    """``start(allowed=..., **collector_options)``: a collector process with CORS for the app."""
    binder = fixtures_dir / "binderhub" / "launch-history" / "v6-a0c55e8" / "launch.json"
    started: list[CollectorProcess] = []

    def start(allowed: dict | None = None, eventlog: dict | None = None,
              **options: object) -> CollectorProcess:
        options.setdefault("cors_allowed_origins", [app.origin])
        proc = CollectorProcess(tmp_path / f"collector-{len(started)}", binder, allowed or ALLOWED, options,
                                eventlog=eventlog)
        started.append(proc.start())
        return proc

    yield start
    for proc in started:
        proc.stop()


class Traffic:
    """Every request the browser context makes, with its body and (when it came) its answer."""

    def __init__(self, context) -> None:
        self.requests: list[dict] = []
        context.on("request", lambda r: self.requests.append(
            {"url": r.url, "method": r.method, "body": r.post_data or "", "request": r}))

    def bodies(self) -> str:
        return "\n".join(r["body"] for r in self.requests)

    def events_posted(self, url_prefix: str) -> list[dict]:
        out = []
        for r in self.requests:
            if r["method"] == "POST" and r["url"].startswith(url_prefix) and "/api/events" in r["url"]:
                body = r["body"]
                out.extend(json.loads(body) if body.startswith("[") else
                           [json.loads(x) for x in body.splitlines() if x])
        return out

    def acknowledged_ids(self, url_prefix: str) -> list[str]:
        """Event ids of the request bodies the collector answered 200."""
        ids = []
        for r in self.requests:
            if r["method"] != "POST" or not r["url"].startswith(url_prefix + "/api/events"):
                continue
            response = r["request"].response()
            if response is not None and response.status == 200:
                ids.extend(e["__event_id__"] for e in json.loads(r["body"]))
        return ids


def open_app(context, app: AppServer, collector: CollectorProcess, csp: str | None = None):
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(app_page(app, collector.url, csp))
    until(page, "window.ready === true")
    page.errors = errors  # type: ignore[attr-defined]
    return page


def until(page, expression: str, timeout: float = 10.0) -> None:
    """Wait until ``expression`` is true in the page (evaluated from outside: CSP-proof, no eval)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({expression})"):
        assert time.monotonic() < deadline, f"not true after {timeout} s: {expression}"
        page.wait_for_timeout(50)


def connect(page, **options: object) -> str:
    script = "async (o) => { window.log = await TS.EventLog.connect(o); return log.consent.state; }"
    return page.evaluate(script, options)


def emit(page, event: dict) -> object:
    return page.evaluate("(e) => log.emit(e)", event)


def flush(page, timeout: int = 10_000) -> bool:
    return page.evaluate("(t) => log.flush(t)", timeout)


def python_capsule(event: dict) -> dict:
    """The capsule the Python EventLog makes of the same event under the same policy."""
    c = Config()
    c.EventLog.schema_paths = [str(EXAMPLE_SCHEMAS_DIR)]
    c.EventLog.load_schema_entry_points = False
    c.EventLog.allowed_schemas = ALLOWED
    log = EventLog(config=c, handlers=[logging.NullHandler()])
    return log.prepare(event["schema_id"], event["version"], event["data"])


# --------------------------------------------------------------------------- recording


def test_events_land_in_the_collector_as_python_records_them(browser, app, collectors):
    second = collectors(allowed={LAUNCH: {}})  # the operator's second browser sink: any URL, NDJSON
    http = {"type": "http", "url": f"{second.url}/api/events", "format": "ndjson"}
    collector = collectors(browser_sinks=["collector", "console", http])
    context = browser.new_context()
    traffic = Traffic(context)
    page = open_app(context, app, collector)
    shown: list[str] = []
    page.on("console", lambda m: shown.append(m.text) if m.type == "info" else None)
    assert connect(page) == "granted"
    event = launch_event("jupyterlab", duration_ms=812.5, **PERSONAL)
    capsule = emit(page, event)
    assert flush(page) is True

    [line] = collector.wait_for(lambda lines: len(lines) == 1)
    expected = python_capsule(event)
    assert set(line) == set(expected) | {"__event_id__"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line["__timestamp__"])
    assert {k: v for k, v in line.items() if k not in ("__timestamp__", "__event_id__")} == {
        k: v for k, v in expected.items() if k != "__timestamp__"}
    assert capsule == {k: v for k, v in line.items() if k != "__event_id__"}
    assert line["client"] == {"user_agent": "Firefox/133.0"}

    [other] = second.wait_for(lambda lines: len(lines) == 1)
    assert other["__event_id__"] == line["__event_id__"] and other["app"] == "jupyterlab"
    assert any("telemetry-sinks event" in text for text in shown), shown
    # Personal data never left the page, in any request.
    for secret in ("ada-lovelace-71", "192.0.2.147"):
        assert secret not in traffic.bodies()
    assert len(traffic.events_posted(second.url)) == 1
    context.close()


def test_what_the_collector_pseudonymizes_or_generalizes_reaches_only_the_collector(browser, app, collectors,
                                                                                   tmp_path):
    key = tmp_path / "pseudonym-key"
    key.write_text("browser-test-key-" + "0123456789" * 3)
    key.chmod(0o600)
    actions = {LAUNCH: {"consent": "opt-out", "round_timestamp": "minute",
                        "category_actions": {"user-identifier": "pseudonymize"},
                        "property_actions": {"client.user_agent": {"generalize": "truncate", "length": 7}}}}
    second = collectors(allowed={LAUNCH: {}})
    http = {"type": "http", "url": f"{second.url}/api/events", "format": "ndjson"}
    collector = collectors(allowed=actions, eventlog={"pseudonym_key_file": str(key)},
                           browser_sinks=["collector", http])
    context = browser.new_context()
    traffic = Traffic(context)
    page = open_app(context, app, collector)
    assert connect(page) == "granted"
    event = {**launch_event("jupyterlab", **PERSONAL), "timestamp": "2025-01-31T12:34:56.789Z"}
    emit(page, event)
    assert flush(page) is True

    [line] = collector.wait_for(lambda lines: len(lines) == 1)
    python = EventLog(handlers=[logging.NullHandler()], schema_paths=[str(EXAMPLE_SCHEMAS_DIR)],
                      load_schema_entry_points=False, allowed_schemas=actions, pseudonym_key_file=str(key))
    expected = python.prepare(LAUNCH, 1, event["data"], event["timestamp"])
    assert {k: v for k, v in line.items() if k != "__event_id__"} == expected  # as Python records it
    assert line["username"] == python.pseudonym_key.pseudonym("ada-lovelace-71")
    assert line["client"] == {"user_agent": "Firefox"}
    assert line["__timestamp__"] == "2025-01-31T12:34:00.000000Z"
    [other] = second.wait_for(lambda lines: len(lines) == 1)
    assert other["__event_id__"] == line["__event_id__"]
    assert "username" not in other and other["client"] == {} and other["app"] == "jupyterlab"
    # The raw user name went to the collector only (which pseudonymized it); nothing else left the page.
    to_second = "\n".join(r["body"] for r in traffic.requests if r["url"].startswith(second.url))
    assert to_second and "ada-lovelace-71" not in to_second and "Firefox" not in to_second
    assert "192.0.2.147" not in traffic.bodies()
    assert "ada-lovelace-71" not in second.events_file.read_text() + collector.events_file.read_text()
    policy = page.evaluate("() => log.policy.schemas[0].redaction")
    assert policy == python.describe_redaction(LAUNCH, 1)
    context.close()


def test_invalid_events_throw_and_schemas_not_allowed_send_nothing(browser, app, collectors):
    collector = collectors()
    context = browser.new_context()
    traffic = Traffic(context)
    page = open_app(context, app, collector)
    connect(page)
    message = page.evaluate("""(id) => {
        try { log.emit({schema_id: id, version: 1, data: {app: "lab", status: "maybe"}}); return "no error"; }
        catch (e) { return e.name + ": " + e.message; } }""", LAUNCH)
    assert message == (f"EventValidationError: Event for schema '{LAUNCH}' version 1 is invalid at $.status: "
                       'Instance does not match any of ["success","failure"].')
    assert emit(page, {"schema_id": BINDER, "version": 6, "data": {"provider": "GitHub"}}) is None
    assert emit(page, {"schema_id": SAVE, "version": 1, "data": {"action": "save"}}) is None  # opt-in
    assert flush(page) is True
    assert traffic.events_posted(collector.url) == []
    assert BINDER not in traffic.bodies()
    assert collector.lines() == []
    context.close()


def test_navigating_away_right_after_emit_still_records(browser, app, collectors):
    collector = collectors()
    context = browser.new_context()
    page = open_app(context, app, collector)
    connect(page, flushInterval=60_000, batchSize=100)  # nothing would leave on its own for a minute
    page.evaluate("""(e) => { log.emit(e); document.getElementById("away").click(); }""",
                  launch_event("leaving"))
    page.wait_for_url("**/other.html")
    lines = collector.wait_for(lambda lines: len(lines) == 1, timeout=10)
    assert [line["app"] for line in lines] == ["leaving"]
    context.close()


def test_collector_down_then_back_delivers(browser, app, collectors):
    collector = collectors()
    context = browser.new_context()
    page = open_app(context, app, collector)
    connect(page, retryInitialBackoff=200, retryMaxBackoff=1000)
    collector.stop()
    emit(page, launch_event("during-outage"))
    assert flush(page, 1500) is False
    collector.start()
    assert flush(page, 15_000) is True
    assert [line["app"] for line in collector.lines()] == ["during-outage"]
    context.close()


def test_persisted_events_survive_a_reload_while_the_collector_is_down(browser, app, collectors):
    collector = collectors()
    context = browser.new_context()
    traffic = Traffic(context)
    page = open_app(context, app, collector)
    connect(page, persist=True, retryInitialBackoff=200)
    collector.stop()
    for n in range(3):
        emit(page, launch_event(f"persisted-{n}", **PERSONAL))
    stored = page.evaluate("() => Object.keys(localStorage).filter((k) => k.includes(':q:'))"
                           ".map((k) => localStorage.getItem(k)).join('')")
    assert "persisted-2" in stored and "ada-lovelace-71" not in stored, "only redacted events are stored"
    page.reload()
    until(page, "window.ready === true")
    collector.start()
    connect(page, persist=True)
    assert flush(page, 15_000) is True
    lines = collector.wait_for(lambda lines: len(lines) == 3)
    assert sorted(line["app"] for line in lines) == ["persisted-0", "persisted-1", "persisted-2"]
    assert len({line["__event_id__"] for line in lines}) == 3
    assert page.evaluate("() => Object.keys(localStorage).filter((k) => k.includes(':q:')).length") == 0
    assert "ada-lovelace-71" not in traffic.bodies()
    context.close()


def test_two_tabs_do_not_send_duplicates(browser, app, collectors):
    collector = collectors()
    context = browser.new_context()
    traffic = Traffic(context)
    tabs = [open_app(context, app, collector) for _ in range(2)]
    for tab in tabs:
        connect(tab, persist=True, retryInitialBackoff=300, retryMaxBackoff=1000)
    collector.stop()
    for index, tab in enumerate(tabs):
        for n in range(3):
            emit(tab, launch_event(f"tab{index}-{n}"))
    tabs[0].reload()  # its events are left in storage; one of the two pages adopts them
    until(tabs[0], "window.ready === true")
    collector.start()
    connect(tabs[0], persist=True, retryInitialBackoff=300, retryMaxBackoff=1000)
    tabs[1].wait_for_timeout(5500)  # the other tab's periodic scan runs meanwhile
    assert all(flush(tab, 20_000) for tab in tabs)
    lines = collector.wait_for(lambda lines: len(lines) >= 6)
    assert sorted(line["app"] for line in lines) == sorted(f"tab{i}-{n}" for i in range(2) for n in range(3))
    acknowledged = traffic.acknowledged_ids(collector.url)
    assert len(acknowledged) == len(set(acknowledged)) == 6, acknowledged
    assert collector.health()["events"]["duplicate"] == 0
    context.close()


def test_rate_limited_pages_wait_for_retry_after_and_deliver(browser, app, collectors):
    collector = collectors(client_rate_limit=2.0, client_rate_burst=2)
    context = browser.new_context()
    page = open_app(context, app, collector)
    connect(page, batchSize=1, retryInitialBackoff=100)
    for n in range(5):
        emit(page, launch_event(f"limited-{n}"))
    assert flush(page, 20_000) is True
    assert sorted(line["app"] for line in collector.lines()) == [f"limited-{n}" for n in range(5)]
    assert collector.health()["rate_limited_requests"] >= 1
    context.close()


# --------------------------------------------------------------------------- consent


def post_directly(page, collector: CollectorProcess, event: dict) -> dict:
    """What a page that ignores the module's consent gets from the collector (cookies included)."""
    return page.evaluate("""async ([url, e]) => (await fetch(url + "/api/events", {
        method: "POST", credentials: "include", headers: {"Content-Type": "application/json"},
        body: JSON.stringify(e)})).json()""", [collector.url, event])


def test_deny_records_nothing_in_opt_out_mode(browser, app, collectors):
    collector = collectors()
    context = browser.new_context()
    traffic = Traffic(context)
    page = open_app(context, app, collector)
    connect(page, flushInterval=60_000)
    emit(page, launch_event("queued-before-deny"))
    assert page.evaluate("() => log.consent.deny()") is True
    assert page.evaluate("() => log.consent.state") == "denied"
    assert emit(page, launch_event("after-deny")) is None
    assert post_directly(page, collector, launch_event("forced"))["not_recorded"] == 1
    assert flush(page) is True
    assert collector.lines() == []
    assert "queued-before-deny" not in traffic.bodies(), "withdrawing consent purged the queue"
    # Another page load sees the choice (the collector's cookie).
    page.reload()
    until(page, "window.ready === true")
    assert connect(page) == "denied"
    context.close()


def test_global_privacy_control_records_nothing_in_opt_out_mode(browser, app, collectors):
    collector = collectors()
    context = browser.new_context(extra_http_headers={"Sec-GPC": "1"})
    context.add_init_script("Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', "
                            "{get: () => true})")
    page = open_app(context, app, collector)
    assert connect(page) == "denied"
    assert page.evaluate("() => log.consent.gpc") is True
    assert emit(page, launch_event("gpc")) is None
    assert post_directly(page, collector, launch_event("forced"))["not_recorded"] == 1
    assert collector.lines() == []
    page.evaluate("() => log.consent.grant()")  # an explicit grant overrides GPC
    assert emit(page, launch_event("granted")) is not None
    assert flush(page) is True
    assert [line["app"] for line in collector.lines()] == ["granted"]
    context.close()


def test_pending_records_nothing_in_opt_in_mode(browser, app, collectors):
    collector = collectors()
    context = browser.new_context()
    page = open_app(context, app, collector)
    connect(page)
    save = {"schema_id": SAVE, "version": 1, "data": {"action": "save", "size_bytes": 10}}
    assert page.evaluate(f"() => log.consent.stateFor({SAVE!r})") == "pending"
    assert emit(page, save) is None
    assert post_directly(page, collector, save)["not_recorded"] == 1
    assert collector.lines() == []
    page.evaluate("() => log.consent.grant()")
    assert emit(page, save) is not None
    assert flush(page) is True
    assert [line["action"] for line in collector.lines()] == ["save"]
    context.close()


def test_the_consent_form_on_the_page_works_without_javascript(browser, collectors):
    collector = collectors()
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    answer = page.goto(collector.url + "/")
    csp = answer.headers["content-security-policy"]
    assert "script-src" not in csp and "form-action 'self'" in csp
    assert "You have not made a choice." in page.inner_text("#consent")
    page.get_by_role("button", name="Turn recording off").click()
    page.wait_for_load_state()
    assert "You turned recording off." in page.inner_text("#consent")
    assert "now not recorded" in page.inner_text("#consent")
    [cookie] = [c for c in context.cookies() if c["name"] == "telemetry_sinks_consent"]
    assert cookie["value"].startswith("denied.") and cookie["httpOnly"]
    # The collector enforces it on events from this browser (same cookies).
    result = context.request.post(collector.url + "/api/events", data=launch_event("after-form"),
                                  headers={"Content-Type": "application/json"}).json()
    assert result["not_recorded"] == 1
    page.get_by_role("button", name="Allow recording").click()
    page.wait_for_load_state()
    assert "You allowed recording." in page.inner_text("#consent")
    assert context.request.post(collector.url + "/api/events", data=launch_event("allowed"),
                                headers={"Content-Type": "application/json"}).json()["accepted"] == 1
    context.close()


# --------------------------------------------------------------------------- pages


def test_the_module_works_on_a_page_with_a_strict_csp(browser, app, collectors):
    collector = collectors()
    context = browser.new_context()
    page = open_app(context, app, collector, csp=STRICT_CSP.format(collector=collector.url))
    assert connect(page, notice=True) == "granted"
    # The first-run notice: text from the policy, a link to the page, keyboard-usable buttons.
    notice = page.get_by_role("region", name="What this site records")
    assert "Application launch, File saved" in notice.inner_text()
    link = page.get_by_role("link", name="What is recorded, in detail")
    assert link.get_attribute("href") == collector.url + "/"
    emit(page, launch_event("strict"))
    with pytest.raises(Exception, match="invalid at"):
        page.evaluate(f"() => log.emit({{schema_id: {LAUNCH!r}, data: {{app: 1}}}})")
    assert flush(page) is True
    page.get_by_role("button", name="Turn off").focus()
    page.keyboard.press("Enter")
    until(page, "log.consent.state === 'denied'")
    assert page.get_by_role("region", name="What this site records").count() == 0
    assert [line["app"] for line in collector.lines()] == ["strict"]
    assert page.evaluate("window.violations") == []
    assert page.errors == []
    context.close()


def test_the_demo_page_from_the_readme_command(browser, tmp_path):
    """``telemetry-sinks serve`` with its embedded default, as the README's main command runs it."""
    port = free_port()
    with open(tmp_path / "serve.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "telemetry_sinks", "serve", "--port", str(port)],
                                   cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://127.0.0.1:{port}/demo")
        until(page, "window.telemetryLog !== undefined")
        assert "Connected" in page.inner_text("#status")
        assert page.get_by_role("region", name="What this site records").count() == 1
        page.get_by_role("button", name="Emit all").click()
        page.get_by_role("button", name="Flush").click()
        until(page, "document.getElementById('log').textContent.includes('acknowledged')")
        text = page.inner_text("#log")
        assert "example 5: Event for schema" in text and "invalid at $.status" in text
        lines = [json.loads(x) for x in (tmp_path / "events" / "events.jsonl").read_text().splitlines()]
        assert [line["__schema__"].rsplit("/", 1)[-1] for line in lines] == [
            "app-launch", "file-save", "app-launch", "file-save"]
        assert all("username" not in line and "path" not in line for line in lines)
        assert errors == []
        context.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
