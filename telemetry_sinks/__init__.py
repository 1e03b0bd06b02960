"""telemetry-sinks: schema-validated, privacy-aware event logging with pluggable sinks."""

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
from .registry import available_sinks, get_sink, load_sinks, sink_class
from .sinks import FileSink, RotatingFileSink, Sink, StreamSink, TimedRotatingFileSink

__version__ = "0.1.0"

# Sinks whose client library is an extra: imported on first use, so that
# ``import telemetry_sinks`` works without them.
_LAZY_SINKS = {
    "ArchiveSink": "telemetry_sinks.sinks.archive",
    "KafkaSink": "telemetry_sinks.sinks.kafka",
    "HTTPSink": "telemetry_sinks.sinks.http",
    "CloudWatchSink": "telemetry_sinks.sinks.cloudwatch",
    "StackdriverSink": "telemetry_sinks.sinks.stackdriver",
    "ElasticsearchSink": "telemetry_sinks.sinks.elasticsearch",
    "OpenSearchSink": "telemetry_sinks.sinks.opensearch",
}


def __getattr__(name: str):
    module = _LAZY_SINKS.get(name)
    if module is None:
        raise AttributeError(f"module 'telemetry_sinks' has no attribute {name!r}")
    from .registry import sink_class

    for sink_name, (path, _extra) in _known().items():
        if path == f"{module}:{name}":
            return sink_class(sink_name)
    raise AttributeError(name)


def _known():
    from .registry import known_sinks

    return known_sinks

__all__ = [
    "EventLog",
    "EventRouter",
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
    "ArchiveSink",
    "KafkaSink",
    "HTTPSink",
    "CloudWatchSink",
    "StackdriverSink",
    "ElasticsearchSink",
    "OpenSearchSink",
]
