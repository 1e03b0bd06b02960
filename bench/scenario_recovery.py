"""Scenario 5: recovery, the time to drain a spool of 100,000 events once the backend is back.

Per repetition: a sink with a ``spool_dir`` whose backend is down takes N events (they
go to the disk spool) and is closed; the backend is up; a new sink on the same spool
(as after a restart of the application) replays it: the time from its creation until
the spool is empty and every event acknowledged (``sent``/``replayed`` == N; for HTTP the
endpoint's own count is checked too).  Anchor: the raw client sending the same N events.

Once per sink, the "live" case: the same sink stays alive while its backend is down and
then comes back; the drain time then includes the wait for the next retry (backoff).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import urllib.request
from typing import Any

from .backends import SINKS, Servers, free_port, wait_delivered
from .common import ScenarioResult, Settings, Table, Target, fmt_num, fmt_s, median, progress, spread
from .events import sample_capsules
from .raw import RAW

KINDS = ("http", "kafka")
OUTAGE = 3.0  # seconds the backend stays down after the events were taken, in the live case


def _fill(kind: Any, port: int, spool_dir: str, capsules: list[dict[str, Any]], **options: Any) -> Any:
    """A sink on a backend that is down takes every capsule into its spool; returns the sink."""
    sink = kind.make(port, spool_dir=spool_dir, close_timeout=0.2, **options)
    for capsule in capsules:
        sink.handle_capsule(capsule)
    return sink


def _endpoint_events(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as answer:
        return json.loads(answer.read())["events"]


def run(settings: Settings) -> ScenarioResult:
    result = ScenarioResult("recovery", "5. Recovery: draining the spool once the backend is back")
    n = settings.pick(100_000, 20_000)
    reps = min(settings.reps, 3)
    capsules = sample_capsules(n)
    kinds = []
    for name in KINDS:
        problem = SINKS[name].available()
        if problem:
            result.notes.append(f"{name}: skipped, {problem}")
        else:
            kinds.append(SINKS[name])
    table = Table(
        f"Time to drain a spool of {n:,} events (median of {reps} repetitions; min-max in brackets)",
        ["sink", "backend", "spool on disk", "drain time (restart)", "drain events/s", "raw client time",
         "raw events/s", "drain / raw", "live: backend back -> first replayed",
         "live: backend back -> drained"],
    )  # fmt: skip
    data: dict[str, Any] = {}
    logging.getLogger("telemetry_sinks.delivery").setLevel(logging.ERROR)
    with Servers(settings.workdir / "recovery-servers") as servers, progress(
        len(kinds) * (2 * reps + 1), "recovery", "runs", settings.progress
    ) as bar:
        for kind in kinds:
            name = kind.name
            try:
                port = kind.start_up(servers)
                drains: list[float] = []
                raws: list[float] = []
                spool_bytes = 0
                raw = RAW[name](port)
                raw.send(capsules[:500])
                for _rep in range(reps):
                    spool_dir = tempfile.mkdtemp(dir=settings.workdir, prefix=f"recovery-{name}-")
                    sink = _fill(kind, free_port(), spool_dir, capsules)
                    sink.close()
                    filled = sink.stats()
                    spool_bytes = filled["spool_bytes"]
                    if filled["spooled"] != n:
                        raise RuntimeError(f"the spool holds {filled['spooled']} of {n} events: {filled}")
                    before = _endpoint_events(port) if name == "http" else 0
                    start = time.perf_counter()
                    sink = kind.make(port, spool_dir=spool_dir, close_timeout=2.0)
                    stats = wait_delivered(sink, timeout=600)
                    drains.append(time.perf_counter() - start)
                    sink.close()
                    if stats["replayed"] != n:
                        raise RuntimeError(f"{stats['replayed']} of {n} events replayed: {stats}")
                    if name == "http" and _endpoint_events(port) - before < n:
                        raise RuntimeError("the endpoint received fewer events than were replayed")
                    bar.update(1)
                    start = time.perf_counter()
                    raw.send(capsules)
                    raws.append(time.perf_counter() - start)
                    bar.update(1)
                raw.close()
                live = _live(kind, servers, settings, capsules)
                bar.update(1)
            except Exception as exc:
                result.notes.append(f"{name}: failed: {type(exc).__name__}: {str(exc)[:300]}")
                continue
            drain, raw_time = median(drains), median(raws)
            backend = "bench fast endpoint" if name == "http" else "Tansu (memory)"
            table.add(name, backend, f"{spool_bytes / 1e6:.1f} MB", f"{fmt_s(drain)} ({spread(drains)})",
                      fmt_num(n / drain), f"{fmt_s(raw_time)} ({spread(raws)})", fmt_num(n / raw_time),
                      f"{drain / raw_time:.2f}", fmt_s(live["first_replayed"]),
                      fmt_s(live["drained"]))  # fmt: skip
            data[name] = {"events": n, "drain_seconds": drains, "raw_seconds": raws,
                          "spool_bytes": spool_bytes, "live": live}  # fmt: skip
            result.targets.append(
                Target(f"recovery, {name}: drain {n:,} events (no numeric target; vs raw client)",
                       f"{fmt_s(drain)} ({drain / raw_time:.2f}x the raw client)", "report",
                       None)  # fmt: skip
            )
    table.notes.append(
        "restart: a new sink over the filled spool (replay starts at once); default batching (500 events "
        "per request / producer flush). live: the sink that took the events stays alive, the backend "
        f"starts on its port {OUTAGE:g} s later; the time to the first replayed event is the rest of the "
        "retry backoff (retry_initial_backoff=0.5 s doubling up to retry_max_backoff=30 s, with jitter) "
        "or, for Kafka, of KafkaProducer's bootstrap attempt (it blocks up to 30 s while no broker answers)."
    )
    table.notes.append(f"Repetitions: {reps} (recovery runs are long; at most 3).")
    result.tables.append(table)
    result.data = data
    return result


def _live(kind: Any, servers: Servers, settings: Settings, capsules: list[dict[str, Any]]) -> dict[str, Any]:
    """The backend comes back while the sink that spooled the events is still alive."""
    port = free_port()
    spool_dir = tempfile.mkdtemp(dir=settings.workdir, prefix=f"recovery-live-{kind.name}-")
    sink = _fill(kind, port, spool_dir, capsules)
    time.sleep(OUTAGE)  # the backend stays down a little longer: the sink is in its retry loop
    server = servers.start(kind.backend(port, servers.log_dir))
    back = time.perf_counter()
    first = None
    deadline = back + 600
    while time.perf_counter() < deadline:
        stats = sink.stats()
        if first is None and stats["replayed"] > 0:
            first = time.perf_counter() - back
        if stats["queue_events"] == 0 and stats["spool_bytes"] == 0:
            break
        time.sleep(0.01)
    stats = wait_delivered(sink, timeout=max(1.0, deadline - time.perf_counter()))
    drained = time.perf_counter() - back
    sink.close()
    servers.stop(server)
    return {"first_replayed": first, "drained": drained, "replayed": stats["replayed"]}
