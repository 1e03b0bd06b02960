"""``telemetry-sinks serve --processes 2`` as real processes: many clients, kill -9, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from helpers.collector_process import SCHEMA, CollectorProcess
from helpers.serve_process import ServeProcess
from helpers.servers import free_port

from telemetry_sinks.delivery.spool import parse_records

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
    pytest.mark.skipif(sys.platform == "win32", reason="forks, sends signals"),
]
SID = SCHEMA["$id"]


class MultiServe(ServeProcess):
    """``telemetry-sinks serve --processes N`` with a config file; ``url`` is its events endpoint."""

    def __init__(self, config: Path, processes: int, port: int = 0) -> None:
        super().__init__(["--config", str(config), "--port", str(port), "--processes", str(processes)],
                         config.parent, processes=processes, timeout=30)  # fmt: skip
        self.processes = processes
        self.url += "/api/events"

    def children(self) -> list[int]:
        """Pids of the collector processes (children of the supervisor)."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rpartition(")")[2].split()[1]) == self.proc.pid:
                    found.append(int(entry))
        return found

    def kill_all(self) -> None:
        """kill -9 the supervisor and every collector process: nothing is flushed or closed."""
        pids = self.children()
        self.proc.kill()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)


def write_config(directory: Path, sink_lines: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "e2e.json").write_text(json.dumps(SCHEMA))
    config = directory / "collector_config.py"
    config.write_text(
        f"c.EventLog.schema_paths = [{str(directory / 'e2e.json')!r}]\n"
        f"c.EventLog.allowed_schemas = [{SID!r}]\n"
        "c.Collector.client_rate_limit = 0\n"  # many clients from one address, as behind a proxy
        + sink_lines
    )
    return config


def post_from_clients(url: str, clients: int, per_client: int, batch: int, name: str = "c",
                      keep_alive: bool = True) -> list[str]:  # fmt: skip
    """``clients`` threads, each with its own keep-alive connection (as HTTP sinks and load
    balancers keep them; ``keep_alive=False``: a new one per request), POST events with ids;
    returns the ids."""
    ids: list[str] = []
    failures: list[str] = []

    def client(number: int) -> None:
        session = requests.Session()
        for start in range(0, per_client, batch):
            events = []
            for seq in range(start, min(start + batch, per_client)):
                event_id = f"{name}{number}-{seq}"
                events.append({"schema_id": SID, "version": 1, "data": {"seq": seq, "producer": str(number)},
                               "event_id": event_id})  # fmt: skip
            post = session.post if keep_alive else requests.post
            answer = post(url, json=events if batch > 1 else events[0], timeout=30)
            if answer.status_code != 200 or answer.json()["accepted"] != len(events):
                failures.append(f"{answer.status_code} {answer.text[:200]}")
            ids.extend(e["event_id"] for e in events)
        session.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures[:3]
    return ids


def lines_under(directory: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(directory.rglob("events.jsonl*"))
            for line in path.read_text().splitlines()]  # fmt: skip


def spooled_ids(spool: Path) -> dict[str, set[str]]:
    """The clients' event ids (``__event_id__``) of the events in each process's spool segments."""
    found: dict[str, set[str]] = {}
    for path in spool.glob("process-*/*.wal"):
        records = parse_records(path.read_bytes()).records
        ids = found.setdefault(path.parent.name, set())
        ids.update(json.loads(data)["__event_id__"] for _, data in records)
    return found


