"""File sinks: plain, size-rotated and time-rotated JSONL files."""

from __future__ import annotations

import calendar
import gzip
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import types
import uuid
from pathlib import Path

import pytest
from traitlets.config import Config

from telemetry_sinks import SinkConfigError
from telemetry_sinks.capsule import encode, make_capsule
from telemetry_sinks.sinks import file as file_module
from telemetry_sinks.sinks.file import FileSink, RotatingFileSink, TimedRotatingFileSink
from telemetry_sinks.sinks.stream import StreamSink

# --------------------------------------------------------------------------- helpers


def _reject_constant(name):
    raise AssertionError(f"non-JSON constant {name} in output")


def read_lines(path) -> list[dict]:
    """Every line of a (possibly gzipped) JSONL file, each checked to be strict JSON."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        text = fh.read()
    assert text == "" or text.endswith("\n"), f"{path.name}: last line is incomplete"
    return [json.loads(line, parse_constant=_reject_constant) for line in text.splitlines()]


def size_rotated_files(base: Path) -> list[Path]:
    """``base.N[.gz]`` ... ``base.1[.gz]``, ``base``: oldest first."""
    pattern = re.compile(re.escape(base.name) + r"\.(\d+)(\.gz)?$")
    rotated = [p for p in base.parent.iterdir() if pattern.match(p.name)]
    rotated.sort(key=lambda p: -int(pattern.match(p.name).group(1)))
    return rotated + ([base] if base.exists() else [])


def event(i: int, pad: int = 0, **extra) -> dict:
    return make_capsule(
        "https://events.example.org/test", 1, {"i": i, "pad": "x" * pad, **extra},
        timestamp="2026-01-01T00:00:00.000000Z",
    )


@pytest.fixture
def logger(request):
    """A private logger; its handlers are closed and removed after the test."""
    log = logging.getLogger(f"test_file.{request.node.name}.{uuid.uuid4().hex}")
    log.setLevel(logging.INFO)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


# --------------------------------------------------------------------------- FileSink


def test_file_sink_writes_each_capsule_as_one_json_line(tmp_path, logger):
    path = tmp_path / "events.jsonl"
    sink = FileSink(path)
    logger.addHandler(sink)
    capsules = [event(i) for i in range(3)]
    for capsule in capsules:
        logger.info(capsule)
    # flush_each_event (the default): readable before close.
    assert read_lines(path) == capsules
    assert path.read_text().splitlines() == [encode(c) for c in capsules]


def test_file_sink_appends_to_existing_file(tmp_path):
    path = tmp_path / "events.jsonl"
    for i in range(3):
        sink = FileSink(filename=str(path))
        sink.handle_capsule(event(i))
        sink.close()
    assert [line["i"] for line in read_lines(path)] == [0, 1, 2]


def test_file_sink_creates_directories_and_expands_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    sink = FileSink("~/deep/er/events.jsonl")
    try:
        assert sink.filename == str(tmp_path / "deep" / "er" / "events.jsonl")
        assert sink.baseFilename == sink.filename
        sink.handle_capsule(event(1))
    finally:
        sink.close()
    assert read_lines(tmp_path / "deep" / "er" / "events.jsonl") == [event(1)]


def test_file_sink_delay_opens_on_first_event(tmp_path):
    path = tmp_path / "later.jsonl"
    sink = FileSink(path, delay=True)
    try:
        assert not path.exists()
        sink.handle_capsule(event(7))
        assert read_lines(path) == [event(7)]
    finally:
        sink.close()


def test_file_sink_without_flush_each_event_flushes_on_flush_and_close(tmp_path):
    path = tmp_path / "buffered.jsonl"
    sink = FileSink(path, flush_each_event=False)
    sink.handle_capsule(event(1))
    assert path.read_text() == ""  # still in the buffer
    sink.flush()
    assert read_lines(path) == [event(1)]
    sink.handle_capsule(event(2))
    sink.close()
    assert read_lines(path) == [event(1), event(2)]


def test_file_sink_writes_ordinary_records_and_odd_values(tmp_path, logger):
    path = tmp_path / "app.jsonl"
    logger.addHandler(FileSink(path))
    logger.warning("disk %s at %d%%", "/srv", 93, extra={"host": "h1", "ratio": float("nan")})
    logger.info({"__schema__": "s", "bad": float("inf"), "raw": b"\xff", "when": {1, 2}})
    first, second = read_lines(path)
    assert first["message"] == "disk /srv at 93%"
    assert first["level"] == "WARNING"
    assert first["logger"] == logger.name
    assert first["host"] == "h1" and first["ratio"] is None
    assert second == {"__schema__": "s", "bad": None, "raw": "\\xff", "when": [1, 2]}


def test_file_sink_honours_level_and_filters(tmp_path, logger):
    path = tmp_path / "filtered.jsonl"
    sink = FileSink(path, level=logging.WARNING)
    logger.addHandler(sink)
    logger.info({"n": 1})
    logger.warning({"n": 2})
    sink.handle_capsule({"n": 3})  # events are INFO: below this sink's level
    picky = FileSink(tmp_path / "picky.jsonl")
    picky.addFilter(lambda record: record.msg.get("keep", False))
    picky.handle_capsule({"n": 4})
    picky.handle_capsule({"n": 5, "keep": True})
    picky.close()
    assert read_lines(path) == [{"n": 2}]
    assert read_lines(tmp_path / "picky.jsonl") == [{"n": 5, "keep": True}]


def test_file_sink_broken_record_does_not_raise(tmp_path, logger, capsys):
    path = tmp_path / "events.jsonl"
    sink = FileSink(path)
    # Straight to the handler: pytest's own capture handlers would fail the test first.
    bad = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "%d items", ("x",), None)
    sink.handle(bad)  # getMessage() fails inside emit
    sink.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 1, {"ok": True}, None, None))
    sink.close()
    assert read_lines(path) == [{"ok": True}]
    assert "Logging error" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    ("cls", "options", "expected"),
    [
        (FileSink, {"filename": "x.jsonl", "filname": "y"}, ["FileSink", "'filname'", "'filename'"]),
        (RotatingFileSink, {"filename": "x.jsonl", "max_byte": 5}, ["RotatingFileSink", "'max_bytes'"]),
        (RotatingFileSink, {"filename": "x.jsonl", "max_bytes": "10MB"}, ["RotatingFileSink", "max_bytes"]),
        (RotatingFileSink, {"filename": "x.jsonl", "max_bytes": -1}, ["RotatingFileSink", "max_bytes"]),
        (RotatingFileSink, {"filename": "x.jsonl", "backup_count": -3}, ["RotatingFileSink", "backup_count"]),
        (RotatingFileSink, {"filename": "x.jsonl", "compress": "yes"}, ["RotatingFileSink", "compress"]),
        (FileSink, {}, ["FileSink", "filename", "c.FileSink.filename"]),
        (RotatingFileSink, {"max_bytes": 100}, ["RotatingFileSink", "filename"]),
        (FileSink, {"filename": 42}, ["FileSink", "filename"]),
        (TimedRotatingFileSink, {"filename": "x.jsonl", "when": "fortnight"}, ["TimedRotating", "when"]),
        (TimedRotatingFileSink, {"filename": "x.jsonl", "interval": 0}, ["TimedRotating", "interval"]),
        (TimedRotatingFileSink, {"filename": "x.jsonl", "intervall": 2}, ["TimedRotating", "'interval'"]),
        (StreamSink, {"stream": "stdoot"}, ["StreamSink", "stream"]),
        (StreamSink, {"stream": 3}, ["StreamSink", "stream"]),
        (StreamSink, {"streem": "stdout"}, ["StreamSink", "'streem'", "'stream'"]),
    ],
)
def test_bad_options_raise_sink_config_error(tmp_path, monkeypatch, cls, options, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SinkConfigError) as info:
        cls(**options)
    message = str(info.value)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_a_sink_that_failed_to_start_does_not_break_logging_shutdown(tmp_path):
    """logging keeps every Handler it saw and flushes and closes them at exit."""
    script = (
        "from telemetry_sinks import RotatingFileSink\n"
        "RotatingFileSink(filename='x.jsonl', max_bytes=-1)\n"  # dies with SinkConfigError
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.rstrip().splitlines()[-1].startswith("telemetry_sinks.errors.SinkConfigError")
    assert "AttributeError" not in result.stderr and "Exception ignored" not in result.stderr


def test_unknown_option_suggests_the_close_name():
    with pytest.raises(SinkConfigError, match=r"Did you mean 'backup_count'\?"):
        RotatingFileSink(filename="x.jsonl", backupcount=3)


def test_bad_option_from_traitlets_config(tmp_path):
    c = Config()
    c.RotatingFileSink.filename = str(tmp_path / "e.jsonl")
    c.RotatingFileSink.max_bytes = -5
    with pytest.raises(SinkConfigError, match="RotatingFileSink.*max_bytes"):
        RotatingFileSink(config=c)
    assert not (tmp_path / "e.jsonl").exists()


def test_options_come_from_config(tmp_path):
    c = Config()
    c.RotatingFileSink.filename = str(tmp_path / "e.jsonl")
    c.RotatingFileSink.max_bytes = 1234
    c.RotatingFileSink.backup_count = 2
    sink = RotatingFileSink(config=c)
    try:
        assert (sink.filename, sink.max_bytes, sink.backup_count) == (str(tmp_path / "e.jsonl"), 1234, 2)
        # A keyword beats the config file.
        other = RotatingFileSink(config=c, max_bytes=99)
        assert other.max_bytes == 99
        other.close()
    finally:
        sink.close()


# --------------------------------------------------------------------------- RotatingFileSink


def _write(sink_or_logger, events):
    for e in events:
        if isinstance(sink_or_logger, logging.Logger):
            sink_or_logger.info(e)
        else:
            sink_or_logger.handle_capsule(e)


@pytest.mark.parametrize("compress", [False, True])
def test_rotation_never_splits_a_line_and_loses_nothing(tmp_path, logger, compress):
    base = tmp_path / "events.jsonl"
    max_bytes = 1000
    sink = RotatingFileSink(base, max_bytes=max_bytes, backup_count=1000, compress=compress)
    logger.addHandler(sink)
    written = [event(i, pad=(i * 37) % 250) for i in range(200)]
    _write(logger, written)
    sink.close()

    files = size_rotated_files(base)
    assert len(files) > 10, "the test should force many rotations"
    rotated = files[:-1]
    assert all(p.name.endswith(".gz") == compress for p in rotated)
    assert [p.name for p in rotated][-1] == base.name + ".1" + (".gz" if compress else "")
    union = []
    for path in files:
        lines = read_lines(path)
        assert lines, f"{path.name} is empty"
        # Uncompressed size of every file stays within max_bytes.
        assert sum(len(encode(line)) + 1 for line in lines) <= max_bytes
        union.extend(lines)
    assert union == written


def test_rotation_keeps_only_backup_count_files(tmp_path):
    base = tmp_path / "events.jsonl"
    sink = RotatingFileSink(base, max_bytes=300, backup_count=3)
    written = [event(i, pad=50) for i in range(60)]
    _write(sink, written)
    sink.close()
    files = size_rotated_files(base)
    assert [p.name for p in files] == [
        "events.jsonl.3", "events.jsonl.2", "events.jsonl.1", "events.jsonl"
    ]
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in files)
    union = [line for p in files for line in read_lines(p)]
    # What is kept is the newest run of events, contiguous and in order.
    assert union == written[-len(union):]
    assert len(union) < len(written)


def test_compressed_backups_are_shifted_and_pruned(tmp_path):
    base = tmp_path / "events.jsonl"
    sink = RotatingFileSink(base, max_bytes=300, backup_count=2, compress=True)
    written = [event(i, pad=100) for i in range(20)]
    _write(sink, written)
    sink.close()
    assert sorted(os.listdir(tmp_path)) == ["events.jsonl", "events.jsonl.1.gz", "events.jsonl.2.gz"]
    with gzip.open(base.with_name("events.jsonl.1.gz"), "rb") as fh:
        assert fh.read().endswith(b"\n")
    union = [line for p in size_rotated_files(base) for line in read_lines(p)]
    assert union == written[-len(union):]


def test_a_line_larger_than_max_bytes_gets_a_file_of_its_own(tmp_path):
    base = tmp_path / "events.jsonl"
    sink = RotatingFileSink(base, max_bytes=200, backup_count=10)
    written = [event(0), event(1, pad=1000), event(2)]
    _write(sink, written)
    sink.close()
    files = size_rotated_files(base)
    assert [read_lines(p) for p in files] == [[written[0]], [written[1]], [written[2]]]


def test_max_bytes_zero_never_rotates(tmp_path):
    base = tmp_path / "events.jsonl"
    sink = RotatingFileSink(base, max_bytes=0, backup_count=3)
    _write(sink, [event(i, pad=500) for i in range(50)])
    sink.close()
    assert os.listdir(tmp_path) == ["events.jsonl"]
    assert len(read_lines(base)) == 50


@pytest.mark.parametrize("delay", [False, True])
def test_rotation_counts_what_is_already_in_the_file(tmp_path, delay):
    base = tmp_path / "events.jsonl"
    old = [event(i, pad=100) for i in range(3)]
    base.write_text("".join(encode(e) + "\n" for e in old))
    max_bytes = base.stat().st_size + 50  # room for a small line, not for another big one
    sink = RotatingFileSink(base, max_bytes=max_bytes, backup_count=2, delay=delay)
    sink.handle_capsule(event(3, pad=100))
    sink.close()
    assert read_lines(base.with_name("events.jsonl.1")) == old
    assert read_lines(base) == [event(3, pad=100)]


# --------------------------------------------------------------------------- TimedRotatingFileSink


class FakeClock:
    """Stands in for the ``time`` module inside telemetry_sinks.sinks.file."""

    def __init__(self, when: str):
        self.now = float(calendar.timegm(time.strptime(when, "%Y-%m-%d %H:%M:%S")))

    def set(self, when: str) -> None:
        new = float(calendar.timegm(time.strptime(when, "%Y-%m-%d %H:%M:%S")))
        assert new >= self.now, "time only moves forward"
        self.now = new

    def module(self):
        return types.SimpleNamespace(
            time=lambda: self.now, gmtime=time.gmtime, strftime=time.strftime,
            localtime=time.localtime,
        )


@pytest.fixture
def clock(monkeypatch):
    """Fake time for the file module.  Sinks that start a new file use ``delay=True``:
    otherwise the period would start at the real modification time of the file."""
    fake = FakeClock("2026-11-22 10:15:00")
    monkeypatch.setattr(file_module, "time", fake.module())
    return fake


@pytest.fixture
def far_from_utc(monkeypatch):
    """A local time zone 5 hours behind UTC, to show that boundaries do not follow it."""
    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_hourly_rotation_names_files_after_their_utc_hour(tmp_path, clock, far_from_utc):
    base = tmp_path / "events.jsonl"
    sink = TimedRotatingFileSink(base, when="H", backup_count=0, delay=True)
    sink.handle_capsule(event(1))
    clock.set("2026-11-22 10:59:59")
    sink.handle_capsule(event(2))
    clock.set("2026-11-22 11:00:00")
    sink.handle_capsule(event(3))
    clock.set("2026-11-22 14:30:00")  # nothing happened in hours 12 and 13
    sink.handle_capsule(event(4))
    sink.close()
    assert sorted(os.listdir(tmp_path)) == [
        "events.jsonl", "events.jsonl.2026-11-22_10", "events.jsonl.2026-11-22_11"
    ]
    assert read_lines(tmp_path / "events.jsonl.2026-11-22_10") == [event(1), event(2)]
    assert read_lines(tmp_path / "events.jsonl.2026-11-22_11") == [event(3)]
    assert read_lines(base) == [event(4)]


def test_midnight_is_utc_midnight(tmp_path, clock, far_from_utc):
    base = tmp_path / "events.jsonl"
    sink = TimedRotatingFileSink(base, delay=True)  # when="midnight" is the default
    sink.handle_capsule(event(1))
    clock.set("2026-11-22 23:59:59")  # 18:59 local: no rotation
    sink.handle_capsule(event(2))
    clock.set("2026-11-23 00:00:01")  # 19:00 local on the 22nd: UTC midnight passed
    sink.handle_capsule(event(3))
    sink.close()
    assert sorted(os.listdir(tmp_path)) == ["events.jsonl", "events.jsonl.2026-11-22"]
    assert read_lines(tmp_path / "events.jsonl.2026-11-22") == [event(1), event(2)]
    assert read_lines(base) == [event(3)]


def test_minute_interval_boundaries_are_aligned(tmp_path, clock):
    base = tmp_path / "events.jsonl"
    sink = TimedRotatingFileSink(base, when="M", interval=5, backup_count=0, delay=True)
    clock.set("2026-11-22 10:17:00")  # the period is 10:15-10:20
    sink.handle_capsule(event(1))
    clock.set("2026-11-22 10:19:59")
    sink.handle_capsule(event(2))
    clock.set("2026-11-22 10:20:00")
    sink.handle_capsule(event(3))
    clock.set("2026-11-22 10:24:59")
    sink.handle_capsule(event(4))
    clock.set("2026-11-22 10:25:00")
    sink.handle_capsule(event(5))
    sink.close()
    assert read_lines(tmp_path / "events.jsonl.2026-11-22_10-15") == [event(1), event(2)]
    assert read_lines(tmp_path / "events.jsonl.2026-11-22_10-20") == [event(3), event(4)]
    assert read_lines(base) == [event(5)]


def test_weekly_rotation_on_the_given_weekday(tmp_path, clock):
    # 2026-11-22 is a Sunday; with W0 the week starts on Monday 2026-11-16.
    base = tmp_path / "events.jsonl"
    sink = TimedRotatingFileSink(base, when="w0", backup_count=0, delay=True)
    sink.handle_capsule(event(1))
    clock.set("2026-11-23 00:00:00")  # Monday
    sink.handle_capsule(event(2))
    sink.close()
    assert sorted(os.listdir(tmp_path)) == ["events.jsonl", "events.jsonl.2026-11-16"]


def test_backup_count_deletes_the_oldest_periods(tmp_path, clock):
    base = tmp_path / "events.jsonl"
    sink = TimedRotatingFileSink(base, when="H", backup_count=2, delay=True)
    for hour in range(10, 16):
        clock.set(f"2026-11-22 {hour}:30:00")
        sink.handle_capsule(event(hour))
    sink.close()
    assert sorted(os.listdir(tmp_path)) == [
        "events.jsonl", "events.jsonl.2026-11-22_13", "events.jsonl.2026-11-22_14"
    ]
    assert read_lines(tmp_path / "events.jsonl.2026-11-22_14") == [event(14)]
    assert read_lines(base) == [event(15)]
    assert sink.rotated_files() == [
        str(tmp_path / "events.jsonl.2026-11-22_13"), str(tmp_path / "events.jsonl.2026-11-22_14")
    ]


def test_timed_rotation_with_compression(tmp_path, clock):
    base = tmp_path / "events.jsonl"
    sink = TimedRotatingFileSink(base, when="D", backup_count=2, compress=True, delay=True)
    for day in range(23, 28):
        clock.set(f"2026-11-{day} 08:00:00")
        sink.handle_capsule(event(day, pad=10))
        sink.handle_capsule(event(day * 100))
    sink.close()
    assert sorted(os.listdir(tmp_path)) == [
        "events.jsonl", "events.jsonl.2026-11-25.gz", "events.jsonl.2026-11-26.gz"
    ]
    with gzip.open(tmp_path / "events.jsonl.2026-11-26.gz", "rt") as fh:
        assert [json.loads(line) for line in fh] == [event(26, pad=10), event(2600)]
    assert read_lines(base) == [event(27, pad=10), event(2700)]


def test_existing_file_is_rotated_under_its_own_period(tmp_path, clock):
    base = tmp_path / "events.jsonl"
    base.write_text(encode(event(0)) + "\n")
    yesterday = calendar.timegm(time.strptime("2026-11-21 17:00:00", "%Y-%m-%d %H:%M:%S"))
    os.utime(base, (yesterday, yesterday))
    sink = TimedRotatingFileSink(base, when="midnight")
    sink.handle_capsule(event(1))
    sink.close()
    assert read_lines(tmp_path / "events.jsonl.2026-11-21") == [event(0)]
    assert read_lines(base) == [event(1)]


def test_rotation_does_not_overwrite_an_existing_rotated_file(tmp_path, clock):
    base = tmp_path / "events.jsonl"
    earlier = tmp_path / "events.jsonl.2026-11-22_10"
    earlier.write_text(encode(event(-1)) + "\n")
    sink = TimedRotatingFileSink(base, when="H", backup_count=0, delay=True)
    sink.handle_capsule(event(1))
    clock.set("2026-11-22 11:00:00")
    sink.handle_capsule(event(2))
    sink.close()
    assert read_lines(earlier) == [event(-1)]
    assert read_lines(tmp_path / "events.jsonl.2026-11-22_10.1") == [event(1)]
    assert read_lines(base) == [event(2)]


# --------------------------------------------------------------------------- threads


def _hammer(emit_one, threads: int, per_thread: int) -> None:
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait()
        for n in range(per_thread):
            # Sizes vary so that lines straddle buffer and rotation boundaries.
            emit_one(t, make_capsule("s", 1, {"t": t, "n": n, "pad": "y" * ((t * 131 + n * 17) % 3000)}))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not any(w.is_alive() for w in workers)


def _check_complete_and_ordered(lines, threads, per_thread):
    seen: dict[int, list[int]] = {t: [] for t in range(threads)}
    for line in lines:
        assert len(line["pad"]) == (line["t"] * 131 + line["n"] * 17) % 3000, "torn line"
        seen[line["t"]].append(line["n"])
    assert seen == {t: list(range(per_thread)) for t in range(threads)}


def test_concurrent_writers_to_one_file_sink(tmp_path, logger):
    path = tmp_path / "events.jsonl"
    sink = FileSink(path, flush_each_event=False)
    logger.addHandler(sink)

    def emit_one(t, capsule):
        # Half the threads log, half use the EventLog fast path.
        logger.info(capsule) if t % 2 else sink.handle_capsule(capsule)

    _hammer(emit_one, threads=12, per_thread=150)
    sink.close()
    _check_complete_and_ordered(read_lines(path), 12, 150)


def test_concurrent_writers_with_rotation(tmp_path, logger):
    base = tmp_path / "events.jsonl"
    sink = RotatingFileSink(base, max_bytes=64 * 1024, backup_count=1000)
    logger.addHandler(sink)
    _hammer(lambda t, capsule: logger.info(capsule), threads=12, per_thread=150)
    sink.close()
    files = size_rotated_files(base)
    assert len(files) > 5
    _check_complete_and_ordered([line for p in files for line in read_lines(p)], 12, 150)


def test_size_rotation_counts_bytes_not_characters(tmp_path):
    """Non-ASCII text takes more bytes than characters: no file may grow past max_bytes."""
    sink = RotatingFileSink(filename=tmp_path / "e.jsonl", max_bytes=80, backup_count=5)
    line = '{"t":"' + "é" * 10 + '"}\n'  # 19 characters, 29 bytes
    for _ in range(6):
        sink.write_payload({"t": "é" * 10})
    sink.close()
    files = sorted(tmp_path.glob("e.jsonl*"))
    sizes = [f.stat().st_size for f in files]
    assert all(size <= 80 for size in sizes), sizes
    assert sum(sizes) == 6 * len(line.encode("utf-8"))  # nothing lost
