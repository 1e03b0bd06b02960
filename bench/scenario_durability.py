"""Scenario 13: the cost of durability: emit() and sink throughput with the durable spool.

With a ``spool_dir`` every event is appended to the spool (one ``write(2)``) before
``emit()`` returns.  Measured in one run, side by side:

* emit: ``EventLog.emit`` into an HTTP sink whose endpoint is up (the bench fast
  endpoint), without a spool (memory only) and with the durable spool; throughput
  of a tight loop and the latency of each call (p50, p99), repetitions interleaved,
  a new sink for each.  Also with ``spool_fsync=True`` (a disk flush per event), on
  fewer events: its cost depends on the disk under the spool, which is named.
* sink throughput: as scenario 3 (``handle_capsule`` as fast as the caller can,
  ``overflow="block"``, until every event is acknowledged), with the durable spool,
  against the raw client sending the same events to the same backend, and without a
  spool for reference.  With the spool, events that do not fit in the queue wait on
  disk and are read back from there.
* the append alone (``Spool.write`` in a loop over the same events, the record copied
  into the mapped head; the same records by the C append, one ``write(2)`` each; the
  ``write(2)`` alone) and reading a segment back, in µs an event: what a miss of the
  targets comes from, printed as its cause.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
import time
from typing import Any

from .backends import SINKS, Servers, available_kinds
from .common import (
    ScenarioResult,
    Settings,
    Table,
    Target,
    fmt_num,
    median,
    percentile,
    progress,
    spread,
    verdict,
)
from .events import launch_workload, sample_capsules
from .raw import RAW
from .scenario_throughput import _counts, run_ours

EMIT_TARGET = 0.7
#: The emit variant with one write(2) an event and no spool (see ``_append_before_put``).
BARE_APPEND = "memory + one write(2) an event"
THROUGHPUT_TARGET = 0.8
MiB = 1024 * 1024
#: Big enough that no variant drops or waits in the emit loop: only the emit path is measured.
ROOMY = {"max_queue_events": 1_000_000, "max_queue_bytes": 1024 * MiB, "max_spool_bytes": 4096 * MiB,
         "close_timeout": 30.0}


def _filesystem(path: str) -> str:
    """The filesystem type of the mount ``path`` is on (from /proc/mounts)."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) < 3 or len(parts[1]) <= len(best):
                    continue
                if os.path.realpath(path).startswith(parts[1]):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return f"{kind} ({best or '?'})"


def _append_before_put(sink: Any, path: str) -> int:
    """Make the memory-only ``sink`` append each event's spool record to ``path`` (the C append, one
    ``write(2)``) before queueing it, with no spool around it; return the file's descriptor.

    What writing every event with a system call before emit() returns costs, against
    which the spool's head, copied into a mapped file without one, is compared."""
    from telemetry_sinks.delivery import spool as spool_module
    from telemetry_sinks.delivery.envelope import next_event_id

    engine = sink._engine
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    put, append = engine.put, spool_module._append

    def put_after_append(data: str, event_id: str | None = None) -> None:
        event_id = event_id or next_event_id()
        append(fd, event_id, data)
        put(data, event_id)

    engine.put = put_after_append
    return fd


def _emit_once(port: int, count: int, kind: str, directory: str | None) -> tuple[float, float, list[int]]:
    """(events/s of a tight emit loop, events/s until they were all delivered, sorted per-call ns)
    through a fresh HTTP sink: ``kind`` "memory", "append" (memory and one bare append an
    event, in ``directory``), "spool" or "fsync" (the durable spool in ``directory``)."""
    from telemetry_sinks import EventLog

    workload = launch_workload()
    options = dict(ROOMY)
    if kind in ("spool", "fsync"):
        options.update(spool_dir=directory, spool_fsync=kind == "fsync")
    sink = SINKS["http"].make(port, **options)
    fd = _append_before_put(sink, os.path.join(directory, "bare.wal")) if kind == "append" else None
    log = EventLog(handlers=[sink], allowed_schemas=workload.allowed_schemas, load_schema_entry_points=False)
    log.register_schema(workload.schema)
    emit, schema_id, events = log.emit, workload.schema_id, workload.events
    size = len(events)
    for i in range(200):  # warm up: connection, first segment
        emit(schema_id=schema_id, data=events[i % size])
    sink.flush(30)
    gc.collect()
    timer = time.perf_counter_ns
    latencies = [0] * count
    start = timer()
    for i in range(count):
        t0 = timer()
        emit(schema_id=schema_id, data=events[i % size])
        latencies[i] = timer() - t0
    elapsed = timer() - start
    if not sink.flush(120):
        raise RuntimeError(f"the emitted events were not delivered: {sink.stats()}")
    delivered = timer() - start
    stats = sink.stats()
    sink.close()
    if fd is not None:
        os.close(fd)
    if stats["dropped"]:
        raise RuntimeError(f"events dropped in the emit benchmark: {stats}")
    return count / elapsed * 1e9, count / delivered * 1e9, sorted(latencies)


