"""The collector's endpoints for browsers, over real HTTP: policy, consent and its cookie,
consent enforced on events, per-client rate limits, CORS, the static module and the demo page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests
from traitlets import TraitError
from traitlets.config import Config

from telemetry_sinks import EventLog
from telemetry_sinks.config import EXAMPLE_SCHEMAS_DIR, default_config
from telemetry_sinks.server import Collector
from telemetry_sinks.server.browser import STATIC_DIR, static_url
from telemetry_sinks.server.consent import COOKIE

pytestmark = pytest.mark.timeout(60)

LAUNCH = "https://events.telemetry-sinks.org/example/app-launch"
SAVE = "https://events.telemetry-sinks.org/example/file-save"
APP = "https://lab.example.org"
JSON = {"Content-Type": "application/json"}


def launch(n: int = 0) -> dict:
    data = {"app": f"a{n}", "status": "success", "username": "ada"}
    return {"schema_id": LAUNCH, "version": 1, "data": data}


def save(n: int = 0) -> dict:
    return {"schema_id": SAVE, "version": 1, "data": {"action": "save", "size_bytes": n}}


class Running:
    def __init__(self, tmp_path: Path, **collector: object) -> None:
        c = Config()
        c.EventLog.schema_paths = [str(EXAMPLE_SCHEMAS_DIR)]
        c.EventLog.load_schema_entry_points = False
        c.EventLog.allowed_schemas = {LAUNCH: {"allowed_categories": [], "consent": "opt-out"},
                                      SAVE: {"consent": "opt-in"}}
        c.EventLog.sinks = ["file"]
        c.FileSink.filename = str(tmp_path / "events.jsonl")
        c.Collector.port = 0
        c.Collector.cors_allowed_origins = [APP]
        for name, value in collector.items():
            setattr(c.Collector, name, value)
        self.path = tmp_path / "events.jsonl"
        self.collector = Collector(config=c)
        self.url = f"http://127.0.0.1:{self.collector.start()}"
        self.session = requests.Session()

    def post(self, body: object, **headers: str) -> requests.Response:
        return self.session.post(f"{self.url}/api/events", data=json.dumps(body), headers={**JSON, **headers},
                                 timeout=10)

    def choose(self, choice: str | None, **headers: str) -> requests.Response:
        return self.session.post(f"{self.url}/api/consent", data=json.dumps({"choice": choice}),
                                 headers={**JSON, **headers}, timeout=10)

    def lines(self) -> list[dict]:
        self.collector.eventlog.flush()
        return [json.loads(x) for x in self.path.read_text().splitlines()] if self.path.exists() else []


@pytest.fixture
def server(tmp_path):
    started: list[Running] = []

    def start(**options: object) -> Running:
        started.append(Running(tmp_path, **options))
        return started[-1]

    yield start
    for s in started:
        s.collector.stop()


def test_the_policy_lists_what_browsers_may_record(server):
    s = server()
    answer = s.session.get(f"{s.url}/api/policy", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    policy = answer.json()
    by_id = {entry["id"]: entry for entry in policy["schemas"]}
    assert set(by_id) == {LAUNCH, SAVE}
    assert by_id[LAUNCH]["consent"] == "opt-out" and by_id[LAUNCH]["state"] == "granted"
    assert by_id[SAVE]["consent"] == "opt-in" and by_id[SAVE]["state"] == "pending"
    assert by_id[LAUNCH]["allowed_categories"] == ["unrestricted"]
    assert by_id[LAUNCH]["schema"]["properties"]["username"]["categories"] == [
        "category.jupyter.org/user-identifier"]
    assert policy["sinks"] == [{"type": "collector"}]
    assert policy["consent"] == {"default": "opt-out", "choice": None, "choice_time": None, "gpc": False}
    assert policy["page"] == f"{s.url}/"
    assert policy["limits"]["max_body_bytes"] == 1024 * 1024


def test_a_schema_not_allowed_is_named_but_not_published(tmp_path):
    c = default_config(tmp_path)
    c.EventLog.allowed_schemas = [LAUNCH]
    c.Collector.port = 0
    collector = Collector(config=c)
    url = f"http://127.0.0.1:{collector.start()}"
    try:
        policy = requests.get(f"{url}/api/policy", timeout=10).json()
    finally:
        collector.stop()
    assert [entry["id"] for entry in policy["schemas"]] == [LAUNCH]
    assert policy["not_recorded"] == [SAVE]


def test_consent_is_enforced_by_the_collector(server):
    s = server()
    answer = s.post([launch(1), save(1)]).json()
    assert [r["status"] for r in answer["results"]] == ["accepted", "not_recorded"]
    assert answer["results"][1]["reason"] == "consent pending (opt-in)"

    granted = s.choose("granted")
    assert granted.status_code == 200 and granted.json()["schemas"][SAVE]["state"] == "granted"
    cookie = granted.cookies[COOKIE]
    assert re.fullmatch(r"granted\.\d+", cookie)
    set_cookie = granted.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Path=/" in set_cookie
    assert "Max-Age=31536000" in set_cookie
    assert [r["status"] for r in s.post([launch(2), save(2)]).json()["results"]] == ["accepted", "accepted"]

    s.choose("denied")
    answer = s.post([launch(3), save(3)]).json()
    assert [r["status"] for r in answer["results"]] == ["not_recorded", "not_recorded"]
    assert answer["results"][0]["reason"] == "consent denied (opt-out)"

    s.choose(None)
    assert COOKIE not in s.session.cookies
    assert [entry["app"] for entry in s.lines() if "app" in entry] == ["a1", "a2"]
    assert [entry.get("size_bytes") for entry in s.lines() if "action" in entry] == [2]


def test_global_privacy_control_denies_unless_granted(server):
    s = server()
    gpc = {"Sec-GPC": "1"}
    assert s.post(launch(1), **gpc).json()["not_recorded"] == 1
    assert s.session.get(f"{s.url}/api/policy", headers=gpc, timeout=10).json()["consent"]["gpc"] is True
    s.choose("granted", **gpc)
    assert s.post(launch(2), **gpc).json()["accepted"] == 1


def test_required_schemas_ignore_the_choice_and_servers_with_the_token_are_not_subject(server, tmp_path):
    s = server(token="s3rv3r-t0ken", browser_events=True)
    s.collector.eventlog.allowed_schemas = {LAUNCH: {"consent": "required"}, SAVE: {"consent": "opt-in"}}
    s.choose("denied")
    assert s.post([launch(1), save(1)]).json()["accepted"] == 1  # required: recorded; opt-in: not
    auth = {"Authorization": "Bearer s3rv3r-t0ken"}
    assert s.post([save(2)], **auth).json()["accepted"] == 1, "a server's events are not a browser user's"
    assert s.post([save(3)], Authorization="Bearer wrong").status_code == 401


def test_without_browser_events_a_token_is_still_required(server):
    s = server(token="s3rv3r-t0ken")
    assert s.post(launch()).status_code == 401
    assert s.session.get(f"{s.url}/api/policy", timeout=10).status_code == 200  # public


def test_the_consent_form_works_without_javascript(server):
    s = server()
    page = s.session.get(f"{s.url}/", timeout=10)
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert "You have not made a choice." in page.text
    assert '<form method="post" action="/api/consent">' in page.text
    answer = s.session.post(f"{s.url}/api/consent", data={"choice": "denied"}, headers={"Origin": s.url},
                            allow_redirects=False, timeout=10)
    assert answer.status_code == 303 and answer.headers["Location"] == "/#consent"
    page = s.session.get(f"{s.url}/", timeout=10)
    assert "You turned recording off." in page.text
    assert ("Application launch</strong>: recorded unless you turn it off; now <strong>not recorded"
            in page.text)
    assert s.post(launch()).json()["not_recorded"] == 1


def test_other_sites_cannot_change_the_choice(server):
    s = server()
    for origin in ("https://evil.example", "null"):
        answer = s.session.post(f"{s.url}/api/consent", data={"choice": "granted"},
                                headers={"Origin": origin}, allow_redirects=False, timeout=10)
        assert answer.status_code == 403, origin
        assert "may not change the consent choice" in answer.json()["error"]
    forged = s.session.post(f"{s.url}/api/consent", data={"choice": "granted"}, allow_redirects=False,
                            headers={"Sec-Fetch-Site": "cross-site"}, timeout=10)
    assert forged.status_code == 403, "a browser request from another site without Origin"
    assert COOKIE not in s.session.cookies
    # The collector's own page (no-referrer: Origin null) is told apart by Sec-Fetch-Site.
    own = s.session.post(f"{s.url}/api/consent", data={"choice": "denied"}, allow_redirects=False,
                         headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"}, timeout=10)
    assert own.status_code == 303
    assert s.choose("granted", Origin=APP).status_code == 200  # a configured origin may
    assert s.choose("maybe").status_code == 400


def test_per_client_rate_limit_answers_429_with_retry_after(server):
    s = server(client_rate_limit=1.0, client_rate_burst=3)
    statuses = [s.post(launch(n)).status_code for n in range(5)]
    assert statuses[:3] == [200, 200, 200]
    limited = s.post(launch(9))
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert "client_rate_limit" in limited.json()["error"]
    assert s.session.get(f"{s.url}/api/health", timeout=10).json()["rate_limited_requests"] >= 2


def test_behind_a_proxy_clients_are_told_apart_by_x_forwarded_for(server):
    s = server(client_rate_limit=1.0, client_rate_burst=1, trust_forwarded_headers=True)
    first = [s.post(launch(n), **{"X-Forwarded-For": "198.51.100.1"}).status_code for n in range(2)]
    other = s.post(launch(3), **{"X-Forwarded-For": "198.51.100.2"}).status_code
    assert first == [200, 429] and other == 200
    plain = server(client_rate_limit=1.0, client_rate_burst=1)
    spoofed = [plain.post(launch(n), **{"X-Forwarded-For": f"198.51.100.{n}"}).status_code for n in range(2)]
    assert spoofed == [200, 429], "without trust_forwarded_headers the header is ignored"


def test_token_holders_are_not_rate_limited(server):
    s = server(client_rate_limit=1.0, client_rate_burst=1, token="t0k", browser_events=True)
    auth = {"Authorization": "Bearer t0k"}
    assert all(s.post(launch(n), **auth).status_code == 200 for n in range(5))
    assert [s.post(launch(n)).status_code for n in range(2)] == [200, 429]


def test_cors_for_the_configured_origins_with_credentials(server):
    s = server()
    ok = s.session.get(f"{s.url}/api/policy", headers={"Origin": APP}, timeout=10)
    assert ok.headers["Access-Control-Allow-Origin"] == APP
    assert ok.headers["Access-Control-Allow-Credentials"] == "true"
    other = s.session.get(f"{s.url}/api/policy", headers={"Origin": "https://other.example"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = s.session.options(f"{s.url}/api/consent", headers={
        "Origin": APP, "Access-Control-Request-Method": "POST"}, timeout=10)
    assert preflight.status_code == 204


def test_the_static_module_has_caching_and_cors_headers(server):
    s = server()
    plain = s.session.get(f"{s.url}/static/telemetry-sinks.js", headers={"Origin": APP}, timeout=10)
    assert plain.status_code == 200
    assert plain.content == (STATIC_DIR / "telemetry-sinks.js").read_bytes()
    assert plain.headers["Content-Type"] == "text/javascript; charset=UTF-8"
    assert plain.headers["Cache-Control"] == "public, max-age=300"
    assert plain.headers["Access-Control-Allow-Origin"] == APP
    assert plain.headers["Etag"]
    again = s.session.get(f"{s.url}/static/telemetry-sinks.js", timeout=10,
                          headers={"If-None-Match": plain.headers["Etag"]})
    assert again.status_code == 304
    versioned = s.session.get(s.url + static_url("telemetry-sinks.js"), timeout=10)
    assert versioned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert s.session.get(f"{s.url}/static/../app.py", timeout=10).status_code in (403, 404)


def test_the_demo_page_is_served_with_a_strict_csp(server):
    s = server()
    page = s.session.get(f"{s.url}/demo", timeout=10)
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp and "require-trusted-types-for" in csp
    assert re.search(r'<script type="module" src="/static/demo\.js\?v=[0-9a-f]{12}"></script>', page.text)
    examples = json.loads(re.search(r'<script type="application/json" id="examples">(.*?)</script>',
                                    page.text, re.S).group(1))
    assert examples[0]["schema_id"] == LAUNCH


def test_bad_browser_configuration_is_named(tmp_path):
    for option, value, words in [
        ("browser_sinks", ["kafka"], "must be 'collector', 'console' or"),
        ("browser_sinks", [{"type": "http", "url": "ftp://x"}], "absolute http(s) URL"),
        ("browser_sinks", [{"type": "http", "url": "https://u:p@x.org/in"}], "must not hold a user"),
        ("browser_sample_rates", {LAUNCH: 2}, "a number from 0 to 1"),
        ("client_rate_limit", -1.0, ">= 0"),
    ]:
        c = default_config(tmp_path)
        setattr(c.Collector, option, value)
        with pytest.raises(TraitError, match=re.escape(words)):
            Collector(config=c)


def test_consent_modes_are_checked_and_old_policy_forms_stay_valid():
    with pytest.raises(TraitError, match="must be one of 'required', 'opt-out', 'opt-in', not 'maybe'"):
        EventLog(allowed_schemas={LAUNCH: {"consent": "maybe"}})
    with pytest.raises(TraitError, match="default_consent must be one of"):
        EventLog(default_consent="sometimes")
    log = EventLog(allowed_schemas=[LAUNCH], default_consent="opt-in")
    assert log.consent_mode(LAUNCH) == "opt-in" and log.consent_mode(SAVE) is None
    log = EventLog(allowed_schemas={LAUNCH: {"allowed_categories": ["user-identifier"]}, SAVE: None})
    assert log.consent_mode(LAUNCH) == "opt-out" == log.consent_mode(SAVE)
    log = EventLog(allowed_schemas=[(LAUNCH, ["user-identifier"], [])], default_consent="required")
    assert log.consent_mode(LAUNCH) == "required"
