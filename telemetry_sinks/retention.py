"""Retention of what this project stores: old files deleted, personal fields of old events removed.

Two mechanisms, both configured by the operator:

**Age of files** (``max_age`` of the ``file``, ``rotating_file``,
``timed_rotating_file`` and ``archive`` sinks, e.g. ``"90d"``).  A file sink's
files (its file and its rotated files) whose last write is older than
``max_age`` are deleted: every line is written when it arrives, so every event
in such a file is older than ``max_age``.  It is checked when the sink starts and
at each rotation.  An archive's day file is deleted once its UTC day *ended*
more than ``max_age`` ago (so every event in it is that old), at start and at
each day close; ``index.jsonl`` loses its entry.

**Retention stages** (``retention`` in a schema's policy entry, Wikimedia's
model: keep the event, remove or pseudonymize its personal fields after N
days)::

    "retention": [
        {"after": "90d", "category_actions": {"user-identifier": "pseudonymize"}},
        {"after": "1y", "category_actions": {"user-identifier": "drop"},
                        "property_actions": {"spec": "drop"}},
    ]

An archive day whose UTC day ended more than ``after`` ago gets the stage's
actions (every stage due, in order of age) applied to that schema's events, by
the same compiled plans as the emit path (:mod:`.policy`); categories a stage
does not name are left as they are.  The schema and version of a line come from
``__schema__``/``__schema_version__`` (capsules) or ``schema``/``version``
(mybinder.org's archive); category actions need the schema registered, property
actions do not.  A stored value an action cannot read (an old line with a
malformed address) is dropped.

Rewriting a day file is atomic: the new file is written beside it, flushed to
disk (``fsync``), renamed over the old one and the directory synced, so a crash
leaves the old file or the new one, never a mix.  Lines that do not change are
kept byte for byte; an unreadable line is kept as it is; the count of events
never changes.  ``index.jsonl`` is then rewritten the same way, and
``retention.json`` records which stages each day went through, so a day is
rewritten once per stage (and again only when the policy changes).  Every action
gives the same result applied twice, so a purge interrupted and run again is safe.

The archive sink runs this itself at start and at each day close when its
EventLog's policy has stages; ``telemetry-sinks archive purge DIR --config
CONFIG [--dry-run]`` runs the same over an existing archive (with no sink writing
to it at the same time).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .actions import ActionError
from .capsule import encode, whole_number
from .fileio import replace_file
from .policy import RedactionPlan, apply_plan, compile_plan, parse_age, parse_entry, schema_entries
from .pseudonym import PseudonymKey

__all__ = [
    "STATE_NAME",
    "DayChange",
    "PurgeReport",
    "RetentionRules",
    "expire_files",
    "parse_age",
    "purge_archive",
]

STATE_NAME = "retention.json"
_UTC = _dt.timezone.utc
_DAY = 86400.0
_log = logging.getLogger("telemetry_sinks.retention")


# --------------------------------------------------------------------------- files


def expire_files(paths: Iterable[str], max_age: float, now: float | None = None) -> list[str]:
    """Delete each of ``paths`` last modified more than ``max_age`` seconds before ``now``; return them."""
    limit = (now if now is not None else _now()) - max_age
    deleted = []
    for path in paths:
        try:
            if os.stat(path).st_mtime < limit:
                os.remove(path)
                deleted.append(path)
        except FileNotFoundError:
            continue
    if deleted:
        _log.info("deleted %d file(s) older than %s: %s", len(deleted), _age_text(max_age),
                  ", ".join(os.path.basename(p) for p in deleted))
    return deleted


def _now() -> float:
    return _dt.datetime.now(_UTC).timestamp()


def _age_text(seconds: float) -> str:
    days = seconds / _DAY
    return f"{days:g} days" if days >= 1 else f"{seconds / 3600:g} hours"


# --------------------------------------------------------------------------- the rules


class RetentionRules:
    """The retention stages of a policy, compiled per schema version as they are needed.

    ``schemas()`` returns the registered schemas by ``(id, version)`` (an EventLog's
    ``schemas``); it is called when a purge runs, so schemas registered later count.
    """

    def __init__(
        self,
        allowed_schemas: Any,
        schemas: Callable[[], Mapping[tuple[str, int], Any]] = dict,
        key: PseudonymKey | None = None,
    ) -> None:
        self.stages: dict[str, tuple] = {}
        for sid, entry in schema_entries(allowed_schemas).items():
            stages = parse_entry(sid, entry).retention
            if stages:
                self.stages[sid] = stages
        self._schemas = schemas
        self.key = key
        self._plans: dict[tuple[str, Any, int], RedactionPlan | None] = {}
        self._registered: Mapping[tuple[str, int], Any] = {}
        self._fingerprints: dict[tuple, str] = {}

    @classmethod
    def of(cls, eventlog: Any) -> RetentionRules | None:
        """The rules of an EventLog's policy, or None when it has no retention stage."""
        rules = cls(eventlog.allowed_schemas, lambda: eventlog.schemas, eventlog.pseudonym_key)
        return rules if rules.stages else None

    def __bool__(self) -> bool:
        return bool(self.stages)

    def refresh(self) -> None:
        """Look the registered schemas up again (before a purge)."""
        registered = self._schemas()
        if set(registered) != set(self._registered):
            self._plans.clear()
            self._fingerprints.clear()
        self._registered = registered

    def due(self, age: float) -> dict[str, list[int]]:
        """``{schema_id: [indexes of the stages due]}`` for events ``age`` seconds old."""
        out = {}
        for sid, stages in self.stages.items():
            indexes = [i for i, stage in enumerate(stages) if stage.after <= age]
            if indexes:
                out[sid] = indexes
        return out

    def fingerprint(self, age: float) -> str | None:
        """A digest of what applies at ``age`` (None: nothing), to know whether a day is done."""
        due = self.due(age)
        if not due:
            return None
        cache_key = tuple((sid, tuple(indexes)) for sid, indexes in sorted(due.items()))
        if cache_key not in self._fingerprints:
            state = {sid: {"stages": [_stage_json(self.stages[sid][i]) for i in indexes],
                           "versions": sorted(v for s, v in self._registered if s == sid)}
                     for sid, indexes in cache_key}
            text = json.dumps(state, sort_keys=True, default=str)
            self._fingerprints[cache_key] = hashlib.sha256(text.encode()).hexdigest()[:16]
        return self._fingerprints[cache_key]

    def plans(self, schema_id: Any, version: Any, age: float) -> list[RedactionPlan]:
        """The plans of the stages due at ``age`` for events of one schema version, oldest stage first."""
        stages = self.stages.get(schema_id) if isinstance(schema_id, str) else None
        if not stages:
            return []
        number = whole_number(version)
        out = []
        for index, stage in enumerate(stages):
            if stage.after > age:
                break
            cache_key = (schema_id, number, index)
            if cache_key not in self._plans:
                schema = self._registered.get((schema_id, number)) if number is not None else None
                if schema is None and stage.policy.category_actions:
                    _log.warning("retention of schema %r: version %r is not registered; its category "
                                 "actions cannot apply (property actions do)", schema_id, version)
                label = f"retention of schema {schema_id!r} version {version!r} after {stage.label}"
                self._plans[cache_key] = compile_plan(schema, stage.policy, self.key, label)
            plan = self._plans[cache_key]
            if plan is not None:
                out.append(plan)
        return out


