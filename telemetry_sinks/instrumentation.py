"""Record calls of functions and methods as events: the ``record`` and ``instrument`` decorators.

jupyter_telemetry's design gives developers one concern, emitting events, and
leaves policy to operators.  These decorators take even the ``emit`` call away::

    @instrument
    class Contents:
        eventlog = EventLog(...)
        eventschema = "https://events.example.org/contents"
        eventkeys = ["path"]

        @record
        def save(self, model, path): ...

Each call of ``save`` becomes one event of ``eventschema`` holding:

* the arguments named in ``eventkeys`` (or ``record(keys=...)``), under their own
  names, or under the property names of a ``{property: argument}`` mapping.  Other
  arguments are never recorded; an argument that is ``None`` is left out, as an
  optional property would be;
* ``action``: the function's name (``record(action=...)`` to name it otherwise);
* ``status``: ``"success"``, or ``"failure"`` when the call raised an exception;
* ``duration_ms``: the call's wall time in milliseconds (for a coroutine, until it
  returned);
* ``exception``: on failure, the exception's class (``"FileNotFoundError"``,
  ``"tornado.web.HTTPError"``), never its message.

``action``, ``status``, ``duration_ms`` and ``exception`` are added only when the
schema declares them (``telemetry_sinks/examples/instrumentation/file-action.yaml``
shows them all), so any schema can be used as it is.  A schema without ``status``
records successful calls only, as Jupyter Server's contents events do.

The decorated function behaves as before: same arguments, return value and
exceptions.  Recording never raises into it: an event that fails validation, a
schema that is not registered or a misconfigured class is counted in
:data:`failures` and logged on the ``telemetry_sinks.instrumentation`` logger at most
once a minute per schema, path and reason, without the event's values.  The
EventLog's policy applies as to every other event: nothing is recorded unless
``allowed_schemas`` lists the schema.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

from .errors import EventValidationError, UnknownSchemaError
from .policy import policy_for

__all__ = ["Instrumented", "RecordFailures", "failures", "instrument", "record"]

_log = logging.getLogger("telemetry_sinks.instrumentation")

C = TypeVar("C", bound=type)

#: The properties a recorded call adds when its schema declares them.
ACTION, STATUS, DURATION, EXCEPTION = "action", "status", "duration_ms", "exception"
SUCCESS, FAILURE = "success", "failure"

_KEYWORD_ONLY = sys.maxsize  # "never positional": the index of a keyword-only argument
_RECORDER = "__telemetry_recorder__"  # the attribute marking a recorded function
_MISSING = object()

# The recorded method call in progress in this thread or task: (id(instance), method name).
# A recorded override calling super() records one event, not two.
_active: ContextVar[tuple[int, str] | None] = ContextVar("telemetry_sinks_recording", default=None)
_perf = time.perf_counter_ns


# --------------------------------------------------------------------------- failures


class RecordFailures:
    """Counts the calls whose event could not be recorded, and reports them without flooding the log.

    Each cause (schema, JSON path, reason) is logged at WARNING when first seen and
    then at most once per ``interval`` seconds, with the number of calls since the
    last report.  Messages name the function, schema, path and reason; the values
    of the event are replaced by ``<value>``.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._unreported: Counter[tuple[str, str, str]] = Counter()
        self._reported_at: dict[tuple[str, str, str], float] = {}

    @property
    def total(self) -> int:
        """Calls not recorded because of a failure, since the start (or :meth:`reset`)."""
        with self._lock:
            return sum(self._counts.values())

    def counts(self) -> dict[tuple[str, str, str], int]:
        """``{(schema, path, reason): calls}`` since the start (or :meth:`reset`)."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._unreported.clear()
            self._reported_at.clear()

    def note(self, where: str, schema: str, path: str, reason: str) -> None:
        """Count one call of ``where`` whose event of ``schema`` failed at ``path`` for ``reason``."""
        key = (schema, path, reason)
        now = self._clock()
        with self._lock:
            self._counts[key] += 1
            self._unreported[key] += 1
            last = self._reported_at.get(key)
            if last is not None and now - last < self.interval:
                return
            calls = self._unreported.pop(key)
            self._reported_at[key] = now
        since = f" ({calls} calls since the last report)" if last is not None else ""
        _log.warning(
            "A call of %s was not recorded as an event of %s: %s: %s%s. The call itself went on "
            "unchanged; further failures of this kind are reported at most every %g s.",
            where, schema, path, reason, since, self.interval,
        )  # fmt: skip


#: The failures of every recorded function in this process.
failures = RecordFailures()


def _values_out(reason: str, data: Mapping[str, Any]) -> str:
    """``reason`` with every value of ``data`` replaced by ``<value>`` (log lines carry no event data)."""
    for value in data.values():
        reason = _value_out(reason, value, 0)
    return reason


def _value_out(reason: str, value: Any, depth: int) -> str:
    if depth > 16:
        return reason
    if isinstance(value, Mapping):
        for item in value.values():
            reason = _value_out(reason, item, depth + 1)
        return reason
    if isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            reason = _value_out(reason, item, depth + 1)
        return reason
    if isinstance(value, str):
        if not value:
            return reason
        forms = {repr(value), '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'}
        for form in sorted(forms, key=len, reverse=True):
            reason = reason.replace(form, "<value>")
        return reason
    text = re.escape(str(value))
    return re.sub(rf"(?<![\w.]){text}(?![\w.])", "<value>", reason)


def _cause(error: Exception, data: Mapping[str, Any]) -> tuple[str, str]:
    """(JSON path, reason) of a recording failure, without any value of the event."""
    if isinstance(error, EventValidationError):
        return error.path, _values_out(error.reason, data)
    if isinstance(error, UnknownSchemaError):
        return "$", "the schema is not registered in the EventLog"
    if isinstance(error, RecordConfigError):
        return "$", str(error)
    return "$", f"{type(error).__name__} while recording (the event's values are not shown)"


class RecordConfigError(TypeError):
    """A recorded function or class lacks what recording needs (a schema, an EventLog, valid keys)."""


# --------------------------------------------------------------------------- bindings


class _Binding:
    """What one recorded function records for one class: schema, version and argument getters.

    ``getters`` are ``(property, position, name, default)``: the value is
    ``args[position]`` when given positionally, else ``kwargs.get(name, default)``.
    They are worked out from the signature once, never per call.  ``nested``: the
    class has several recorded versions of this method (an override calling
    ``super()``), so calls check whether they run inside another one.  ``state``:
    what :meth:`observe` found in the EventLog last, kept while its ``generation``
    stays the same.
    """

    __slots__ = ("schema_id", "version", "getters", "props", "nested", "state")

    def __init__(self, schema_id: str, version: int | None, getters: tuple, props: frozenset) -> None:
        self.schema_id = schema_id
        self.version = version
        self.getters = getters
        self.props = props
        self.nested = False
        self.state: tuple | None = None

    def observe(self, log: Any) -> tuple:
        """``(log, generation, version, recorded, action, status, duration, exception)`` for ``log``.

        ``version``: the schema's version events go to; ``recorded``: the policy
        records the schema; the last four: which of those properties the schema
        declares (and no argument fills).
        """
        generation = getattr(log, "generation", None)
        schema = _schema_of(log, self.schema_id, self.version)
        declared = schema.body.get("properties") or {}
        extras = (ACTION, STATUS, DURATION, EXCEPTION)
        flags = tuple(name in declared and name not in self.props for name in extras)
        state = (log, generation, schema.version, _records(log, self.schema_id), *flags)
        if generation is not None:
            self.state = state
        return state


def _getters(
    func: Callable[..., Any], keys: Iterable[str] | Mapping[str, str], strict: bool
) -> tuple[tuple, frozenset]:
    """Getters for ``keys`` over ``func``'s signature.

    ``strict`` (keys given to the decorator): a key that names no parameter is an
    error.  Otherwise (a class's ``eventkeys``, shared by its methods) such a key is
    skipped for this function.
    """
    pairs = list(keys.items()) if isinstance(keys, Mapping) else [(k, k) for k in keys]
    params = list(inspect.signature(func).parameters.values())
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    by_name = {p.name: (i, p) for i, p in enumerate(params)}
    getters: list[tuple[str, int, str | None, Any]] = []
    for prop, name in pairs:
        if not isinstance(prop, str) or not isinstance(name, str):
            raise RecordConfigError(
                f"event keys of {func.__qualname__}() must be argument names (strings), "
                f"not {prop!r}"
            )
        found = by_name.get(name)
        if found is None:
            if takes_kwargs:
                getters.append((prop, _KEYWORD_ONLY, name, None))
            elif strict:
                known = ", ".join(p.name for p in params) or "none"
                raise RecordConfigError(
                    f"{func.__qualname__}() has no argument {name!r} to record (its arguments: "
                    f"{known}); fix the keys given to record()."
                )
            continue
        index, param = found
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise RecordConfigError(
                f"{func.__qualname__}(): {name!r} collects several arguments; name the "
                "arguments to record one by one."
            )
        default = None if param.default is param.empty else param.default
        position = _KEYWORD_ONLY if param.kind is param.KEYWORD_ONLY else index
        keyword = None if param.kind is param.POSITIONAL_ONLY else name
        getters.append((prop, position, keyword, default))
    return tuple(getters), frozenset(prop for prop, *_ in getters)


def _schema_of(log: Any, schema_id: str, version: int | None) -> Any:
    """The registered schema an event goes to (an EventRouter's first EventLog speaks for it)."""
    lookup = getattr(log, "schema", None) or log.eventlogs[0].schema
    return lookup(schema_id, version)


def _records(log: Any, schema_id: str) -> bool:
    """Whether the policy of ``log`` (of any EventLog of an EventRouter) records ``schema_id``."""
    logs = getattr(log, "eventlogs", None) or [log]
    return any(policy_for(each.allowed_schemas, schema_id) is not None for each in logs)


def _exception_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _recorders_in(cls: type, name: str) -> list[_Recorder]:
    """The recorded functions named ``name`` along ``cls``'s MRO."""
    found = []
    for klass in cls.__mro__:
        attr = klass.__dict__.get(name)
        func = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
        recorder = getattr(func, _RECORDER, None)
        if recorder is not None:
            found.append(recorder)
    return found


# --------------------------------------------------------------------------- recorder


class _Recorder:
    """Everything one recorded function needs, resolved once; :meth:`record` runs after each call."""

    __slots__ = ("func", "where", "action", "schema_id", "version", "keys", "eventlog",
                 "provider", "method", "static", "bindings")  # fmt: skip

    def __init__(
        self,
        func: Callable[..., Any],
        schema_id: str | None,
        version: int | None,
        keys: Iterable[str] | Mapping[str, str] | None,
        eventlog: Any,
        action: str | None,
        method: bool,
    ) -> None:
        self.func = func
        self.where = f"{func.__module__}.{func.__qualname__}()"
        self.action = action or func.__name__
        self.schema_id = schema_id
        self.version = version
        self.keys = keys
        self.eventlog = eventlog
        # A zero-argument callable returning the EventLog (one made after decoration).
        self.provider = eventlog is not None and not hasattr(eventlog, "record_event") and callable(eventlog)
        self.method = method
        self.bindings: dict[type, _Binding] = {}
        self.static: _Binding | None = None
        if keys is not None:
            _getters(func, keys, strict=True)  # a wrong key fails now, at decoration
        if not method:
            if schema_id is None:
                raise RecordConfigError(
                    f"record() on the function {func.__qualname__}() needs the schema: "
                    "record('https://...', keys=[...], eventlog=...)."
                )
            if eventlog is None:
                raise RecordConfigError(
                    f"record() on the function {func.__qualname__}() needs eventlog= (an EventLog, "
                    "an EventRouter, or a function returning one)."
                )
            self.static = self._binding(None)

    def _binding(self, owner: Any) -> _Binding:
        """Resolve schema, version and keys: the decorator's arguments first, then ``owner``'s attributes."""
        schema_id = self.schema_id or getattr(owner, "eventschema", None)
        if not isinstance(schema_id, str) or not schema_id:
            name = getattr(owner, "__qualname__", type(owner).__qualname__)
            raise RecordConfigError(
                f"{self.where} has no event schema: set eventschema on {name} or "
                "give record() the schema id."
            )
        version = self.version if self.version is not None else getattr(owner, "eventversion", None)
        keys = self.keys
        strict = keys is not None
        if keys is None:
            keys = getattr(owner, "eventkeys", None) or ()
            if isinstance(keys, str):
                raise RecordConfigError(
                    f"eventkeys of {getattr(owner, '__qualname__', owner)!r} must be a list of "
                    f"argument names, not the string {keys!r}."
                )
        getters, props = _getters(self.func, keys, strict)
        return _Binding(schema_id, version, getters, props)

    def bind_class(self, cls: type) -> _Binding:
        """The binding for calls on ``cls`` (or its instances), resolved on first use."""
        binding = self.bindings.get(cls)
        if binding is None:
            binding = self._binding(cls)
            binding.nested = len(_recorders_in(cls, self.func.__name__)) > 1
            self.bindings[cls] = binding
        return binding

    def binding_for(self, args: tuple) -> _Binding:
        """The binding of one call (the general path: a first call, a classmethod, a misuse)."""
        if self.static is not None:
            return self.static
        if not args:
            raise RecordConfigError(f"{self.where} was called without its instance")
        owner = args[0]
        # A classmethod's first argument is the class itself.
        return self.bind_class(owner if isinstance(owner, type) else type(owner))

    def record(
        self, binding: _Binding, args: tuple, kwargs: dict, start: int, exc: BaseException | None
    ) -> None:
        """Record one finished call.  Never raises."""
        data: dict[str, Any] = {}
        try:
            log = self.eventlog
            if log is None:
                try:
                    log = args[0].eventlog
                except AttributeError:
                    raise RecordConfigError(
                        f"{type(args[0]).__qualname__} has no eventlog attribute (set it to an "
                        "EventLog, or to None to record nothing)"
                    ) from None
                if log is None:
                    return  # eventlog = None: recording is off for this object
            elif self.provider:
                log = log()
                if log is None:
                    return
            state = binding.state
            # Only an EventLog's state is kept, so log.generation exists when it is compared.
            if state is None or state[0] is not log or state[1] != log.generation:
                state = binding.observe(log)
            _log, _generation, version, recorded, action, status, duration, exception = state
            if not recorded or (exc is not None and not status):
                return  # not recorded by the policy; or the schema cannot say the call failed
            if action:
                data["action"] = self.action
            given = len(args)
            for prop, position, name, default in binding.getters:
                value = args[position] if position < given else kwargs.get(name, default)
                if value is not None:
                    data[prop] = value
            if status:
                data["status"] = "success" if exc is None else "failure"
            if duration:
                data["duration_ms"] = (_perf() - start) // 1000 / 1000  # ns -> ms, to the µs
            if exception and exc is not None:
                data["exception"] = _exception_name(exc)
            log.record_event(binding.schema_id, version, data)
        except Exception as error:
            self.failed(error, binding.schema_id, data)

    def failed(self, error: Exception, schema_id: str | None, data: Mapping[str, Any]) -> None:
        path, reason = _cause(error, data)
        failures.note(self.where, schema_id or self.schema_id or "(no schema)", path, reason)


# --------------------------------------------------------------------------- decorators


def _is_method(func: Callable[..., Any]) -> bool:
    """Defined in a class body: ``Class.f`` or ``outer.<locals>.Class.f``, not ``outer.<locals>.f``."""
    parts = func.__qualname__.split(".")
    return len(parts) > 1 and parts[-2] != "<locals>"


def _wrap(func: Callable[..., Any], recorder: _Recorder) -> Callable[..., Any]:
    """The recorded function: a fast path for the usual call, the general one for the rest.

    The fast path takes the binding of the instance's class from a dict.  The
    general path resolves it first (a first call, a classmethod), and tracks the
    call in progress when overrides of the method are recorded too, so that an
    override calling ``super()`` records one event.  A failure to resolve is
    counted and the function runs unrecorded.
    """
    rec = recorder.record
    bindings = recorder.bindings
    static = recorder.static
    name = func.__name__
    perf = _perf

    def prepare(args: tuple) -> tuple[_Binding | None, Any]:
        try:
            binding = recorder.binding_for(args)
        except Exception as error:
            recorder.failed(error, recorder.schema_id, {})
            return None, None
        if not binding.nested:
            return binding, None
        key = (id(args[0]), name)
        if _active.get() == key:
            return None, None  # inside the override's call: that one records
        return binding, _active.set(key)

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_recorded(*args: Any, **kwargs: Any) -> Any:
            binding = static or (bindings.get(type(args[0])) if args else None)
            token = None
            if binding is None or binding.nested:
                binding, token = prepare(args)
                if binding is None:
                    return await func(*args, **kwargs)
            start = perf()
            try:
                result = await func(*args, **kwargs)
            except Exception as exc:
                rec(binding, args, kwargs, start, exc)
                raise
            finally:
                if token is not None:
                    _active.reset(token)
            rec(binding, args, kwargs, start, None)
            return result

        wrapper: Callable[..., Any] = async_recorded
    else:

        @functools.wraps(func)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            binding = static or (bindings.get(type(args[0])) if args else None)
            token = None
            if binding is None or binding.nested:
                binding, token = prepare(args)
                if binding is None:
                    return func(*args, **kwargs)
            start = perf()
            try:
                result = func(*args, **kwargs)
            except Exception as exc:
                rec(binding, args, kwargs, start, exc)
                raise
            finally:
                if token is not None:
                    _active.reset(token)
            rec(binding, args, kwargs, start, None)
            return result

        wrapper = recorded
    setattr(wrapper, _RECORDER, recorder)
    return wrapper


def _decorate(target: Any, options: dict[str, Any]) -> Any:
    if isinstance(target, (staticmethod, classmethod)):
        inner = target.__func__
        method = isinstance(target, classmethod)
        return type(target)(_decorate_function(inner, options, method=method))
    return _decorate_function(target, options, method=None)


def _decorate_function(func: Callable[..., Any], options: dict[str, Any], method: bool | None) -> Any:
    if not inspect.isfunction(func):
        raise TypeError(f"record() decorates functions and methods, not {func!r}")
    if getattr(func, _RECORDER, None) is not None:
        return func  # recorded already
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise RecordConfigError(
            f"record() cannot decorate the generator {func.__qualname__}(): its call returns "
            "before any work is done. Record the function that consumes it."
        )
    if method is None:
        method = _is_method(func)
    recorder = _Recorder(func, method=method, **options)
    return _wrap(func, recorder)


def record(
    schema_id: Any = None,
    version: int | str | None = None,
    *,
    keys: Iterable[str] | Mapping[str, str] | None = None,
    eventlog: Any = None,
    action: str | None = None,
) -> Any:
    """Record each call of a function or method as one event.

    ``@record`` on a method takes the schema, version and argument names from the
    class (``eventschema``, ``eventversion``, ``eventkeys``) and the EventLog from
    the instance (``self.eventlog``, which may be set in ``__init__``; ``None``
    records nothing).  Arguments override them::

        @record("https://events.example.org/contents", 1, keys={"path": "new_path"},
                eventlog=log, action="rename")
        def rename(old_path, new_path): ...

    A plain function needs ``schema_id`` and ``eventlog`` (an EventLog, an
    EventRouter, or a zero-argument function returning one or None).  Sync and async
    functions, methods, static and class methods are supported; generators are not.
    See the module's documentation for what the event holds.
    """
    options = {"schema_id": None, "version": version, "keys": keys, "eventlog": eventlog,
               "action": action}  # fmt: skip
    if schema_id is not None and not isinstance(schema_id, str):
        return _decorate(schema_id, options)  # bare @record
    options["schema_id"] = schema_id
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, (int, str)) or not str(version).isdigit()
    ):
        raise RecordConfigError(f"record(): version must be an integer, not {version!r}")
    return lambda target: _decorate(target, options)


