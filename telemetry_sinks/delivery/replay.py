"""Dead-letter replay: send rejected events again once their cause is fixed.

A dead letter is an event a backend refused for good (a wrong token, a mapping
conflict, a missing permission).  Once the operator has fixed the cause,
:func:`replay_dead_letters` sends each line's payload again through the sink of
the same name, under its original event id (so receivers still see duplicates
as duplicates).  Nothing is lost on the way:

* the file is first renamed to ``<file>.replaying-<pid>``; events refused again
  are written by the sink to its dead-letter file as usual;
* lines that cannot be sent now (not a dead letter, no sink of that name in the
  configuration, a schema no longer allowed, a sink without a dead-letter file,
  a backend that does not answer) are written back to ``<file>`` unchanged;
* events are resent in steps that fit the sink's queue, so none is dropped;
* the renamed file is deleted only at the end; if a replay is interrupted, it
  stays and names itself in the next run's error.
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..capsule import encode
from ..fileio import write_all
from .deadletter import read_dead_letters
from .options import DeliveryOptions


class ReplayTarget(Protocol):
    """What a replay needs of a sink (every network sink is one)."""

    @property
    def delivery_options(self) -> DeliveryOptions: ...

    @property
    def dead_letter_path(self) -> str | None: ...

    def resend(self, data: str, event_id: str) -> None: ...

    def flush(self, timeout: float | None = None) -> bool: ...

    def close(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class ReplayError(Exception):
    """The dead-letter file cannot be replayed (missing, or an interrupted replay is pending)."""


@dataclass
class ReplayReport:
    """What a replay did."""

    file: str
    resent: Counter[str] = field(default_factory=Counter)  # sink name -> events resent
    delivered: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    pending: int = 0  # in the sink's spool, to be delivered when its backend answers
    kept: list[tuple[int, str]] = field(default_factory=list)  # (line, why) written back

    @property
    def complete(self) -> bool:
        """True when every line was resent and acknowledged."""
        return not self.kept and self.delivered == sum(self.resent.values())


def replay_dead_letters(
    path: str,
    sinks: Mapping[str, ReplayTarget],
    *,
    allowed: Callable[[Any], bool] | None = None,
    timeout: float = 60.0,
) -> ReplayReport:
    """Resend the dead letters in ``path`` through ``sinks`` (by dead letter ``sink`` name).

    ``allowed(payload)`` may refuse payloads the current policy no longer records.
    Each sink used is flushed (``timeout`` seconds at most per step) and closed at the
    end: what its backend did not acknowledge by then is spooled or dead-lettered again.
    """
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise ReplayError(f"no dead-letter file {path!r}")
    pending = sorted(glob.glob(glob.escape(path) + ".replaying-*"))
    if pending:
        raise ReplayError(
            f"an earlier replay of {path!r} was interrupted; its events are in {pending[0]!r}: "
            "replay that file first (it is a dead-letter file too)"
        )
    working = f"{path}.replaying-{os.getpid()}"
    os.rename(path, working)
    report = ReplayReport(file=path)
    before: dict[str, dict[str, Any]] = {}
    stalled: set[str] = set()
    keep_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:

        def keep(number: int, line: str, why: str) -> None:
            write_all(keep_fd, line.encode("utf-8", errors="surrogateescape"))
            report.kept.append((number, why))

        for number, record, line in read_dead_letters(working):
            if record is None:
                keep(number, line, "not a dead-letter line")
                continue
            name = str(record["sink"])
            sink = sinks.get(name)
            if sink is None:
                keep(number, line, f"no sink {name!r} in the configuration")
                continue
            if sink.dead_letter_path is None:
                keep(number, line, f"sink {name!r} has no dead_letter_file to keep refusals in")
                continue
            if name in stalled:
                keep(number, line, f"sink {name!r}: the backend did not answer within {timeout:g} s")
                continue
            payload = record["payload"]
            if allowed is not None and not allowed(payload):
                schema = payload.get("__schema__") if isinstance(payload, dict) else None
                keep(number, line, f"schema {schema!r} is not in allowed_schemas now")
                continue
            if name not in before:
                before[name] = sink.stats()
            sink.resend(encode(payload), str(record["event_id"]))
            report.resent[name] += 1
            # Never more than half the queue in flight: nothing is dropped for lack of room.
            step = max(1, sink.delivery_options.max_queue_events // 2)
            if report.resent[name] % step == 0 and not sink.flush(timeout):
                stalled.add(name)
        for name in before:
            sinks[name].flush(timeout)
            sinks[name].close()
            after = sinks[name].stats()
            report.delivered += after["sent"] - before[name]["sent"]
            report.dead_lettered += after["dead_lettered"] - before[name]["dead_lettered"]
            report.dropped += after["dropped"] - before[name]["dropped"]
        report.pending = (
            sum(report.resent.values()) - report.delivered - report.dead_lettered - report.dropped
        )
    finally:
        os.close(keep_fd)
    os.unlink(working)
    if not report.kept and os.path.getsize(path) == 0:
        os.unlink(path)  # nothing was refused again and nothing kept
    return report


__all__ = ["ReplayError", "ReplayReport", "ReplayTarget", "replay_dead_letters"]