def _stage_json(stage: Any) -> list:
    policy = stage.policy
    return [stage.after, [[n, a.as_json()] for n, a in policy.category_actions],
            [[n, a.as_json()] for n, a in policy.property_actions]]


# --------------------------------------------------------------------------- the archive


@dataclass
class DayChange:
    """What a purge did (or, in a dry run, would do) to one day of an archive."""

    date: str
    name: str
    action: str  # "delete", "rewrite" or "keep"
    events: int = 0
    changed: int = 0
    unreadable: int = 0
    fields: Counter = field(default_factory=Counter)  # (path, "removed" | "replaced") -> events

    def summary(self) -> str:
        if self.action == "delete":
            return f"{self.name}: deleted ({self.events} events)"
        parts = ", ".join(f"{path} {what} in {n}" for (path, what), n in sorted(self.fields.items()))
        text = f"{self.name}: {self.changed} of {self.events} events changed"
        if parts:
            text += f" ({parts})"
        if self.unreadable:
            text += f"; {self.unreadable} lines are not JSON objects and are kept as they are"
        return text


@dataclass
class PurgeReport:
    """Every day a purge deleted or rewrote (``keep`` days are not listed)."""

    directory: str
    dry_run: bool
    changes: list[DayChange] = field(default_factory=list)

    @property
    def deleted(self) -> list[DayChange]:
        return [c for c in self.changes if c.action == "delete"]

    @property
    def rewritten(self) -> list[DayChange]:
        return [c for c in self.changes if c.action == "rewrite"]


