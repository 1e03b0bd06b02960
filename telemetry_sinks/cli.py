"""The ``telemetry-sinks`` command line.

Exit codes: 0 success; 1 some input was invalid (events or schema); 2 bad usage
or configuration (unknown option, unreadable config, unknown sink).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

from .config import EXAMPLE_EVENTS, default_config, load_config_file
from .errors import (
    EventValidationError,
    MissingExtraError,
    SchemaError,
    SinkConfigError,
    UnknownSchemaError,
    UnknownSinkError,
)
from .schema import Schema, load_schema_file

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _table(rows: list[list[str]], out: IO[str]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n")
        if index == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


# --------------------------------------------------------------------------- sinks


def cmd_sinks(args: argparse.Namespace) -> int:
    from .registry import available_sinks

    rows = [["NAME", "INSTALLED", "EXTRA", "INSTALL WITH", "CLASS"]]
    for info in available_sinks():
        rows.append(
            [
                info.name,
                "yes" if info.importable else "no",
                info.extra or "-",
                "-" if info.importable else (info.install_command or "-"),
                info.class_path,
            ]
        )
    _table(rows, sys.stdout)
    return EXIT_OK


# --------------------------------------------------------------------------- validate


def _read_jsonl(stream: IO[str]) -> Iterator[tuple[int, Any, str | None]]:
    """Yield ``(line_number, parsed, error)`` for each non-blank line."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line), None
        except json.JSONDecodeError as exc:
            yield number, None, f"invalid JSON at column {exc.colno}: {exc.msg}"


def _event_data(obj: Any) -> Any:
    """The event inside a line: a request body ``{"schema_id", "data"}``, a capsule, or raw data."""
    if isinstance(obj, dict) and "schema_id" in obj and "data" in obj:
        return obj["data"]
    if isinstance(obj, dict) and "__schema__" in obj:
        return {k: v for k, v in obj.items() if not k.startswith("__")}
    return obj


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        schema = Schema(load_schema_file(args.schema), source=args.schema)
    except SchemaError as exc:
        print(f"INVALID schema: {exc}", file=sys.stdout)
        return EXIT_INVALID
    print(f"OK schema {schema.id!r} version {schema.version} ({args.schema})")
    if not args.events:
        return EXIT_OK
    ok = bad = 0
    with _open_input(args.events) as stream:
        for number, obj, error in _read_jsonl(stream):
            if error is None:
                try:
                    schema.validate(_event_data(obj))
                except EventValidationError as exc:
                    error = f"at {exc.path}: {exc.reason}"
            if error is None:
                ok += 1
            else:
                bad += 1
                print(f"line {number}: INVALID {error}")
    print(f"{ok} valid, {bad} invalid")
    return EXIT_INVALID if bad else EXIT_OK


# --------------------------------------------------------------------------- emit


def _open_input(path: str | None) -> Any:
    if path is None or path == "-":
        return _NoClose(sys.stdin)
    return open(path, encoding="utf-8")  # noqa: SIM115


class _NoClose:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __enter__(self) -> IO[str]:
        return self.stream

    def __exit__(self, *exc: Any) -> None:
        return None


def build_eventlog(config_path: str | None, events_dir: str = "events") -> Any:
    """The EventLog of a config file, or of the embedded default when there is none."""
    from .eventlog import EventLog

    config = load_config_file(config_path) if config_path else default_config(events_dir)
    return EventLog(config=config)


def cmd_emit(args: argparse.Namespace) -> int:
    source = str(EXAMPLE_EVENTS) if args.example else args.file
    eventlog = build_eventlog(args.config, args.events_dir)
    recorded = not_recorded = rejected = 0
    try:
        with _open_input(source) as stream:
            for number, obj, error in _read_jsonl(stream):
                if error is None:
                    error = _emit_line(eventlog, obj)
                if error is None:
                    recorded += 1
                elif error == "not recorded":
                    not_recorded += 1
                else:
                    rejected += 1
                    print(f"line {number}: REJECTED {error}")
    finally:
        eventlog.close()
    print(
        f"{recorded} recorded, {not_recorded} not recorded (schema not in allowed_schemas "
        f"or no sink configured), {rejected} rejected"
    )
    for handler in eventlog.all_handlers:
        target = getattr(handler, "filename", None)
        if target:
            print(f"written to {target}")
    return EXIT_INVALID if rejected else EXIT_OK


