"""``DeliveryOptions``: how the delivery engine batches, bounds, spools, retries and closes.

A plain frozen dataclass, checked when it is built, so that the engine can be
used (and tested) without traitlets.  Each field is also an option of every
network sink (``c.HTTPSink.max_batch_events = 100``): the traitlets front end
(:class:`telemetry_sinks.sinks.network.NetworkSink`) declares one trait per field,
with the field's default and help text, and builds this object from them.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import SinkConfigError

_MiB = 1024 * 1024

#: The values of ``overflow``.
OVERFLOW_POLICIES = ("spill", "drop_newest", "drop_oldest", "block")


class OptionError(SinkConfigError):
    """A delivery option has a value the engine cannot work with."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"delivery option {option!r} {problem}")
        self.option = option
        self.problem = problem


def _option(default: Any, help: str, check: str | None = None, **extra: Any) -> Any:
    """A field with its help text and the check its value must pass (see ``_CHECKS``)."""
    return field(default=default, metadata={"help": help, "check": check, **extra})


@dataclass(frozen=True)
class DeliveryOptions:
    """The options of one delivery engine.  Every field has a working default."""

    # --- batching
    max_batch_events: int = _option(500, "Send a batch when this many events are queued.", "positive")
    max_batch_bytes: int = _option(
        1 * _MiB, "Send a batch when its events reach this many bytes of JSON.", "positive"
    )
    flush_interval: float = _option(
        1.0,
        "Send queued events at the latest this many seconds after the oldest arrived.",
        "non_negative",
    )

    # --- memory bounds
    max_queue_events: int = _option(
        10_000, "Events kept in memory before `overflow` applies.", "positive"
    )
    max_queue_bytes: int = _option(
        16 * _MiB,
        "Memory the queued events may take before `overflow` applies: their JSON plus "
        "384 bytes per event for the Python objects around it.",
        "positive",
    )
    overflow: str | None = _option(
        None,
        "What to do when an event cannot be kept. Without a spool_dir, when the queue is "
        "full: 'drop_newest' (the default), 'drop_oldest', or 'block' the caller up to "
        "`block_timeout`, then drop. With a spool_dir the queue never drops (its overflow "
        "waits on disk) and the policy applies when the spool is full: 'spill' (the "
        "default) and 'drop_newest' refuse the new event (it is held in memory if there is "
        "room, else dropped), 'drop_oldest' deletes the oldest segments, 'block' waits up "
        "to `block_timeout` for room.",
        "overflow",
        choices=OVERFLOW_POLICIES,
    )
    block_timeout: float = _option(
        1.0,
        "With overflow='block': longest wait for room, in seconds, before dropping.",
        "non_negative",
    )

    # --- disk spool
    spool_dir: str | None = _option(
        None,
        "Directory of the disk spool, a write-ahead log: every event is written there before "
        "emit() returns, so it survives a crash or kill -9 of the process, and a process "
        "started on the same directory delivers everything after the last acknowledgement. "
        "Give each sink its own directory (processes of one application may share it). "
        "None: no spool (events wait in memory only and die with the process).",
    )
    max_spool_bytes: int = _option(256 * _MiB, "Largest size of the spool directory in bytes.", "positive")
    spool_segment_bytes: int = _option(
        1 * _MiB, "Size at which a spool segment file is closed and a new one started.", "positive"
    )
    spool_fsync: bool = _option(
        False,
        "Flush each event written to the spool to the disk (fdatasync): it then survives a "
        "power loss or a kernel crash too, not only a crash of the process (one disk flush "
        "per event: much slower).",
    )

    # --- retries and failures
    retry_initial_backoff: float = _option(
        0.5,
        "Delay in seconds before the first retry; it doubles each retry (with jitter).",
        "non_negative",
    )
    retry_max_backoff: float = _option(
        30.0, "Longest delay in seconds between two retries.", "non_negative"
    )
    max_retry_time: float = _option(
        60.0,
        "No longer used (setting it warns): events are on disk as soon as they are accepted "
        "(with a spool_dir), and a failing batch is retried until delivered either way.",
        "non_negative",
        deprecated=True,
    )
    dead_letter_file: str | None = _option(
        None,
        "JSONL file for events the backend rejects for good (one line per event with the "
        "payload, event_id, reason, time and sink). Default: <spool_dir>/dead_letters.jsonl "
        "with a spool, else none (rejected events are counted as dropped).",
    )

    # --- lifecycle and reporting
    close_timeout: float = _option(
        5.0,
        "close() and interpreter exit deliver for at most this long, the spool's backlog "
        "included; what is left stays in the spool (without one: dead-lettered). flush() "
        "without a timeout waits at most this long too.",
        "non_negative",
    )
    drop_report_interval: float = _option(
        60.0, "At most one warning per this many seconds about dropped events.", "non_negative"
    )

    def __post_init__(self) -> None:
        for option in fields(self):
            check = option.metadata["check"]
            if check is not None:
                problem = _CHECKS[check](getattr(self, option.name))
                if problem:
                    raise OptionError(option.name, problem)
        if self.overflow is not None:
            object.__setattr__(self, "overflow", self.overflow.lower())
        for option in fields(self):
            if option.metadata.get("deprecated") and getattr(self, option.name) != option.default:
                warnings.warn(
                    f"delivery option {option.name!r} is no longer used: {option.metadata['help']}",
                    DeprecationWarning,
                    stacklevel=3,
                )
        if self.overflow == "spill" and not self.spool_dir:
            raise OptionError(
                "overflow",
                "is 'spill' but no spool_dir is set: set spool_dir=... or choose drop_newest, "
                "drop_oldest or block.",
            )

    @property
    def effective_overflow(self) -> str:
        """The overflow policy in force (``overflow``, or its default)."""
        if self.overflow:
            return self.overflow
        return "spill" if self.spool_dir else "drop_newest"

    @property
    def dead_letter_path(self) -> str | None:
        """The dead-letter file in force (``dead_letter_file``, or the one in ``spool_dir``)."""
        if self.dead_letter_file is not None:
            return self.dead_letter_file
        if self.spool_dir:
            return os.path.join(self.spool_dir, "dead_letters.jsonl")
        return None


def _positive(value: Any) -> str | None:
    return None if value >= 1 else f"must be 1 or more, not {value}."


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else f"must be 0 or more, not {value}."


def _overflow(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.lower() in OVERFLOW_POLICIES):
        return None
    return f"must be one of {', '.join(OVERFLOW_POLICIES)} (or None), not {value!r}."


_CHECKS = {"positive": _positive, "non_negative": _non_negative, "overflow": _overflow}

#: The names of the delivery options, in declaration order.
OPTION_NAMES: tuple[str, ...] = tuple(option.name for option in fields(DeliveryOptions))

__all__ = ["DeliveryOptions", "OPTION_NAMES", "OVERFLOW_POLICIES", "OptionError"]
