"""What the collector offers browsers: the policy, consent, the JavaScript module and a demo page.

``GET /api/policy``
    Public.  What a page may record, for the browser EventLog: the allowed
    schemas (every registered version, with its JSON Schema), the categories and
    properties each keeps and its compiled plan (``EventLog.describe_redaction``:
    what is dropped, pseudonymized or generalized; the module sends what is
    pseudonymized or generalized only to the collector, which never gives pages
    the key), its consent mode and this user's state, the sampling
    rate, the browser sinks the operator enabled, and the collector's limits.
    Schemas that are registered but not recorded are listed by id only.
``GET /api/consent``, ``POST /api/consent``
    Public.  The user's choice (first-party cookie) and each schema's state;
    ``POST`` JSON ``{"choice": "granted" | "denied" | null}`` from the module, or
    the plain form of ``GET /`` (``choice=granted|denied|clear``; answered with a
    redirect back to the page, so it works without JavaScript).
``GET /static/telemetry-sinks.js``
    The browser EventLog, an ES module (also as a cross-origin module script for
    the origins in ``c.Collector.cors_allowed_origins``), with caching headers:
    ``?v=<hash>`` URLs (:func:`static_url`) are immutable.
``GET /demo``
    A page that emits the bundled example events from the browser, under a strict
    Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import tornado.web

from ..config import EXAMPLE_EVENTS
from ..policy import policy_for
from ..schema import UNRESTRICTED
from . import consent
from .handlers import ApiError, BaseHandler

if TYPE_CHECKING:
    from ..eventlog import EventLog
    from .app import Collector

STATIC_DIR = Path(__file__).parent / "static"
MODULE = "telemetry-sinks.js"
POLICY_VERSION = 1
BROWSER_SINK_TYPES = ("collector", "console", "http")
HTTP_SINK_FORMATS = ("json", "ndjson")

_log = logging.getLogger("telemetry_sinks.server")


def static_url(name: str) -> str:
    """``/static/<name>?v=<first 12 hex digits of its SHA-256>`` (cached for good by browsers)."""
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
    return f"/static/{name}?v={digest}"


# --------------------------------------------------------------------------- configuration checks


def check_browser_sinks(
    value: list[Any], trait: str = "Collector.browser_sinks", here: str = "collector"
) -> list[dict[str, Any]]:
    """``value`` (the option ``trait``) as a list of dicts; ValueError naming the bad entry.

    ``here`` is the option's word for the endpoint that serves the policy (type ``collector``
    in the policy document).
    """
    out = []
    for index, entry in enumerate(value):
        where = f"{trait}[{index}]"
        if isinstance(entry, str):
            entry = {"type": entry}
        if isinstance(entry, dict) and entry.get("type") == "collector" and here != "collector":
            raise ValueError(f"{where}: here the endpoint that serves the policy is {here!r}; "
                             "an external collector is {'type': 'http', 'url': ...}")
        if isinstance(entry, dict) and entry.get("type") == here:
            entry = {**entry, "type": "collector"}
        if not isinstance(entry, dict) or entry.get("type") not in BROWSER_SINK_TYPES:
            raise ValueError(f"{where} must be {here!r}, 'console' or {{'type': 'http', 'url': ..., "
                             f"'format': 'json' | 'ndjson'}}, not {entry!r}")
        unknown = set(entry) - {"type", "url", "format"}
        if unknown:
            raise ValueError(f"{where} has unknown keys {sorted(unknown)}; the keys are type, url, format")
        if entry["type"] == "http":
            url = entry.get("url")
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{where}: 'url' must be an absolute http(s) URL, not {url!r}")
            if parts.username or parts.password:
                raise ValueError(f"{where}: the URL must not hold a user or password (pages are public)")
            fmt = entry.setdefault("format", "json")
            if fmt not in HTTP_SINK_FORMATS:
                raise ValueError(f"{where}: 'format' must be 'json' or 'ndjson', not {fmt!r}")
        elif len(entry) > 1:
            raise ValueError(f"{where}: a {here if entry['type'] == 'collector' else entry['type']} "
                             "sink takes no options")
        out.append(dict(entry))
    return out


def check_sample_rates(
    value: dict[str, Any], trait: str = "Collector.browser_sample_rates"
) -> dict[str, float]:
    for sid, rate in value.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"{trait}[{sid!r}] must be a number from 0 to 1 "
                             f"(the share of page sessions that record it), not {rate!r}")
    return {sid: float(rate) for sid, rate in value.items()}


# --------------------------------------------------------------------------- the policy document


def _origin(request: Any) -> str:
    return f"{request.protocol}://{request.host}"


class BrowserSource(Protocol):
    """What the policy document is made from: the collector, or Jupyter Server's JupyterLab endpoints."""

    eventlog: EventLog
    browser_sinks: list[dict[str, Any]]
    browser_sample_rates: dict[str, float]
    max_body_bytes: int
    max_events_per_request: int


