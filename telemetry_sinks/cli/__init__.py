"""The ``telemetry-sinks`` command line (``main`` is the console script's entry point)."""

from .common import EXIT_CODES, EXIT_INVALID, EXIT_OK, EXIT_USAGE
from .parser import build_parser, main

__all__ = ["EXIT_CODES", "EXIT_INVALID", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]
