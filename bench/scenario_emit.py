"""Scenario 1: EventLog emit throughput (one thread) into a FileSink, against jupyter_events and the floor.

* ours: ``EventLog.emit`` with validation, policy (redaction for the larger schema),
  capsule and a ``FileSink`` with its default options (one ``write(2)`` per event);
* anchor: ``jupyter_events.EventLogger.emit`` with a stdlib ``logging.FileHandler`` on
  the same schema (``$id`` made a URI, ``version`` a string) and the same events;
* floor: ``json.dumps`` of the same capsules plus a buffered file write.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from .common import ScenarioResult, Settings, Table, Target, fmt_num, median, progress, spread, verdict
from .events import Workload, sample_capsules, workloads
from .profiling import profile

TARGET_VS_JUPYTER = 10.0
TARGET_VS_FLOOR = 1 / 3


def _ours(workload: Workload, directory: str) -> tuple[Callable[[int], None], Any]:
    from telemetry_sinks import EventLog
    from telemetry_sinks.sinks.file import FileSink

    sink = FileSink(filename=os.path.join(directory, "ours.jsonl"))
    log = EventLog(handlers=[sink], allowed_schemas=workload.allowed_schemas, load_schema_entry_points=False)
    log.register_schema(workload.schema)
    emit, schema_id, events = log.emit, workload.schema_id, workload.events
    size = len(events)

    def run(n: int) -> None:
        for i in range(n):
            emit(schema_id=schema_id, data=events[i % size])

    return run, sink


def _jupyter_events(workload: Workload, directory: str) -> tuple[Callable[[int], None], Any]:
    from jupyter_events import EventLogger

    schema = workload.jupyter_events_schema()
    logger = EventLogger()
    logger.register_event_schema(schema)
    handler = logging.FileHandler(os.path.join(directory, "jupyter_events.jsonl"))
    logger.register_handler(handler)
    emit, schema_id, events = logger.emit, schema["$id"], workload.events
    size = len(events)

    def run(n: int) -> None:
        for i in range(n):
            emit(schema_id=schema_id, data=events[i % size])

    return run, handler


def _floor(workload: Workload, directory: str) -> tuple[Callable[[int], None], Any]:
    capsules = sample_capsules(len(workload.events), workload)
    file = open(os.path.join(directory, "floor.jsonl"), "w")  # noqa: SIM115 - closed by the caller
    write, dumps = file.write, json.dumps
    size = len(capsules)

    def run(n: int) -> None:
        for i in range(n):
            write(dumps(capsules[i % size]) + "\n")
        file.flush()

    return run, file


VARIANTS = {
    "ours": ("telemetry-sinks EventLog.emit + FileSink", _ours),
    "jupyter_events": ("jupyter_events EventLogger.emit + logging.FileHandler", _jupyter_events),
    "floor": ("floor: json.dumps + buffered write", _floor),
}


def _stage_breakdown(workload: Workload, count: int) -> tuple[Table, list[tuple[str, float]], float]:
    """Per-event cost of each step of ours, each timed alone over the same events."""
    from telemetry_sinks import EventLog
    from telemetry_sinks.capsule import encode, make_capsule
    from telemetry_sinks.policy import apply_plan, compile_plan, policy_for

    log = EventLog(
        handlers=[logging.NullHandler()],
        allowed_schemas=workload.allowed_schemas,
        load_schema_entry_points=False,
    )
    schema = log.register_schema(workload.schema)
    events = workload.events
    size = len(events)
    policy = policy_for(workload.allowed_schemas, workload.schema_id)
    plan = compile_plan(schema.redaction, policy) if policy is not None else None
    redacted = [apply_plan(e, plan) if plan is not None else e for e in events]
    capsules = [make_capsule(schema.id, schema.version, e) for e in redacted]
    lines = [encode(c) + "\n" for c in capsules]

    def timed(step: Callable[[int], Any]) -> float:
        start = time.perf_counter_ns()
        for i in range(count):
            step(i % size)
        return (time.perf_counter_ns() - start) / count

    rows: list[tuple[str, float | None]] = []
    nested_events = any(isinstance(v, (dict, list, tuple)) for v in events[0].values())
    rows.append(("validate (jsonschema_rs)", timed(lambda i: schema.validate(events[i]))))
    try:
        from telemetry_sinks.schema import nesting_depth

        limit = getattr(log, "max_event_depth", 64)
        nested = nested_events
        rows.append(
            (
                "nesting-depth check (schema.nesting_depth)",
                timed(lambda i: nesting_depth(events[i], limit)) if nested else 0.0,
            )
        )
    except ImportError:
        pass
    if plan is not None:
        rows.append(("redact (policy.apply_plan)", timed(lambda i: apply_plan(events[i], plan))))
    rows.append(("make_capsule", timed(lambda i: make_capsule(schema.id, schema.version, redacted[i]))))
    rows.append(("encode (capsule.encode)", timed(lambda i: encode(capsules[i]))))
    with tempfile.TemporaryDirectory() as directory:
        fd = os.open(os.path.join(directory, "w.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            rows.append(("os.write of one line (O_APPEND)", timed(lambda i: os.write(fd, lines[i].encode()))))
        finally:
            os.close(fd)
        run, sink = _ours(workload, directory)
        run(1000)
        start = time.perf_counter_ns()
        run(count)
        whole = (time.perf_counter_ns() - start) / count
        sink.close()
    table = Table(
        f"Where the time of one emit goes: {workload.key}",
        ["step", "µs/event", "share of emit"],
    )
    accounted = 0.0
    for name, ns in rows:
        if ns is None:
            continue
        accounted += ns
        table.add(name, f"{ns / 1000:.2f}", f"{ns / whole * 100:.0f}%")
    if not nested_events:
        table.notes.append("the nesting-depth check runs only for events holding objects or arrays.")
    table.add("rest (lookups, dispatch, locks, calls)", f"{max(0.0, whole - accounted) / 1000:.2f}",
              f"{max(0.0, whole - accounted) / whole * 100:.0f}%")  # fmt: skip
    table.add("whole EventLog.emit + FileSink", f"{whole / 1000:.2f}", "100%")
    table.notes.append(f"each step timed alone over {count:,} events (GC on).")
    return table, [(name, ns) for name, ns in rows if ns is not None], whole


def _without_depth_check(workload: Workload, count: int, reps: int, workdir: Any) -> float | None:
    """Median events/s of ours with EventLog's nesting-depth check replaced by a no-op."""
    from unittest import mock

    import telemetry_sinks.eventlog as eventlog

    if not hasattr(eventlog, "nesting_depth"):
        return None
    rates = []
    with mock.patch.object(eventlog, "nesting_depth", lambda value, limit, *args: 0), \
            tempfile.TemporaryDirectory(dir=workdir) as directory:  # fmt: skip
        runner, sink = _ours(workload, directory)
        runner(500)
        for _ in range(reps):
            gc.collect()
            start = time.perf_counter()
            runner(count)
            rates.append(count / (time.perf_counter() - start))
        sink.close()
    return median(rates)


