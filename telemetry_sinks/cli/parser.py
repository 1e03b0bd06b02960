"""The ``telemetry-sinks`` command line: the argument parser and ``main``.

Exit codes: 0 success; 1 some input was invalid (events or schema; an out-of-date
archive index with ``archive rebuild --check``; events ``dead-letters replay`` could
not deliver); 2 bad usage or configuration
(unknown option, unreadable config, unknown sink, missing file).

The rooms: :mod:`.parser` (this: arguments, help texts, ``main``), :mod:`.commands`
(one function per subcommand), :mod:`.tail` (following a file), :mod:`.terminal`
(colour, tables, progress bars).  Long operations (``emit`` and ``validate`` of a
file, ``archive rebuild``) show a progress bar with rates on stderr when stderr is a
terminal or ``--progress`` is given.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import MissingExtraError, PolicyError, SchemaError, SinkConfigError, UnknownSinkError
from .commands import (
    cmd_archive_export,
    cmd_archive_rebuild,
    cmd_dead_letters_replay,
    cmd_describe,
    cmd_emit,
    cmd_relay,
    cmd_serve,
    cmd_sinks,
    cmd_validate,
)
from .common import EXIT_CODES, EXIT_USAGE
from .purge import add_purge_command
from .tail import cmd_tail


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
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="collector processes on the port, each with its own sink workers and spool "
                   "(process-<i> under each configured spool_dir); default 1")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "relay",
        help="deliver capsules from Kafka topics to sinks, as a consumer group",
        description="Consume capsules from Kafka topics (as written by the Kafka sink) as a member of "
        "a consumer group and deliver them to the sinks of --config (c.Relay.sinks, or "
        "c.EventLog.sinks), committing each partition's offset only after every sink acknowledged, "
        "spooled or dead-lettered the events before it. Relays with the same group share the "
        "partitions. Stops gracefully on SIGTERM or SIGINT. Needs confluent-kafka: "
        'pip install "telemetry-sinks[relay]".',
        epilog=_epilog("  telemetry-sinks relay --config relay_config.py\n"
                       "  telemetry-sinks relay --config archive.py --topic telemetry-events "
                       "--group-id archive-writers"),
        formatter_class=raw,
    )
    p.add_argument("--config", help="traitlets config file (.py or .json): c.Relay.* and the sinks' options")
    p.add_argument("--topic", action="append", metavar="TOPIC",
                   help="topic to consume (repeatable; default c.Relay.topics)")
    p.add_argument("--group-id", help="consumer group (default c.Relay.group_id)")
    p.add_argument("--bootstrap-servers", metavar="HOST:PORT,...",
                   help="brokers (default c.Relay.bootstrap_servers)")
    p.set_defaults(func=cmd_relay)

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
    add_purge_command(archive, _epilog, raw)
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
    except (SinkConfigError, UnknownSinkError, MissingExtraError, SchemaError, PolicyError, OSError) as exc:
        print(f"telemetry-sinks: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # traitlets errors from config files
        if type(exc).__name__ == "TraitError":
            print(f"telemetry-sinks: configuration error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise


