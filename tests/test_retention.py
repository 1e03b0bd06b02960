"""Retention of what the sinks store: old files deleted, personal fields of old archive days removed.

Real data: the mybinder.org archive lines of ``tests/fixtures/mybinder_archive`` (BinderHub
launch events of 2018 and 2019, flat ``timestamp``/``schema``/``version`` lines), and archives
written by the archive sink through an EventLog.  A crash in the middle of a rewrite is a real
child process killed with SIGKILL.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from telemetry_sinks import EventLog, FileSink, RotatingFileSink, SinkConfigError, TimedRotatingFileSink
from telemetry_sinks.archive_index import read_index, rebuild_index
from telemetry_sinks.retention import STATE_NAME, RetentionRules, purge_archive
from telemetry_sinks.sinks.archive import ArchiveSink

pytestmark = pytest.mark.timeout(120)

BINDER = "binderhub.jupyter.org/launch"
DAY = 86400
KEY = "retention-test-key-0123456789abcdef"


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "telemetry_sinks", *map(str, args)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def utc_days_ago(date: str) -> int:
    """Whole days from the end of the UTC day ``date`` to now."""
    end = dt.datetime.fromisoformat(date).replace(tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
    return int((dt.datetime.now(dt.timezone.utc) - end).total_seconds() // DAY)


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every file (to prove what a purge did not touch)."""
    files = sorted(p for p in directory.iterdir() if p.is_file())
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def lines_of(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def make_old(path: Path, days: float) -> None:
    when = time.time() - days * DAY
    os.utime(path, (when, when))


def copy_mybinder_archive(directory: Path, fixtures_dir: Path) -> Path:
    """The real mybinder.org lines as an archive: one file per UTC day, and the real index.jsonl
    (of 2018-11-03 and 2018-11-04, counts as strings), older than the day files."""
    directory.mkdir()
    real = fixtures_dir / "mybinder_archive"
    shutil.copy(real / "from-sydney-lesson-e1a67d9" / "index.jsonl", directory)
    make_old(directory / "index.jsonl", 1)
    shutil.copy(real / "from-sydney-lesson-e1a67d9" / "events-2018-11-03.jsonl", directory)
    by_day: dict[str, list[str]] = {}
    sample = real / "from-binderlyzer-c956adf" / "events-2019-sample.reconstructed.jsonl"
    for line in sample.read_text().splitlines():
        by_day.setdefault(json.loads(line)["timestamp"][:10], []).append(line + "\n")
    for day, lines in by_day.items():
        (directory / f"events-{day}.jsonl").write_text("".join(lines))
    return directory


@pytest.fixture
def mybinder_archive(tmp_path, fixtures_dir) -> Path:
    """:func:`copy_mybinder_archive` with its index rebuilt."""
    directory = copy_mybinder_archive(tmp_path / "archive", fixtures_dir)
    rebuild_index(directory)
    return directory


# --------------------------------------------------------------------------- file sinks


@pytest.mark.parametrize("cls, rotated", [
    (FileSink, ["events.jsonl.1", "events.jsonl.2.gz"]),              # logrotate's names
    (RotatingFileSink, ["events.jsonl.1", "events.jsonl.2", "events.jsonl.3.gz"]),
    (TimedRotatingFileSink, ["events.jsonl.2026-01-01", "events.jsonl.2026-01-02_10.1.gz"]),
])
def test_file_sinks_delete_their_files_older_than_max_age_at_start(tmp_path, cls, rotated):
    for name in [*rotated, "events.jsonl", "events.jsonl.lock", "other.jsonl", "events.jsonl.tmp"]:
        (tmp_path / name).write_text('{"seq": 1}\n')
        make_old(tmp_path / name, 40)
    fresh = tmp_path / rotated[0]
    make_old(fresh, 10)  # written ten days ago: not due
    sink = cls(filename=str(tmp_path / "events.jsonl"), max_age="30d")
    sink.emit(logging.makeLogRecord({"msg": {"seq": 2}}))
    sink.close()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["events.jsonl", rotated[0], "events.jsonl.lock", "other.jsonl",
                           "events.jsonl.tmp"])
    # The old active file was deleted before the sink opened it: it holds only the new event.
    assert [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()] == [{"seq": 2}]
    assert fresh.read_text() == '{"seq": 1}\n'


