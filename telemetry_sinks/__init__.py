"""telemetry-sinks: schema-validated, privacy-aware event logging with pluggable sinks."""

from .errors import (
    EventValidationError,
    MissingExtraError,
    SchemaError,
    SinkConfigError,
    UnknownSchemaError,
    UnknownSinkError,
)
from .sinks import FileSink, RotatingFileSink, Sink, StreamSink, TimedRotatingFileSink

__version__ = "0.1.0"

__all__ = [
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
