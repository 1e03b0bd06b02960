"""JupyterLab's events: the endpoints of the JupyterLab extension, the users' consent, the lab's schemas.

The JupyterLab extension (``js/labextension``, shipped prebuilt in
:data:`LABEXTENSIONS_DIR`) records what happens in the browser with the browser
EventLog; these endpoints, under the server's ``base_url`` and authenticated like the
rest of Jupyter Server's API (token or login cookie, XSRF for ``POST``), are its
collector:

``GET api/telemetry/policy``
    What the page may record (the collector's ``GET /api/policy`` document), for the
    JupyterLab schemas and this user.
``GET api/telemetry/consent``, ``POST api/telemetry/consent``
    The user's choice (JSON ``{"choice": "granted" | "denied" | null}``), kept on the
    server per Jupyter user (:class:`ConsentStore`).
``POST api/telemetry/events``
    Batches of events from the page: validated, consent-checked and redacted again
    here, then recorded by the sinks of the server's EventLog.
``GET telemetry``, ``POST telemetry``
    The plain-language page: what is recorded, where it goes, and the user's choice
    with a plain form to change it.

Nothing in a notebook decides anything here: the policy, the sinks and the consent
modes come from the server's configuration alone.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traitlets import Dict, Int, List, TraitError, Unicode, Union, default, validate
from traitlets.config import LoggingConfigurable

from ..dedup import RecentIds
from ..server import consent
from ..server.browser import check_browser_sinks, check_sample_rates

if TYPE_CHECKING:
    from ..eventlog import EventLog

#: The JupyterLab schemas (YAML), registered in the server's EventLog by the extension.
SCHEMA_DIR = Path(__file__).parent / "event_schemas" / "jupyterlab"
_BASE = "https://events.telemetry-sinks.org/jupyterlab/"
COMMAND_EXECUTED = _BASE + "command-executed"
DOCUMENT = _BASE + "document"
CELL_EXECUTED = _BASE + "cell-executed"
ACTIVE_PANEL = _BASE + "active-panel"
LAB_SCHEMAS = (COMMAND_EXECUTED, DOCUMENT, CELL_EXECUTED, ACTIVE_PANEL)

#: The prebuilt JupyterLab extension (a labextensions directory: ``@telemetry-sinks/jupyterlab``).
LABEXTENSIONS_DIR = Path(__file__).parent / "labextensions"
LAB_PACKAGE = "@telemetry-sinks/jupyterlab"

POLICY_PATH = "api/telemetry/policy"
CONSENT_PATH = "api/telemetry/consent"
EVENTS_PATH = "api/telemetry/events"
PAGE_PATH = "telemetry"


class ConsentStore:
    """Each Jupyter user's choice, in a JSON file ``{username: {"choice", "at"}}`` (written atomically)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise OSError(f"the consent file {self.path} cannot be read ({exc}); fix or remove it") from None
        return data if isinstance(data, dict) else {}

    def get(self, username: str) -> tuple[str | None, int | None]:
        """``(choice, unix_time)``; ``(None, None)`` when the user has not chosen."""
        with self._lock:
            entry = self._read().get(username)
        if not isinstance(entry, dict) or entry.get("choice") not in consent.CHOICES:
            return None, None
        at = entry.get("at")
        return entry["choice"], at if isinstance(at, int) else None

    def set(self, username: str, choice: str | None, now: float | None = None) -> None:
        """Store ``choice`` for ``username`` (None forgets it)."""
        with self._lock:
            data = self._read()
            if choice is None:
                data.pop(username, None)
            else:
                data[username] = {"choice": choice, "at": int(time.time() if now is None else now)}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".consent-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(data, out, indent=1, sort_keys=True)
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise


def _default_consent_file() -> str:
    from jupyter_core.paths import jupyter_data_dir

    return os.path.join(jupyter_data_dir(), "telemetry_sinks", "consent.json")