def test_a_rotation_deletes_the_backups_that_became_too_old(tmp_path):
    sink = RotatingFileSink(filename=str(tmp_path / "events.jsonl"), max_bytes=200, backup_count=50,
                            max_age="1h")
    for seq in range(40):
        sink.emit(logging.makeLogRecord({"msg": {"seq": seq, "pad": "x" * 40}}))
    backups = sorted(tmp_path.glob("events.jsonl.*"))
    assert len(backups) >= 5
    old = [p for p in backups if int(p.suffix[1:]) >= 3]
    for path in old:
        make_old(path, 1)  # a day old: due
    sink.rollover()
    sink.emit(logging.makeLogRecord({"msg": {"seq": 99}}))
    sink.close()
    seqs = {json.loads(x)["seq"] for p in tmp_path.glob("events.jsonl*") for x in p.read_text().splitlines()}
    # Backups .1 and .2 (now .2 and .3 after the rollover) and the current file survive; the old ones went.
    assert len(list(tmp_path.glob("events.jsonl.*"))) == 3
    assert 99 in seqs and 39 in seqs


def test_a_bad_max_age_is_a_configuration_error_naming_it(tmp_path):
    with pytest.raises(SinkConfigError, match=r"max_age.*'soon' is not an age"):
        FileSink(filename=str(tmp_path / "e.jsonl"), max_age="soon")
    with pytest.raises(SinkConfigError, match="max_age.*more than 0"):
        ArchiveSink(directory=str(tmp_path / "a"), max_age="0d")


# --------------------------------------------------------------------------- the archive: max_age


def test_the_archive_sink_deletes_days_older_than_max_age_and_their_index_entries(tmp_path, fixtures_dir):
    mybinder_archive = copy_mybinder_archive(tmp_path / "archive", fixtures_dir)
    assert read_index(mybinder_archive)["2018-11-04"].count == 7489  # an entry whose file is not here
    before = snapshot(mybinder_archive)
    # Days ending before 2019-03-01 are due; 2019-03-20 and later are not.
    limit = utc_days_ago("2019-03-01")
    sink = ArchiveSink(directory=str(mybinder_archive), max_age=f"{limit}d")
    sink.close()
    after = snapshot(mybinder_archive)
    gone = sorted(set(before) - set(after))
    assert gone == ["events-2018-11-03.jsonl", "events-2019-01-14.jsonl", "events-2019-01-28.jsonl",
                    "events-2019-02-01.jsonl", "events-2019-02-05.jsonl"]
    for name in after:
        if name.startswith("events-"):
            assert after[name] == before[name], f"{name} is not due and must not change"
    index = read_index(mybinder_archive)
    assert sorted(index) == ["2019-03-20", "2019-04-03", "2019-04-28", "2019-05-31", "2019-06-21",
                             "2019-06-28"]
    assert rebuild_index(mybinder_archive, write=False).changed == []


# --------------------------------------------------------------------------- the archive: stages


def binder_config(tmp_path: Path, fixtures_dir: Path, stages: list, max_age: str | None = None) -> Path:
    key = tmp_path / "key"
    key.write_text(KEY)
    history = fixtures_dir / "binderhub" / "launch-history"
    schemas = [str(history / name / "launch.json") for name in ("v1-ba15091", "v2-76d8599", "v3-0705911")]
    config = tmp_path / "retention_config.py"
    config.write_text(
        f"c.EventLog.schema_paths = {schemas!r}\n"
        "c.EventLog.load_schema_entry_points = False\n"
        f"c.EventLog.pseudonym_key_file = {str(key)!r}\n"
        f"c.EventLog.allowed_schemas = {{{BINDER!r}: {{'retention': {stages!r}}}}}\n"
        + (f"c.ArchiveSink.max_age = {max_age!r}\n" if max_age else "")
    )
    return config


