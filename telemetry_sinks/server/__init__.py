"""The event collector: a small REST API that feeds browser and remote events into an EventLog.

``telemetry-sinks serve`` runs it.  Browsers and remote clients ``POST /api/events``
in the body shape of Jupyter Server's own events API (so front-end code written
for Jupyter Server can point at the collector unchanged), or in capsule shape (what
telemetry-sinks' own HTTP sink forwards).  Every event goes through the same
validation, policy and sinks as ``EventLog.record_event``.

Needs tornado: ``pip install "telemetry-sinks[server]"``.
"""

from __future__ import annotations

try:
    import tornado  # noqa: F401 - imported only to fail early, naming the extra to install
except ImportError as exc:  # pragma: no cover - depends on the installation
    from ..errors import MissingExtraError

    raise MissingExtraError(
        'The event collector needs tornado: pip install "telemetry-sinks[server]"'
    ) from exc

from ..dedup import RecentIds
from .app import TOKEN_ENV, Collector
from .handlers import make_app, process_events

__all__ = ["Collector", "RecentIds", "TOKEN_ENV", "make_app", "process_events"]