class JupyterLabTelemetry(LoggingConfigurable):
    """The JupyterLab extension's side on the server: policy, consent and events of the browser."""

    browser_sinks = List(
        Union([Unicode(), Dict()]),
        help="Where JupyterLab sends its events (default ['server']): 'server' (this Jupyter Server, "
        "which records them with c.EventLog.sinks, after checking the user's consent), 'console' (the "
        "browser console), {'type': 'http', 'url': URL, 'format': 'json' | 'ndjson'} (any URL that "
        "accepts them, with CORS for this server's origin).",
    ).tag(config=True)
    browser_sample_rates = Dict(
        help="Share of JupyterLab sessions (0 to 1) that record a schema, by schema id (default 1). "
        "Deterministic per browser session.",
    ).tag(config=True)
    locked_consent = Unicode(
        None,
        allow_none=True,
        help="The administrator's choice for every user, 'granted' or 'denied': users cannot change "
        "it (the server refuses), and JupyterLab does not ask them. None (default): each user "
        "chooses, where the schemas' consent modes allow it.",
    ).tag(config=True)
    consent_file = Unicode(
        help="Where the users' choices are kept (JSON, by Jupyter user name). Default: "
        "telemetry_sinks/consent.json in the Jupyter data directory (in the user's home).",
    ).tag(config=True)
    ignored_commands = List(
        Unicode(),
        default_value=["*:get-kernel", "apputils:load-statedb", "router:*"],
        help="Commands JupyterLab does not record, as patterns with * (the default: commands that "
        "JupyterLab's own code runs to look something up, many times a minute, not the user's actions).",
    ).tag(config=True)
    max_body_bytes = Int(1024 * 1024, help="Largest request body of POST api/telemetry/events.").tag(
        config=True
    )
    max_events_per_request = Int(1000, help="Most events in one request.").tag(config=True)
    dedup_window = Int(10_000, help="How many recent event ids are remembered to drop retried copies.").tag(
        config=True
    )

    @default("browser_sinks")
    def _default_browser_sinks(self) -> list[dict[str, Any]]:
        return [{"type": "collector"}]  # 'server', as the policy document names it

    @default("consent_file")
    def _default_consent_file(self) -> str:
        return _default_consent_file()

    @validate("browser_sinks")
    def _check_browser_sinks(self, proposal: Any) -> list[dict[str, Any]]:
        try:
            return check_browser_sinks(proposal.value, "JupyterLabTelemetry.browser_sinks", "server")
        except ValueError as exc:
            raise TraitError(str(exc)) from None

    @validate("browser_sample_rates")
    def _check_sample_rates(self, proposal: Any) -> dict[str, float]:
        try:
            return check_sample_rates(proposal.value, "JupyterLabTelemetry.browser_sample_rates")
        except ValueError as exc:
            raise TraitError(str(exc)) from None

    @validate("locked_consent")
    def _check_locked(self, proposal: Any) -> str | None:
        if proposal.value not in (None, *consent.CHOICES):
            raise TraitError(f"JupyterLabTelemetry.locked_consent must be 'granted', 'denied' or None, "
                             f"not {proposal.value!r}.")
        return proposal.value

    def __init__(self, eventlog: EventLog, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eventlog = eventlog
        self.recent_ids = RecentIds(self.dedup_window)
        self.counters: Counter[str] = Counter(accepted=0, not_recorded=0, duplicate=0, rejected=0)
        self.store = ConsentStore(self.consent_file)
        registered = {sid for sid, _ in eventlog.schemas}
        if not set(LAB_SCHEMAS) <= registered:
            eventlog.register_schema_file(SCHEMA_DIR)

    def user_consent(self, username: str, request: Any) -> consent.UserConsent:
        """What is known of ``username``'s consent: the stored (or locked) choice, and the request's GPC."""
        gpc = request.headers.get("Sec-GPC", "").strip() == "1"
        if self.locked_consent is not None:
            return consent.UserConsent(self.locked_consent, None, gpc)
        choice, at = self.store.get(username)
        return consent.UserConsent(choice, at, gpc)

    def choose(self, username: str, choice: str | None) -> None:
        """Store a user's choice; PermissionError when the administrator locked it."""
        if self.locked_consent is not None:
            raise PermissionError(
                f"the administrator set every user's choice to {self.locked_consent!r} "
                "(c.JupyterLabTelemetry.locked_consent); it cannot be changed here")
        self.store.set(username, choice)

    def consent_states(self, user: consent.UserConsent) -> dict[str, dict[str, str]]:
        """``{schema_id: {"mode", "state"}}`` of the JupyterLab schemas the policy records."""
        out = {}
        for sid in LAB_SCHEMAS:
            mode = self.eventlog.consent_mode(sid)
            if mode is not None:
                out[sid] = {"mode": mode, "state": user.state(mode)}
        return out

    def consent_body(self, user: consent.UserConsent) -> dict[str, Any]:
        default_mode = self.eventlog.default_consent
        return {
            "choice": user.choice,
            "choice_time": user.at,
            "gpc": user.gpc,
            "locked": self.locked_consent is not None,
            "default": {"mode": default_mode, "state": user.state(default_mode)},
            "schemas": self.consent_states(user),
        }

    def stats(self) -> dict[str, Any]:
        return {"events": dict(self.counters), "locked_consent": self.locked_consent}


# --------------------------------------------------------------------------- finding the extension


def installed_labextension() -> Path | None:
    """Where JupyterLab finds an installed copy of the extension (a wheel's data files), if any."""
    from jupyter_core.paths import jupyter_path

    for base in jupyter_path("labextensions"):
        found = Path(base) / LAB_PACKAGE / "package.json"
        if found.is_file():
            return found.parent
    return None


def add_labextension(serverapp: Any) -> str | None:
    """Make the JupyterLab (and Notebook 7) apps of ``serverapp`` load the shipped extension.

    A wheel installs it in ``share/jupyter/labextensions``, where JupyterLab looks.  An
    editable install (``pip install -e``) installs no data files: then this adds the
    package's own copy to the apps' ``extra_labextensions_path``.  Runs when the server
    links its extensions, before the apps build their handlers.  Returns the directory
    added, or None.
    """
    shipped = LABEXTENSIONS_DIR / LAB_PACKAGE / "package.json"
    if installed_labextension() is not None or not shipped.is_file():
        return None
    directory = str(LABEXTENSIONS_DIR)
    for apps in serverapp.extension_manager.extension_apps.values():
        for app in apps:
            if app.has_trait("extra_labextensions_path") and directory not in app.extra_labextensions_path:
                app.extra_labextensions_path = [*app.extra_labextensions_path, directory]
    return directory


__all__ = [
    "ACTIVE_PANEL",
    "CELL_EXECUTED",
    "COMMAND_EXECUTED",
    "DOCUMENT",
    "LAB_SCHEMAS",
    "ConsentStore",
    "JupyterLabTelemetry",
    "add_labextension",
]
