"""The ``telemetry-sinks`` command line.

Exit codes: 0 success; 1 some input was invalid (events or schema; an out-of-date
archive index with ``archive rebuild --check``; events ``dead-letters replay`` could
not deliver); 2 bad usage or configuration
(unknown option, unreadable config, unknown sink, missing file).

Tables are aligned, and coloured only when stdout is a terminal and ``NO_COLOR``
is not set.  Long operations (``emit`` and ``validate`` of a file, ``archive
rebuild``) show a progress bar with rates on stderr when stderr is a terminal or
``--progress`` is given (tqdm's when it is installed, else a built-in one).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
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

EXIT_CODES = """exit codes:
  0  success
  1  invalid input (an invalid event or schema; an out-of-date index for archive rebuild --check;
     events not delivered by dead-letters replay)
  2  bad usage or configuration (unknown option, unreadable config file, unknown sink, missing file)"""


# --------------------------------------------------------------------------- colour and tables

_STYLES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def color_enabled(stream: IO[str]) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _paint(text: str, style: str | None, on: bool) -> str:
    if not on or not style or not text:
        return text
    codes = ";".join(_STYLES[s] for s in style.split("+"))
    return f"\x1b[{codes}m{text}\x1b[0m"


def _table(rows: list[list[Any]], out: IO[str], header: bool = True, color: bool | None = None) -> None:
    """Aligned columns; a cell is text or ``(text, style)``; padding is computed on the plain text."""
    if not rows:
        return
    on = color_enabled(out) if color is None else color
    cells = [[c if isinstance(c, tuple) else (str(c), None) for c in row] for row in rows]
    widths = [max(len(r[i][0]) for r in cells) for i in range(len(cells[0]))]
    for index, row in enumerate(cells):
        last = len(row) - 1
        parts = []
        for i, ((text, style), width) in enumerate(zip(row, widths)):
            pad = "" if i == last else " " * (width - len(text))
            parts.append(_paint(text, "bold" if header and index == 0 else style, on) + pad)
        out.write("  ".join(parts).rstrip() + "\n")
        if header and index == 0:
            out.write(_paint("  ".join("-" * w for w in widths), "dim", on) + "\n")


# --------------------------------------------------------------------------- progress


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class Progress:
    """A progress bar on stderr: bytes done of ``total`` (None: unknown) and items, with rates.

    Uses tqdm when it is importable, else a built-in line (redrawn in place on a
    terminal, printed once a second otherwise).  Disabled: every call is a no-op.
    """

    def __init__(self, desc: str, total: int | None, unit: str = "lines", enabled: bool = True) -> None:
        self.desc, self.total, self.unit, self.enabled = desc, total or None, unit, enabled
        self.done = self.items = 0
        self.start = self._last = time.monotonic()
        self._tty = sys.stderr.isatty() if enabled else False
        self._bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                try:  # a terminal that reports no size (a bare pty) gets a fixed width
                    sized = os.get_terminal_size(sys.stderr.fileno()).columns > 0
                except (OSError, ValueError):
                    sized = False
                self._bar = tqdm(total=self.total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                                 file=sys.stderr, mininterval=0.2, dynamic_ncols=sized,
                                 ncols=None if sized else 100, nrows=None if sized else 24)

    def update(self, nbytes: int, items: int = 1) -> None:
        if not self.enabled:
            return
        self.done += nbytes
        self.items += items
        now = time.monotonic()
        if self._bar is not None:
            self._bar.update(nbytes)
            if now - self._last >= 0.5:
                self._last = now
                self._bar.set_postfix_str(self._items_text(now), refresh=False)
            return
        if now - self._last >= (0.1 if self._tty else 1.0):
            self._last = now
            self._draw(now)

    def _items_text(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        return f"{self.items:,} {self.unit} {self.items / elapsed:,.0f} {self.unit}/s"

    def _line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        parts = [f"{self.desc}:"]
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * 20)
            parts.append(f"{fraction * 100:5.1f}% |{'#' * filled}{'.' * (20 - filled)}|")
            parts.append(f"{_human(self.done)}/{_human(self.total)}")
        else:
            parts.append(_human(self.done))
        parts.append(self._items_text(now))
        parts.append(f"{_human(self.done / elapsed)}/s")
        if self.total and self.done and self.done < self.total:
            eta = (self.total - self.done) * elapsed / self.done
            parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        else:
            parts.append(f"in {elapsed:.1f}s")
        return " ".join(parts)

    def _draw(self, now: float, final: bool = False) -> None:
        if self._tty:
            sys.stderr.write("\r" + self._line(now) + "\x1b[K" + ("\n" if final else ""))
        else:
            sys.stderr.write(self._line(now) + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        now = time.monotonic()
        if self._bar is not None:
            self._bar.set_postfix_str(self._items_text(now), refresh=True)
            self._bar.close()
        else:
            self._draw(now, final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _progress_wanted(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "progress", False)) or sys.stderr.isatty()


def _file_size(path: str | None) -> int | None:
    if path is None or path == "-":
        return None
    try:
        return os.path.getsize(path) if os.path.isfile(path) else None
    except OSError:
        return None


# --------------------------------------------------------------------------- sinks


def cmd_sinks(args: argparse.Namespace) -> int:
    from .registry import available_sinks

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
    _table(rows, sys.stdout)
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
    print(f"{_paint('OK', 'green+bold', on)} schema {schema.id!r} version {schema.version} ({args.schema})")
    if not args.events:
        return EXIT_OK
    ok = bad = 0
    rows: list[list[str]] = []

    def flush_rows() -> None:
        # Aligned in blocks of 1000 rows, so that a huge file is not held in memory.  The first
        # columns are joined with single spaces ("line 3: INVALID at $.x:"), then the reasons align.
        width = max(len(f"{r[0]} {r[1]} {r[2]}") for r in rows)
        for number, status, where, reason in rows:
            left = f"{number} {_paint(status, 'red+bold', on)} {_paint(where, 'cyan', on)}"
            pad = " " * (width - len(f"{number} {status} {where}"))
            sys.stdout.write(f"{left}{pad}  {reason}\n")
        sys.stdout.flush()
        rows.clear()

    progress = Progress("validate", _file_size(args.events), enabled=_progress_wanted(args))
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
    print(_paint(summary, "red" if bad else "green", on))
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
    progress = Progress("emit", _file_size(source), enabled=_progress_wanted(args))
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

    from .server import Collector

    config = load_config_file(args.config) if args.config else default_config(args.events_dir)
    if args.port is not None:
        config.Collector.port = args.port
    if args.ip is not None:
        config.Collector.ip = args.ip
    if args.hub_service:
        config.Collector.hub_service = True
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    collector = Collector(config=config)

    def ready(port: int) -> None:
        prefix = "/"
        if collector.hub_service:
            from .server.hub import service_prefix

            prefix = service_prefix()
        print(f"telemetry-sinks collector listening on {collector.url} (POST {prefix}api/events)")
        handlers = collector.eventlog.all_handlers
        for handler in handlers:
            name = getattr(handler, "sink_name", "") or type(handler).__name__
            target = getattr(handler, "filename", None)
            print(f"  sink {name} ({type(handler).__name__})" + (f" -> {target}" if target else ""))
        if not handlers:
            print("  no sinks configured: every event will be answered 'not_recorded'")
        print(f"  what is recorded, for the people the events are about: {collector.url}/ (public page)")
        print(f"  in the browser: {collector.url}/demo "
              f"(the module: {collector.url}/static/telemetry-sinks.js)")
        if collector.hub_service:
            auth = "JupyterHub (OAuth cookie or Hub API token)"
        elif collector.token:
            auth = "bearer token required"
        else:
            auth = "none (set c.Collector.token or TELEMETRY_SINKS_TOKEN to require a bearer token)"
        print(f"  {len({sid for sid, _ in collector.eventlog.schemas})} schemas registered; auth: {auth}")
        sys.stdout.flush()

    collector.run(on_ready=ready)
    print("telemetry-sinks collector stopped; sinks flushed and closed", flush=True)
    return EXIT_OK


# --------------------------------------------------------------------------- describe


def cmd_describe(args: argparse.Namespace) -> int:
    from .config import default_config, load_config_file
    from .describe import describe, sinks_from_config, sinks_from_handlers
    from .eventlog import EventLog

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
    from .sinks.archive import INDEX_NAME, archive_bytes, rebuild_index

    directory = args.directory
    if not os.path.isdir(directory):
        raise FileNotFoundError(2, f"{directory} is not a directory (an archive of events-YYYY-MM-DD.jsonl "
                                "files)")
    progress = Progress("rebuild", archive_bytes(directory), unit="files", enabled=_progress_wanted(args))
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
        _table(rows, sys.stdout, color=on)
    path = os.path.join(directory, INDEX_NAME)
    days, events = len(result.entries), result.events
    if args.check:
        if result.changed:
            print(_paint(f"{path} is out of date: {len(result.changed)} entries differ from the {days} day "
                         "files", "red", on))
            return EXIT_INVALID
        print(_paint(f"{path} is up to date: {days} days, {events:,} events", "green", on))
        return EXIT_OK
    print(f"rebuilt {path}: {days} days, {events:,} events ({len(result.changed)} entries changed)")
    return EXIT_OK


def cmd_archive_export(args: argparse.Namespace) -> int:
    """The Parquet layout of a JSONL archive (telemetry_sinks.lake.export)."""
    try:
        from .lake.export import export_archive, load_schemas
    except ImportError as exc:
        raise MissingExtraError(f"archive export needs pyarrow ({exc.name or exc}). Install it with: "
                                'pip install "telemetry-sinks[parquet]"') from None
    from .sinks.archive import archive_bytes

    schemas = load_schemas(args.schema or [])
    total = archive_bytes(args.archive_dir) if os.path.isdir(args.archive_dir) else None
    with Progress("export", total, unit="events", enabled=_progress_wanted(args)) as progress:
        result = export_archive(args.archive_dir, args.out_dir, schemas, row_group_size=args.row_group_size,
                                compression=args.compression, on_progress=progress.update)
    for line in result.warnings():
        print(f"warning: {line}", file=sys.stderr)
    print(result.summary())
    return EXIT_INVALID if result.bad_line_count else EXIT_OK


# --------------------------------------------------------------------------- tail


def _schema_matcher(schemas: list[str] | None) -> Callable[[bytes], bool]:
    """A line filter: its ``__schema__`` (or mybinder's ``schema``) is one of ``schemas``.

    A filter matches a schema id exactly, or its last path segment (``app-launch``
    matches ``https://events.example.org/app-launch``).
    """
    if not schemas:
        return lambda line: True
    wanted = set(schemas)

    def match(line: bytes) -> bool:
        try:
            obj = json.loads(line)
        except ValueError:
            return False
        if not isinstance(obj, dict):
            return False
        sid = obj.get("__schema__", obj.get("schema"))
        return isinstance(sid, str) and (sid in wanted or sid.rstrip("/").rsplit("/", 1)[-1] in wanted)

    return match


def _last_lines(
    stream: IO[bytes], end: int, n: int, match: Callable[[bytes], bool]
) -> tuple[list[bytes], int]:
    """The last ``n`` complete matching lines before ``end``, and where the complete lines end."""
    found: list[bytes] = []
    position, carry, complete_end = end, b"", None
    while position > 0 and len(found) < n:
        size = min(64 * 1024, position)
        position -= size
        stream.seek(position)
        pieces = (stream.read(size) + carry).split(b"\n")
        if complete_end is None:
            complete_end = end - len(pieces[-1])  # a partial last line is left for --follow
            pieces[-1] = b""
        carry = pieces[0]
        for line in reversed(pieces[1:]):
            if line.strip() and match(line):
                found.append(line)
                if len(found) == n:
                    break
    if position == 0 and len(found) < n and carry.strip() and match(carry):
        found.append(carry)
    if complete_end is None:  # n == 0 or an empty file: find the end of the last complete line
        stream.seek(max(0, end - 64 * 1024))
        tail = stream.read(end - max(0, end - 64 * 1024))
        complete_end = end - (len(tail) - tail.rfind(b"\n") - 1) if b"\n" in tail else max(0, end - len(tail))
    return found[::-1], complete_end


def _write_lines(lines: list[bytes]) -> None:
    for line in lines:
        sys.stdout.write(line.decode("utf-8", "replace").rstrip("\r") + "\n")
    sys.stdout.flush()


def cmd_tail(args: argparse.Namespace) -> int:
    match = _schema_matcher(args.schema)
    path = args.file
    try:
        return _tail(path, args, match)
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # e.g. piped into head
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def _tail(path: str, args: argparse.Namespace, match: Callable[[bytes], bool]) -> int:
    if path.endswith(".gz"):
        if args.follow:
            raise OSError(f"{path}: a compressed file is complete; --follow reads a growing JSONL file")
        import collections
        import gzip

        with gzip.open(path, "rb") as stream:
            last = collections.deque((line.rstrip(b"\n") for line in stream if line.strip() and match(line)),
                                     maxlen=max(args.lines, 0))
        _write_lines(list(last))
        return EXIT_OK
    if not args.follow:
        with open(path, "rb") as stream:
            lines, _ = _last_lines(stream, os.fstat(stream.fileno()).st_size, args.lines, match)
        _write_lines(lines)
        return EXIT_OK

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    interval = args.interval

    waited = False

    def wait_open(announce: bool) -> IO[bytes]:
        nonlocal waited
        while True:
            try:
                return open(path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                if announce:
                    print(f"telemetry-sinks tail: waiting for {path} to appear", file=sys.stderr, flush=True)
                    announce = False
                waited = True
                time.sleep(interval)

    stream = wait_open(announce=True)
    try:
        info = os.fstat(stream.fileno())
        if not waited:
            lines, position = _last_lines(stream, info.st_size, args.lines, match)
            _write_lines(lines)
            stream.seek(position)
        # else: the file appeared while we waited, so all of it is new: read it from its start
        identity = (info.st_dev, info.st_ino)
        buffer = b""

        def drain() -> None:
            nonlocal buffer
            while True:
                chunk = stream.read(64 * 1024)  # type: ignore[union-attr]
                if not chunk:
                    return
                *complete, buffer = (buffer + chunk).split(b"\n")
                _write_lines([line for line in complete if line.strip() and match(line)])

        while True:
            drain()
            try:
                current = os.stat(path)
            except FileNotFoundError:  # between a rotation's rename and the new file
                time.sleep(interval)
                continue
            if (current.st_dev, current.st_ino) != identity:
                drain()  # the rest of the rotated file, then the new file from its start
                if buffer.strip() and match(buffer):
                    _write_lines([buffer])
                stream.close()
                stream = wait_open(announce=False)
                info = os.fstat(stream.fileno())
                identity, buffer = (info.st_dev, info.st_ino), b""
                continue
            if current.st_size < stream.tell():  # truncated: start again from the top
                stream.seek(0)
                buffer = b""
                continue
            time.sleep(interval)
    finally:
        stream.close()


# --------------------------------------------------------------------------- main


# --------------------------------------------------------------------------- dead letters


def cmd_dead_letters_replay(args: argparse.Namespace) -> int:
    from .delivery import NetworkSink
    from .delivery.replay import ReplayError, replay_dead_letters
    from .policy import policy_for

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


def _epilog(examples: str) -> str:
    return f"examples:\n{examples}\n\n{EXIT_CODES}"


def _add_config_options(parser: argparse.ArgumentParser, config_help: str) -> None:
    """``--config`` and ``--events-dir``: the EventLog of a config file, or the embedded default."""
    parser.add_argument("--config", help=config_help)
    parser.add_argument(
        "--events-dir", default="events", help="directory of the embedded default (./events)"
    )


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="telemetry-sinks",
        description="Schema-validated event logging with pluggable sinks.",
        epilog=_epilog("  telemetry-sinks sinks\n  telemetry-sinks emit --example\n"
                       "  telemetry-sinks describe -o what-we-record.html\n"
                       "  telemetry-sinks COMMAND --help"),
        formatter_class=raw,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    progress_help = "show a progress bar with rates on stderr (default: only when stderr is a terminal)"

    p = sub.add_parser(
        "sinks",
        help="list the sinks, installed or not, with the extra to install",
        description="List every known sink with whether it imports now and how to install it. "
        "Colours only on a terminal and when NO_COLOR is not set.",
        epilog=_epilog("  telemetry-sinks sinks\n  NO_COLOR=1 telemetry-sinks sinks | grep kafka"),
        formatter_class=raw,
    )
    p.set_defaults(func=cmd_sinks)

    p = sub.add_parser(
        "validate",
        help="check a schema file, then each event line against it",
        description="Check SCHEMA, then each line of EVENTS (JSONL: raw events, request bodies "
        "or capsules), reporting line numbers and field paths in an aligned table.",
        epilog=_epilog("  telemetry-sinks validate launch.yaml\n"
                       "  telemetry-sinks validate launch.yaml launches.jsonl\n"
                       "  zcat events.jsonl.gz | telemetry-sinks validate launch.yaml -"),
        formatter_class=raw,
    )
    p.add_argument("schema", help="schema file (.json, .yaml, .yml)")
    p.add_argument("events", nargs="?", help="JSONL file of events ('-' for stdin)")
    p.add_argument("--progress", action="store_true", help=progress_help)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "emit",
        help="route JSONL events through an EventLog built from a config file",
        description='Read lines {"schema_id": ID, "version": N, "data": {...}} from FILE or '
        "stdin and record them through the EventLog of --config (default: the embedded "
        "configuration, bundled example schemas to rotating files under ./events).",
        epilog=_epilog("  telemetry-sinks emit --example\n"
                       "  telemetry-sinks emit --config my_config.py events.jsonl\n"
                       "  telemetry-sinks emit --config my_config.py --progress big.jsonl"),
        formatter_class=raw,
    )
    p.add_argument("file", nargs="?", help="JSONL file ('-' or nothing for stdin)")
    _add_config_options(p, "traitlets config file (.py or .json)")
    p.add_argument("--example", action="store_true", help="emit the bundled example events")
    p.add_argument("--progress", action="store_true", help=progress_help)
    p.set_defaults(func=cmd_emit)

    p = sub.add_parser(
        "serve",
        help="run the event collector: POST /api/events into the EventLog of a config file",
        description="Serve the REST API through which browsers and remote clients send events "
        "(POST /api/events, GET /api/schemas, GET /api/health) into the EventLog of --config "
        "(default: the embedded configuration), and at GET / a public page saying what is "
        "recorded (the page `describe` prints). Stops gracefully on SIGTERM or SIGINT.",
        epilog=_epilog("  telemetry-sinks serve\n"
                       "  telemetry-sinks serve --config my_config.py --ip 0.0.0.0 --port 8585"),
        formatter_class=raw,
    )
    _add_config_options(p, "traitlets config file (.py or .json); c.Collector.* options")
    p.add_argument("--port", type=int, help="port (default 8585; 0 picks a free port)")
    p.add_argument("--ip", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--hub-service", action="store_true",
                   help="run as a JupyterHub service: Hub authentication (OAuth cookie or Hub API "
                        "token) on every request, under $JUPYTERHUB_SERVICE_PREFIX")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "describe",
        help="say what is recorded, what is not, and where events go (HTML or Markdown)",
        description="Render every registered schema (title, description, versions, each property "
        "with its description, type and personal-data categories) with the operator's policy "
        "(which schemas are recorded, which personal data is removed) and the sinks events go to "
        "(name and destination, never secrets), in plain language for the people the events are "
        "about. HTML is one self-contained page (no scripts, no external assets); the collector "
        "serves it at GET /. Nothing is written to any sink and no server is contacted.",
        epilog=_epilog("  telemetry-sinks describe -o what-we-record.html\n"
                       "  telemetry-sinks describe --config collector_config.py --format md > RECORDED.md"),
        formatter_class=raw,
    )
    _add_config_options(p, "traitlets config file (.py or .json); default: the embedded one")
    p.add_argument("--format", choices=("html", "md"), default="html", help="html (default) or md")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser(
        "dead-letters",
        help="replay a dead-letter file once the cause of the refusals is fixed",
        description="Work with the dead-letter files of network sinks (JSON lines of events a "
        "backend refused for good, with the reason).",
        epilog=_epilog("  telemetry-sinks dead-letters replay /var/spool/telemetry/http/dead_letters.jsonl "
                       "--config telemetry_config.py"),
        formatter_class=raw,
    )
    letters = p.add_subparsers(dest="dead_letters_command", metavar="DEAD_LETTERS_COMMAND")
    letters.required = True
    q = letters.add_parser(
        "replay",
        help="send each dead letter again through the sink of the same name",
        description="Send each event of FILE again, under its original event id, through the sink "
        "of the same name in the configuration (fix the token, permission or mapping there first). "
        "FILE is renamed while it is replayed; refused events go back to the sink's dead-letter "
        "file with the new reason; lines that cannot be sent now (no such sink, schema no longer "
        "allowed, backend not answering) are written back to FILE unchanged. Exit 0 when every "
        "event was delivered, 1 when some were not.",
        epilog=_epilog("  telemetry-sinks dead-letters replay dead_letters.jsonl --config config.py"),
        formatter_class=raw,
    )
    q.add_argument("file", help="the dead-letter file (JSONL)")
    q.add_argument("--config", required=True,
                   help="traitlets config file (.py or .json) defining the sinks, as the application uses")
    q.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for each sink's backend to acknowledge (default 60)")
    q.set_defaults(func=cmd_dead_letters_replay)

    p = sub.add_parser(
        "archive",
        help="manage an archive directory (events-YYYY-MM-DD.jsonl files and index.jsonl)",
        description="Manage a directory written by the archive sink, in the format of the "
        "mybinder.org events archive: one events-YYYY-MM-DD.jsonl(.gz) file per UTC day and "
        'an index.jsonl of {"name", "date", "count"}.',
        epilog=_epilog("  telemetry-sinks archive rebuild /srv/archive"),
        formatter_class=raw,
    )
    archive = p.add_subparsers(dest="archive_command", metavar="ARCHIVE_COMMAND")
    archive.required = True
    q = archive.add_parser(
        "rebuild",
        help="recompute index.jsonl from the day files",
        description="Recompute index.jsonl from the events-YYYY-MM-DD.jsonl(.gz) files in DIRECTORY, "
        "counting their lines (gzip files are decompressed). An existing index may hold counts as "
        "strings (as mybinder.org's does) or integers; the new one holds integers. Entries that "
        "change are listed.",
        epilog=_epilog("  telemetry-sinks archive rebuild /srv/archive\n"
                       "  telemetry-sinks archive rebuild --check /srv/archive   # exit 1 if out of date"),
        formatter_class=raw,
    )
    q.add_argument("directory", help="the archive directory")
    q.add_argument("--check", action="store_true",
                   help="only compare: write nothing, exit 1 when the index is out of date")
    q.add_argument("--progress", action="store_true", help=progress_help)
    q.set_defaults(func=cmd_archive_rebuild)
    q = archive.add_parser(
        "export",
        help="write the archive as Parquet, typed from the schemas (for DuckDB, pandas, Spark)",
        description="Export the events-YYYY-MM-DD.jsonl(.gz) files of ARCHIVE_DIR into OUT_DIR as the "
        "layout of the parquet sink: schema=<$id>/version=<n>/date=<day>/part-*.parquet, one typed, "
        "documented table per schema version derived from the JSON Schemas given with --schema "
        "(events of other schemas keep their properties in an __extra__ JSON column), and "
        "_index.jsonl with the count of each day, schema and version. A day exported again replaces "
        "its partitions. Needs pyarrow (the parquet extra).",
        epilog=_epilog("  telemetry-sinks archive export /srv/archive /srv/lake --schema event-schemas/\n"
                       "  telemetry-sinks archive export archive lake --schema launch-v5.json "
                       "--schema launch-v6.json"),
        formatter_class=raw,
    )
    q.add_argument("archive_dir", help="the JSONL archive directory")
    q.add_argument("out_dir", help="the Parquet layout's directory (created if missing)")
    q.add_argument("--schema", action="append", metavar="PATH",
                   help="JSON Schema file, or directory of them, to type the columns from; repeatable")
    q.add_argument("--compression", default="zstd", help="Parquet compression (default zstd)",
                   choices=("zstd", "snappy", "gzip", "lz4", "brotli", "none"))
    q.add_argument("--row-group-size", type=int, default=128 * 1024, metavar="ROWS",
                   help="rows per row group (default 131072)")
    q.add_argument("--progress", action="store_true", help=progress_help)
    q.set_defaults(func=cmd_archive_export)

    p = sub.add_parser(
        "tail",
        help="print the last lines of a JSONL sink's file and follow it",
        description="Print the last N lines of FILE (the output of a file sink), optionally only "
        "events of some schemas, and with --follow keep printing new lines. Following survives "
        "rotation: when FILE is replaced (renamed away and created again) the rest of the old "
        "file is printed and the new one is read from its start; when it is truncated it is "
        "read again from its start. A .gz file is read whole (without --follow). Stop with Ctrl-C.",
        epilog=_epilog("  telemetry-sinks tail events/events.jsonl\n"
                       "  telemetry-sinks tail -n 50 --schema app-launch events/events.jsonl\n"
                       "  telemetry-sinks tail --follow --schema https://events.example.org/app/launch "
                       "/var/log/events.jsonl"),
        formatter_class=raw,
    )
    p.add_argument("file", help="JSONL file")
    p.add_argument("-n", "--lines", type=int, default=10, metavar="N",
                   help="how many matching lines to print first (default 10; 0: none)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing lines as they are written")
    p.add_argument("--schema", action="append", metavar="ID",
                   help="only events of this schema (its $id, or the last part of it); repeatable")
    p.add_argument("--interval", type=float, default=0.2, metavar="SECONDS",
                   help="how often --follow looks for new lines (default 0.2)")
    p.set_defaults(func=cmd_tail)
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

