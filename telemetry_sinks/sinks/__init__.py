"""Sink implementations, one module per backend.  Network sinks import their client lazily."""

from .base import Sink
from .file import FileSink, RotatingFileSink, TimedRotatingFileSink
from .stream import StreamSink

__all__ = ["Sink", "FileSink", "RotatingFileSink", "TimedRotatingFileSink", "StreamSink"]