def _day_end(date: str) -> float:
    """When the UTC day ``date`` ended (infinitely late for a date that cannot be read)."""
    try:
        day = _dt.datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=_UTC)
    except ValueError:
        return float("inf")
    return day.timestamp() + _DAY


def read_state(directory: str) -> dict[str, str]:
    """``{date: "<rules digest>:<file mtime ns>"}`` of the days a purge has processed (``retention.json``).

    A day whose file changed since (late events, a sort, a compression) is processed again.
    """
    try:
        with open(os.path.join(directory, STATE_NAME), encoding="utf-8") as stream:
            data = json.load(stream)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        _log.warning("%s is unreadable (%s): every day due is processed again", STATE_NAME, exc)
        return {}
    days = data.get("days") if isinstance(data, dict) else None
    return {k: v for k, v in days.items() if isinstance(v, str)} if isinstance(days, dict) else {}


def _write_state(directory: str, state: dict[str, str]) -> None:
    text = json.dumps({"version": 1, "days": dict(sorted(state.items()))}, indent=0)
    replace_file(os.path.join(directory, STATE_NAME), [text.encode() + b"\n"])


def _remove_leftovers(directory: str) -> None:
    """Remove the temporary files a rewrite killed before its rename left (one writer per archive)."""
    from .archive_index import DAY_FILE, INDEX_NAME

    for name in os.listdir(directory):
        if name.endswith(".tmp") and (DAY_FILE.match(name[:-4]) or name[:-4] in (INDEX_NAME, STATE_NAME)):
            try:
                os.remove(os.path.join(directory, name))
            except FileNotFoundError:
                pass


def _without(data: Any, path: tuple) -> Any:
    """A copy of ``data`` without the value at ``path`` (an array item becomes null, keeping its place)."""
    if not path:
        return data
    head, rest = path[0], path[1:]
    container: Any
    if isinstance(data, Mapping) and head in data:
        container = dict(data)
    elif isinstance(data, list) and isinstance(head, int) and 0 <= head < len(data):
        container = list(data)
    else:
        return data
    if rest:
        container[head] = _without(data[head], rest)
    elif isinstance(container, dict):
        del container[head]
    else:
        container[head] = None
    return container


