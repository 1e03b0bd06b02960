"""telemetry-sinks: schema-validated, privacy-aware event logging with pluggable sinks."""

from .errors import (
    EventValidationError,
    MissingExtraError,
    SchemaError,
    SinkConfigError,
    UnknownSchemaError,
    UnknownSinkError,
)
from .eventlog import EventLog, EventRouter
from .registry import available_sinks, get_sink, load_sinks, sink_class
from .sinks import FileSink, RotatingFileSink, Sink, StreamSink, TimedRotatingFileSink

__version__ = "0.1.0"

__all__ = [
    "EventLog",
    "EventRouter",
    "available_sinks",
    "get_sink",
    "load_sinks",
    "sink_class",
    "EventValidationError",
    "MissingExtraError",
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