def test_purge_applies_the_stages_due_to_real_mybinder_lines_and_nothing_else(tmp_path, fixtures_dir,
                                                                             mybinder_archive):
    # Older than 2019-03-01: 'spec' dropped; older than 2019-05-01 (and newer): pseudonymized first.
    stages = [{"after": f"{utc_days_ago('2019-05-01')}d", "property_actions": {"spec": "pseudonymize"}},
              {"after": f"{utc_days_ago('2019-03-01')}d",
               "property_actions": {"spec": "drop", "origin": {"generalize": "truncate", "length": 3}}}]
    config = binder_config(tmp_path, fixtures_dir, stages)
    before = snapshot(mybinder_archive)
    original = {name: lines_of(mybinder_archive / name) for name in before if name.startswith("events-")}

    dry = run_cli("archive", "purge", mybinder_archive, "--config", config, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert snapshot(mybinder_archive) == before, "a dry run writes nothing"
    assert "(dry run) events-2018-11-03.jsonl: 3 of 3 events changed (spec removed in 3)" in dry.stdout
    assert "(dry run) events-2019-04-28.jsonl: 1 of 1 events changed (spec replaced in 1)" in dry.stdout
    assert "events-2019-05-31" not in dry.stdout and "nothing was written" in dry.stdout

    done = run_cli("archive", "purge", mybinder_archive, "--config", config)
    assert done.returncode == 0, done.stderr
    assert "0 day files deleted, 10 events in 8 days changed" in done.stdout
    after = snapshot(mybinder_archive)
    from telemetry_sinks.pseudonym import PseudonymKey

    key = PseudonymKey(KEY.encode())
    for name, lines in original.items():
        now = lines_of(mybinder_archive / name)
        assert len(now) == len(lines), f"{name}: a purge never loses an event"
        day = name[7:17]
        for old, new in zip(lines, now):
            if day < "2019-03-01":
                assert "spec" not in new and {k: v for k, v in old.items() if k != "spec"} == new
            elif day < "2019-05-01":
                assert new == {**old, "spec": key.pseudonym(old["spec"])}
            else:
                assert new == old
        if day >= "2019-05-01":
            assert after[name] == before[name], f"{name} is not due: byte for byte the same, not rewritten"
    assert rebuild_index(mybinder_archive, write=False).changed == []  # the index is right
    assert json.loads((mybinder_archive / STATE_NAME).read_text())["days"].keys() == {
        name[7:17] for name in original if name[7:17] < "2019-05-01"}
    # Run again: every day is done.
    again = run_cli("archive", "purge", mybinder_archive, "--config", config)
    assert "0 day files deleted, 0 events in 0 days changed" in again.stdout
    assert snapshot(mybinder_archive) == after
    # Without its state, it finds nothing to change either: every action gives the same result twice.
    (mybinder_archive / STATE_NAME).unlink()
    third = run_cli("archive", "purge", mybinder_archive, "--config", config)
    assert "0 events in 0 days changed" in third.stdout
    assert {n: b for n, (b, _) in snapshot(mybinder_archive).items() if n != STATE_NAME} == \
        {n: b for n, (b, _) in after.items() if n != STATE_NAME}


def test_purge_with_max_age_from_the_config_or_the_command_line(tmp_path, fixtures_dir, mybinder_archive):
    config = binder_config(tmp_path, fixtures_dir, [], max_age=f"{utc_days_ago('2019-01-20')}d")
    done = run_cli("archive", "purge", mybinder_archive, "--config", config)
    assert "events-2018-11-03.jsonl: deleted (3 events)" in done.stdout
    assert "events-2019-01-14.jsonl: deleted (1 events)" in done.stdout
    assert "1 day files" not in done.stdout and "2 day files deleted" in done.stdout
    done = run_cli("archive", "purge", mybinder_archive, "--max-age", f"{utc_days_ago('2019-02-03')}d",
                   "--dry-run")
    assert "events-2019-02-01.jsonl: would be deleted (1 events)" in done.stdout
    assert (mybinder_archive / "events-2019-02-01.jsonl").exists()
    nothing = run_cli("archive", "purge", mybinder_archive)
    assert nothing.returncode == 2 and "nothing to purge" in nothing.stderr


PSID = "https://events.example.org/session"
SESSION = {
    "$id": PSID, "version": 1, "type": "object",
    "properties": {
        "user": {"type": "string", "categories": ["user-identifier"]},
        "ip": {"type": "string", "categories": ["user-identifiable-information"]},
        "kernel": {"type": "string"},
        "peers": {"type": "array", "items": {"type": "object", "properties": {
            "user": {"type": "string", "categories": ["user-identifier"]}, "role": {"type": "string"}}}},
    },
}


def session_log(directory: Path, stages: list, monkeypatch, **sink_options) -> tuple[EventLog, ArchiveSink]:
    monkeypatch.setenv("RETENTION_TEST_KEY", KEY)
    schema = directory.parent / "session.json"
    schema.write_text(json.dumps(SESSION))
    sink = ArchiveSink(directory=str(directory), **sink_options)
    log = EventLog(handlers=[sink], load_schema_entry_points=False, pseudonym_key_env="RETENTION_TEST_KEY",
                   schema_paths=[str(schema)],
                   allowed_schemas={PSID: {"allowed_categories": ["user-identifier"],
                                           "category_actions": {"user-identifiable-information":
                                                                {"generalize": "ip_network"}},
                                           "retention": stages}})
    return log, sink


def session_event(n: int) -> dict:
    return {"user": f"user-{n}", "ip": f"198.51.100.{n}", "kernel": "python3",
            "peers": [{"user": f"peer-{n}", "role": "viewer"}]}


def test_an_archive_written_by_the_sink_is_purged_by_the_sink_from_the_policy(tmp_path, monkeypatch):
    today = dt.datetime.now(dt.timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0)
    days = [today - dt.timedelta(days=n) for n in (200, 100, 40, 10, 0)]
    log, sink = session_log(tmp_path / "a", [], monkeypatch)
    for number, when in enumerate(days):
        for n in range(3):
            log.record_event(PSID, 1, session_event(number * 10 + n), when)
    sink.close()
    directory = tmp_path / "a"
    before = snapshot(directory)
    stages = [{"after": "30d", "category_actions": {"user-identifier": "pseudonymize"}},
              {"after": "90d", "category_actions": {"user-identifier": "drop"},
               "property_actions": {"kernel": "drop"}}]
    # A new process with the stages and a max_age: the sink applies them when its EventLog gives them.
    log, sink = session_log(directory, stages, monkeypatch, max_age="150d")
    key = log.pseudonym_key
    after = snapshot(directory)
    names = {when.date().isoformat(): f"events-{when.date().isoformat()}.jsonl" for when in days}
    d200, d100, d40, d10, d0 = (names[w.date().isoformat()] for w in days)
    assert d200 not in after  # past max_age
    for name in (d10, d0):
        assert after[name] == before[name]  # not due: untouched
    for event in lines_of(directory / d100):  # both stages: the users dropped, the kernel too
        assert set(event) == {"__timestamp__", "__schema__", "__schema_version__", "__metadata_version__",
                              "ip", "peers"}
        assert event["ip"].endswith(".0") and event["peers"][0] == {"role": "viewer"}
    users = [e["user"] for e in lines_of(directory / d40)]
    assert users == [key.pseudonym(f"user-{n}") for n in (20, 21, 22)]
    assert [e["peers"][0]["user"] for e in lines_of(directory / d40)] == \
        [key.pseudonym(f"peer-{n}") for n in (20, 21, 22)]
    assert [e["kernel"] for e in lines_of(directory / d40)] == ["python3"] * 3
    assert [e.date for e in sink.index] == sorted(names)[1:]
    assert rebuild_index(directory, write=False).changed == []
    # A late event for a day already purged is purged too, at the next day close (here: close).
    log.record_event(PSID, 1, session_event(29), days[2] + dt.timedelta(hours=1))
    sink.close()
    late = lines_of(directory / d40)
    assert len(late) == 4 and late[-1]["user"] == key.pseudonym("user-29")


# --------------------------------------------------------------------------- a crash during a rewrite

CHILD = """
import sys
from telemetry_sinks.retention import RetentionRules, purge_archive
from telemetry_sinks.policy import parse_age
rules = RetentionRules({sys.argv[2]: {"retention": [{"after": "1d", "property_actions": {"spec": "drop"}}]}})
print("purging", flush=True)
purge_archive(sys.argv[1], rules)
print("done", flush=True)
"""


def big_day(directory: Path, lines: int, gz: bool) -> Path:
    name = "events-2019-03-20.jsonl" + (".gz" if gz else "")
    rows = "".join(json.dumps({"timestamp": f"2019-03-20T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:00+00:00",
                               "schema": BINDER, "version": 1, "provider": "GitHub",
                               "spec": f"org-{i}/repo-{i}/master", "status": "success"}) + "\n"
                   for i in range(lines))
    path = directory / name
    path.write_bytes(gzip.compress(rows.encode(), mtime=0) if gz else rows.encode())
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()  # not due: must not change
    (directory / f"events-{today}.jsonl").write_text(rows.splitlines()[0].replace("2019-03-20", today) + "\n")
    rebuild_index(directory)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_a_crash_in_the_middle_of_a_rewrite_leaves_the_old_or_the_new_file(tmp_path, gz):
    template = tmp_path / "template"
    template.mkdir()
    day = big_day(template, 60_000, gz)
    old = digest(day)
    reference = tmp_path / "reference"
    shutil.copytree(template, reference)
    purge_archive(reference, RetentionRules({BINDER: {"retention": [
        {"after": "1d", "property_actions": {"spec": "drop"}}]}}))
    new = digest(reference / day.name)
    assert new != old and len(lines_of(reference / day.name)) == 60_000
    rng = random.Random(18)
    outcomes = {"old": 0, "new": 0}
    for attempt in range(6):
        work = tmp_path / f"run-{attempt}"
        shutil.copytree(template, work)
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(work), BINDER], stdout=subprocess.PIPE,
                                 text=True)
        assert child.stdout.readline().strip() == "purging"
        if attempt % 2:  # at a seeded random moment
            time.sleep(rng.uniform(0.0, 3.0))
        else:  # while the new file is being written
            deadline = time.monotonic() + 60
            tmp = work / (day.name + ".tmp")
            while time.monotonic() < deadline and child.poll() is None:
                try:
                    if tmp.stat().st_size > 0:
                        break
                except FileNotFoundError:
                    pass
                time.sleep(0.0005)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        state = {old: "old", new: "new"}.get(digest(work / day.name))
        assert state is not None, f"attempt {attempt}: the day file is neither the old nor the new one"
        outcomes[state] += 1
        index = read_index(work)
        today = dt.datetime.now(dt.timezone.utc).date().isoformat()
        assert index["2019-03-20"].count == 60_000 and index[today].count == 1
        other = f"events-{today}.jsonl"
        assert (work / other).read_bytes() == (template / other).read_bytes()
        # Run again: it completes, with the same result as without the crash.
        purge_archive(work, RetentionRules({BINDER: {"retention": [
            {"after": "1d", "property_actions": {"spec": "drop"}}]}}))
        assert digest(work / day.name) == new
        assert not list(work.glob("*.tmp")), "the leftovers of the killed rewrite are removed"
        shutil.rmtree(work)
    assert outcomes["old"] >= 1, outcomes  # the kills did land before the rename


