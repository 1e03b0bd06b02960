"""JupyterHub: the Hub's own events through the operator's EventLog, from ``jupyterhub_config.py``.

At the end of ``jupyterhub_config.py``::

    from telemetry_sinks.jupyter import configure_hub
    configure_hub(c)

builds the sinks and the policy from ``c`` (``c.EventLog.*``, ``c.<Sink>.*``,
``c.JupyterTelemetry.*``) and makes the Hub's ``EventLogger`` hand its capsules to
them through the policy (``c.EventLogger.handlers``).  Sinks already listed in
``c.EventLogger.handlers`` move behind the policy.  Warnings about sinks go to the
Hub's log.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import SchemaError
from ..schema import iter_schema_files, load_schema_file
from .bridge import JupyterTelemetry, route_library_log

HUB_LOGGER = "JupyterHub"


def hub_schema_dir() -> Path:
    """The event schemas JupyterHub registers (``jupyterhub/event-schemas``)."""
    import jupyterhub

    return Path(jupyterhub.__file__).parent / "event-schemas"


def configure_hub(c: Any) -> JupyterTelemetry:
    """Route the Hub's events through the EventLog configured in ``c``; returns the bridge."""
    log = logging.getLogger(HUB_LOGGER)
    route_library_log(log)
    telemetry = JupyterTelemetry(config=c, log=log)
    directory = hub_schema_dir()
    if directory.is_dir():
        for path in iter_schema_files(directory):
            try:
                telemetry.register_host_schema(load_schema_file(path), source=str(path))
            except SchemaError as exc:
                log.warning("telemetry_sinks: JupyterHub schema %s cannot be used: %s", path, exc)
    existing = list(c.EventLogger.handlers) if "handlers" in c.EventLogger else []
    c.EventLogger.handlers = telemetry.take_handlers(existing)
    telemetry.start()
    return telemetry