def _emit_cost(settings: Settings, servers: Servers, result: ScenarioResult,
               append: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    port = SINKS["http"].start_up(servers)
    count = settings.pick(50_000, 10_000)
    fsync_count = settings.pick(2_000, 500)
    variants = {"memory": ("memory", count), BARE_APPEND: ("append", count),
                "durable spool": ("spool", count), "durable spool + spool_fsync": ("fsync", fsync_count)}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    through: dict[str, list[float]] = {name: [] for name in variants}  # until delivered
    lat: dict[str, list[int]] = {name: [] for name in variants}
    with progress(settings.reps * len(variants), "emit with and without the spool", "runs",
                  settings.progress) as bar:  # fmt: skip
        for _rep in range(settings.reps):
            for name, (kind, n) in variants.items():
                directory = None if kind == "memory" else tempfile.mkdtemp(dir=settings.workdir,
                                                                             prefix="durable-")
                rate, delivered, latencies = _emit_once(port, n, kind, directory)
                rates[name].append(rate)
                through[name].append(delivered)
                lat[name].extend(latencies)
                bar.update(1)
    table = Table(
        "emit() into an HTTP sink (endpoint up), without and with the durable spool "
        "(median of repetitions; min-max in brackets)",
        ["variant", "events/run", "events/s", "vs memory", "p50", "p99", "max", "until delivered",
         "vs memory"],
    )
    base, base_through = median(rates["memory"]), median(through["memory"])
    data: dict[str, Any] = {}
    for name, (_, n) in variants.items():
        ordered = sorted(lat[name])
        ratio = median(rates[name]) / base
        table.add(name, f"{n:,}", f"{fmt_num(median(rates[name]))} ({spread(rates[name])})", f"{ratio:.2f}",
                  f"{percentile(ordered, 50) / 1000:.1f} µs", f"{percentile(ordered, 99) / 1000:.1f} µs",
                  f"{ordered[-1] / 1e6:.2f} ms", f"{fmt_num(median(through[name]))}",
                  f"{median(through[name]) / base_through:.2f}")  # fmt: skip
        data[name] = {"events_per_s": rates[name], "ratio_to_memory": ratio,
                      "delivered_events_per_s": through[name],
                      "p50_us": percentile(ordered, 50) / 1000, "p99_us": percentile(ordered, 99) / 1000,
                      "max_ms": ordered[-1] / 1e6}  # fmt: skip
    table.notes.append(
        "EventLog.emit (validation, policy, capsule) + HTTPSink: each call timed with perf_counter_ns; "
        "the sink's worker delivers meanwhile. Queue bounds raised so that no variant drops or blocks."
    )
    table.notes.append(
        "until delivered: the same events over the time from the first emit to flush() returning (every "
        "event acknowledged by the endpoint): the memory-only loop runs ahead of its worker, which gets "
        "the GIL less often; the target is on the loop alone (events/s)."
    )
    table.notes.append(f"the spool is on {_filesystem(str(settings.workdir))}: the fsync row depends on it.")
    result.tables.append(table)
    ratio = data["durable spool"]["ratio_to_memory"]
    target = Target("emit throughput with the durable spool vs without", f"{ratio:.2f}", f">= {EMIT_TARGET}",
                    ratio >= EMIT_TARGET)  # fmt: skip
    data["append_us"] = append
    memory_us = 1e6 / base
    sustained = median(through["durable spool"]) / base_through
    ceiling = memory_us / (memory_us + append["spool_write"])
    data["ceiling"] = ceiling
    from telemetry_sinks.delivery.spool import ACCELERATED

    data["accelerated"] = ACCELERATED
    how = ("the record copied into the mapped head" if append["mapped"] else
           "the record written with write(2)" if ACCELERATED else "in Python, the C accelerator not built")
    append_parts = (f"{how}, the books kept under the spool's lock; the same records by the C append, "
                    f"one write(2) each: {append['append']:.2f} µs, of which the write(2) "
                    f"{append['write']:.2f} µs")  # fmt: skip
    table.notes.append(
        f"the append alone (Spool.write in a loop, same events): {append['spool_write']:.2f} µs an event, "
        f"{append_parts}; the memory-only emit takes {memory_us:.2f} µs, so the loop's ratio cannot pass "
        f"{ceiling:.2f}."
    )
    floor_ratio = data[BARE_APPEND]["ratio_to_memory"]
    in_emit = memory_us / floor_ratio - memory_us  # what one write(2) an event adds to an emit
    spool_in_emit = memory_us / ratio - memory_us  # what the durable spool adds
    data["write_in_emit_us"], data["spool_in_emit_us"] = in_emit, spool_in_emit
    table.notes.append(
        f"{BARE_APPEND}: the memory-only sink appending each event's record (the C append, one "
        f"write(2), called from one Python wrapper) to a plain file before queueing it, no spool: what "
        f"writing every event with a system call before emit() returns costs. Inside the emit it adds "
        f"{in_emit:.2f} µs an event ({append['append']:.2f} µs in a loop); the durable spool, whose head is "
        f"a mapped file, adds {spool_in_emit:.2f} µs."
    )
    if not target.ok:
        target.cause = (
            f"the durable append is work the memory-only emit does not do, in the emitting thread: "
            f"{append['spool_write']:.2f} µs an event in a loop ({append_parts}) against {memory_us:.2f} µs "
            f"for the whole memory-only emit, a ceiling of {ceiling:.2f} before the GIL is shared with the "
            f"worker and the caches with the rest of the emit. Inside the emit the spool adds "
            f"{spool_in_emit:.2f} µs an event (one write(2) an event, no spool, adds {in_emit:.2f} µs: a "
            f"ratio of {floor_ratio:.2f}); counting until every event was delivered (what a steady emit "
            f"rate can sustain) the ratio is {sustained:.2f}."
        )
    result.targets.append(target)
    return data


def _append_cost(settings: Settings) -> dict[str, float]:
    """µs per event of the durable append alone (``Spool.write``; building and writing the record;
    the write(2) alone) and of reading a segment back (``parse_records``); ``mapped`` is 1.0 if
    the spool's head was a mapped file (``Ledger.map``), else 0.0."""
    from telemetry_sinks.delivery import spool as spool_module
    from telemetry_sinks.delivery.envelope import Envelope, next_event_id
    from telemetry_sinks.delivery.spool import Spool, encode_record, parse_records

    lines = [json.dumps(capsule, separators=(",", ":")) for capsule in sample_capsules(2_000)]
    count = settings.pick(100_000, 20_000)
    best: dict[str, float] = {}
    for _ in range(3):
        directory = tempfile.mkdtemp(dir=settings.workdir, prefix="append-")
        spool = Spool(directory, max_bytes=1 << 40, segment_bytes=1 << 40)
        envelopes = [Envelope(next_event_id(), lines[i % len(lines)]) for i in range(count)]
        write, timer = spool.write, time.perf_counter
        start = timer()
        for env in envelopes:
            write(env)
        spool_write = (timer() - start) / count
        mapped = bool(spool._head is not None and spool._head.ledger.mapped)
        [segment] = [name for name in os.listdir(directory) if name.endswith(".wal")]
        start = timer()
        with open(os.path.join(directory, segment), "rb") as file:
            read_back = len(parse_records(file.read()).records)
        read = (timer() - start) / read_back
        append = spool_module._append
        fd = os.open(os.path.join(directory, "appended"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        start = timer()
        for env in envelopes:
            append(fd, env.event_id, env.data)
        appended = (timer() - start) / count
        os.close(fd)
        records = [encode_record(env.event_id, env.data) for env in envelopes]
        raw_write = spool_module._write
        fd = os.open(os.path.join(directory, "plain"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        start = timer()
        for data in records:
            raw_write(fd, data)
        plain = (timer() - start) / count
        os.close(fd)
        spool.close()
        shutil.rmtree(directory, ignore_errors=True)
        for key, value in (("spool_write", spool_write), ("append", appended), ("write", plain),
                           ("read_back", read)):  # fmt: skip
            best[key] = min(best.get(key, value * 1e6), value * 1e6)
        best["mapped"] = float(mapped)
    return best


def _throughput(settings: Settings, servers: Servers, result: ScenarioResult,
                append: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    counts = _counts(settings)
    capsules = sample_capsules(max(counts.values()))
    table = Table(
        "Sink throughput with the durable spool, events/s delivered and acknowledged "
        "(median of repetitions; min-max in brackets)",
        ["sink", "events/run", "durable spool", "memory only", "raw client", "durable / raw", "memory / raw",
         "target"],
    )  # fmt: skip
    kinds = available_kinds(result.notes)
    data: dict[str, Any] = {}
    with progress(len(kinds) * settings.reps * 3, "sink throughput with the spool", "runs",
                  settings.progress) as bar:  # fmt: skip
        for kind in kinds:
            name, n = kind.name, counts[kind.name]
            batch = capsules[:n]
            try:
                port = kind.start_up(servers)
                spool_dir = tempfile.mkdtemp(dir=settings.workdir, prefix=f"throughput-{name}-")
                durable = kind.make(port, overflow="block", block_timeout=300.0, close_timeout=2.0,
                                    spool_dir=spool_dir)  # fmt: skip
                memory = kind.make(port, overflow="block", block_timeout=300.0, close_timeout=2.0)
                raw = RAW[name](port)
                run_ours(durable, batch[:500])
                run_ours(memory, batch[:500])
                raw.send(batch[:500])
                rates: dict[str, list[float]] = {"durable": [], "memory": [], "raw": []}
                for _rep in range(settings.reps):
                    for variant in ("durable", "memory", "raw"):
                        gc.collect()
                        if variant == "raw":
                            start = time.perf_counter()
                            raw.send(batch)
                            rates["raw"].append(n / (time.perf_counter() - start))
                        else:
                            sink = durable if variant == "durable" else memory
                            rates[variant].append(n / run_ours(sink, batch))
                        bar.update(1)
                replayed = durable.stats()["replayed"]
                durable.close()
                memory.close()
                raw.close()
            except Exception as exc:
                result.notes.append(f"{name}: failed: {type(exc).__name__}: {str(exc)[:300]}")
                continue
            ratio = median(rates["durable"]) / median(rates["raw"])
            ok = ratio >= THROUGHPUT_TARGET
            table.add(name, f"{n:,}", f"{fmt_num(median(rates['durable']))} ({spread(rates['durable'])})",
                      f"{fmt_num(median(rates['memory']))} ({spread(rates['memory'])})",
                      f"{fmt_num(median(rates['raw']))} ({spread(rates['raw'])})", f"{ratio:.2f}",
                      f"{median(rates['memory']) / median(rates['raw']):.2f}", verdict(ok))  # fmt: skip
            data[name] = {"events_per_run": n, "durable_events_per_s": rates["durable"],
                          "memory_events_per_s": rates["memory"], "raw_events_per_s": rates["raw"],
                          "durable_to_raw": ratio, "replayed_from_disk": replayed}  # fmt: skip
            what = f"throughput with the durable spool, {name}: >= 80% of the raw client"
            target = Target(what, f"{ratio:.0%}", ">= 80%", ok)
            if not ok:
                target.cause = _throughput_cause(rates, append, replayed / (settings.reps * n + 500))
            result.targets.append(target)
    table.notes.append(
        "ours: handle_capsule() per event as fast as the caller can (overflow='block': with the spool it "
        "waits only when the spool is full), until every event is acknowledged; what does not fit in the "
        "queue (10,000 events) waits on disk and is read back from there. Default batching."
    )
    result.tables.append(table)
    return data


def _throughput_cause(rates: dict[str, list[float]], append: dict[str, float], read_back: float) -> str:
    """Why a sink with the spool is under the target: the spool's own work, or the sink itself."""
    per = {key: 1e6 / median(values) for key, values in rates.items()}  # µs an event, end to end
    added = per["durable"] - per["memory"]
    figures = (f"µs an event end to end: raw client {per['raw']:.1f}, the sink without a spool "
               f"{per['memory']:.1f}, with the spool {per['durable']:.1f}.")  # fmt: skip
    if added < 0.1 * per["durable"]:
        return (f"{figures} The spool adds {added:.1f} µs ({added / per['durable']:.0%} of the time): the "
                f"gap is the sink against this backend in this run (without a spool it is at "
                f"{per['raw'] / per['memory']:.0%} of the raw client), see scenario 3.")  # fmt: skip
    return (f"{figures} The caller and the sink's worker share one GIL, so the spool's work adds up: the "
            f"append in the caller ({append['spool_write']:.2f} µs), reading back the {read_back:.0%} of the "
            f"events that did not fit in the queue ({append['read_back']:.2f} µs each), and the worker "
            f"waiting for the GIL while the caller, which no longer blocks on a full queue, keeps it.")


def run(settings: Settings) -> ScenarioResult:
    title = "13. The cost of durability: emit and sink throughput with the spool"
    result = ScenarioResult("durability", title)
    append = _append_cost(settings)
    with Servers(settings.workdir / "durability-servers") as servers:
        emit = _emit_cost(settings, servers, result, append)
        throughput = _throughput(settings, servers, result, append)
    result.data = {"emit": emit, "throughput": throughput}
    return result