def test_a_stored_value_a_stage_cannot_read_is_dropped_and_the_event_kept(tmp_path, caplog):
    directory = tmp_path / "archive"
    directory.mkdir()
    lines = [{"__timestamp__": "2020-01-02T03:04:05.000000Z", "__schema__": PSID, "__schema_version__": 1,
              "__metadata_version__": 1, "ip": ip, "ips": ips, "kernel": "python3"}
             for ip, ips in [("198.51.100.7", ["192.0.2.1", "bogus"]), ("not-an-address", [])]]
    day = directory / "events-2020-01-02.jsonl"
    day.write_text("".join(json.dumps(x) + "\n" for x in lines) + "not json at all\n")
    rebuild_index(directory)
    rules = RetentionRules({PSID: {"retention": [{"after": "30d", "property_actions": {
        "ip": {"generalize": "ip_network"}, "ips": {"generalize": "ip_network"}}}]}})
    with caplog.at_level(logging.WARNING, "telemetry_sinks.retention"):
        report = purge_archive(directory, rules)
    assert [c.changed for c in report.rewritten] == [2]
    assert report.rewritten[0].unreadable == 1
    text = day.read_text().splitlines()
    assert text[-1] == "not json at all"  # kept as it is
    first, second = (json.loads(x) for x in text[:2])
    assert first["ip"] == "198.51.100.0" and first["ips"] == ["192.0.2.0", None]
    assert "ip" not in second and second["kernel"] == "python3"
    assert "cannot read were dropped" in caplog.text
    assert "not-an-address" not in caplog.text and "bogus" not in caplog.text
    assert read_index(directory)["2020-01-02"].count == 3
