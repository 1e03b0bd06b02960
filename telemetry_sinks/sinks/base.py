"""The base class of every sink: a ``logging.Handler`` that is also configurable.

A sink takes any ``LogRecord`` and writes its payload (see
:func:`telemetry_sinks.capsule.record_payload`).  Being a traitlets
``Configurable`` lets operators set its options as ``c.<SinkClass>.<option>``
in a config file; being a ``logging.Handler`` lets it sit in ``dictConfig``,
jupyter_events' ``EventLogger`` and jupyter_telemetry's ``EventLog``.
"""

from __future__ import annotations

import difflib
import logging
import os
from typing import Any, ClassVar

from traitlets import TraitError
from traitlets.config import Configurable

from ..capsule import encode, record_payload
from ..errors import SinkConfigError
from ..masking import mask_url_password

_RESERVED = {"config", "parent", "log"}


class Sink(logging.Handler, Configurable):
    """A log handler whose options are traits of the same name.

    Subclasses declare their options as traits tagged ``config=True``, list the
    ones that must be given in ``required_options``, and implement
    :meth:`write_payload`.  Options whose trait is tagged ``secret=True`` never
    appear in ``repr()`` or in error messages.
    """

    #: The registry name of this sink, e.g. ``"rotating_file"``.
    sink_name: ClassVar[str] = ""
    #: Options that must be set (by keyword or by config) for the sink to work.
    required_options: ClassVar[tuple[str, ...]] = ()
    #: Options naming a file or a directory that only one process may write, with their kind
    #: ("file" or "directory"): ``telemetry-sinks serve --processes N`` gives each process its
    #: own, in a sub-directory ``process-<i>`` of the configured directory (or of the file's).
    per_process_options: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        *,
        config: Any = None,
        parent: Any = None,
        level: int | str = logging.NOTSET,
        **options: Any,
    ) -> None:
        logging.Handler.__init__(self, level)
        self._check_option_names(options)
        kwargs: dict[str, Any] = dict(options)
        if config is not None:
            kwargs["config"] = config
        if parent is not None:
            kwargs["parent"] = parent
        try:
            Configurable.__init__(self, **kwargs)
        except TraitError as exc:
            raise SinkConfigError(self._describe_trait_error(exc)) from None
        missing = [name for name in self.required_options if getattr(self, name) in (None, "")]
        if missing:
            cls = type(self).__name__
            raise SinkConfigError(
                f"{cls} needs option {missing[0]!r}: pass {missing[0]}=... or set "
                f"c.{cls}.{missing[0]} in the config file."
            )

    # ------------------------------------------------------------------ options

    @classmethod
    def option_names(cls) -> list[str]:
        """The names of this sink's configurable options."""
        return sorted(n for n in cls.class_trait_names(config=True) if n not in _RESERVED)

    @classmethod
    def _check_option_names(cls, options: dict[str, Any]) -> None:
        known = cls.option_names()
        for name in options:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise SinkConfigError(
                    f"{cls.__name__} has no option {name!r}.{hint} "
                    f"Its options are: {', '.join(known)}."
                )

    def _describe_trait_error(self, exc: TraitError) -> str:
        cls = type(self).__name__
        text = str(exc)
        for name in self.option_names():
            trait = self.class_traits()[name]
            if f"'{name}' trait" in text:
                if trait.metadata.get("secret"):
                    return f"{cls} option {name!r} has the wrong type (value hidden: secret)."
                return f"{cls} option {name!r}: {text}"
        return f"{cls}: {text}"

    def __repr__(self) -> str:
        """The options that differ from their defaults; secret values shown as ``***``."""
        shown = []
        traits = self.class_traits()
        for name in self.option_names():
            trait = traits[name]
            value = getattr(self, name, None)
            if value == trait.default():
                continue
            if trait.metadata.get("secret"):
                value = "***"
            elif isinstance(value, str):
                value = mask_url_password(value)
            shown.append(f"{name}={value!r}")
        return f"<{type(self).__name__} {' '.join(shown)}>".replace(" >", ">")

    # ------------------------------------------------------------------ writing

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_payload(record_payload(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def handle_capsule(self, capsule: dict[str, Any]) -> None:
        """Fast path used by EventLog: write a capsule without building a LogRecord.

        Events are INFO records: a sink whose level is above INFO skips them, and a
        sink with filters goes through the ordinary ``handle()`` so they apply.
        """
        if self.level > logging.INFO:
            return  # as a Logger would: events are recorded at INFO
        if self.filters:
            record = logging.LogRecord(
                "telemetry_sinks.eventlog", logging.INFO, __file__, 0, capsule, None, None
            )
            self.handle(record)
            return
        with self.lock:  # type: ignore[union-attr]  # Handler.lock is None only before createLock(), run by __init__
            try:
                self.write_payload(capsule)
            except Exception:
                record = logging.makeLogRecord({"msg": capsule, "levelno": logging.INFO})
                self.handleError(record)

    def write_payload(self, payload: dict[str, Any]) -> None:
        """Write one payload.  Called with the handler's lock held."""
        raise NotImplementedError

    @staticmethod
    def encode(payload: Any) -> str:
        """The JSON line for ``payload`` (the module-wide encoding rule)."""
        return encode(payload)


class DirectorySink(Sink):
    """A sink that writes a layout of files under one directory, its ``directory`` option.

    The directory may be given first, positionally, as a string or a path object; it is
    made absolute (``~`` expanded) once, so that a later change of working directory does
    not move the files.  Only one process writes a directory (``per_process_options``).
    Subclasses declare the ``directory`` trait with their own help and destination label.
    """

    required_options: ClassVar[tuple[str, ...]] = ("directory",)
    per_process_options: ClassVar[dict[str, str]] = {"directory": "directory"}
    directory: str

    def __init__(self, directory: str | os.PathLike[str] | None = None, **options: Any) -> None:
        if directory is not None:
            options["directory"] = os.fspath(directory)
        super().__init__(**options)
        self.directory = os.path.abspath(os.path.expanduser(self.directory))
