"""``telemetry-sinks archive purge``: the retention of an archive, run over an existing directory."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..capsule import parse_timestamp

DESCRIPTION = (
    "Apply the retention of the policy to an archive directory (events-YYYY-MM-DD.jsonl(.gz) and "
    "index.jsonl): delete the day files whose day ended longer ago than --max-age (default: "
    "c.ArchiveSink.max_age of --config), and in the other days apply the retention stages of the "
    "policy in --config (c.EventLog.allowed_schemas[...]['retention'], with its schemas and pseudonym "
    "key) to the events old enough. Day files are rewritten atomically and index.jsonl is updated; "
    "lines that do not change are kept byte for byte. --dry-run writes nothing and lists what would "
    "change. Run it while no archive sink writes to the directory."
)
EXAMPLES = (
    "  telemetry-sinks archive purge /srv/archive --config telemetry_config.py --dry-run\n"
    "  telemetry-sinks archive purge /srv/archive --config telemetry_config.py\n"
    "  telemetry-sinks archive purge /srv/archive --max-age 2y"
)


def add_purge_command(archive: Any, epilog: Any, formatter: type) -> None:
    """Add ``purge`` to the ``archive`` subcommands."""
    q = archive.add_parser(
        "purge",
        help="delete old day files and remove personal fields of old events (retention)",
        description=DESCRIPTION,
        epilog=epilog(EXAMPLES),
        formatter_class=formatter,
    )
    q.add_argument("directory", help="the archive directory")
    q.add_argument("--config", help="traitlets config file (.py or .json) with the policy, schemas and key")
    q.add_argument("--max-age", metavar="AGE", help='delete day files older than AGE ("90d", "1y")')
    q.add_argument("--dry-run", action="store_true", help="write nothing; list what would change")
    q.add_argument("--now", metavar="TIME", help="act as if it were TIME (ISO 8601), e.g. to preview a date")
    q.set_defaults(func=cmd_archive_purge)


def cmd_archive_purge(args: argparse.Namespace) -> int:
    from ..config import load_config_file
    from ..errors import SinkConfigError
    from ..retention import RetentionRules, parse_age, purge_archive

    if not os.path.isdir(args.directory):
        raise FileNotFoundError(2, f"{args.directory} is not a directory (an archive of "
                                "events-YYYY-MM-DD.jsonl files)")
    rules = None
    max_age_text = args.max_age
    if args.config:
        from ..eventlog import EventLog

        config = load_config_file(args.config)
        eventlog = EventLog(config=config, sinks=[])  # no sink is opened: nothing else writes here
        rules = RetentionRules.of(eventlog)
        if max_age_text is None and "ArchiveSink" in config and config.ArchiveSink.get("max_age"):
            max_age_text = config.ArchiveSink.max_age
    max_age = parse_age(max_age_text, "--max-age") if max_age_text else None
    if rules is None and max_age is None:
        raise SinkConfigError(
            "nothing to purge: give --max-age, or a --config whose c.EventLog.allowed_schemas has "
            "'retention' stages (or sets c.ArchiveSink.max_age)."
        )
    now = None
    if args.now:
        now = parse_timestamp(args.now)
        if now is None:
            raise SinkConfigError(f"--now {args.now!r} is not an ISO 8601 time such as 2026-01-31T00:00:00Z.")
    report = purge_archive(args.directory, rules, max_age, now=now, dry_run=args.dry_run)
    verb = ("would be deleted", "would change") if args.dry_run else ("deleted", "changed")
    for change in report.changes:
        if change.action == "delete":
            print(f"{change.name}: {verb[0]} ({change.events} events)")
        else:
            print(("(dry run) " if args.dry_run else "") + change.summary())
    events = sum(c.changed for c in report.rewritten)
    print(f"{len(report.deleted)} day files {verb[0]}, {events} events in {len(report.rewritten)} days "
          f"{verb[1]}" + (" (dry run: nothing was written)" if args.dry_run else ""))
    sys.stdout.flush()
    return 0
