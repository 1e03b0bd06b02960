"""Scenario 4: peak memory while the backend is down, under a steady 5,000 events/s.

Each configuration runs in its own process (``bench/memory_child.py``), all at the same
time, for 60 s (10 s with --quick): the caller emits BinderHub launch events through
``EventLog.emit`` into a sink whose backend is down (nothing listens on its port).  The
growth is the peak RSS (VmHWM, reset after set-up) minus the RSS after set-up; it must
stay under the configured memory bound (``max_queue_bytes``) plus a constant of 8 MiB
(threads, the client library's first connection attempts, allocator slack).  A reference
process delivers to a live backend: its growth is the cost of the machinery alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from typing import Any

from .backends import SINKS, Servers, fast_http, free_port
from .common import REPO, ScenarioResult, Settings, Table, Target, fmt_bytes, fmt_num, progress, verdict
from .events import sample_capsules

CONSTANT = 8 * 1024 * 1024
RATE = 5_000
_CHILD = f"import sys; sys.path.insert(0, {str(REPO)!r}); from bench.memory_child import main; main()"


def _configs(settings: Settings) -> list[dict[str, Any]]:
    configs = [
        {"label": "http, default options", "sink": "http", "spool": False, "options": {}},
        {"label": "http, spool_dir", "sink": "http", "spool": True, "options": {}},
        {"label": "http, max_queue_events=1,000,000 (max_queue_bytes binds)", "sink": "http", "spool": False,
         "options": {"max_queue_events": 1_000_000}},
        {"label": "kafka, default options", "sink": "kafka", "spool": False, "options": {}},
        {"label": "kafka, spool_dir", "sink": "kafka", "spool": True, "options": {}},
        {"label": "reference: http, backend up", "sink": "http", "spool": False, "options": {}, "up": True},
    ]  # fmt: skip
    return [c for c in configs if not SINKS[c["sink"]].available()]


def envelope_cost(count: int = 500) -> tuple[float, float]:
    """Mean bytes of Python objects per queued event (sys.getsizeof of the Envelope and of what its
    slots hold, plus a deque slot) and mean bytes counted against max_queue_bytes (its JSON plus
    the engine's EVENT_OVERHEAD)."""
    from telemetry_sinks.capsule import encode
    from telemetry_sinks.delivery.engine import EVENT_OVERHEAD
    from telemetry_sinks.delivery.envelope import Envelope, next_event_id

    objects = counted = 0
    for capsule in sample_capsules(count):
        env = Envelope(next_event_id(), encode(capsule))
        env.ticket, env.enqueued = 1_000_000 + count, time.monotonic()
        total = sys.getsizeof(env) + 8
        for slot in type(env).__slots__:
            value = getattr(env, slot, None)
            if value is not None and not isinstance(value, bool):
                total += sys.getsizeof(value)
        objects += total
        counted += env.size + EVENT_OVERHEAD
    return objects / count, counted / count


def run(settings: Settings) -> ScenarioResult:
    result = ScenarioResult("memory", "4. Memory while the backend is down (5,000 events/s)")
    seconds = settings.pick(60.0, 10.0)
    configs = _configs(settings)
    table = Table(
        f"Peak RSS growth over {seconds:g} s at {RATE:,} events/s, backend down (one process per row, "
        "all at once)",
        ["configuration", "overflow", "max_queue_events", "max_queue_bytes", "events",
         "sent / dropped / spooled", "queued at end", "spool on disk", "RSS after set-up", "peak RSS",
         "growth", "growth, 2nd half",
         "bound (max_queue_bytes + 8 MiB)", "result"],
    )  # fmt: skip
    data: dict[str, Any] = {}
    with Servers(settings.workdir / "memory-servers") as servers, progress(
        int(seconds) + 5, "memory (processes run in parallel)", "s", settings.progress
    ) as bar:
        up_port = None
        if any(c.get("up") for c in configs):
            up_port = servers.start(fast_http(free_port(), servers.log_dir)).port
        processes = []
        for config in configs:
            port = up_port if config.get("up") else free_port()
            argv = [sys.executable, "-c", _CHILD, "--sink", config["sink"], "--seconds", str(seconds),
                    "--rate", str(RATE), "--port", str(port)]  # fmt: skip
            if config["spool"]:
                argv += ["--spool", tempfile.mkdtemp(dir=settings.workdir, prefix="memory-spool-")]
            for name, value in config["options"].items():
                argv += ["--option", f"{name}={value}"]
            processes.append((config, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                       text=True, cwd=REPO)))  # fmt: skip
        start = time.monotonic()
        while any(p.poll() is None for _, p in processes):
            time.sleep(1)
            if time.monotonic() - start < seconds + 5:
                bar.update(1)
            if time.monotonic() - start > seconds + 120:
                for _, p in processes:
                    p.kill()
        objects, counted = envelope_cost()
        outputs = [(config, *process.communicate(), process.returncode) for config, process in processes]
        reference_growth = 0
        for config, out, _err, _code in outputs:
            if config.get("up"):
                try:
                    ref = json.loads(out.strip().splitlines()[-1])
                    reference_growth = ref["peak_rss"] - ref["baseline_rss"]
                except (ValueError, IndexError, KeyError):
                    pass
        for config, out, err, returncode in outputs:
            try:
                child = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                problem = err.strip()[-500:]
                result.notes.append(f"{config['label']}: failed (exit {returncode}): {problem}")
                continue
            data[config["label"]] = child
            options, stats = child["options"], child["stats"]
            growth = child["peak_rss"] - child["baseline_rss"]
            half = [rss for t, rss in child["samples"] if t >= child["seconds"] / 2]
            first_half_peak = max([rss for t, rss in child["samples"] if t < child["seconds"] / 2] or [0])
            second_half = max(half or [0]) - first_half_peak
            bound = options["max_queue_bytes"] + CONSTANT
            ok = growth <= bound if not config.get("up") else None
            counts = f"{stats['sent']:,} / {stats['dropped']:,} / {stats['spooled']:,}"
            table.add(config["label"], options["overflow"], f"{options['max_queue_events']:,}",
                      fmt_bytes(options["max_queue_bytes"]), f"{child['events']:,}", counts,
                      f"{stats['queue_events']:,} ({fmt_bytes(stats['queue_bytes'])})",
                      fmt_bytes(child["spool_on_disk"]) if config["spool"] else "-",
                      fmt_bytes(child["baseline_rss"]), fmt_bytes(child["peak_rss"]), fmt_bytes(growth),
                      fmt_bytes(second_half), fmt_bytes(bound) if ok is not None else "-",
                      verdict(ok) if ok is not None else "reference")  # fmt: skip
            child["growth"] = growth
            child["second_half_growth"] = second_half
            if ok is not None:
                cause = ""
                if not ok:
                    per_event = (growth - reference_growth) / max(1, stats["queue_events"])
                    cause = (
                        f"{stats['queue_events']:,} events queued at the end hold "
                        f"{fmt_bytes(stats['queue_bytes'])} counted against max_queue_bytes, but the growth "
                        f"is {fmt_bytes(growth)}: about {per_event:,.0f} bytes per queued event, "
                        f"{counted:,.0f} bytes counted for each (JSON + EVENT_OVERHEAD); sys.getsizeof "
                        f"of its objects says {objects:,.0f} bytes, the rest is allocator overhead."
                    )
                result.targets.append(
                    Target(f"memory, {config['label']}: growth < max_queue_bytes + 8 MiB", fmt_bytes(growth),
                           f"< {fmt_bytes(bound)}", ok, cause)  # fmt: skip
                )
            if not child["peak_reset"]:
                result.notes.append(f"{config['label']}: VmHWM could not be reset: peak includes the set-up")
    table.notes.append(
        "growth = peak RSS (VmHWM, reset after set-up) - RSS after set-up; '2nd half' = highest RSS in the "
        "second half minus highest in the first (about 0 once the queue is full). Mean event "
        f"{fmt_num(next(iter(data.values()))['mean_event_bytes']) if data else '?'} bytes of JSON."
    )
    if data:
        table.notes.append(
            f"A queued event costs about {objects:,.0f} bytes of Python objects (sys.getsizeof of the "
            f"Envelope and its fields, a deque slot) and counts {counted:,.0f} bytes against "
            "max_queue_bytes (its JSON + the engine's EVENT_OVERHEAD of 384 bytes)."
        )
    table.notes.append(
        "All processes run at the same time on this machine (each ~10-20% of a core); 'spooled' counts "
        "events written to the disk spool; max_spool_bytes is 256 MiB by default."
    )
    result.tables.append(table)
    result.data = data
    return result