def instrument(*methods: Any) -> Any:
    """Class decorator: record the methods the class names, and check its recording settings now.

    The methods recorded are those in ``@instrument("save", "rename")``, or else the
    class's ``eventmethods`` list, plus any decorated with ``@record``.  An inherited
    method named there is recorded for this class and its subclasses (the base class
    is left alone).  A missing ``eventschema`` or an ``eventkeys`` entry no method
    takes fails here, at import, instead of at the first call.
    """
    if len(methods) == 1 and isinstance(methods[0], type):
        return _instrument(methods[0], None, check=True)
    for name in methods:
        if not isinstance(name, str):
            raise TypeError(f"instrument() takes method names (strings), not {name!r}")
    return lambda cls: _instrument(cls, list(methods) or None, check=True)


def _instrument(cls: C, names: list[str] | None, check: bool) -> C:
    if names is None:
        names = list(getattr(cls, "eventmethods", None) or ())
    for name in names:
        attr = inspect.getattr_static(cls, name, None)
        if attr is None:
            raise RecordConfigError(f"{cls.__qualname__} has no method {name!r} to record")
        func = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
        if getattr(func, _RECORDER, None) is not None:
            continue
        if not inspect.isfunction(func):
            raise RecordConfigError(f"{cls.__qualname__}.{name} is not a function; it cannot be recorded")
        options = {"schema_id": None, "version": None, "keys": None, "eventlog": None, "action": None}
        setattr(cls, name, _decorate(attr, options))
    if check:
        _check_class(cls)
    return cls


