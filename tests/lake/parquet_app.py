"""An application writing events through the parquet sink; run as a subprocess by the crash tests.

    python parquet_app.py '<json config>'

``{"directory", "start", "per_day", "round", "max_buffer_events", "stop"}``: emits
events ``seq = start, start+1, ...`` (the day advances every ``per_day`` events,
so days close and are compacted all the time), calls ``flush()`` every ``round``
events and then prints ``flushed <last seq>``; until killed, or until ``stop``
events, then closes the sink and prints ``closed``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

from telemetry_sinks import EventLog, get_sink

SCHEMA = {
    "$id": "https://events.example.org/crash", "version": 1, "type": "object",
    "properties": {"seq": {"type": "integer"}, "payload": {"type": "string"},
                   "tags": {"type": "array", "items": {"type": "string"}}},
}
BASE = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


def main() -> None:
    config = json.loads(sys.argv[1])
    sink = get_sink("parquet", directory=config["directory"], max_buffer_events=config["max_buffer_events"],
                    flush_interval=0)
    log = EventLog(handlers=[sink], allowed_schemas=[SCHEMA["$id"]], load_schema_entry_points=False)
    log.register_schema(SCHEMA)
    seq, per_day, per_round, stop = config["start"], config["per_day"], config["round"], config.get("stop")
    print("ready", flush=True)
    while stop is None or seq < stop:
        when = BASE + dt.timedelta(days=seq // per_day, seconds=seq % per_day)
        log.emit(schema_id=SCHEMA["$id"], timestamp_override=when,
                 data={"seq": seq, "payload": "x" * (seq % 50), "tags": [str(seq % 7)]})
        seq += 1
        if seq % per_round == 0:
            sink.flush()
            print(f"flushed {seq - 1}", flush=True)
    sink.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main()
