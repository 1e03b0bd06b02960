"""telemetry-sinks inside Jupyter: the Jupyter Server extension and the JupyterHub helpers.

* Jupyter Server: ``jupyter server extension enable telemetry_sinks.jupyter``
  (:mod:`telemetry_sinks.jupyter.server`); with it, the JupyterLab extension's endpoints
  (:mod:`telemetry_sinks.jupyter.lab`).
* JupyterHub: ``configure_hub(c)`` at the end of ``jupyterhub_config.py``
  (:mod:`telemetry_sinks.jupyter.hub`); the collector as a Hub service:
  ``telemetry-sinks serve --hub-service`` (:mod:`telemetry_sinks.server.hub`).
"""

from __future__ import annotations

from typing import Any

from .bridge import EventLoggerHandler, JupyterTelemetry
from .schemas import JUPYTER_PROPERTY_CATEGORIES, export_jupyter_schemas, jupyter_schemas


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "telemetry_sinks.jupyter"}]


def _link_jupyter_server_extension(serverapp: Any) -> None:
    # Before the JupyterLab app builds its handlers: let it find the prebuilt extension.
    from .lab import add_labextension

    add_labextension(serverapp)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .server import load

    load(serverapp)


async def _unload_jupyter_server_extension(serverapp: Any) -> None:
    from .server import unload

    await unload(serverapp)


def configure_hub(c: Any) -> JupyterTelemetry:
    """In ``jupyterhub_config.py``: the Hub's events through the operator's EventLog (see hub.py)."""
    from .hub import configure_hub as configure

    return configure(c)


__all__ = [
    "JUPYTER_PROPERTY_CATEGORIES",
    "EventLoggerHandler",
    "JupyterTelemetry",
    "configure_hub",
    "export_jupyter_schemas",
    "jupyter_schemas",
]
