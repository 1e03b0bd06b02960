"""Jupyter Server handlers of the JupyterLab endpoints (see :mod:`telemetry_sinks.jupyter.lab`).

They are Jupyter Server handlers: authentication (token, login cookie, the Hub's OAuth),
XSRF checks on ``POST`` and authorization (resource ``telemetry``) are the server's.
They do not count as activity of the server (an idle JupyterLab that records events is
still idle for culling).
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from ..describe import (
    SinkDescription,
    consent_section_html,
    describe_html,
    describe_markdown,
    sinks_from_handlers,
)
from ..server import consent
from ..server.browser import browser_policy
from ..server.handlers import ApiError, parse_body, process_events
from .lab import CONSENT_PATH, EVENTS_PATH, LAB_SCHEMAS, PAGE_PATH, POLICY_PATH, JupyterLabTelemetry

SETTINGS_KEY = "telemetry_sinks_lab"
PAGE_TITLE = "What this Jupyter server records"
_MEDIA_TYPES = ("application/json", "application/x-ndjson")
_PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; "
             "frame-ancestors 'self'")


class _LabHandler(JupyterHandler):
    """What the JupyterLab endpoints and the page share (the API handlers are also APIHandlers)."""

    auth_resource = "telemetry"
    _track_activity = False

    @property
    def lab(self) -> JupyterLabTelemetry:
        return self.settings[SETTINGS_KEY]

    def user_consent(self) -> consent.UserConsent:
        return self.lab.user_consent(self.current_user.username, self.request)

    def page_url(self) -> str:
        return url_path_join(self.base_url, PAGE_PATH)


class LabAPIHandler(_LabHandler, APIHandler):
    def fail(self, status: int, message: str) -> None:
        """An error answer ``{"error": message}`` (the browser module shows it in its warnings)."""
        self.set_status(status)
        self.finish(json.dumps({"error": message}))

    def write_json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(body))


class PolicyHandler(LabAPIHandler):
    """``GET api/telemetry/policy``: what JupyterLab may record for this user."""

    @web.authenticated
    @authorized
    def get(self) -> None:
        user = self.user_consent()
        document = browser_policy(self.lab, user, self.page_url(), LAB_SCHEMAS)
        document["consent"]["locked"] = self.lab.locked_consent is not None
        document["commands"] = {"ignored": list(self.lab.ignored_commands)}
        self.write_json(200, document)


class ConsentHandler(LabAPIHandler):
    """``GET``/``POST api/telemetry/consent``: the user's choice, JSON ``{"choice": ...}``."""

    @web.authenticated
    @authorized
    def get(self) -> None:
        self.write_json(200, self.lab.consent_body(self.user_consent()))

    @web.authenticated
    @authorized
    def post(self) -> None:
        media = self.request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if media != "application/json":
            return self.fail(415, 'send JSON {"choice": ...} (Content-Type: application/json)')
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or "choice" not in body:
            return self.fail(400, 'send {"choice": "granted" | "denied" | null}')
        try:
            choose(self.lab, self.current_user.username, body["choice"])
        except (ValueError, PermissionError) as exc:
            return self.fail(403 if isinstance(exc, PermissionError) else 400, str(exc))
        self.write_json(200, self.lab.consent_body(self.user_consent()))


def choose(lab: JupyterLabTelemetry, username: str, choice: Any) -> None:
    """Store a choice from a request; ValueError for one that is not a choice."""
    if choice is not None and choice not in consent.CHOICES:
        raise ValueError(f"choice {str(choice)[:40]!r} is not 'granted', 'denied' or null (clear)")
    lab.choose(username, choice)