def test_many_clients_all_recorded_by_two_processes_and_sigterm_stops_all(tmp_path):
    events = tmp_path / "events"
    config = write_config(tmp_path, "c.EventLog.sinks = ['rotating_file']\n"
                          f"c.RotatingFileSink.filename = {str(events / 'events.jsonl')!r}\n"
                          "c.RotatingFileSink.max_bytes = 100000\nc.RotatingFileSink.backup_count = 100\n")
    server = MultiServe(config, processes=2)
    try:
        children = server.children()
        assert len(children) == 2
        ids = post_from_clients(server.url, clients=8, per_client=150, batch=1)
        ids += post_from_clients(server.url, clients=4, per_client=1000, batch=100, name="batch")
        # Each process writes its own rotating files: both took part, though every client kept
        # one connection (the kernel spreads connections over the processes' sockets).
        per_process = {p.name: lines_under(p) for p in events.glob("process-*")}
        assert sorted(per_process) == ["process-1", "process-2"]
        assert all(per_process.values()), {k: len(v) for k, v in per_process.items()}
    finally:
        code, _, stderr = server.terminate(timeout=60)
    assert code == 0, stderr
    assert all(not Path(f"/proc/{pid}").exists() for pid in children), "a collector process outlived SIGTERM"
    recorded = [line["__event_id__"] for line in lines_under(events)]
    assert sorted(recorded) == sorted(ids)  # every event once: each id was sent once
    assert "stopped (2 processes)" in "".join(server.stdout)


def test_each_process_replays_its_own_spool_after_kill_9(tmp_path):
    target_port = free_port()  # the backend the collectors forward to: down for now
    spool = tmp_path / "spool"
    config = write_config(tmp_path / "collectors", (
        "c.EventLog.sinks = ['http']\n"
        f"c.HTTPSink.url = 'http://127.0.0.1:{target_port}/api/events'\n"
        f"c.HTTPSink.spool_dir = {str(spool)!r}\n"
        "c.HTTPSink.flush_interval = 0.05\nc.HTTPSink.max_retry_time = 0.2\n"
        "c.HTTPSink.retry_initial_backoff = 0.1\nc.HTTPSink.retry_max_backoff = 0.5\n"
    ))  # fmt: skip
    port = free_port()
    server = MultiServe(config, processes=2, port=port)
    try:
        # New connections for every request: both processes surely get some of the events.
        ids = post_from_clients(server.url, clients=6, per_client=200, batch=20, keep_alive=False)
        deadline = time.monotonic() + 60
        while set().union(*spooled_ids(spool).values()) != set(ids):
            assert time.monotonic() < deadline, "accepted events did not all reach the spools"
            time.sleep(0.1)
        before = spooled_ids(spool)
        assert sorted(before) == ["process-1", "process-2"] and all(before.values())
    finally:
        server.kill_all()

    target = CollectorProcess(tmp_path / "target", port=target_port).start()
    server = MultiServe(config, processes=2, port=port)
    try:
        deadline = time.monotonic() + 90
        while {e["__event_id__"] for e in target.received()} != set(ids):
            assert time.monotonic() < deadline, "the spools were not replayed"
            time.sleep(0.2)
        # Both processes replayed their own spool (their directories are empty again).
        deadline = time.monotonic() + 30
        while any(spooled_ids(spool).values()):
            assert time.monotonic() < deadline, spooled_ids(spool)
            time.sleep(0.1)
    finally:
        code, _, stderr = server.terminate(timeout=60)
        target.stop()
    assert code == 0, stderr


