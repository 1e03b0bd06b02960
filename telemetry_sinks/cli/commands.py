"""The commands of ``telemetry-sinks``: one function per subcommand, ``cmd_<name>(args) -> exit code``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from typing import IO, Any

from ..config import EXAMPLE_EVENTS, default_config, load_config_file
from ..errors import EventValidationError, MissingExtraError, SchemaError, UnknownSchemaError
from ..schema import Schema, load_schema_file
from .common import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from .terminal import Progress, color_enabled, file_size, paint, progress_wanted, table

# --------------------------------------------------------------------------- sinks


def cmd_sinks(args: argparse.Namespace) -> int:
    from ..registry import available_sinks

    rows: list[list[Any]] = [["NAME", "INSTALLED", "EXTRA", "INSTALL WITH", "CLASS"]]
    for info in available_sinks():
        rows.append(
            [
                (info.name, "cyan"),
                ("yes", "green") if info.importable else ("no", "yellow"),
                info.extra or "-",
                "-" if info.importable else (info.install_command or "-"),
                (info.class_path, "dim"),
            ]
        )
    table(rows, sys.stdout)
    return EXIT_OK


# --------------------------------------------------------------------------- validate


def _read_jsonl(stream: IO[str], progress: Progress | None = None) -> Iterator[tuple[int, Any, str | None]]:
    """Yield ``(line_number, parsed, error)`` for each non-blank line."""
    for number, line in enumerate(stream, start=1):
        if progress is not None:
            progress.update(len(line.encode("utf-8", "surrogateescape")))
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
    on = color_enabled(sys.stdout)
    print(f"{paint('OK', 'green+bold', on)} schema {schema.id!r} version {schema.version} ({args.schema})")
    if not args.events:
        return EXIT_OK
    ok = bad = 0
    rows: list[list[str]] = []

    def flush_rows() -> None:
        # Aligned in blocks of 1000 rows, so that a huge file is not held in memory.  The first
        # columns are joined with single spaces ("line 3: INVALID at $.x:"), then the reasons align.
        width = max(len(f"{r[0]} {r[1]} {r[2]}") for r in rows)
        for number, status, where, reason in rows:
            left = f"{number} {paint(status, 'red+bold', on)} {paint(where, 'cyan', on)}"
            pad = " " * (width - len(f"{number} {status} {where}"))
            sys.stdout.write(f"{left}{pad}  {reason}\n")
        sys.stdout.flush()
        rows.clear()

    progress = Progress("validate", file_size(args.events), enabled=progress_wanted(args))
    with _open_input(args.events) as stream, progress:
        for number, obj, error in _read_jsonl(stream, progress):
            where = "invalid JSON"
            if error is None:
                try:
                    schema.validate(_event_data(obj))
                except EventValidationError as exc:
                    where, error = f"at {exc.path}", exc.reason
            else:
                error = error.removeprefix("invalid JSON ")
            if error is None:
                ok += 1
                continue
            bad += 1
            rows.append([f"line {number}:", "INVALID", f"{where}:", error])
            if len(rows) >= 1000:
                flush_rows()
    if rows:
        flush_rows()
    summary = f"{ok} valid, {bad} invalid"
    print(paint(summary, "red" if bad else "green", on))
    return EXIT_INVALID if bad else EXIT_OK


# --------------------------------------------------------------------------- emit


def _open_input(path: str | None) -> Any:
    if path is None or path == "-":
        return _NoClose(sys.stdin)
    return open(path, encoding="utf-8")


class _NoClose:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __enter__(self) -> IO[str]:
        return self.stream

    def __exit__(self, *exc: Any) -> None:
        return None


def build_eventlog(config_path: str | None, events_dir: str = "events") -> Any:
    """The EventLog of a config file, or of the embedded default when there is none."""
    from ..eventlog import EventLog

    config = load_config_file(config_path) if config_path else default_config(events_dir)
    return EventLog(config=config)


def cmd_emit(args: argparse.Namespace) -> int:
    source = str(EXAMPLE_EVENTS) if args.example else args.file
    eventlog = build_eventlog(args.config, args.events_dir)
    recorded = not_recorded = rejected = 0
    progress = Progress("emit", file_size(source), enabled=progress_wanted(args))
    try:
        with _open_input(source) as stream, progress:
            for number, obj, error in _read_jsonl(stream, progress):
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
        target = getattr(handler, "filename", None) or getattr(handler, "directory", None)
        if isinstance(target, str) and target:
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

    from ..server import Collector

    config = load_config_file(args.config) if args.config else default_config(args.events_dir)
    if args.port is not None:
        config.Collector.port = args.port
    if args.ip is not None:
        config.Collector.ip = args.ip
    if args.hub_service:
        config.Collector.hub_service = True
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.processes < 1:
        print("telemetry-sinks: error: --processes must be 1 or more", file=sys.stderr)
        return EXIT_USAGE
    if args.processes > 1:
        from ..server.processes import serve_processes

        code = serve_processes(config, args.processes, on_ready=_announce_collector)
        print(f"telemetry-sinks collector stopped ({args.processes} processes); sinks flushed and closed",
              flush=True)  # fmt: skip
        return code
    collector = Collector(config=config)
    collector.run(on_ready=lambda port: _announce_collector(collector, 1, 1))
    print("telemetry-sinks collector stopped; sinks flushed and closed", flush=True)
    return EXIT_OK


def _announce_collector(collector: Any, index: int, processes: int) -> None:
    """The start banner: the first process says where it listens and what it records.

    Written at once, so that the lines of several processes never mix.
    """
    if index > 1:
        pid = os.getpid()
        sys.stdout.write(f"telemetry-sinks collector process {index} of {processes} (pid {pid}) ready\n")
        sys.stdout.flush()
        return
    prefix = "/"
    if collector.hub_service:
        from ..server.hub import service_prefix

        prefix = service_prefix()
    extra = f", {processes} processes (this one pid {os.getpid()})" if processes > 1 else ""
    lines = [f"telemetry-sinks collector listening on {collector.url} (POST {prefix}api/events){extra}"]
    handlers = collector.eventlog.all_handlers
    for handler in handlers:
        name = getattr(handler, "sink_name", "") or type(handler).__name__
        target = getattr(handler, "filename", None)
        lines.append(f"  sink {name} ({type(handler).__name__})" + (f" -> {target}" if target else ""))
    if not handlers:
        lines.append("  no sinks configured: every event will be answered 'not_recorded'")
    lines.append(f"  what is recorded, for the people the events are about: {collector.url}/ (public page)")
    lines.append(f"  in the browser: {collector.url}/demo "
                 f"(the module: {collector.url}/static/telemetry-sinks.js)")
    if collector.hub_service:
        auth = "JupyterHub (OAuth cookie or Hub API token)"
    elif collector.token:
        auth = "bearer token required"
    else:
        auth = "none (set c.Collector.token or TELEMETRY_SINKS_TOKEN to require a bearer token)"
    lines.append(f"  {len({sid for sid, _ in collector.eventlog.schemas})} schemas registered; auth: {auth}")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- relay


def cmd_relay(args: argparse.Namespace) -> int:
    import logging

    from traitlets.config import Config

    from ..relay import Relay

    config = load_config_file(args.config) if args.config else Config()
    if args.topic:
        config.Relay.topics = args.topic
    if args.group_id:
        config.Relay.group_id = args.group_id
    if args.bootstrap_servers:
        config.Relay.bootstrap_servers = args.bootstrap_servers
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    relay = Relay(config=config)
    sinks = ", ".join(t.label for t in relay.targets)
    print(f"telemetry-sinks relay: group {relay.group_id!r} reading {', '.join(relay.topics)} from "
          f"{','.join(relay.bootstrap_list())} into {sinks}", flush=True)
    relay.run_until_signal()
    print("telemetry-sinks relay stopped; delivered offsets committed, sinks closed", flush=True)
    return EXIT_OK


# --------------------------------------------------------------------------- describe


def cmd_describe(args: argparse.Namespace) -> int:
    from ..config import default_config, load_config_file
    from ..describe import describe, sinks_from_config, sinks_from_handlers
    from ..eventlog import EventLog

    config = load_config_file(args.config) if args.config else default_config(args.events_dir)
    sinks = sinks_from_config(config)  # described from the config: nothing is opened or contacted
    eventlog = EventLog(config=config, sinks=[])
    text = describe(eventlog, args.format, sinks=sinks_from_handlers(eventlog.handlers) + sinks)
    if args.output and args.output != "-":
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


# --------------------------------------------------------------------------- archive


def cmd_archive_rebuild(args: argparse.Namespace) -> int:
    from ..archive_index import INDEX_NAME, archive_bytes, rebuild_index

    directory = args.directory
    if not os.path.isdir(directory):
        raise FileNotFoundError(2, f"{directory} is not a directory (an archive of events-YYYY-MM-DD.jsonl "
                                "files)")
    progress = Progress("rebuild", archive_bytes(directory), unit="files", enabled=progress_wanted(args))
    with progress:
        result = rebuild_index(directory, write=not args.check,
                               on_progress=lambda n: progress.update(n, items=0))
        progress.items = len(result.entries)
    on = color_enabled(sys.stdout)
    for day in result.both_forms:
        print(f"warning: {day} has both events-{day}.jsonl and events-{day}.jsonl.gz; the index names the "
              "plain file (the .gz is the leftover of an interrupted compression)", file=sys.stderr)
    if result.changed:
        rows: list[list[Any]] = [["DATE", "INDEX SAID", "FILES HAVE"]]
        for day, old, new in result.changed:
            rows.append([day, f"{old.name} {old.count}" if old else ("(missing)", "yellow"),
                         (f"{new.name} {new.count}", "green") if new else ("(no file)", "red")])
        table(rows, sys.stdout, color=on)
    path = os.path.join(directory, INDEX_NAME)
    days, events = len(result.entries), result.events
    if args.check:
        if result.changed:
            print(paint(f"{path} is out of date: {len(result.changed)} entries differ from the {days} day "
                         "files", "red", on))
            return EXIT_INVALID
        print(paint(f"{path} is up to date: {days} days, {events:,} events", "green", on))
        return EXIT_OK
    print(f"rebuilt {path}: {days} days, {events:,} events ({len(result.changed)} entries changed)")
    return EXIT_OK


def cmd_archive_export(args: argparse.Namespace) -> int:
    """The Parquet layout of a JSONL archive (telemetry_sinks.lake.export)."""
    try:
        from ..lake.export import export_archive, load_schemas
    except ImportError as exc:
        raise MissingExtraError(f"archive export needs pyarrow ({exc.name or exc}). Install it with: "
                                'pip install "telemetry-sinks[parquet]"') from None
    from ..archive_index import archive_bytes

    schemas = load_schemas(args.schema or [])
    total = archive_bytes(args.archive_dir) if os.path.isdir(args.archive_dir) else None
    with Progress("export", total, unit="events", enabled=progress_wanted(args)) as progress:
        result = export_archive(args.archive_dir, args.out_dir, schemas, row_group_size=args.row_group_size,
                                compression=args.compression, on_progress=progress.update)
    for line in result.warnings():
        print(f"warning: {line}", file=sys.stderr)
    print(result.summary())
    return EXIT_INVALID if result.bad_line_count else EXIT_OK


# --------------------------------------------------------------------------- dead letters


def cmd_dead_letters_replay(args: argparse.Namespace) -> int:
    from ..delivery.replay import ReplayError, replay_dead_letters
    from ..policy import policy_for
    from ..sinks.network import NetworkSink

    eventlog = build_eventlog(args.config, "events")
    sinks = {h.label: h for h in eventlog.all_handlers if isinstance(h, NetworkSink)}

    def allowed(payload: Any) -> bool:
        if isinstance(payload, dict) and isinstance(payload.get("__schema__"), str):
            return policy_for(eventlog.allowed_schemas, payload["__schema__"]) is not None
        return True  # a plain log record: its logger configuration sent it

    try:
        report = replay_dead_letters(args.file, sinks, allowed=allowed, timeout=args.timeout)
    except ReplayError as exc:
        print(f"telemetry-sinks: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        eventlog.close()
    resent = sum(report.resent.values())
    per_sink = ", ".join(f"{name}: {count}" for name, count in sorted(report.resent.items()))
    print(f"{resent} resent ({per_sink or 'none'}): {report.delivered} delivered, "
          f"{report.dead_lettered} refused again, {report.pending} in the spool, "
          f"{report.dropped} dropped")  # fmt: skip
    reasons = Counter(why for _, why in report.kept)
    for why, count in sorted(reasons.items()):
        lines = [str(n) for n, w in report.kept if w == why]
        shown = ", ".join(lines[:10]) + (", ..." if len(lines) > 10 else "")
        print(f"{count} kept in {report.file} (lines {shown}): {why}")
    if report.dead_lettered:
        print("refused events are back in the sinks' dead-letter files with the new reason")
    return EXIT_OK if report.complete else EXIT_INVALID


