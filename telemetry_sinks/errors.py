"""Exceptions raised by telemetry_sinks.  Each message names the thing and the fix."""

from __future__ import annotations


class SchemaError(ValueError):
    """A schema could not be registered: malformed file, bad structure, or conflict."""


class EventValidationError(ValueError):
    """An event does not match its schema; nothing was sent to any sink."""

    def __init__(self, message: str, *, schema_id: str, version: int, path: str, reason: str):
        super().__init__(message)
        self.schema_id = schema_id
        self.version = version
        self.path = path
        self.reason = reason


class UnknownSchemaError(KeyError):
    """An event names a schema id or version that is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class SinkConfigError(ValueError):
    """A sink was given an unknown, missing or ill-typed option."""


class UnknownSinkError(LookupError):
    """No sink is registered under the requested name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingExtraError(ImportError):
    """A sink's client library is not installed; the message gives the pip command."""


class PolicyError(ValueError):
    """The operator's policy cannot be applied: a bad action, or a pseudonym key that cannot be read."""
