"""Where events go: each sink's name, class and destination, never a secret.

A sink declares which of its options name where it writes by tagging their traits
``destination=(label, kind)``: ``label`` is what the page calls it ("file",
"topic", ...), ``kind`` how its value is shown: "path" (made absolute), "url"
(reduced to ``scheme://host:port``), "hosts" (``host:port`` items) or "text".
Only those options are ever shown, and never one tagged ``secret``.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from traitlets import TraitType


@dataclass
class SinkDescription:
    """A sink: its registry name, class and non-secret destination ``[(label, value), ...]``."""

    name: str
    kind: str
    destinations: list[tuple[str, str]] = field(default_factory=list)
    kept_for: str = ""  # "deleted 90 days after their newest event" (its max_age), or ""

    @property
    def destination_text(self) -> str:
        return "; ".join(f"{label} {value}" for label, value in self.destinations) or "-"


def destination_options(cls: type) -> list[tuple[str, str, str]]:
    """``(option, label, kind)`` for each option of ``cls`` tagged ``destination``, in the order
    the classes declare them (base classes first); never a secret option."""
    traits = cls.class_traits() if hasattr(cls, "class_traits") else {}
    found: list[tuple[str, str, str]] = []
    for klass in reversed(cls.__mro__):
        for option, value in vars(klass).items():
            trait = traits.get(option)
            if not isinstance(value, TraitType) or trait is None or any(o == option for o, _, _ in found):
                continue
            where = trait.metadata.get("destination")
            if where and trait.metadata.get("config") and not trait.metadata.get("secret"):
                label, kind = where
                found.append((option, label, kind))
    return found


def _url_host(value: str) -> str:
    """``scheme://host:port`` of a URL, without user, password, path or query."""
    value = value.strip()
    if "://" not in value:
        return _host_item(value)
    parts = urlsplit(value)
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError:
        host, port = parts.hostname or "", None
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _host_item(value: str) -> str:
    """``host:port`` of ``user:password@host:port/path`` (no credentials, no path)."""
    value = value.strip()
    if "://" in value:
        return _url_host(value)
    return value.rsplit("@", 1)[-1].split("/", 1)[0]


def _show(kind: str, value: Any) -> str | None:
    if value is None or value == "" or value == [] or isinstance(value, bool):
        return None
    if kind == "path":
        return os.path.abspath(os.path.expanduser(str(value)))
    if kind in ("url", "hosts"):
        items = value.split(",") if isinstance(value, str) else list(value) if isinstance(
            value, (list, tuple)) else [value]
        shown = [_url_host(str(i)) if kind == "url" else _host_item(str(i)) for i in items]
        return ", ".join(s for s in shown if s) or None
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if hasattr(value, "write"):  # a stream object, e.g. sys.stdout
        name = getattr(value, "name", None)
        return name.strip("<>") if isinstance(name, str) else type(value).__name__
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _destinations(cls: type, get: Callable[[str], Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for option, label, kind in destination_options(cls):
        try:
            shown = _show(kind, get(option))
        except Exception:
            shown = None
        if shown:
            found.append((label, shown))
    return found


def _stdlib_destination(handler: logging.Handler) -> list[tuple[str, str]]:
    filename = getattr(handler, "baseFilename", None)
    if isinstance(filename, str):
        return [("file", filename)]
    stream = getattr(handler, "stream", None)
    name = getattr(stream, "name", None)
    if isinstance(name, str) and name.startswith("<"):
        return [("stream", name.strip("<>"))]
    return []


def sinks_from_handlers(handlers: Iterable[logging.Handler]) -> list[SinkDescription]:
    """Describe handler instances (an EventLog's ``all_handlers``)."""
    from ..sinks.base import Sink

    out = []
    for handler in handlers:
        cls = type(handler)
        name = getattr(handler, "sink_name", "") or handler.get_name() or cls.__name__
        if isinstance(handler, Sink):
            dest = _destinations(cls, functools.partial(getattr, handler))
        else:
            dest = _stdlib_destination(handler)
        out.append(SinkDescription(name, cls.__name__, dest, _kept_for(getattr(handler, "max_age", ""))))
    return out


def _kept_for(max_age: Any) -> str:
    """A sink's ``max_age`` in words, or "" when it keeps its files."""
    from .. import policy_words
    from ..policy import parse_age

    try:
        return policy_words.kept_for_words(parse_age(max_age)) if max_age else ""
    except Exception:
        return ""


def _config_value(config: Any, cls: type, option: str) -> Any:
    """``option`` of ``cls`` as traitlets would set it from ``config`` (else the trait default)."""
    from traitlets.config import Configurable
    from traitlets.config.loader import LazyConfigValue

    value: Any = None
    found = False
    for klass in reversed(cls.__mro__):  # the most specific section wins, as in traitlets
        if not (isinstance(klass, type) and issubclass(klass, Configurable)):
            continue
        section = config.get(klass.__name__) if hasattr(config, "get") else None
        if isinstance(section, Mapping) and option in section:
            value, found = section[option], True
    if isinstance(value, LazyConfigValue):
        value = value.get_value([] if option in ("hosts", "bootstrap_servers") else None)
    if found:
        return value
    trait = cls.class_traits().get(option)  # type: ignore[attr-defined]  # a Sink class
    default = trait.default() if trait is not None else None
    return None if type(default).__name__ == "Sentinel" else default


def sinks_from_config(config: Any) -> list[SinkDescription]:
    """Describe the sinks ``c.EventLog.sinks`` names, from the config alone.

    Nothing is built or opened: no file is created and no server is contacted.
    """
    from traitlets.config.loader import LazyConfigValue

    from ..registry import sink_class

    section = config.get("EventLog", {}) if hasattr(config, "get") else {}
    names = section.get("sinks", []) if isinstance(section, Mapping) else []
    if isinstance(names, LazyConfigValue):
        names = names.get_value([])
    out = []
    for name in names or []:
        cls = sink_class(name)
        dest = _destinations(cls, functools.partial(_config_value, config, cls))
        traits = cls.class_traits()  # type: ignore[attr-defined]  # a Sink class
        kept_for = _kept_for(_config_value(config, cls, "max_age")) if "max_age" in traits else ""
        out.append(SinkDescription(name, cls.__name__, dest, kept_for))
    return out


__all__ = ["SinkDescription", "destination_options", "sinks_from_config", "sinks_from_handlers"]