def test_a_killed_process_is_started_again_and_a_config_error_stops_all(tmp_path):
    config = write_config(tmp_path, "c.EventLog.sinks = ['file']\n"
                          f"c.FileSink.filename = {str(tmp_path / 'events.jsonl')!r}\n")
    server = MultiServe(config, processes=2)
    try:
        first = server.children()
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while len(set(server.children()) - set(first)) != 1 or len(server.children()) != 2:
            assert time.monotonic() < deadline, server.children()
            time.sleep(0.1)
        post_from_clients(server.url, clients=2, per_client=20, batch=1)
    finally:
        code, _, stderr = server.terminate(timeout=60)
    assert code == 0, stderr
    assert "ended (killed by signal 9); starting it again" in stderr

    bad = write_config(tmp_path / "bad", "c.EventLog.sinks = ['file']\nc.FileSink.filename = 7\n")
    run = subprocess.run([sys.executable, "-m", "telemetry_sinks", "serve", "--config", str(bad),
                          "--port", "0", "--processes", "2"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert "FileSink option 'filename'" in run.stderr


def test_processes_must_be_at_least_one(tmp_path):
    out = subprocess.run([sys.executable, "-m", "telemetry_sinks", "serve", "--processes", "0"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2 and "--processes must be 1 or more" in out.stderr


def test_per_process_config_moves_only_single_writer_paths():
    from traitlets.config import Config

    from telemetry_sinks.server.processes import per_process_config

    config = Config()
    config.EventLog.sinks = ["http", "rotating_file", "archive", "file"]
    config.HTTPSink.spool_dir = "/var/spool/telemetry/http"
    config.HTTPSink.dead_letter_file = "/var/log/telemetry/dead.jsonl"
    config.RotatingFileSink.filename = "/var/log/telemetry/events.jsonl"
    config.ArchiveSink.directory = "/srv/archive"
    config.FileSink.filename = "/var/log/telemetry/plain.jsonl"
    moved = per_process_config(config, 2)
    assert moved.HTTPSink.spool_dir == "/var/spool/telemetry/http/process-2"
    assert moved.HTTPSink.dead_letter_file == "/var/log/telemetry/dead.jsonl"  # appends are safe to share
    assert moved.RotatingFileSink.filename == "/var/log/telemetry/process-2/events.jsonl"
    assert moved.ArchiveSink.directory == "/srv/archive/process-2"
    assert moved.FileSink.filename == "/var/log/telemetry/plain.jsonl"  # one write(2) per line: shared
    assert config.HTTPSink.spool_dir == "/var/spool/telemetry/http"  # the original is left alone
    # A base class's section applies to the sinks built from it: each gets its own moved value,
    # the base section (which other sinks read) is left alone.
    shared = Config()
    shared.EventLog.sinks = ["http", "kafka"]
    shared.NetworkSink.spool_dir = "/spool"
    moved = per_process_config(shared, 1)
    assert moved.HTTPSink.spool_dir == moved.KafkaSink.spool_dir == "/spool/process-1"
    assert moved.NetworkSink.spool_dir == "/spool"
    only_base = Config()
    only_base.EventLog.sinks = ["rotating_file", "file"]
    only_base.FileSink.filename = "/logs/events.jsonl"
    moved = per_process_config(only_base, 3)
    assert moved.RotatingFileSink.filename == "/logs/process-3/events.jsonl"
    assert moved.FileSink.filename == "/logs/events.jsonl"


def test_hub_service_processes_accept_each_others_oauth_state_cookies(tmp_path):
    """As a Hub service, one process sets the signed OAuth state cookie and another may receive the
    callback: both must verify it (one cookie secret for all), else the login fails with 403."""
    import urllib.parse

    from helpers.servers import wait_for_port

    port, prefix = free_port(), "/services/telemetry/"
    env = {
        **os.environ,
        "JUPYTERHUB_API_TOKEN": "t" * 32,
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{free_port()}/hub/api",  # no Hub: the code exchange fails
        "JUPYTERHUB_CLIENT_ID": "service-telemetry",
        "JUPYTERHUB_SERVICE_PREFIX": prefix,
        "JUPYTERHUB_OAUTH_CALLBACK_URL": prefix + "oauth_callback",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
    }
    config = write_config(tmp_path, f"c.EventLog.sinks = ['file']\nc.FileSink.filename = "
                                    f"{str(tmp_path / 'events.jsonl')!r}\n")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "telemetry_sinks", "serve", "--config", str(config),
                             "--hub-service", "--processes", "2"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for_port(port)  # where $JUPYTERHUB_SERVICE_URL says, for the supervisor as for one process
        base = f"http://127.0.0.1:{port}{prefix}"
        outcomes = []
        for _ in range(12):  # each request on a new connection: the two land on either process
            login = requests.get(base + "api/session", allow_redirects=False, timeout=10)
            assert login.status_code == 302, login.text
            state = urllib.parse.parse_qs(urllib.parse.urlsplit(login.headers["Location"]).query)["state"][0]
            callback = requests.get(base + "oauth_callback", params={"code": "c", "state": state},
                                    cookies=login.cookies, allow_redirects=False, timeout=10)  # fmt: skip
            outcomes.append(callback.status_code)
        # The state cookie verified every time (403: "OAuth state mismatch"); the code exchange with
        # the absent Hub is what fails after it.
        assert 403 not in outcomes, outcomes
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()  # type: ignore[union-attr]
