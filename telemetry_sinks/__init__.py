"""telemetry-sinks: schema-validated, privacy-aware event logging with pluggable sinks."""

from .delivery.shutdown import install_signal_handlers
from .errors import (
    EventValidationError,
    MissingExtraError,
    PolicyError,
    SchemaError,
    SinkConfigError,
    UnknownSchemaError,
    UnknownSinkError,
)
from .eventlog import EventLog, EventRouter
from .instrumentation import Instrumented, instrument, record
from .registry import available_sinks, get_sink, known_sinks, load_sinks, sink_class
from .sinks import FileSink, RotatingFileSink, Sink, StreamSink, TimedRotatingFileSink

__version__ = "0.1.0"


def __getattr__(name: str) -> type:
    """The sink classes of the registry's table not imported above (``telemetry_sinks.KafkaSink``),
    imported on first use, so that ``import telemetry_sinks`` works without their client libraries."""
    from .registry import sink_name_of_class

    sink_name = sink_name_of_class(name)
    if sink_name is None:
        raise AttributeError(f"module 'telemetry_sinks' has no attribute {name!r}")
    return sink_class(sink_name)


__all__ = [
    "EventLog",
    "install_signal_handlers",
    "EventRouter",
    "Instrumented",
    "instrument",
    "record",
    "Instrumented",
    "instrument",
    "record",
    "available_sinks",
    "get_sink",
    "load_sinks",
    "sink_class",
    "EventValidationError",
    "MissingExtraError",
    "PolicyError",
    "SchemaError",
    "SinkConfigError",
    "UnknownSchemaError",
    "UnknownSinkError",
    "Sink",
    "FileSink",
    "RotatingFileSink",
    "TimedRotatingFileSink",
    "StreamSink",
]
#: Every sink class of the registry's table is a name of this package (the lazy ones too).
__all__ += sorted({path.rpartition(":")[2] for path, _extra in known_sinks.values()} - set(__all__))


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