def _emit_line(eventlog: Any, obj: Any) -> str | None:
    if not isinstance(obj, dict) or "schema_id" not in obj or "data" not in obj:
        return 'expected {"schema_id": ID, "version": N, "data": {...}}'
    try:
        capsule = eventlog.record_event(
            obj["schema_id"], obj.get("version"), obj["data"], obj.get("timestamp")
        )
    except (EventValidationError, UnknownSchemaError) as exc:
        return str(exc)
    return None if capsule is not None else "not recorded"


# --------------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from .server import Collector

    config = load_config_file(args.config) if args.config else default_config(args.events_dir)
    if args.port is not None:
        config.Collector.port = args.port
    if args.ip is not None:
        config.Collector.ip = args.ip
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    collector = Collector(config=config)

    def ready(port: int) -> None:
        print(f"telemetry-sinks collector listening on {collector.url} (POST /api/events)")
        handlers = collector.eventlog.all_handlers
        for handler in handlers:
            name = getattr(handler, "sink_name", "") or type(handler).__name__
            target = getattr(handler, "filename", None)
            print(f"  sink {name} ({type(handler).__name__})" + (f" -> {target}" if target else ""))
        if not handlers:
            print("  no sinks configured: every event will be answered 'not_recorded'")
        print(f"  {len({sid for sid, _ in collector.eventlog.schemas})} schemas registered; auth: "
              + ("bearer token required" if collector.token else "none (set c.Collector.token or "
                 "TELEMETRY_SINKS_TOKEN to require a bearer token)"))
        sys.stdout.flush()

    collector.run(on_ready=ready)
    print("telemetry-sinks collector stopped; sinks flushed and closed", flush=True)
    return EXIT_OK


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telemetry-sinks",
        description="Schema-validated event logging with pluggable sinks.",
        epilog="Exit codes: 0 success, 1 invalid input, 2 bad usage or configuration.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "sinks",
        help="list the sinks, installed or not, with the extra to install",
        description="List every known sink with whether it imports now and how to install it.",
    )
    p.set_defaults(func=cmd_sinks)

    p = sub.add_parser(
        "validate",
        help="check a schema file, then each event line against it",
        description="Check SCHEMA, then each line of EVENTS (JSONL: raw events, request bodies "
        "or capsules), reporting line numbers and field paths.",
        epilog="example: telemetry-sinks validate launch.yaml launches.jsonl",
    )
    p.add_argument("schema", help="schema file (.json, .yaml, .yml)")
    p.add_argument("events", nargs="?", help="JSONL file of events ('-' for stdin)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "emit",
        help="route JSONL events through an EventLog built from a config file",
        description='Read lines {"schema_id": ID, "version": N, "data": {...}} from FILE or '
        "stdin and record them through the EventLog of --config (default: the embedded "
        "configuration, bundled example schemas to rotating files under ./events).",
        epilog="examples:\n  telemetry-sinks emit --example\n"
        "  telemetry-sinks emit --config my_config.py events.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", nargs="?", help="JSONL file ('-' or nothing for stdin)")
    p.add_argument("--config", help="traitlets config file (.py or .json)")
    p.add_argument("--example", action="store_true", help="emit the bundled example events")
    p.add_argument(
        "--events-dir", default="events", help="directory of the embedded default (./events)"
    )
    p.set_defaults(func=cmd_emit)

    p = sub.add_parser(
        "serve",
        help="run the event collector: POST /api/events into the EventLog of a config file",
        description="Serve the REST API through which browsers and remote clients send events "
        "(POST /api/events, GET /api/schemas, GET /api/health) into the EventLog of --config "
        "(default: the embedded configuration). Stops gracefully on SIGTERM or SIGINT.",
        epilog="examples:\n  telemetry-sinks serve\n"
        "  telemetry-sinks serve --config my_config.py --ip 0.0.0.0 --port 8585",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="traitlets config file (.py or .json); c.Collector.* options")
    p.add_argument("--port", type=int, help="port (default 8585; 0 picks a free port)")
    p.add_argument("--ip", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--events-dir", default="events", help="directory of the embedded default (./events)"
    )
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (SinkConfigError, UnknownSinkError, MissingExtraError, SchemaError, OSError) as exc:
        print(f"telemetry-sinks: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # traitlets errors from config files
        if type(exc).__name__ == "TraitError":
            print(f"telemetry-sinks: configuration error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

