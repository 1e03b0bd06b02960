"""The sink registry: a table of known sinks plus the ``telemetry_sinks.sinks`` entry points.

Sink classes are imported lazily, on first use, so that a missing client library
only matters for the sink that needs it; the error then gives the exact
``pip install`` command.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from .errors import MissingExtraError, SinkConfigError, UnknownSinkError
from .sinks.base import Sink

ENTRY_POINT_GROUP = "telemetry_sinks.sinks"
DIST_NAME = "telemetry-sinks"

#: Sinks that ship with telemetry-sinks: name -> (class path, extra to install or None).
#: The one list of them: the package's entry points (pyproject.toml, checked by a test), the lazy
#: ``telemetry_sinks.<Class>`` attributes and ``telemetry-sinks sinks`` all follow it.
known_sinks: dict[str, tuple[str, str | None]] = {
    "file": ("telemetry_sinks.sinks.file:FileSink", None),
    "rotating_file": ("telemetry_sinks.sinks.file:RotatingFileSink", None),
    "timed_rotating_file": ("telemetry_sinks.sinks.file:TimedRotatingFileSink", None),
    "stream": ("telemetry_sinks.sinks.stream:StreamSink", None),
    "archive": ("telemetry_sinks.sinks.archive:ArchiveSink", None),
    "parquet": ("telemetry_sinks.sinks.parquet:ParquetSink", "parquet"),
    "kafka": ("telemetry_sinks.sinks.kafka:KafkaSink", "kafka"),
    "http": ("telemetry_sinks.sinks.http:HTTPSink", "http"),
    "cloudwatch": ("telemetry_sinks.sinks.cloudwatch:CloudWatchSink", "cloudwatch"),
    "stackdriver": ("telemetry_sinks.sinks.stackdriver:StackdriverSink", "stackdriver"),
    "gcp_logging": ("telemetry_sinks.sinks.stackdriver:StackdriverSink", "stackdriver"),
    "elasticsearch": ("telemetry_sinks.sinks.elasticsearch:ElasticsearchSink", "elasticsearch"),
    "opensearch": ("telemetry_sinks.sinks.opensearch:OpenSearchSink", "opensearch"),
}


def sink_name_of_class(class_name: str) -> str | None:
    """The first name in ``known_sinks`` of the class called ``class_name`` (None if none)."""
    for name, (path, _extra) in known_sinks.items():
        if path.rpartition(":")[2] == class_name:
            return name
    return None


@dataclass(frozen=True)
class SinkInfo:
    """One row of :func:`available_sinks`."""

    name: str
    class_path: str
    extra: str | None
    importable: bool
    error: str | None = None
    distribution: str | None = None

    @property
    def install_command(self) -> str | None:
        if self.extra:
            return f'pip install "{DIST_NAME}[{self.extra}]"'
        if self.distribution and self.distribution != DIST_NAME:
            return f"pip install {self.distribution}"
        return None


def _entry_point_sinks() -> dict[str, tuple[str, str | None, str | None]]:
    """Sinks registered by installed packages: name -> (class path, extra, distribution)."""
    found: dict[str, tuple[str, str | None, str | None]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else None
        extra = ep.extras[0] if ep.extras else None
        found[ep.name] = (ep.value.split("[")[0].strip(), extra, dist)
    return found


def _table() -> dict[str, tuple[str, str | None, str | None]]:
    table: dict[str, tuple[str, str | None, str | None]] = {
        name: (path, extra, DIST_NAME) for name, (path, extra) in known_sinks.items()
    }
    for name, (path, extra, dist) in _entry_point_sinks().items():
        if name in table and dist == DIST_NAME:
            continue  # our own entry points: the table above also knows the extra
        table[name] = (path, extra, dist)
    return table


def _import_class(class_path: str) -> type:
    module_name, _, attr = class_path.replace(":", ".").rpartition(".")
    if ":" in class_path:
        module_name, attr = class_path.split(":", 1)
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _load(name: str, path: str, extra: str | None, dist: str | None) -> type[logging.Handler]:
    try:
        cls = _import_class(path)
    except ImportError as exc:
        if extra:
            raise MissingExtraError(
                f"Sink {name!r} needs a client library that is not installed "
                f"({exc.name or exc}). Install it with: pip install \"{DIST_NAME}[{extra}]\""
            ) from exc
        hint = f" Reinstall the package that provides it: pip install {dist}" if dist else ""
        raise MissingExtraError(f"Sink {name!r} ({path}) cannot be imported: {exc}.{hint}") from exc
    if not (isinstance(cls, type) and issubclass(cls, logging.Handler)):
        raise UnknownSinkError(f"Sink {name!r} ({path}) is not a logging.Handler subclass.")
    return cls


def available_sinks() -> list[SinkInfo]:
    """Every known sink, installed or not, with the extra it needs and whether it imports now."""
    rows = []
    for name, (path, extra, dist) in sorted(_table().items()):
        try:
            _load(name, path, extra, dist)
            rows.append(SinkInfo(name, path, extra, True, None, dist))
        except Exception as exc:  # a broken plugin must not break the listing
            rows.append(SinkInfo(name, path, extra, False, str(exc), dist))
    return rows


def sink_class(name: str) -> type[logging.Handler]:
    """The handler class registered as ``name`` (or a ``module:Class`` / dotted class path)."""
    table = _table()
    if name in table:
        return _load(name, *table[name])
    if ":" in name or "." in name:
        try:
            return _load(name, name, None, None)
        except (MissingExtraError, AttributeError, ValueError) as exc:
            raise UnknownSinkError(f"Sink class {name!r} cannot be loaded: {exc}") from None
    known = sorted(table)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownSinkError(
        f"No sink named {name!r}.{hint} Known sinks: {', '.join(known)}. "
        "Run `telemetry-sinks sinks` to see which are installed."
    )


def get_sink(name: str, **options: Any) -> logging.Handler:
    """A configured sink: ``get_sink("rotating_file", filename="events.jsonl", max_bytes=10**6)``.

    Also works as a ``logging.config.dictConfig`` factory:
    ``{"()": "telemetry_sinks.get_sink", "name": "stream", "stream": "stdout"}``.
    """
    cls = sink_class(name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise SinkConfigError(f"Sink {name!r} ({cls.__name__}): {exc}") from None


def load_sinks(names: list[str] | tuple[str, ...], config: Any = None) -> list[logging.Handler]:
    """Build the sinks named in ``names``, each configured from the traitlets ``config``.

    For hosts whose own event logger takes only handler instances, e.g. in
    ``jupyter_server_config.py``:
    ``c.EventLogger.handlers = load_sinks(["rotating_file"], config=c)``.
    """
    handlers: list[logging.Handler] = []
    for name in names:
        cls = sink_class(name)
        if config is not None and issubclass(cls, Sink):
            handlers.append(cls(config=config))
        else:
            handlers.append(cls())
    return handlers