def browser_policy(
    source: BrowserSource,
    user: consent.UserConsent,
    page: str,
    schema_ids: Collection[str] | None = None,
) -> dict[str, Any]:
    """The policy document of ``GET /api/policy`` for one user (their consent state included).

    ``page`` is the URL of the plain-language page; ``schema_ids`` limits the document to
    those schemas (default: every registered one).
    """
    eventlog = source.eventlog
    by_id: dict[str, list[int]] = {}
    for sid, version in eventlog.schemas:
        if schema_ids is None or sid in schema_ids:
            by_id.setdefault(sid, []).append(version)
    schemas, not_recorded = [], []
    for sid in sorted(by_id):
        policy = policy_for(eventlog.allowed_schemas, sid)
        if policy is None:
            not_recorded.append(sid)
            continue
        mode = policy.consent or eventlog.default_consent
        for version in sorted(by_id[sid]):
            body = eventlog.schema(sid, version).body
            schemas.append({
                "id": sid,
                "version": version,
                "title": " ".join(str(body.get("title") or "").split()),
                "consent": mode,
                "state": user.state(mode),
                "sample_rate": source.browser_sample_rates.get(sid, 1.0),
                "allowed_categories": sorted(policy.allowed_categories | {UNRESTRICTED}),
                "allowed_properties": sorted(policy.allowed_properties),
                "schema": body,
                # The compiled plan: the module drops what it drops, and sends what it pseudonymizes or
                # generalizes only to the collector (no key in pages), which does it before any sink.
                "redaction": eventlog.describe_redaction(sid, version),
            })
    return {
        "policy_version": POLICY_VERSION,
        "page": page,
        "consent": {"default": eventlog.default_consent, "choice": user.choice,
                    "choice_time": user.at, "gpc": user.gpc},
        "schemas": schemas,
        "not_recorded": not_recorded,
        "sinks": source.browser_sinks,
        "limits": {"max_body_bytes": source.max_body_bytes,
                   "max_events_per_request": source.max_events_per_request},
    }


# --------------------------------------------------------------------------- handlers


class PublicHandler(BaseHandler):
    """Public endpoints: no bearer token; per-user answers are never cached by shared caches."""

    def prepare(self) -> None:
        pass

    def user(self) -> consent.UserConsent:
        return consent.from_request(self.request)


class PolicyHandler(PublicHandler):
    def get(self) -> None:
        self.set_header("Vary", "Origin, Cookie, Sec-GPC")
        self.write_json(200, browser_policy(self.collector, self.user(), _origin(self.request) + "/"))


class ConsentHandler(PublicHandler):
    """The user's choice: read it, or change it (JSON from the module, or the page's plain form)."""

    def get(self) -> None:
        self.write_json(200, consent.consent_body(self.collector.eventlog, self.user()))

    def post(self) -> None:
        self._check_origin()
        self.collector.check_rate(self.request)
        media = self.request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        form = media == "application/x-www-form-urlencoded"
        if form:
            raw = self.get_body_argument("choice", "")
            choice = None if raw == "clear" else raw
        elif media == "application/json":
            try:
                body = json.loads(self.request.body or b"null")
            except ValueError:
                raise ApiError(400, 'the body is not JSON; send {"choice": "granted" | "denied" | null}')
            if not isinstance(body, dict) or "choice" not in body:
                raise ApiError(400, 'send {"choice": "granted" | "denied" | null}')
            choice = body["choice"]
        else:
            raise ApiError(415, 'send JSON {"choice": ...} (Content-Type: application/json) or the form '
                           "of the GET / page (application/x-www-form-urlencoded)")
        if choice is not None and choice not in consent.CHOICES:
            raise ApiError(400, f"choice {str(choice)[:40]!r} is not 'granted', 'denied' or null (clear)")
        user = self.user()
        if choice is None:
            self.clear_cookie(consent.COOKIE, path="/")
            user = consent.UserConsent(None, None, user.gpc)
        else:
            value = consent.cookie_value(choice)
            self._set_consent_cookie(value)
            user = consent.UserConsent(*consent.parse_cookie(value), user.gpc)
        if form:
            self.set_status(303)
            self.set_header("Location", "/#consent")
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
            self.finish("your choice is saved; back to /\n")
            return
        self.write_json(200, consent.consent_body(self.collector.eventlog, user))

    def _set_consent_cookie(self, value: str) -> None:
        secure = self.request.protocol == "https"
        # Over https the cookie also travels with the module's requests from other sites.
        self.set_cookie(consent.COOKIE, value, path="/", httponly=True,
                        max_age=self.collector.consent_cookie_days * 86400,
                        samesite="None" if secure else "Lax", secure=secure)

    def _check_origin(self) -> None:
        """Only pages of the collector itself and of the configured origins may change a choice.

        ``Sec-Fetch-Site`` (sent by browsers, never settable by page scripts) says when the request
        comes from the collector's own page, which may send ``Origin: null`` under its no-referrer
        policy; otherwise ``Origin`` (or ``Referer``) must be the collector or an allowed origin.
        """
        headers = self.request.headers
        if headers.get("Sec-Fetch-Site") in ("same-origin", "none"):
            return
        source = headers.get("Origin") or headers.get("Referer")
        if not source and "Sec-Fetch-Site" not in headers:
            return  # not a browser (curl, a server): nothing to forge
        parts = urlsplit(source or "")
        origin = f"{parts.scheme}://{parts.netloc}"
        allowed = parts.netloc == self.request.host or origin in self.collector.cors_allowed_origins
        if parts.netloc and allowed:
            return
        raise ApiError(403, f"a page of {origin[:80]!r} may not change the consent choice; only the "
                       "collector's own pages and c.Collector.cors_allowed_origins may")


