"""An application that emits events through one network sink; run as a subprocess by the tests.

    python emitting_app.py '<json config>'

The config: ``{"sink": registry name, "options": {...}, "mode": ..., "schema": {...}}``
(``rescan_interval``: seconds between looks at the spool directory for other processes'
segments).

Modes:

``stream``
    Emit events in rounds of ``round`` events (``seq`` counting from ``start``),
    ``flush()`` after each round and print ``flushed <last seq>`` once everything
    emitted so far is acknowledged; forever, until killed.
``record``
    Emit events (``seq`` counting from 0, ``pause`` seconds apart) and, after each
    ``emit()`` returns, append its ``seq`` to the file ``record`` (one ``write(2)``,
    which survives the process); forever, until killed.  Prints ``ready <producer id>``
    first.
``emit_then_exit``
    Emit ``count`` events, print ``exiting`` and leave the interpreter without
    closing anything: the sink's atexit hook has to deal with what is queued.
``drain``
    Replay the spool: wait until the sink holds nothing in memory or in its spool,
    close it and print its stats as JSON.

Warnings of ``telemetry_sinks`` go to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from telemetry_sinks import EventLog, get_sink
from telemetry_sinks.delivery.envelope import producer_id


def main() -> None:
    config = json.loads(sys.argv[1])
    if "rescan_interval" in config:  # how often the spool directory is looked at for others' segments
        from telemetry_sinks.delivery import engine

        engine.RESCAN_INTERVAL = config["rescan_interval"]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    sink = get_sink(config["sink"], **config["options"])
    schema = config["schema"]
    log = EventLog(handlers=[sink], allowed_schemas=[schema["$id"]], load_schema_entry_points=False)
    log.register_schema(schema)
    mode = config["mode"]
    tag = config.get("tag", "app")
    if mode == "stream":
        seq = config.get("start", 0)
        per_round = config.get("round", 20)
        print("ready", flush=True)
        while True:
            for _ in range(per_round):
                log.emit(schema_id=schema["$id"], data={"seq": seq, "producer": tag})
                seq += 1
            if sink.flush(timeout=60):
                print(f"flushed {seq - 1}", flush=True)
            time.sleep(config.get("pause", 0.005))
    elif mode == "record":
        fd = os.open(config["record"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        pause = config.get("pause", 0.0005)
        print(f"ready {producer_id()}", flush=True)
        seq = 0
        while True:
            log.emit(schema_id=schema["$id"], data={"seq": seq, "producer": tag})
            os.write(fd, b"%d\n" % seq)  # emit() returned: the event was accepted
            seq += 1
            if pause:
                time.sleep(pause)
    elif mode == "emit_then_exit":
        for seq in range(config["count"]):
            log.emit(schema_id=schema["$id"], data={"seq": seq, "producer": tag})
        wait_for = config.get("wait_for_send")
        if wait_for:  # until the worker is inside send_batch (e.g. stuck on a backend)
            deadline = time.monotonic() + 30
            while sink.stats()["queue_events"] > 0 and time.monotonic() < deadline:
                time.sleep(0.01)
        print(f"exiting {time.time():.6f}", flush=True)
    elif mode == "drain":
        deadline = time.monotonic() + config.get("timeout", 60)
        while time.monotonic() < deadline:
            sink.flush(timeout=1)
            stats = sink.stats()
            if stats["queue_events"] == 0 and stats["spool_bytes"] == 0:
                break
            time.sleep(0.05)
        sink.close()
        print(json.dumps(sink.stats()), flush=True)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
