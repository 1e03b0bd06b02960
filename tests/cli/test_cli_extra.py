"""Command-line quality: help with examples and exit codes, aligned and coloured tables,
progress bars with rates, and ``tail`` (with ``--follow`` through rotation and truncation).

Every command runs as a user would run it: ``python -m telemetry_sinks ...`` in a
subprocess; colour is checked in a real pseudo-terminal.
"""

from __future__ import annotations

import gzip
import json
import os
import pty
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.cli import cli_env, run

from telemetry_sinks import RotatingFileSink
from telemetry_sinks.config import EXAMPLE_EVENTS, EXAMPLE_SCHEMAS_DIR

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(sys.platform == "win32", reason="pty, signals")]

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LAUNCH = "https://events.telemetry-sinks.org/example/app-launch"
SAVE = "https://events.telemetry-sinks.org/example/file-save"
COMMANDS = [[], ["sinks"], ["validate"], ["emit"], ["serve"], ["describe"], ["archive"],
            ["archive", "rebuild"], ["tail"], ["dead-letters"], ["dead-letters", "replay"]]


def run_tty(*args, extra_env=None) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal, as in an interactive shell."""
    master, slave = pty.openpty()
    command = [sys.executable, "-m", "telemetry_sinks", *map(str, args)]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            env=cli_env(**(extra_env or {})))
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    return proc.wait(30), output.decode().replace("\r\n", "\n")


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "telemetry-sinks")
def test_every_command_has_help_with_examples_and_exit_codes(command):
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "examples:" in out and f"telemetry-sinks {' '.join(command)}".strip() in out
    assert "exit codes:" in out
    assert "0  success" in out and "1  invalid input" in out and "2  bad usage or configuration" in out


def test_usage_errors_exit_2():
    assert run().returncode == 2
    assert run("describe", "--format", "pdf").returncode == 2
    assert run("tail").returncode == 2


# --------------------------------------------------------------------------- tables and colour


def _columns_aligned(lines: list[str], header: str) -> None:
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]  # "INSTALL WITH" is one column
    for line in lines:
        for start in starts[1:]:
            assert line[start - 2:start] == "  " and line[start] != " ", (line, start)


def test_sinks_table_is_aligned_and_coloured_only_on_a_terminal():
    piped = run("sinks")
    assert piped.returncode == 0 and "\x1b[" not in piped.stdout
    header, rule, *rows = piped.stdout.splitlines()
    assert header.split() == ["NAME", "INSTALLED", "EXTRA", "INSTALL", "WITH", "CLASS"]
    assert set(rule.replace(" ", "")) == {"-"}
    _columns_aligned(rows, header)
    assert any(r.startswith("archive ") for r in rows)

    code, tty = run_tty("sinks")
    assert code == 0
    assert "\x1b[1mNAME\x1b[0m" in tty and "\x1b[32myes\x1b[0m" in tty  # bold header, green "yes"
    assert ANSI.sub("", tty) == piped.stdout  # the same aligned table once the colour is removed

    code, no_color = run_tty("sinks", extra_env={"NO_COLOR": "1"})
    assert code == 0 and "\x1b[" not in no_color and no_color == piped.stdout


def test_validate_reports_an_aligned_coloured_table(tmp_path, fixtures_dir):
    schema = fixtures_dir / "binderhub" / "launch-history" / "v1-3da0f0c" / "launch.json"
    events = tmp_path / "events.jsonl"
    events.write_text('{"provider": "GitHub"}\n' * 9 + '{"provider": "Nope"}\n{"spec": 5}\n{oops\n')
    piped = run("validate", schema, events)
    assert piped.returncode == 1 and "\x1b[" not in piped.stdout
    rows = [line for line in piped.stdout.splitlines() if "INVALID" in line]
    assert rows[0].startswith("line 10: INVALID at $.provider:")
    assert rows[1].startswith("line 11: INVALID at $.spec:")
    assert rows[2].startswith("line 12: INVALID invalid JSON:")
    reasons = [row.index(reason) for row, reason in zip(rows, ('"Nope"', "5 is not", "at column 2"))]
    assert len(set(reasons)) == 1  # the reasons start in one column
    assert piped.stdout.rstrip().endswith("9 valid, 3 invalid")

    code, tty = run_tty("validate", schema, events)
    assert code == 1
    assert "\x1b[31;1mINVALID\x1b[0m" in tty and "\x1b[32;1mOK\x1b[0m" in tty and "\x1b[31m9 valid" in tty
    # On a terminal the progress bar is drawn on stderr too; without it, the same table as piped.
    table = [line for line in ANSI.sub("", tty).split("\n") if line and "validate:" not in line]
    assert table == piped.stdout.splitlines()


# --------------------------------------------------------------------------- progress


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "config.py"
    config.write_text(
        f"c.EventLog.schema_paths = [{str(EXAMPLE_SCHEMAS_DIR)!r}]\n"
        f"c.EventLog.allowed_schemas = [{LAUNCH!r}, {SAVE!r}]\n"
        "c.EventLog.load_schema_entry_points = False\n"
        "c.EventLog.sinks = ['file']\n"
        f"c.FileSink.filename = {str(tmp_path / 'out.jsonl')!r}\n"
    )
    return config


def test_emit_of_a_large_file_shows_progress_with_rates_only_when_asked(tmp_path):
    valid = [line for line in EXAMPLE_EVENTS.read_text().splitlines() if '"maybe"' not in line]
    big = tmp_path / "big.jsonl"
    big.write_text("\n".join(valid * 1500) + "\n")  # 6000 events
    config = _config(tmp_path)

    quiet = run("emit", "--config", config, big)
    assert quiet.returncode == 0 and "6000 recorded" in quiet.stdout
    assert quiet.stderr == ""  # stderr is not a terminal and --progress was not given

    shown = run("emit", "--config", config, "--progress", big)
    assert shown.returncode == 0 and "6000 recorded" in shown.stdout
    final = shown.stderr.strip().splitlines()[-1]
    # tqdm's bar ("100%|...| 8.06MB/s, 6,000 lines 41,889 lines/s") or the built-in line ("100.0%").
    assert final.startswith("emit:") and re.search(r"100(\.0)?%", final), final
    assert re.search(r"6,000 lines [\d,]+ lines/s", final) and re.search(r"[\d.]+ ?[KMG]?B/s", final), final

    code, tty = run_tty("validate", EXAMPLE_SCHEMAS_DIR / "app-launch.yaml", big)  # a terminal: shown
    assert "validate:" in tty and "lines/s" in tty


# --------------------------------------------------------------------------- tail


def _capsule(schema: str, n: int) -> str:
    return json.dumps({"__timestamp__": f"2026-01-01T00:00:{n % 60:02d}.000000Z", "__schema__": schema,
                       "__schema_version__": 1, "__metadata_version__": 1, "n": n})


def test_tail_prints_the_last_matching_lines(tmp_path):
    log = tmp_path / "events.jsonl"
    lines = [_capsule(LAUNCH if n % 3 else SAVE, n) for n in range(3000)]  # more than one 64 KiB block
    log.write_text("\n".join(lines) + "\n" + '{"partial": ')  # a line still being written
    result = run("tail", log)
    assert result.returncode == 0
    assert result.stdout.splitlines() == lines[-10:]
    result = run("tail", "-n", "4", "--schema", "file-save", log)  # the last part of the $id is enough
    assert [json.loads(x)["n"] for x in result.stdout.splitlines()] == [2988, 2991, 2994, 2997]
    result = run("tail", "-n", "2", "--schema", SAVE, "--schema", "nothing", log)
    assert [json.loads(x)["n"] for x in result.stdout.splitlines()] == [2994, 2997]
    with gzip.open(tmp_path / "old.jsonl.gz", "wt") as out:
        out.write("\n".join(lines[:30]) + "\n")
    result = run("tail", "-n", "1", "--schema", LAUNCH, tmp_path / "old.jsonl.gz")
    assert result.stdout.splitlines() == [lines[29]]
    missing = run("tail", tmp_path / "missing.jsonl")
    assert missing.returncode == 2 and "missing.jsonl" in missing.stderr


class Follower:
    """``telemetry-sinks tail --follow`` as a process whose output lines are read as they come."""

    def __init__(self, *args: object) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telemetry_sinks", "tail", "--follow", "--interval", "0.02",
             *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self.waiting = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.put(line.rstrip("\n"))

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.stderr.append(line)
            if "waiting for" in line:
                self.waiting.set()

    def next(self, timeout: float = 10) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"tail printed nothing within {timeout}s") from None

    def nothing_more(self, wait: float = 0.3) -> bool:
        time.sleep(wait)
        return self.lines.empty()

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        time.sleep(0.1)
        return code, "".join(self.stderr)


def test_tail_follow_survives_replacement_truncation_and_partial_lines(tmp_path):
    log = tmp_path / "events.jsonl"
    log.write_text(_capsule(LAUNCH, 0) + "\n" + _capsule(SAVE, 1) + "\n")
    follower = Follower("-n", "1", "--schema", "app-launch", log)
    try:
        assert json.loads(follower.next())["n"] == 0  # the last matching line, then it follows
        with open(log, "a") as out:
            out.write(_capsule(SAVE, 2) + "\n" + _capsule(LAUNCH, 3) + "\n")
            out.flush()
            assert json.loads(follower.next())["n"] == 3
            out.write(_capsule(LAUNCH, 4)[:20])  # half a line: not printed yet
            out.flush()
            assert follower.nothing_more()
            out.write(_capsule(LAUNCH, 4)[20:] + "\n")
        assert json.loads(follower.next())["n"] == 4
        # Replaced: renamed away (its last line written just before) and created again.
        with open(log, "a") as out:
            out.write(_capsule(LAUNCH, 5) + "\n")
        os.replace(log, tmp_path / "events.jsonl.1")
        log.write_text(_capsule(LAUNCH, 6) + "\n")
        assert [json.loads(follower.next())["n"] for _ in range(2)] == [5, 6]
        # Truncated in place: read again from the top.
        log.write_text("")
        time.sleep(0.2)
        with open(log, "a") as out:
            out.write(_capsule(LAUNCH, 7) + "\n")
        assert json.loads(follower.next())["n"] == 7
        assert follower.nothing_more()
    finally:
        code, stderr = follower.stop()
    assert code == 0, stderr


def test_tail_follow_reads_every_event_of_a_rotating_file_sink(tmp_path):
    log = tmp_path / "events.jsonl"
    follower = Follower("-n", "0", log)  # started before the file exists: it waits for it
    assert follower.waiting.wait(20), follower.stderr
    sink = RotatingFileSink(filename=log, max_bytes=600, backup_count=20)
    try:
        seen = []
        for n in range(40):
            sink.handle_capsule(json.loads(_capsule(LAUNCH, n)))
            seen.append(json.loads(follower.next())["n"])
        assert seen == list(range(40))
        assert len(list(tmp_path.glob("events.jsonl.*"))) >= 10  # it rotated, many times
    finally:
        sink.close()
        code, stderr = follower.stop()
    assert code == 0 and "waiting for" in stderr