class EventsHandler(LabAPIHandler):
    """``POST api/telemetry/events``: the page's events, recorded as the policy and consent allow."""

    @web.authenticated
    @authorized
    def post(self) -> None:
        lab = self.lab
        if len(self.request.body) > lab.max_body_bytes:
            return self.fail(413, f"the request body is too large ({len(self.request.body)} bytes; the "
                             f"limit is {lab.max_body_bytes}, c.JupyterLabTelemetry.max_body_bytes)")
        media = self.request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if media not in _MEDIA_TYPES:
            return self.fail(415, "send JSON (Content-Type: application/json) or NDJSON "
                             "(application/x-ndjson)")
        try:
            items = parse_body(self.request.body, lab.max_events_per_request, media == _MEDIA_TYPES[1])
        except ApiError as exc:
            return self.fail(exc.status_code, exc.message)
        result = process_events(lab, items, self.user_consent())
        if result["rejected"]:
            first = next(r for r in result["results"] if r["status"] == "rejected")
            self.write_json(400, {"error": f"{result['rejected']} of {len(items)} events rejected; first: "
                                  f"event {first['index']}: {first['error']['message']}", **result})
        else:
            self.write_json(200, result)


class PageHandler(_LabHandler):
    """``GET telemetry``: what this server records, for its users (``?format=md`` for Markdown);
    ``POST`` its plain form (``choice=granted|denied|clear``, with Jupyter's ``_xsrf``), which
    needs no JavaScript."""

    @property
    def content_security_policy(self) -> str:
        return _PAGE_CSP

    @web.authenticated
    @authorized
    def get(self) -> None:
        lab = self.lab
        eventlog = lab.eventlog
        sinks = sinks_from_handlers(eventlog.all_handlers) if any(
            s["type"] == "collector" for s in lab.browser_sinks) else []
        sinks += [SinkDescription("browser http", "HTTP, from the browser (JupyterLab's events)",
                                  [("URL", s["url"])]) for s in lab.browser_sinks if s["type"] == "http"]
        self.set_header("Cache-Control", "no-store")
        if self.get_query_argument("format", "html") in ("md", "markdown"):
            self.set_header("Content-Type", "text/markdown; charset=UTF-8")
            self.finish(describe_markdown(eventlog, sinks, PAGE_TITLE))
            return
        user = self.user_consent()
        titles = {sid: s.title for (sid, _), s in eventlog.schemas.items()}
        section = consent_section_html(
            eventlog.default_consent, user.choice, user.gpc, lab.consent_states(user), titles,
            self.page_url(), hidden={"_xsrf": self.xsrf_token.decode()},
            kept="on this Jupyter server, for your Jupyter account; it applies to what JupyterLab "
            "records in your browser", locked=lab.locked_consent is not None)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        # Jupyter Server checks the Origin of a form's POST: the page must send it (same origin only).
        self.finish(describe_html(eventlog, sinks, PAGE_TITLE, consent_html=section,
                                  referrer_policy="same-origin"))

    @web.authenticated
    @authorized
    def post(self) -> None:
        raw = self.get_body_argument("choice", "")
        try:
            choose(self.lab, self.current_user.username, None if raw == "clear" else raw)
        except ValueError as exc:
            raise web.HTTPError(400, str(exc)) from None
        except PermissionError as exc:
            raise web.HTTPError(403, str(exc)) from None
        self.redirect(self.page_url() + "#consent", status=303)


def load(serverapp: Any, eventlog: Any) -> JupyterLabTelemetry:
    """Register the JupyterLab schemas in ``eventlog`` and add the endpoints under the server's base_url."""
    lab = JupyterLabTelemetry(eventlog, parent=serverapp)
    serverapp.web_app.settings[SETTINGS_KEY] = lab
    base = serverapp.base_url
    serverapp.web_app.add_handlers(".*$", [
        (url_path_join(base, POLICY_PATH), PolicyHandler),
        (url_path_join(base, CONSENT_PATH), ConsentHandler),
        (url_path_join(base, EVENTS_PATH), EventsHandler),
        (url_path_join(base, PAGE_PATH), PageHandler),
    ])
    return lab
