"""One process of scenario 4: emit at a steady rate into a network sink and report its memory.

Run by ``scenario_memory`` as ``python -c "...main()" --sink http --port N [--spool DIR] ...``;
prints one JSON object on stdout.  The peak RSS is VmHWM from /proc/self/status, reset
after the set-up (``/proc/self/clear_refs``) so that it covers the measured period only.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path


def _status() -> dict[str, int]:
    from .common import read_proc_status

    return read_proc_status()


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _dir_bytes(path: str | None) -> int:
    if not path:
        return 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sink", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--spool", default=None)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--option", action="append", default=[], help="name=int sink option")
    args = parser.parse_args(argv)

    import logging

    from telemetry_sinks import EventLog

    from .backends import SINKS
    from .events import launch_workload

    logging.getLogger("telemetry_sinks.delivery").setLevel(logging.ERROR)
    for noisy in ("kafka", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    options: dict = {"close_timeout": 0.5}
    for item in args.option:
        name, _, value = item.partition("=")
        options[name] = int(value)
    if args.spool:
        options["spool_dir"] = args.spool
    sink = SINKS[args.sink].make(args.port, **options)
    workload = launch_workload()
    log = EventLog(handlers=[sink], allowed_schemas=workload.allowed_schemas, load_schema_entry_points=False)
    log.register_schema(workload.schema)
    emit, schema_id, events = log.emit, workload.schema_id, workload.events
    size = len(events)
    # Set-up done: everything imported, schemas compiled.  Measure from here.
    gc.collect()
    peak_reset = _reset_peak()
    baseline = _status()
    interval = 1_000_000_000 // args.rate
    count = int(args.rate * args.seconds)
    clock = time.perf_counter_ns
    begin = due = clock()
    next_sample = begin
    samples: list[tuple[float, int]] = []
    encoded_bytes = 0
    for i in range(count):
        now = clock()
        if now >= next_sample:
            samples.append(((now - begin) / 1e9, _status().get("VmRSS", 0)))
            next_sample += 1_000_000_000
        if due > now:
            time.sleep((due - now) / 1e9)
        capsule = emit(schema_id=schema_id, data=events[i % size])
        if i < size:
            encoded_bytes += len(json.dumps(capsule, separators=(",", ":")))
        due += interval
    elapsed = (clock() - begin) / 1e9
    end = _status()
    samples.append((elapsed, end.get("VmRSS", 0)))
    stats = sink.stats()
    result = {
        "sink": args.sink,
        "spool": bool(args.spool),
        "options": {
            "max_queue_events": sink.max_queue_events,
            "max_queue_bytes": sink.max_queue_bytes,
            "max_spool_bytes": sink.max_spool_bytes,
            "overflow": sink.effective_overflow,
        },
        "seconds": elapsed,
        "rate": count / elapsed,
        "events": count,
        "mean_event_bytes": encoded_bytes / min(count, size),
        "peak_reset": peak_reset,
        "baseline_rss": baseline.get("VmRSS", 0),
        "end_rss": end.get("VmRSS", 0),
        "peak_rss": end.get("VmHWM", 0),
        "samples": samples,
        "stats": {k: v for k, v in stats.items() if k != "last_error"},
        "last_error": stats.get("last_error"),
        "spool_on_disk": _dir_bytes(args.spool),
    }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    sink.close()
    os._exit(0)  # do not wait for the sink's exit hooks: the measurement is done


if __name__ == "__main__":
    main()
