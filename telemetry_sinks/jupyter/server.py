"""The Jupyter Server extension: Jupyter Server's events through the operator's EventLog.

Enable it with ``jupyter server extension enable telemetry_sinks.jupyter`` or, in
``jupyter_server_config.py``, ``c.ServerApp.jpserver_extensions = {"telemetry_sinks.jupyter": True}``.

It loads after the extension apps (jupyterlab, jupyter_server_terminals, ...) have
configured logging, builds the sinks and the policy from the server's config
(``c.EventLog.*``, ``c.<Sink>.*``, ``c.JupyterTelemetry.*``), puts them on the
server's ``event_logger`` (see :mod:`telemetry_sinks.jupyter.bridge`), and serves the
sinks' stats at ``GET /api/telemetry/health`` (authenticated like the rest of the
server's API).  The endpoints of the JupyterLab extension are in :mod:`telemetry_sinks.jupyter.lab`.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from . import lab_handlers
from .bridge import JupyterTelemetry, route_library_log

SETTINGS_KEY = "telemetry_sinks"
HEALTH_PATH = "api/telemetry/health"


class HealthHandler(APIHandler):
    """``GET /api/telemetry/health``: events recorded and refused, the policy, each sink's stats."""

    auth_resource = "telemetry"

    @web.authenticated
    @authorized
    def get(self) -> None:
        telemetry: JupyterTelemetry = self.settings[SETTINGS_KEY]
        stats = telemetry.stats()
        lab = self.settings.get(lab_handlers.SETTINGS_KEY)
        if lab is not None:
            stats["jupyterlab"] = lab.stats()
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(stats, default=str))


def load(serverapp: Any) -> JupyterTelemetry:
    """Build the operator's EventLog from the server's config and put it on the server's event_logger."""
    route_library_log(serverapp.log)
    try:
        telemetry = JupyterTelemetry(parent=serverapp)
    except Exception as exc:
        serverapp.log.error("telemetry_sinks: Jupyter Server's events are not recorded: %s", exc)
        raise
    telemetry.attach(serverapp.event_logger)
    # After attach: the JupyterLab schemas stay off the server's own POST /api/events, so that
    # their events always pass the user's consent (api/telemetry/events).
    lab_handlers.load(serverapp, telemetry.eventlog)
    serverapp.web_app.settings[SETTINGS_KEY] = telemetry
    route = url_path_join(serverapp.base_url, HEALTH_PATH)
    serverapp.web_app.add_handlers(".*$", [(route, HealthHandler)])
    return telemetry


async def unload(serverapp: Any) -> None:
    """At server stop: stop the checks, deliver what is queued (or spool it) within close_timeout.

    The sinks stay usable: the kernels' shutdown events come after this, and the
    process's exit hook closes the sinks last.
    """
    telemetry = serverapp.web_app.settings.get(SETTINGS_KEY)
    if telemetry is not None:
        telemetry.shutdown()
