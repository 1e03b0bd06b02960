"""EventLog: validate an event, apply the operator's policy, wrap it in a capsule, send it to sinks.

The API follows jupyter_telemetry's ``EventLog`` (``record_event``,
``allowed_schemas``, ``handlers``) and jupyter_events' ``EventLogger.emit`` so
that existing code keeps working.  Nothing is recorded unless the operator lists
the schema in ``allowed_schemas``; personal data is dropped unless its category
is allowed.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, Instance, Int, List, TraitError, Unicode, Union, observe, validate
from traitlets.config import LoggingConfigurable

from .actions import ActionError
from .capsule import CAPSULE_FIELDS, format_timestamp, make_capsule
from .errors import EventValidationError, PolicyError, SchemaError, UnknownSchemaError
from .policy import (
    CONSENT_MODES,
    RedactionPlan,
    apply_plan,
    check_allowed_schemas,
    compile_plan,
    policy_for,
    touched_values,
    uses_pseudonyms,
)
from .pseudonym import PseudonymKey, load_key
from .registry import load_sinks
from .schema import Schema, iter_schema_files, load_schema_file, scrub_values

SCHEMA_ENTRY_POINT_GROUP = "telemetry_sinks.schemas"
_DENY = object()  # cached "this schema is not allowed"
_NO_REDACTION = None

_log = logging.getLogger("telemetry_sinks.eventlog")
_NO_KEY = (
    "c.EventLog.allowed_schemas pseudonymizes personal data but no pseudonym key is configured: set "
    "c.EventLog.pseudonym_key_file (a file holding at least 16 random bytes) or "
    "c.EventLog.pseudonym_key_env (an environment variable holding them)."
)


class EventLog(LoggingConfigurable):
    """Validate events against registered schemas and send the allowed ones to sinks."""

    handlers = List(
        Instance(logging.Handler),
        help="logging.Handler instances that receive every recorded capsule.",
    ).tag(config=True)

    sinks = List(
        Unicode(),
        help='Sink names from the registry (e.g. ["rotating_file"]), each configured '
        "from the same config (c.RotatingFileSink.filename = ...).",
    ).tag(config=True)

    allowed_schemas = Union(
        [List(), Dict()],  # items checked by check_allowed_schemas, with precise messages
        default_value=[],
        help="Schema ids to record: a list (unrestricted properties only), or a dict "
        '{schema_id: {"allowed_categories": [...], "allowed_properties": [...], '
        '"category_actions": {...}, "property_actions": {...}, "round_timestamp": UNIT, '
        '"retention": [...]}} (see telemetry_sinks.policy). The list may also hold '
        "(schema_id, allowed_categories, allowed_properties) tuples, meaning what the dict's "
        "entries mean. Nothing is recorded by default.",
    ).tag(config=True)

    pseudonym_key_file = Unicode(
        "",
        help="File holding the key of pseudonyms (HMAC-SHA256; at least 16 random bytes), needed when "
        "the policy pseudonymizes. The key itself never appears in the configuration.",
    ).tag(config=True, secret_source="file")

    pseudonym_key_env = Unicode(
        "",
        help="Name of an environment variable holding the key of pseudonyms (instead of a file).",
    ).tag(config=True, secret_source="env")

    pseudonym_key_id = Unicode(
        "",
        help="Id written in front of every pseudonym (e.g. '2025-01'); change it with the key when "
        "rotating. Default: derived from the key (an HMAC of it, never the key).",
    ).tag(config=True)

    default_consent = Unicode(
        "opt-out",
        help="Consent mode of the allowed schemas whose allowed_schemas entry has no 'consent' key: "
        "'required' (people are informed, no opt-out), 'opt-out' (recorded unless they say no or "
        "send Global Privacy Control) or 'opt-in' (recorded only once they say yes). Enforced by the "
        "collector for events from browsers.",
    ).tag(config=True)

    schema_paths = List(
        Unicode(),
        help="Schema files or directories to register at start.",
    ).tag(config=True)

    load_schema_entry_points = Bool(
        True,
        help="Register the schemas that installed packages ship through the "
        f"'{SCHEMA_ENTRY_POINT_GROUP}' entry-point group.",
    ).tag(config=True)

    max_event_depth = Int(
        64, help="Deepest nesting of objects and arrays an event may have; deeper events are invalid."
    ).tag(config=True)

    @validate("allowed_schemas")
    def _check_allowed_schemas(self, proposal: Any) -> Any:
        problem = check_allowed_schemas(proposal.value)
        if problem:
            raise TraitError(problem)
        if getattr(self, "_ready", False) and self._key is None and uses_pseudonyms(proposal.value):
            raise TraitError(_NO_KEY)
        return proposal.value

    @validate("default_consent")
    def _check_default_consent(self, proposal: Any) -> str:
        if proposal.value not in CONSENT_MODES:
            raise TraitError(
                f"EventLog.default_consent must be one of {', '.join(map(repr, CONSENT_MODES))}, "
                f"not {proposal.value!r}."
            )
        return proposal.value

    def consent_mode(self, schema_id: str) -> str | None:
        """The consent mode of ``schema_id`` (its policy's, else ``default_consent``); None if not allowed."""
        policy = policy_for(self.allowed_schemas, schema_id)
        if policy is None:
            return None
        return policy.consent or self.default_consent

    #: Grows whenever a schema is registered or the policy is replaced: what is cached
    #: about this EventLog (which schemas it records, against which schema) holds while
    #: it stays the same.
    generation: int

    def __init__(self, **kwargs: Any) -> None:
        self.generation = 0
        self._schemas: dict[tuple[str, int], Schema] = {}
        self._latest: dict[str, int] = {}
        self._plans: dict[tuple[str, int], Any] = {}
        self._sink_handlers: list[logging.Handler] = []
        self._targets: list[Any] = []
        self._key: PseudonymKey | None = None
        self._ready = False
        super().__init__(**kwargs)
        self._load_key()
        self._ready = True
        if self.sinks:
            self._sink_handlers = load_sinks(self.sinks, config=self.config)
        self._update_targets()
        for path in self.schema_paths:
            self.register_schema_file(path)
        if self.load_schema_entry_points:
            self.register_entry_point_schemas()
        self._share_retention()

    # ------------------------------------------------------------------ schemas

    def register_schema(self, schema: Mapping[str, Any], source: str | None = None) -> Schema:
        """Register a schema dict; raise :class:`SchemaError` if it is malformed or conflicts."""
        compiled = Schema(schema, source)
        key = (compiled.id, compiled.version)
        existing = self._schemas.get(key)
        if existing is not None:
            if existing.same_content(compiled.body):
                return existing
            where = f"{source}: " if source else ""
            first = f" (first registered from {existing.source})" if existing.source else ""
            raise SchemaError(
                f"{where}schema {compiled.id!r} version {compiled.version} is already registered "
                f"with different content{first}. Bump 'version' when a schema changes."
            )
        self._schemas[key] = compiled
        if compiled.version > self._latest.get(compiled.id, -1):
            self._latest[compiled.id] = compiled.version
        self._plans.clear()
        self.generation += 1
        return compiled

    def register_schema_file(self, path: str | os.PathLike) -> list[Schema]:
        """Register a .json/.yaml/.yml schema file, or every schema file in a directory."""
        return [
            self.register_schema(load_schema_file(file), source=str(file))
            for file in iter_schema_files(path)
        ]

    def register_entry_point_schemas(self) -> list[Schema]:
        """Register schemas shipped by packages in the ``telemetry_sinks.schemas`` group.

        An entry point may name a file or directory path, a schema dict, or a
        callable returning any of these (or a list of them).
        """
        registered: list[Schema] = []
        for ep in entry_points(group=SCHEMA_ENTRY_POINT_GROUP):
            try:
                registered.extend(self._register_any(ep.load()))
            except SchemaError:
                raise
            except Exception as exc:
                raise SchemaError(
                    f"Schemas of entry point {ep.name!r} ({ep.value}) cannot be loaded: {exc}"
                ) from exc
        return registered

    def _register_any(self, obj: Any) -> list[Schema]:
        if callable(obj) and not isinstance(obj, (str, Path, Mapping)):
            obj = obj()
        if isinstance(obj, Mapping):
            return [self.register_schema(obj)]
        if isinstance(obj, (str, os.PathLike)):
            return self.register_schema_file(obj)
        if isinstance(obj, Iterable):
            return [s for item in obj for s in self._register_any(item)]
        raise SchemaError(f"cannot register schemas from {obj!r}")

    @property
    def schemas(self) -> dict[tuple[str, int], Schema]:
        """Registered schemas by ``(id, version)``."""
        return dict(self._schemas)

    def schema(self, schema_id: str, version: int | str | None = None) -> Schema:
        """The registered schema ``schema_id`` at ``version`` (default: the newest)."""
        if version is None:
            version = self._latest.get(schema_id)
        elif not isinstance(version, int) or isinstance(version, bool):
            version = int(version) if str(version).isdigit() else version
        compiled = self._schemas.get((schema_id, version))  # type: ignore[arg-type]  # a str: not found
        if compiled is None:
            raise self._unknown(schema_id, version)
        return compiled

    def _unknown(self, schema_id: str, version: Any) -> UnknownSchemaError:
        versions = sorted(v for (sid, v) in self._schemas if sid == schema_id)
        if versions:
            return UnknownSchemaError(
                f"Schema {schema_id!r} has no version {version!r}; registered versions: "
                f"{', '.join(map(str, versions))}."
            )
        known = sorted({sid for sid, _ in self._schemas})
        listing = ", ".join(repr(k) for k in known) if known else "none"
        return UnknownSchemaError(
            f"Schema {schema_id!r} is not registered (registered schemas: {listing}). "
            "Register it with register_schema_file() or list it in c.EventLog.schema_paths."
        )

    # ------------------------------------------------------------------ sinks & policy

    @observe("handlers")
    def _handlers_changed(self, change: Any) -> None:
        self._update_targets()
        if self._ready:
            self._share_retention()

    @observe("allowed_schemas")
    def _policy_changed(self, change: Any) -> None:
        self._plans.clear()
        self.generation += 1
        if self._ready:
            self._share_retention()

    @observe("pseudonym_key_file", "pseudonym_key_env", "pseudonym_key_id")
    def _key_changed(self, change: Any) -> None:
        if self._ready:  # during __init__ the key is loaded once, at its end
            self._load_key()
            self._share_retention()

    def _load_key(self) -> None:
        """Read the pseudonym key (if configured) and check that a policy that needs one has it."""
        self._key = load_key(self.pseudonym_key_file, self.pseudonym_key_env, self.pseudonym_key_id)
        self._plans.clear()
        self.generation += 1
        self._require_key()

    def _share_retention(self) -> None:
        """Give the retention stages of the policy to the sinks that store events (``set_retention``)."""
        hooks = [h.set_retention for h in self.all_handlers if hasattr(h, "set_retention")]
        if hooks:
            from .retention import RetentionRules

            rules = RetentionRules.of(self)
            for hook in hooks:
                hook(rules)

    def _require_key(self) -> None:
        if self._key is None and uses_pseudonyms(self.allowed_schemas):
            raise PolicyError(_NO_KEY)

    @property
    def pseudonym_key(self) -> PseudonymKey | None:
        """The loaded pseudonym key (its ``repr`` shows only its id and where it came from)."""
        return self._key

    def _update_targets(self) -> None:
        handlers = [*self.handlers, *self._sink_handlers]
        self._targets = [(h, getattr(h, "handle_capsule", None)) for h in handlers]
        for handler in handlers:
            use_schemas = getattr(handler, "use_schemas", None)
            if callable(use_schemas):  # sinks that type their output from the schemas (parquet)
                use_schemas(self.schema_body)

    def schema_body(self, schema_id: str, version: int) -> dict[str, Any] | None:
        """The JSON Schema registered as ``(schema_id, version)``, or None."""
        found = self._schemas.get((schema_id, version))
        return found.body if found is not None else None

    @property
    def all_handlers(self) -> list[logging.Handler]:
        """Handlers given directly plus sinks built from ``sinks``."""
        return [h for h, _ in self._targets]

    def add_handler(self, handler: logging.Handler) -> None:
        """Add a handler (jupyter_events' API)."""
        self.handlers = [*self.handlers, handler]

    def remove_handler(self, handler: logging.Handler) -> None:
        """Remove a handler (jupyter_events' API)."""
        self.handlers = [h for h in self.handlers if h is not handler]

    def _plan(self, schema: Schema) -> Any:
        key = (schema.id, schema.version)
        policy = policy_for(self.allowed_schemas, schema.id)
        if policy is None:
            plan = _DENY
        else:
            plan = compile_plan(schema, policy, self._key)  # None: nothing to change
        self._plans[key] = plan
        return plan

    def redaction_plan(self, schema_id: str, version: int | None = None) -> RedactionPlan | None:
        """The compiled plan for a schema version (None when nothing changes or it is not recorded)."""
        schema = self.schema(schema_id, version)
        key = (schema.id, schema.version)
        plan = self._plans[key] if key in self._plans else self._plan(schema)
        return None if plan is _DENY else plan

    def describe_redaction(self, schema_id: str, version: int | None = None) -> dict[str, Any] | None:
        """What happens to each property of a schema version, as JSON data; None if it is not recorded.

        ``{"schema_id", "version", "timestamp": {round_time action} or null,
        "properties": {...}}`` (:meth:`RedactionPlan.as_json`).  Clients that apply the
        policy themselves (the browser client) read it from the collector.  It names
        the pseudonym key's id, never the key: a client without the key sends the
        values to pseudonymize only to the collector, which pseudonymizes them
        before any sink sees them, and drops them for any other destination.
        """
        schema = self.schema(schema_id, version)
        if policy_for(self.allowed_schemas, schema.id) is None:
            return None
        plan = self.redaction_plan(schema.id, schema.version)
        return {
            "schema_id": schema.id,
            "version": schema.version,
            "timestamp": plan.timestamp.as_json() if plan is not None and plan.timestamp else None,
            "properties": plan.as_json()["properties"] if plan is not None else {},
        }

    # ------------------------------------------------------------------ recording

    def prepare(
        self,
        schema_id: str,
        version: int | str | None,
        event: Mapping[str, Any],
        timestamp_override: _dt.datetime | str | None = None,
    ) -> dict[str, Any] | None:
        """Validate ``event`` and return its capsule (redacted), or None if it is not recorded.

        Sends nothing; :meth:`record_event` is ``prepare`` followed by ``dispatch``.
        """
        key = (schema_id, version if version is not None else self._latest.get(schema_id))
        schema = self._schemas.get(key)  # type: ignore[arg-type]  # a missing latest is looked up below
        if schema is None:  # another spelling of the version ("1"), or an unknown schema
            schema = self.schema(schema_id, version)
            key = (schema.id, schema.version)
        plan = self._plans[key] if key in self._plans else self._plan(schema)
        if plan is _DENY or not self._targets:
            return None
        try:
            schema.check(event, self.max_event_depth)
        except EventValidationError as exc:
            if plan is _NO_REDACTION:
                raise
            raise self._scrubbed(exc, event, plan) from None
        if timestamp_override is None:
            timestamp = None
        elif isinstance(timestamp_override, str):
            timestamp = timestamp_override
        else:
            timestamp = format_timestamp(timestamp_override)
        if plan is not _NO_REDACTION:
            try:
                event = apply_plan(event, plan)
                if plan.timestamp is not None:
                    timestamp = plan.timestamp.apply_one(timestamp or format_timestamp())
            except ActionError as exc:
                raise schema.error(list(exc.path) or ["__timestamp__"], exc.reason) from None
        capsule = make_capsule(schema.id, schema.version, event, timestamp)
        if len(capsule) != len(event) + len(CAPSULE_FIELDS):
            # The event named a capsule field and would have overwritten it.
            name = next(n for n in event if n in CAPSULE_FIELDS)
            raise EventValidationError(
                f"Event for schema {schema.id!r} version {schema.version} has property "
                f"{name!r}, a name reserved for the capsule's fields ({', '.join(CAPSULE_FIELDS)}); "
                "rename the property.",
                schema_id=schema.id,
                version=schema.version,
                path=f"$.{name}",
                reason="reserved property name",
            )
        return capsule

    @staticmethod
    def _scrubbed(exc: EventValidationError, event: Mapping[str, Any], plan: Any) -> EventValidationError:
        """``exc`` without the values the plan would have removed or replaced (they are personal)."""
        values = touched_values(event, plan)
        if not values:
            return exc
        reason = scrub_values(exc.reason, values)
        return EventValidationError(scrub_values(str(exc), values), schema_id=exc.schema_id,
                                    version=exc.version, path=exc.path, reason=reason)

    def dispatch(self, capsule: dict[str, Any]) -> None:
        """Hand ``capsule`` to every handler and sink.  Never raises."""
        record = None
        for handler, fast in self._targets:
            try:
                if fast is not None:
                    fast(capsule)
                    continue
                if record is None:
                    record = logging.LogRecord(
                        "telemetry_sinks.eventlog", logging.INFO, __file__, 0, capsule, None, None
                    )
                if record.levelno >= handler.level:
                    handler.handle(record)
            except Exception:
                _log.exception("Handler %r failed on an event; the event was not lost for "
                               "other handlers.", handler)

    def record_event(
        self,
        schema_id: str,
        version: int | str | None,
        event: Mapping[str, Any],
        timestamp_override: _dt.datetime | str | None = None,
    ) -> dict[str, Any] | None:
        """Record an event; return its capsule, or None when nothing was emitted.

        Raises :class:`EventValidationError` for an invalid event and
        :class:`UnknownSchemaError` for an unregistered schema or version.
        """
        capsule = self.prepare(schema_id, version, event, timestamp_override)
        if capsule is not None:
            self.dispatch(capsule)
        return capsule

    def record(
        self,
        schema_id: str,
        version: int | str | None,
        data: Mapping[str, Any],
        timestamp_override: _dt.datetime | str | None = None,
    ) -> dict[str, Any] | None:
        """:meth:`record_event` under the name of the Jupyter telemetry documentation
        ("record event data using ``EventLog.record(...)``"): same arguments, result and errors.
        """
        return self.record_event(schema_id, version, data, timestamp_override)

    def emit(
        self,
        *,
        schema_id: str,
        data: Mapping[str, Any],
        version: int | None = None,
        timestamp_override: _dt.datetime | str | None = None,
    ) -> dict[str, Any] | None:
        """jupyter_events-style call; ``version=None`` means the newest registered version."""
        return self.record_event(schema_id, version, data, timestamp_override)

    # ------------------------------------------------------------------ lifecycle

    def flush(self) -> None:
        """Flush every handler."""
        for handler in self.all_handlers:
            handler.flush()

    def close(self) -> None:
        """Flush and close the sinks this EventLog built from ``sinks``."""
        for handler in self._sink_handlers:
            handler.flush()
            handler.close()


class EventRouter:
    """Record one event into several EventLogs, each with its own sinks and policy."""

    def __init__(self, eventlogs: Iterable[EventLog]) -> None:
        self.eventlogs = list(eventlogs)

    def record_event(
        self,
        schema_id: str,
        version: int | None,
        event: Mapping[str, Any],
        timestamp_override: _dt.datetime | str | None = None,
    ) -> list[dict[str, Any] | None]:
        """Validate in every EventLog first, then send; returns one capsule (or None) per log.

        An invalid event raises before anything is sent to any log.
        """
        if timestamp_override is None:
            timestamp_override = format_timestamp()
        capsules = [
            log.prepare(schema_id, version, event, timestamp_override) for log in self.eventlogs
        ]
        for log, capsule in zip(self.eventlogs, capsules):
            if capsule is not None:
                log.dispatch(capsule)
        return capsules

    def record(
        self,
        schema_id: str,
        version: int | None,
        data: Mapping[str, Any],
        timestamp_override: _dt.datetime | str | None = None,
    ) -> list[dict[str, Any] | None]:
        """:meth:`record_event` under the name of the Jupyter telemetry documentation."""
        return self.record_event(schema_id, version, data, timestamp_override)

    def emit(
        self, *, schema_id: str, data: Mapping[str, Any], version: int | None = None
    ) -> list[dict[str, Any] | None]:
        return self.record_event(schema_id, version, data)