def _check_class(cls: type) -> None:
    """Resolve every recorded method of ``cls`` now: a misconfiguration fails at class creation."""
    taken: set[str] = set()
    shared: list[str] = []  # the methods that record the class's eventkeys
    for name in dir(cls):
        attr = inspect.getattr_static(cls, name, None)
        func = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
        recorder = getattr(func, _RECORDER, None)
        if recorder is None or recorder.static is not None:
            continue
        binding = recorder.bind_class(cls)
        if recorder.keys is None:
            taken |= binding.props
            shared.append(name)
    keys = getattr(cls, "eventkeys", None) or ()
    unused = [k for k in (keys.keys() if isinstance(keys, Mapping) else keys) if k not in taken]
    if shared and unused:
        raise RecordConfigError(
            f"eventkeys of {cls.__qualname__} names {', '.join(map(repr, unused))}, which no recorded "
            f"method takes ({', '.join(shared)}); fix the name or remove it."
        )


class Instrumented:
    """Mixin: every subclass is :func:`instrument`-ed when it is defined.

    Subclasses inherit ``eventlog``, ``eventschema``, ``eventkeys`` and
    ``eventmethods`` and may override them; an override of a recorded method is
    recorded too, and calling ``super()`` from it still records one event per call.
    A class without ``eventschema`` (an abstract base) is checked in its subclasses.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A base class without eventschema may leave it to its subclasses.
        _instrument(cls, None, check=getattr(cls, "eventschema", None) is not None)