def _cause(steps: list[tuple[str, float]], whole: float) -> str:
    top = sorted(steps, key=lambda s: -s[1])[:3]
    parts = ", ".join(f"{name} {ns / 1000:.1f} µs ({ns / whole * 100:.0f}%)" for name, ns in top)
    return f"one emit takes {whole / 1000:.1f} µs; the largest steps: {parts} (see 'Where the time goes')."


def run(settings: Settings) -> ScenarioResult:
    result = ScenarioResult("emit", "1. EventLog emit throughput (one thread, FileSink)")
    counts = {
        "launch": {"ours": settings.pick(30_000, 8_000), "jupyter_events": settings.pick(3_000, 800),
                   "floor": settings.pick(100_000, 30_000)},
        "session": {"ours": settings.pick(6_000, 2_000), "jupyter_events": settings.pick(600, 200),
                    "floor": settings.pick(20_000, 6_000)},
    }  # fmt: skip
    table = Table(
        "Emit throughput, events/s (median of repetitions; min-max in brackets)",
        ["schema", "mean event", "ours", "jupyter_events", "floor", "ours / jupyter_events",
         "ours / floor"],
    )  # fmt: skip
    all_workloads = workloads()
    steps = len(all_workloads) * settings.reps * len(VARIANTS)
    data: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=settings.workdir) as directory, progress(
        steps, "emit throughput", "runs", settings.progress
    ) as bar:
        for workload in all_workloads:
            runners = {}
            closers = []
            for key, (_label, factory) in VARIANTS.items():
                runner, closer = factory(workload, directory)
                runner(min(1000, counts[workload.key][key]))  # warm up
                runners[key] = runner
                closers.append(closer)
            rates: dict[str, list[float]] = {key: [] for key in VARIANTS}
            for _rep in range(settings.reps):
                for key, runner in runners.items():  # interleaved, so drift hits all alike
                    n = counts[workload.key][key]
                    gc.collect()
                    start = time.perf_counter()
                    runner(n)
                    rates[key].append(n / (time.perf_counter() - start))
                    bar.update(1)
            for closer in closers:
                closer.close()
            med = {key: median(values) for key, values in rates.items()}
            vs_je = med["ours"] / med["jupyter_events"]
            vs_floor = med["ours"] / med["floor"]
            table.add(
                workload.title,
                f"{workload.mean_bytes:,.0f} B",
                *(f"{fmt_num(med[k])} ({spread(rates[k])})" for k in VARIANTS),
                f"{vs_je:.1f}x",
                f"{vs_floor:.2f}",
            )
            data[workload.key] = {
                "events_per_s": {k: rates[k] for k in VARIANTS},
                "median_events_per_s": med,
                "ours_vs_jupyter_events": vs_je,
                "ours_vs_floor": vs_floor,
                "events_per_run": counts[workload.key],
                "mean_event_bytes": workload.mean_bytes,
            }
            result.targets.append(
                Target(f"emit, {workload.key}: ours >= 10x jupyter_events", f"{vs_je:.1f}x", ">= 10x",
                       vs_je >= TARGET_VS_JUPYTER)  # fmt: skip
            )
            result.targets.append(
                Target(f"emit, {workload.key}: ours >= 1/3 of the floor", f"{vs_floor:.2f}", ">= 0.33",
                       vs_floor >= TARGET_VS_FLOOR)  # fmt: skip
            )
    table.notes.append(
        "ours: validation (jsonschema_rs), policy, capsule, FileSink default options (one write(2) per "
        "event); jupyter_events: same schema with $id as URI and version as string, no redaction "
        "(it has none); floor: json.dumps of the same capsules + buffered file write."
    )
    table.notes.append("GC on; the variants run interleaved within each repetition.")
    result.tables.append(table)
    targets = Table("Targets", ["target", "measured", "goal", "result"])
    for target in result.targets:
        targets.add(target.name, target.measured, target.goal, verdict(target.ok))
    result.tables.append(targets)
    # Where the time goes (always shown; it explains any gap).
    for workload in all_workloads:
        stage_table, steps, whole = _stage_breakdown(workload, settings.pick(5_000, 2_000))
        result.tables.append(stage_table)
        data[workload.key]["steps_ns"] = dict(steps)
        missed = [t for t in result.targets if t.name.startswith(f"emit, {workload.key}:") and t.ok is False]
        what_if = ""
        if missed and dict(steps).get("nesting-depth check (schema.nesting_depth)", 0) > 0.2 * whole:
            n = counts[workload.key]["ours"]
            rate = _without_depth_check(workload, n, settings.reps, settings.workdir)
            if rate:
                med = data[workload.key]["median_events_per_s"]
                data[workload.key]["ours_without_depth_check"] = rate
                what_if = (
                    f" Measured with the nesting-depth check patched out (diagnosis only): {fmt_num(rate)} "
                    f"events/s, {rate / med['jupyter_events']:.1f}x jupyter_events and "
                    f"{rate / med['floor']:.2f} of the floor."
                )
                table.notes.append(f"{workload.key}: without the nesting-depth check (patched out for the "
                                   f"diagnosis) ours reaches {fmt_num(rate)} events/s.")  # fmt: skip
        for target in missed:
            target.cause = _cause(steps, whole) + what_if
    for workload in all_workloads:
        with tempfile.TemporaryDirectory(dir=settings.workdir) as directory:
            runner, sink = _ours(workload, directory)
            runner(500)
            n = settings.pick(5_000, 2_000)
            prof, rows = profile(lambda runner=runner, n=n: runner(n), n,
                                 f"cProfile of ours, {workload.key}: top functions by own time")  # fmt: skip
            sink.close()
        result.tables.append(prof)
        data.setdefault(workload.key, {})["profile"] = rows
    result.data = data
    return result