def _changed_paths(old: Any, new: Any, prefix: str, found: set[tuple[str, str]]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for name, value in old.items():
            if name not in new:
                found.add((prefix + name, "removed"))
            elif new[name] is not value and new[name] != value:
                _changed_paths(value, new[name], f"{prefix}{name}.", found)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and all(
        isinstance(o, Mapping) and isinstance(n, Mapping) for o, n in zip(old, new)
    ):
        for o, n in zip(old, new):
            _changed_paths(o, n, prefix[:-1] + "[].", found)
    else:
        found.add((prefix[:-1], "replaced"))


def _apply_line(obj: Any, plans: list[RedactionPlan]) -> tuple[Any, int]:
    """``obj`` with ``plans`` applied; a stored value an action cannot read is dropped (counted)."""
    unreadable = 0
    for plan in plans:
        while True:
            try:
                obj = apply_plan(obj, plan)
                break
            except ActionError as exc:
                obj = _without(obj, exc.path)
                unreadable += 1
    return obj, unreadable


def _rewrite_day(path: str, rules: RetentionRules, age: float, change: DayChange) -> Iterator[bytes]:
    """The lines of a day file with the stages due applied (a generator: the file is read as written)."""
    from .archive_index import iter_lines

    for line in iter_lines(path):
        if not line.strip():
            continue
        change.events += 1
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            change.unreadable += 1
            yield line if line.endswith(b"\n") else line + b"\n"
            continue
        plans = rules.plans(obj.get("__schema__", obj.get("schema")),
                            obj.get("__schema_version__", obj.get("version")), age)
        new, dropped = _apply_line(obj, plans) if plans else (obj, 0)
        if new is obj:
            yield line if line.endswith(b"\n") else line + b"\n"
            continue
        change.changed += 1
        found: set[tuple[str, str]] = set()
        _changed_paths(obj, new, "", found)
        change.fields.update(found)
        if dropped:
            _log.warning("%s: %d stored value(s) the retention actions cannot read were dropped",
                         os.path.basename(path), dropped)
        yield (encode(new) + "\n").encode("utf-8")


def purge_archive(
    directory: str | os.PathLike,
    rules: RetentionRules | None = None,
    max_age: float | None = None,
    now: _dt.datetime | float | None = None,
    dry_run: bool = False,
    skip_days: Iterable[str] = (),
) -> PurgeReport:
    """Delete the day files older than ``max_age`` and apply the retention stages due to the others.

    ``skip_days`` are not touched (the open day of a sink).  With ``dry_run``
    nothing is written; the report says what would change.
    """
    from .archive_index import IndexEntry, count_lines, day_files, read_index, write_index

    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(2, f"no such archive directory: {directory}")
    now_ts = now.timestamp() if isinstance(now, _dt.datetime) else (now if now is not None else _now())
    report = PurgeReport(directory, dry_run)
    if rules is not None:
        rules.refresh()
    if not dry_run:
        _remove_leftovers(directory)
    state = read_state(directory)
    index = read_index(directory)
    skipped = set(skip_days)
    index_changed = state_changed = False
    for date, name in day_files(directory).items():
        if date in skipped:
            continue
        path = os.path.join(directory, name)
        age = now_ts - _day_end(date)
        if max_age is not None and age >= max_age:
            entry = index.get(date)
            change = DayChange(date, name, "delete", entry.count if entry else count_lines(path))
            report.changes.append(change)
            if not dry_run:
                for form in (os.path.join(directory, f"events-{date}.jsonl"),
                             os.path.join(directory, f"events-{date}.jsonl.gz")):
                    if os.path.exists(form):
                        os.remove(form)
                index.pop(date, None)
                state.pop(date, None)
                index_changed = state_changed = True
            continue
        fingerprint = rules.fingerprint(age) if rules else None
        if fingerprint is None or state.get(date) == f"{fingerprint}:{os.stat(path).st_mtime_ns}":
            continue
        assert rules is not None  # a fingerprint comes from rules
        change = DayChange(date, name, "keep")
        lines = _rewrite_day(path, rules, age, change)
        if dry_run:
            for _ in lines:
                pass
        else:
            kept: list[bytes] = list(lines)  # one day in memory, as the sink's sort does
            if change.changed:
                replace_file(path, kept, gz=name.endswith(".gz"))
            index[date] = IndexEntry(name, date, len(kept))
            state[date] = f"{fingerprint}:{os.stat(path).st_mtime_ns}"
            index_changed = state_changed = True
        if change.changed:
            change.action = "rewrite"
            report.changes.append(change)
    if max_age is not None and not dry_run:
        for date in [d for d in index if d not in skipped and now_ts - _day_end(d) >= max_age]:
            del index[date]  # an entry whose file is gone and whose day is past max_age
            index_changed = True
    if not dry_run:
        if index_changed:
            write_index(directory, index)
        if state_changed:
            _write_state(directory, state)
    for change in report.changes:
        _log.info("%s%s", "(dry run) " if dry_run else "", change.summary())
    return report
