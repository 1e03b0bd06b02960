"""The ``archive`` sink and ``telemetry-sinks archive rebuild``: the mybinder.org archive format.

Real data: the lines of the public mybinder.org events archive in the shared
fixtures (``mybinder_archive/``, see SOURCES.md §6), whose ``index.jsonl`` holds
``count`` as a string.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from helpers.cli import run

from telemetry_sinks import get_sink
from telemetry_sinks.archive_index import read_index, rebuild_index
from telemetry_sinks.capsule import parse_timestamp
from telemetry_sinks.errors import SinkConfigError
from telemetry_sinks.sinks.archive import ArchiveSink

pytestmark = pytest.mark.timeout(60)

BINDER = "binderhub.jupyter.org/launch"
SAMPLE_2019 = "from-binderlyzer-c956adf/events-2019-sample.reconstructed.jsonl"


def pandas():
    """pandas, which analysts read the archive with; in CI it must be installed (the test extra)."""
    try:
        import pandas
    except ImportError:
        pytest.fail("pandas is not installed: it is in the test extra (scripts/run-tests.sh installs it)")
    return pandas


@pytest.fixture
def mybinder_lines(fixtures_dir) -> list[dict]:
    archive = fixtures_dir / "mybinder_archive"
    lines = []
    for path in (archive / "from-sydney-lesson-e1a67d9" / "events-2018-11-03.jsonl",
                 archive / "from-binderlyzer-c956adf" / "events-2019-sample.reconstructed.jsonl"):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert len(lines) == 13
    return lines


def lines_of(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def stamps(path: Path) -> list[dt.datetime]:
    return [parse_timestamp(e.get("__timestamp__", e.get("timestamp"))) for e in lines_of(path)]


def capsule(when: str, app: str = "lab") -> dict:
    return {"__timestamp__": when, "__schema__": "x", "__schema_version__": 1, "__metadata_version__": 1,
            "app": app}


def today() -> str:
    return dt.datetime.now(dt.timezone.utc).date().isoformat()


# --------------------------------------------------------------------------- end to end


def test_emit_real_mybinder_events_into_an_archive_readable_by_pandas(tmp_path, fixtures_dir, mybinder_lines):
    """BinderHub launch events (schemas v1-v3) through `emit` into the archive sink, read with pandas."""
    history = fixtures_dir / "binderhub" / "launch-history"
    schemas = [str(history / v / "launch.json") for v in ("v1-ba15091", "v2-76d8599", "v3-3bfee95")]
    archive = tmp_path / "archive"
    config = tmp_path / "config.py"
    config.write_text(
        f"c.EventLog.schema_paths = {schemas!r}\n"
        f"c.EventLog.allowed_schemas = [{BINDER!r}]\n"
        "c.EventLog.sinks = ['archive']\n"
        f"c.ArchiveSink.directory = {str(archive)!r}\n"
        "c.ArchiveSink.compress = True\n"
    )
    # Shuffled a little, as events arrive: the 2018 lines (an earlier day) come last.
    ordered = mybinder_lines[3:] + mybinder_lines[:3]
    meta = ("timestamp", "schema", "version")
    bodies = [json.dumps({"schema_id": e["schema"], "version": e["version"], "timestamp": e["timestamp"],
                          "data": {k: v for k, v in e.items() if k not in meta}})
              for e in ordered]
    result = run("emit", "--config", config, stdin="\n".join(bodies) + "\n", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "13 recorded" in result.stdout and f"written to {archive}" in result.stdout

    index = [json.loads(line) for line in (archive / "index.jsonl").read_text().splitlines()]
    assert [e["date"] for e in index] == sorted({e["timestamp"][:10] for e in mybinder_lines})
    first = index[0]
    assert first == {"name": "events-2018-11-03.jsonl.gz", "date": "2018-11-03", "count": 3}
    assert all(isinstance(e["count"], int) for e in index) and sum(e["count"] for e in index) == 13
    assert sorted(os.listdir(archive)) == sorted([e["name"] for e in index] + ["index.jsonl"])

    pd = pandas()
    day = pd.read_json(archive / first["name"], lines=True)
    assert list(day["spec"]) == ["Qiskit/qiskit-tutorial/master", "ipython/ipython-in-depth/master",
                                 "QISKit/qiskit-tutorial/master"]
    assert set(day["__schema__"]) == {BINDER} and set(day["__schema_version__"]) == {1}
    everything = pd.concat([pd.read_json(archive / e["name"], lines=True) for e in index])
    assert len(everything) == 13
    assert everything.groupby("__schema_version__").size().to_dict() == {1: 8, 2: 3, 3: 2}
    assert list(everything.loc[everything["__schema_version__"] == 3, "origin"]) == ["gke.mybinder.org"] * 2


def test_the_day_of_each_event_is_its_utc_timestamp_day(tmp_path):
    sink = ArchiveSink(directory=tmp_path)
    sink.handle_capsule(capsule("2024-03-01T23:30:00-02:00"))  # 01:30 UTC on March 2
    sink.handle_capsule({"timestamp": "2024-03-02T05:00:00.123Z", "message": "a log record"})
    sink.handle_capsule(capsule("2024-03-03T00:00:00.5+00:00"))
    sink.close()
    assert [(e.date, e.count) for e in sink.index] == [("2024-03-02", 2), ("2024-03-03", 1)]
    assert lines_of(tmp_path / "events-2024-03-02.jsonl")[1]["message"] == "a log record"


# --------------------------------------------------------------------------- order


def test_a_day_is_sorted_when_it_closes(tmp_path, mybinder_lines):
    sink = get_sink("archive", directory=tmp_path)
    day = [capsule(f"2019-01-14T14:{m:02d}:00Z", app=str(m)) for m in (1, 5, 3, 9, 2)]
    for event in day:
        sink.handle_capsule(event)
    open_day = tmp_path / "events-2019-01-14.jsonl"
    assert [e["app"] for e in lines_of(open_day)] == ["1", "5", "3", "9", "2"]  # the open day: arrival order
    sink.handle_capsule(capsule("2019-01-15T00:00:00Z"))  # a later day closes it
    assert [e["app"] for e in lines_of(open_day)] == ["1", "2", "3", "5", "9"]
    assert {e.date: e.count for e in sink.index} == {"2019-01-14": 5}
    # Real lines whose timestamp is the archiver's (minute, +00:00) go to their own days, sorted.
    for event in reversed(mybinder_lines[3:]):
        sink.handle_capsule(event)
    sink.close()
    for entry in sink.index:
        times = stamps(tmp_path / entry.name)
        assert times == sorted(times) and len(times) == entry.count


def test_late_events_reach_their_closed_compressed_day(tmp_path):
    pd = pandas()
    sink = ArchiveSink(directory=tmp_path, compress=True)
    sink.handle_capsule(capsule("2020-06-16T10:00:00Z", "a"))
    sink.handle_capsule(capsule("2020-06-16T12:00:00Z", "c"))
    sink.handle_capsule(capsule("2020-06-17T08:00:00Z", "d"))  # closes the 16th: gzipped, indexed
    closed = tmp_path / "events-2020-06-16.jsonl.gz"
    assert closed.exists() and not (tmp_path / "events-2020-06-16.jsonl").exists()
    assert read_index(tmp_path)["2020-06-16"].count == 2
    sink.handle_capsule(capsule("2020-06-16T11:00:00Z", "b"))  # late: one more gzip member, at once
    assert [e["app"] for e in lines_of(closed)] == ["a", "c", "b"]
    sink.close()
    assert [e["app"] for e in lines_of(closed)] == ["a", "b", "c"]
    assert list(pd.read_json(closed, lines=True)["app"]) == ["a", "b", "c"]
    index = read_index(tmp_path)
    assert index["2020-06-16"].count == 3
    assert index["2020-06-17"].name == "events-2020-06-17.jsonl.gz"  # a past day: compressed at close


def test_an_event_dated_in_the_future_does_not_close_today(tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    soon = (now + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sink = ArchiveSink(directory=tmp_path, compress=True)
    sink.handle_capsule(capsule(now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "now"))
    sink.handle_capsule(capsule(soon, "skewed clock"))
    sink.handle_capsule(capsule(now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "later"))
    sink.close()
    assert [e["app"] for e in lines_of(tmp_path / f"events-{today()}.jsonl")] == ["now", "later"]
    assert [e.count for e in sink.index] == [2, 1]


# --------------------------------------------------------------------------- restarts


def test_a_restart_continues_todays_file(tmp_path):
    def now() -> str:
        return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    first = ArchiveSink(directory=tmp_path, compress=True)
    first.handle_capsule(capsule(now(), "1"))
    first.handle_capsule(capsule(now(), "2"))
    first.close()
    name = f"events-{today()}.jsonl"
    assert read_index(tmp_path)[today()].count == 2
    assert (tmp_path / name).exists()  # today is not over: it stays plain, ready to continue
    second = ArchiveSink(directory=tmp_path, compress=True)
    second.handle_capsule(capsule(now(), "3"))
    second.close()
    assert [e["app"] for e in lines_of(tmp_path / name)] == ["1", "2", "3"]
    assert read_index(tmp_path)[today()].count == 3


def test_start_repairs_what_a_crash_left(tmp_path, fixtures_dir):
    # An index from mybinder.org (counts as strings) and a day file written after it, out of order,
    # with a blank line: as a crash before the day closed would leave it.
    index = fixtures_dir / "mybinder_archive" / "from-sydney-lesson-e1a67d9" / "index.jsonl"
    shutil.copy(index, tmp_path / "index.jsonl")
    os.utime(tmp_path / "index.jsonl", (time.time() - 60, time.time() - 60))
    source = fixtures_dir / "mybinder_archive" / SAMPLE_2019
    lines = [line for line in source.read_text().splitlines() if line.startswith('{"timestamp": "2019-01-')]
    (tmp_path / "events-2019-01-14.jsonl").write_text("\n".join(reversed(lines)) + "\n\n")
    old = read_index(tmp_path)
    assert old["2018-11-03"].count == 7057  # read from the string "7057"
    sink = ArchiveSink(directory=tmp_path, compress=True)
    sink.close()
    repaired = read_index(tmp_path)
    assert repaired["2019-01-14"].name == "events-2019-01-14.jsonl.gz"
    assert repaired["2019-01-14"].count == 2
    times = stamps(tmp_path / "events-2019-01-14.jsonl.gz")
    assert times == sorted(times)
    # Days of the old index whose files are not here are left alone by the sink (rebuild drops them).
    assert repaired["2018-11-03"].count == 7057
    written = [json.loads(line) for line in (tmp_path / "index.jsonl").read_text().splitlines()]
    assert all(isinstance(e["count"], int) for e in written)


def test_the_sink_is_configured_like_every_sink(tmp_path):
    with pytest.raises(SinkConfigError, match="needs option 'directory'"):
        get_sink("archive")
    with pytest.raises(SinkConfigError, match="Did you mean 'compress'"):
        get_sink("archive", directory=tmp_path, compres=True)
    assert repr(get_sink("archive", directory=tmp_path, compress=True)).startswith("<ArchiveSink")


# --------------------------------------------------------------------------- rebuild


def test_rebuild_recomputes_the_mybinder_index(tmp_path, fixtures_dir):
    archive = tmp_path / "archive"
    shutil.copytree(fixtures_dir / "mybinder_archive" / "from-sydney-lesson-e1a67d9", archive)
    sample = fixtures_dir / "mybinder_archive" / SAMPLE_2019
    with gzip.open(archive / "events-2019-01-14.jsonl.gz", "wb") as out:
        out.write(sample.read_bytes())  # gzip files are counted too
    (archive / "notes.txt").write_text("not a day file\n")

    check = run("archive", "rebuild", "--check", archive)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "out of date: 3 entries differ from the 2 day files" in check.stdout
    rows = {line.split()[0]: line for line in check.stdout.splitlines()[2:] if line[:1].isdigit()}
    assert "events-2018-11-03.jsonl 7057" in rows["2018-11-03"]
    assert "events-2018-11-03.jsonl 3" in rows["2018-11-03"]
    assert "(no file)" in rows["2018-11-04"] and "(missing)" in rows["2019-01-14"]
    assert json.loads((archive / "index.jsonl").read_text().splitlines()[0])["count"] == "7057"  # untouched

    result = run("archive", "rebuild", "--progress", archive)
    assert result.returncode == 0, result.stderr
    assert "rebuilt" in result.stdout and "2 days, 13 events (3 entries changed)" in result.stdout
    assert "rebuild:" in result.stderr and "/s" in result.stderr  # the progress line, with rates
    index = [json.loads(line) for line in (archive / "index.jsonl").read_text().splitlines()]
    assert index == [{"name": "events-2018-11-03.jsonl", "date": "2018-11-03", "count": 3},
                     {"name": "events-2019-01-14.jsonl.gz", "date": "2019-01-14", "count": 10}]
    again = run("archive", "rebuild", "--check", archive)
    assert again.returncode == 0 and "up to date: 2 days, 13 events" in again.stdout
    assert rebuild_index(archive, write=False).changed == []


def test_rebuild_of_a_missing_directory_is_a_usage_error(tmp_path):
    result = run("archive", "rebuild", tmp_path / "nope")
    assert result.returncode == 2 and "is not a directory" in result.stderr
    result = run("archive")
    assert result.returncode == 2 and "ARCHIVE_COMMAND" in result.stderr


def test_an_event_id_written_before_is_not_written_again_also_after_a_restart(tmp_path):
    from telemetry_sinks import ArchiveSink

    def capsule(n: int, event_id: str | None) -> dict:
        body = {"__timestamp__": "2026-11-22T10:00:00.000Z", "__schema__": "s", "__schema_version__": 1,
                "__metadata_version__": 1, "n": n}
        return {"__event_id__": event_id, **body} if event_id else body

    sink = ArchiveSink(directory=str(tmp_path))
    for n in range(5):
        sink.handle_capsule(capsule(n, f"id-{n}"))
    sink.handle_capsule(capsule(3, "id-3"))  # delivered again
    sink.handle_capsule(capsule(9, None))  # no id: always written
    sink.handle_capsule(capsule(9, None))
    assert sink.duplicates == 1
    sink.close()
    again = ArchiveSink(directory=str(tmp_path))  # a restarted relay delivers its last round again
    for n in range(3, 7):
        again.handle_capsule(capsule(n, f"id-{n}"))
    assert again.duplicates == 2
    again.close()
    lines = [json.loads(line) for line in (tmp_path / "events-2026-11-22.jsonl").read_text().splitlines()]
    ids = [line.get("__event_id__") for line in lines]
    assert sorted(i for i in ids if i) == [f"id-{n}" for n in range(7)]
    assert ids.count(None) == 2
    off = ArchiveSink(directory=str(tmp_path / "off"), dedup_window=0)
    off.handle_capsule(capsule(1, "x"))
    off.handle_capsule(capsule(1, "x"))
    off.close()
    assert len((tmp_path / "off" / "events-2026-11-22.jsonl").read_text().splitlines()) == 2
