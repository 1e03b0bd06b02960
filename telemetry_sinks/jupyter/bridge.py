"""Jupyter's own events through the operator's EventLog: policy, capsule shape, sinks, health.

Jupyter Server and JupyterHub record their events with ``jupyter_events.EventLogger``,
which validates them and hands every capsule to its logging handlers, with no
allowlist and no redaction.  :class:`JupyterTelemetry` puts one handler there
(:class:`EventLoggerHandler`) that sends each capsule through an
:class:`~telemetry_sinks.EventLog` built from the application's config
(``c.EventLog.*``): schemas not in ``allowed_schemas`` record nothing, personal data
is removed by category, and the capsule gets the project's shape (``__timestamp__``
ending in ``Z``, integer ``__schema_version__``) before any sink sees it.

Jupyter's schemas mark whole schemas ``personal-data: true`` but give their
properties no ``categories``; :mod:`telemetry_sinks.jupyter.schemas` supplies them
(``c.JupyterTelemetry.property_categories`` adds to or overrides the table).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from traitlets import Dict, Float, Instance
from traitlets.config import LoggingConfigurable

from ..capsule import CAPSULE_FIELDS, parse_timestamp, whole_number
from ..errors import EventValidationError, SchemaError, UnknownSchemaError
from ..eventlog import EventLog
from ..policy import schema_entries
from ..sinks.base import Sink
from .schemas import JUPYTER_PROPERTY_CATEGORIES, with_categories

#: The logger of the whole library; its records go to the host application's log.
LIBRARY_LOGGER = "telemetry_sinks"


def route_library_log(host_log: logging.Logger) -> None:
    """Send this library's log records (delivery warnings, reopen notices) to ``host_log``.

    As Jupyter Server does for tornado's loggers: they then show in the server's log,
    with its format and level.
    """
    library = logging.getLogger(LIBRARY_LOGGER)
    if library.parent is host_log:
        return
    library.parent = host_log
    library.propagate = True


class EventLoggerHandler(logging.Handler):
    """The handler put on a ``jupyter_events.EventLogger``: capsules go to :meth:`JupyterTelemetry.record`.

    ``logging.shutdown`` or ``dictConfig`` may close it; it holds nothing to close and
    goes on working.
    """

    def __init__(self, telemetry: JupyterTelemetry) -> None:
        super().__init__(logging.INFO)
        self.telemetry = telemetry

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, dict):
            self.telemetry.record(record.msg)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sinks={len(self.telemetry.eventlog.all_handlers)}>"


class JupyterTelemetry(LoggingConfigurable):
    """The operator's EventLog (policy and sinks) for the events of a Jupyter application."""

    property_categories = Dict(
        help="Personal-data categories for properties of the host's schemas, which declare none: "
        '{schema_id: {property: ["user-identifier", ...]}}. Added to (and overriding) the '
        "built-in table for Jupyter Server's and JupyterHub's schemas.",
    ).tag(config=True)

    health_interval = Float(
        10.0,
        help="Seconds between checks of the sinks; a sink that cannot reach its backend is "
        "reported in the application's log (sinks report their dropped events themselves). "
        "0 turns the checks off.",
    ).tag(config=True)

    eventlog = Instance(EventLog)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eventlog = EventLog(parent=self)
        self.handler = EventLoggerHandler(self)
        self.counts = {"recorded": 0, "not_allowed": 0, "invalid": 0, "unknown_schema": 0}
        self._lookup: Callable[[str], Mapping[str, Any] | None] | None = None
        self._problems: dict[str, str] = {}
        self._last: dict[str, dict[str, Any]] = {}
        self._warned: set[str] = set()
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ schemas

    def categories_for(self, schema_id: str) -> dict[str, list[str]]:
        """The property categories this bridge adds to the host's schema ``schema_id``."""
        built_in = JUPYTER_PROPERTY_CATEGORIES.get(schema_id, {})
        return {**built_in, **self.property_categories.get(schema_id, {})}

    def register_host_schema(self, body: Mapping[str, Any], source: str | None = None) -> None:
        """Register a schema of the host application (with categories added) in the EventLog."""
        schema_id = body.get("$id")
        if not isinstance(schema_id, str):
            return
        version = whole_number(body.get("version"))
        if (schema_id, version) in self.eventlog.schemas:
            return
        try:
            self.eventlog.register_schema(with_categories(body, self.categories_for(schema_id)), source)
        except SchemaError as exc:
            self.log.warning("telemetry_sinks: schema %s cannot be used, its events are not recorded: %s",
                             schema_id, exc)

    def use_schema_lookup(self, lookup: Callable[[str], Mapping[str, Any] | None]) -> None:
        """Where to find a schema the host registered after start (by id), on its first event."""
        self._lookup = lookup

    def allowed_schema_ids(self) -> list[str]:
        """The ids of the schemas the policy records, whichever form ``allowed_schemas`` has."""
        return sorted(schema_entries(self.eventlog.allowed_schemas))

    # ------------------------------------------------------------------ hosts

    def attach(self, event_logger: Any) -> None:
        """Put this bridge on a ``jupyter_events.EventLogger`` (Jupyter Server's, JupyterHub's).

        Registers the logger's schemas here and the operator's schemas (``c.EventLog.schema_paths``)
        there, so that the host's own ``POST /api/events`` accepts them; moves the sinks set as
        ``c.EventLogger.handlers`` behind the policy.
        """
        registry = event_logger.schemas
        for schema_id in registry.schema_ids:
            self.register_host_schema(_raw_schema(registry.get(schema_id)))

        def lookup(schema_id: str) -> Mapping[str, Any] | None:
            return _raw_schema(registry.get(schema_id)) if schema_id in registry else None

        self.use_schema_lookup(lookup)
        newest = {schema.id: schema for _key, schema in sorted(self.eventlog.schemas.items())}
        for schema_id, schema in newest.items():
            if schema_id not in registry:
                try:
                    # jupyter_events' meta-schema wants the version as a string.
                    event_logger.register_event_schema({**schema.body, "version": str(schema.version)})
                except Exception as exc:
                    self.log.warning("telemetry_sinks: schema %s is recorded from Python only; "
                                     "jupyter_events refused it: %s", schema_id, exc)
        for handler in list(event_logger.handlers):
            if isinstance(handler, Sink):
                event_logger.remove_handler(handler)
                self.eventlog.add_handler(handler)
        if self.handler not in event_logger.handlers:
            event_logger.register_handler(self.handler)
        self.start()

    def take_handlers(self, handlers: list[logging.Handler]) -> list[logging.Handler]:
        """``handlers`` for a host's ``c.EventLogger.handlers``: its sinks move behind the policy.

        Returns the handlers that stay (those that are not sinks) plus this bridge's handler.
        """
        kept = []
        for handler in handlers:
            if isinstance(handler, Sink):
                self.eventlog.add_handler(handler)
            elif handler is not self.handler:
                kept.append(handler)
        return [*kept, self.handler]

    def start(self) -> None:
        """Report the configuration once and start the periodic check of the sinks."""
        sinks = self.eventlog.all_handlers
        allowed = self.allowed_schema_ids()
        if not sinks:
            self.log.info("telemetry_sinks: no sinks configured (c.EventLog.sinks); nothing is recorded")
        elif not allowed:
            host_ids = sorted({sid for sid, _ in self.eventlog.schemas})
            self.log.warning(
                "telemetry_sinks: c.EventLog.allowed_schemas is empty, so sinks %s record nothing. "
                "Registered schemas: %s",
                ", ".join(_label(s) for s in sinks),
                ", ".join(host_ids) or "none",
            )
        else:
            self.log.info(
                "telemetry_sinks: recording %s to %s",
                ", ".join(sorted(allowed)),
                ", ".join(_label(s) for s in sinks),
            )
        if self.health_interval > 0 and self._monitor is None and sinks:
            self._monitor = threading.Thread(
                target=self._watch, name="telemetry-sinks-health", daemon=True
            )
            self._monitor.start()

    # ------------------------------------------------------------------ recording

    def record(self, capsule: Mapping[str, Any]) -> dict[str, Any] | None:
        """Record one jupyter_events capsule through the policy; never raises."""
        schema_id = capsule.get("__schema__")
        if not isinstance(schema_id, str):
            return None
        version = whole_number(capsule.get("__schema_version__"))
        if (schema_id, version) not in self.eventlog.schemas and self._lookup is not None:
            body = self._lookup(schema_id)
            if body is not None:
                self.register_host_schema(body)
        data = {k: v for k, v in capsule.items() if k not in CAPSULE_FIELDS}
        when = parse_timestamp(capsule.get("__timestamp__"))
        try:
            recorded = self.eventlog.record_event(schema_id, version, data, timestamp_override=when)
        except UnknownSchemaError as exc:
            self._count("unknown_schema", schema_id, exc)
            return None
        except EventValidationError as exc:
            self._count("invalid", schema_id, exc)
            return None
        with self._lock:
            self.counts["recorded" if recorded is not None else "not_allowed"] += 1
        return recorded

    def _count(self, key: str, schema_id: str, exc: Exception) -> None:
        with self._lock:
            self.counts[key] += 1
            first = schema_id not in self._warned
            self._warned.add(schema_id)
        if first:
            self.log.warning("telemetry_sinks: an event of %s is not recorded: %s", schema_id, exc)

    # ------------------------------------------------------------------ health

    def stats(self) -> dict[str, Any]:
        """What ``GET /api/telemetry/health`` answers: events, policy and each sink's stats."""
        sinks = {}
        for handler in self.eventlog.all_handlers:
            entry: dict[str, Any] = {"type": type(handler).__name__}
            stats = getattr(handler, "stats", None)
            if callable(stats):
                try:
                    entry.update(stats())
                except Exception as exc:  # a sink that failed to start
                    entry["last_error"] = str(exc)
            problem = self._problems.get(_label(handler))
            entry["ok"] = problem is None
            if problem:
                entry["problem"] = problem
            sinks[_label(handler)] = entry
        with self._lock:
            events = dict(self.counts)
        return {
            "ok": all(s["ok"] for s in sinks.values()),
            "events": events,
            "allowed_schemas": self.allowed_schema_ids(),
            "registered_schemas": sorted({sid for sid, _ in self.eventlog.schemas}),
            "sinks": sinks,
        }

    def check_health(self) -> None:
        """Warn (once per new problem) about sinks that cannot reach their backend.

        Dropped events are reported by the sinks themselves (``telemetry_sinks.delivery``,
        routed to the host's log), with the reason of each drop.
        """
        for handler in self.eventlog.all_handlers:
            stats_of = getattr(handler, "stats", None)
            if not callable(stats_of):
                continue
            name = _label(handler)
            try:
                stats = stats_of()
            except Exception:
                continue
            last = self._last.get(name, {})
            self._last[name] = stats
            waiting = _unsettled(stats) > 0 or stats.get("spool_bytes", 0) > 0
            stuck = bool(last) and waiting and stats.get("sent", 0) == last.get("sent", 0)
            cause = stats.get("last_error") or "no error reported"
            if stuck and stats.get("last_error"):
                problem = f"cannot reach its backend: {cause}"
                if self._problems.get(name) != problem:
                    self.log.warning(
                        "telemetry_sinks: sink %r %s (%d events waiting in memory, %d bytes spooled)",
                        name, problem, _unsettled(stats), stats.get("spool_bytes", 0),
                    )
                self._problems[name] = problem
            elif name in self._problems and (not waiting or stats.get("sent", 0) > last.get("sent", 0)):
                del self._problems[name]
                self.log.info("telemetry_sinks: sink %r delivers again", name)

    def _watch(self) -> None:
        while not self._stop.wait(self.health_interval):
            try:
                self.check_health()
            except Exception:  # never let the check die
                self.log.exception("telemetry_sinks: checking the sinks failed")

    def shutdown(self) -> None:
        """At the host's stop: stop the checks, deliver what is queued (or spool it) within
        each sink's close_timeout.  The sinks stay open for events still to come."""
        self._stop.set()
        for handler in self.eventlog.all_handlers:
            try:
                handler.flush()
            except Exception:
                self.log.exception("telemetry_sinks: flushing sink %r failed", _label(handler))

    def close(self) -> None:
        """Stop the checks; deliver (within each sink's close_timeout) or spool, and close the sinks."""
        self._stop.set()
        for handler in self.eventlog.all_handlers:
            try:
                handler.flush()
                handler.close()
            except Exception:
                self.log.exception("telemetry_sinks: closing sink %r failed", _label(handler))


def _unsettled(stats: Mapping[str, Any]) -> int:
    """Events a network sink holds in memory (queued, in flight or waiting for a retry)."""
    direct = stats.get("sent", 0) - stats.get("replayed", 0)
    settled = direct + stats.get("spooled", 0) + stats.get("dropped", 0) + stats.get("dead_lettered", 0)
    return max(0, stats.get("emitted", 0) - settled)


def _label(handler: logging.Handler) -> str:
    return str(getattr(handler, "label", None) or handler.name or type(handler).__name__)


def _raw_schema(schema: Any) -> dict[str, Any]:
    """The schema document of a jupyter_events ``EventSchema`` (it keeps it as ``_schema``)."""
    body = getattr(schema, "_schema", None)
    if isinstance(body, dict):
        return body
    return {"$id": schema.id, "version": schema.version, "type": "object", "properties": schema.properties}


__all__ = ["EventLoggerHandler", "JupyterTelemetry", "route_library_log"]