class ModuleHandler(tornado.web.StaticFileHandler):
    """The browser module and the demo script, with CORS and caching headers."""

    def set_extra_headers(self, path: str) -> None:
        collector: Collector = self.application.settings["collector"]
        origin = self.request.headers.get("Origin")
        if collector.cors_allowed_origins:
            self.set_header("Vary", "Origin")
            if origin is not None and origin in collector.cors_allowed_origins:
                self.set_header("Access-Control-Allow-Origin", origin)
        self.set_header("Cross-Origin-Resource-Policy", "cross-origin")
        self.set_header("X-Content-Type-Options", "nosniff")
        if path.endswith(".js"):
            self.set_header("Content-Type", "text/javascript; charset=UTF-8")
        if "v" in self.request.arguments:
            self.set_header("Cache-Control", "public, max-age=31536000, immutable")
        else:
            self.set_header("Cache-Control", "public, max-age=300")

    def get_cache_time(self, path: str, modified: Any, mime_type: str) -> int:
        return 31536000 if "v" in self.request.arguments else 300


DEMO_CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'")


def demo_page(examples: list[Any]) -> str:
    """The ``GET /demo`` page: buttons that emit the bundled example events from the browser."""
    data = json.dumps(examples).replace("<", "\\u003c")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>telemetry-sinks in the browser</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d232a; }}
main {{ max-width: 960px; margin: 0 auto; padding: 20px 28px 40px; background: #fff; }}
button {{ font: inherit; margin: 0 8px 8px 0; padding: 4px 12px; }}
pre {{ background: #f1f3f5; padding: 8px 12px; overflow-x: auto; font-size: 0.85em; }}
.error {{ color: #7f1d1d; }}
</style></head>
<body><main>
<h1>telemetry-sinks in the browser</h1>
<p>This page loads the browser EventLog from <code>/static/{MODULE}</code>, fetches the collector's
policy and sends the bundled example events. What is recorded, and your choice:
<a href="/">the collector's page</a>.</p>
<p id="status" role="status">Loading the policy…</p>
<div id="consent"></div>
<div id="examples-buttons"></div>
<p><button type="button" id="flush">Flush</button></p>
<h2>What was sent</h2>
<p>Each capsule as it left the page (personal data removed by the policy, before any request):</p>
<pre id="log" aria-live="polite"></pre>
<script type="application/json" id="examples">{data}</script>
<script type="module" src="{static_url("demo.js")}"></script>
</main></body></html>
"""


class DemoHandler(PublicHandler):
    def get(self) -> None:
        examples = [json.loads(line) for line in EXAMPLE_EVENTS.read_text().splitlines() if line.strip()]
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Content-Security-Policy", DEMO_CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(demo_page(examples))


def routes() -> list[Any]:
    """The browser endpoints, as tornado rules ``(pattern, handler, kwargs)``."""
    return [
        (r"/api/policy/?", PolicyHandler, None),
        (r"/api/consent/?", ConsentHandler, None),
        (r"/static/(.*)", ModuleHandler, {"path": str(STATIC_DIR)}),
        (r"/demo/?", DemoHandler, None),
    ]
