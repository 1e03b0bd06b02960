"""Scenario 11: collector ingest, one process and N processes, beside Jupyter Server's POST /api/events.

Servers: ``telemetry-sinks serve --processes 1`` and ``--processes N`` (N = the machine's
cores), and Jupyter Server (``jupyter server``, started here with a token), each
recording Jupyter Server's own ``contents_service`` schema to one JSON-lines file
(our ``FileSink``; Jupyter's ``EventLogger`` with a ``logging.FileHandler``).  Load:
C client processes, each with a keep-alive connection, POST as fast as answers come
back for a fixed time: one event per request, or 100 per request (Jupyter Server's API
takes one event per request, so it has no batched row).  Counted: events answered as
accepted (200; every event accepted) per second of the run.

Clients and servers share the machine: on 2 cores the clients take part of the CPU the
servers could use, the same for every row.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .backends import ServerProcess, Servers, free_port
from .common import ScenarioResult, Settings, Table, fmt_num, median, progress, spread

SID = "https://events.jupyter.org/jupyter_server/contents_service/v1"
CLIENTS = 4


def _schema_path() -> Path | None:
    try:
        import jupyter_server
    except ImportError:
        return None
    return Path(jupyter_server.__file__).parent / "event_schemas" / "contents_service" / "v1.yaml"


def _event(seq: int) -> dict[str, Any]:
    data = {"action": "get", "path": f"work/notebook-{seq % 97}.ipynb"}
    return {"schema_id": SID, "version": 1, "data": data}


def _client(port: int, body: bytes, headers: dict[str, str], events_per_request: int, seconds: float,
            results: Any) -> None:  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    done = failed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection.request("POST", "/api/events", body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status in (200, 204):
            done += 1
        else:
            failed += 1
    connection.close()
    results.put((done * events_per_request, done, failed))


def load(
    port: int, per_request: int, seconds: float, headers: dict[str, str] | None = None
) -> tuple[float, float]:
    """Events/s and requests/s accepted by the server on ``port`` under CLIENTS client processes."""
    events = [_event(i) for i in range(per_request)]
    body = json.dumps(events[0] if per_request == 1 else events).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    clients = [context.Process(target=_client, args=(port, body, all_headers, per_request, seconds, results))
               for _ in range(CLIENTS)]  # fmt: skip
    start = time.perf_counter()
    for client in clients:
        client.start()
    totals = [results.get(timeout=seconds + 60) for _ in clients]
    elapsed = time.perf_counter() - start
    for client in clients:
        client.join(30)
    failed = sum(t[2] for t in totals)
    if failed:
        raise RuntimeError(f"{failed} requests were not answered 200")
    return sum(t[0] for t in totals) / elapsed, sum(t[1] for t in totals) / elapsed


def _collector(directory: Path, processes: int, schema: Path) -> ServerProcess:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "collector_config.py"
    config.write_text(
        f"c.EventLog.schema_paths = [{str(schema)!r}]\n"
        f"c.EventLog.allowed_schemas = [{SID!r}]\n"
        "c.EventLog.sinks = ['file']\n"
        "c.Collector.client_rate_limit = 0\n"  # every client is 127.0.0.1; Jupyter Server has no limit
        f"c.FileSink.filename = {str(directory / 'events.jsonl')!r}\n"
    )
    port = free_port()
    argv = [sys.executable, "-m", "telemetry_sinks", "serve", "--config", str(config), "--port", str(port),
            "--processes", str(processes)]  # fmt: skip
    return ServerProcess(f"collector-{processes}", argv, port, directory)


def _jupyter_server(directory: Path, token: str) -> ServerProcess:
    config_dir = directory / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "jupyter_server_config.py").write_text(
        "import logging\n"
        f"c.EventLogger.handlers = [logging.FileHandler({str(directory / 'events.jsonl')!r})]\n"
    )
    port = free_port()
    jupyter = shutil.which("jupyter-server", path=os.path.dirname(sys.executable)) or "jupyter-server"
    argv = [jupyter, f"--port={port}", "--ip=127.0.0.1", "--no-browser", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={directory}", f"--config={config_dir / 'jupyter_server_config.py'}"]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    return ServerProcess("jupyter-server", argv, port, directory)


def run(settings: Settings) -> ScenarioResult:
    result = ScenarioResult("collector", "11. Collector ingest: 1 and N processes, beside Jupyter Server")
    schema = _schema_path()
    if schema is None:
        result.notes.append('skipped: jupyter_server is not installed (pip install jupyter-server): its '
                            "schema and its POST /api/events are the anchor")  # fmt: skip
        return result
    cores = os.cpu_count() or 1
    seconds = settings.pick(5.0, 2.0)
    workdir = settings.workdir / "collector"
    table = Table(
        f"Collector ingest, events/s accepted (median of {settings.reps}; min-max in brackets), "
        f"{CLIENTS} client processes with keep-alive connections, {seconds:g} s per run",
        ["server", "processes", "events per request", "events/s", "requests/s", "vs 1 process"],
    )
    token = secrets.token_hex(16)
    configs = [("telemetry-sinks serve", 1, 1), ("telemetry-sinks serve", cores, 1),
               ("Jupyter Server POST /api/events", 1, 1),
               ("telemetry-sinks serve", 1, 100), ("telemetry-sinks serve", cores, 100)]  # fmt: skip
    with Servers(workdir / "servers") as servers, progress(len(configs) * settings.reps, "collector", "runs",
                                                           settings.progress) as bar:  # fmt: skip
        single: dict[int, float] = {}
        for name, processes, per_request in configs:
            directory = workdir / f"{name.split()[0]}-{processes}-{per_request}"
            if name.startswith("Jupyter"):
                server = servers.start(_jupyter_server(directory, token), timeout=120)
                headers = {"Authorization": f"token {token}"}
            else:
                server = servers.start(_collector(directory, processes, schema))
                headers = {}
            load(server.port, per_request, 0.5, headers)  # warm up: connections, imports, first files
            rates, requests = [], []
            for _ in range(settings.reps):
                events_per_s, requests_per_s = load(server.port, per_request, seconds, headers)
                rates.append(events_per_s)
                requests.append(requests_per_s)
                bar.update(1)
            servers.stop(server)
            base = single.setdefault(per_request, median(rates)) if name.startswith("telemetry") else None
            versus = f"{median(rates) / base:.2f}x" if base and processes > 1 else "-"
            table.add(name, processes, per_request, f"{fmt_num(median(rates))} ({spread(rates)})",
                      fmt_num(median(requests)), versus)  # fmt: skip
            key = f"{name} {processes}p {per_request}"
            result.data[key] = {"events_per_s": rates, "requests_per_s": requests}
    table.notes.append(
        "Every server records the events of Jupyter Server's contents_service schema to one JSON-lines "
        "file; ours validates, applies the policy (no personal data in this schema) and writes through a "
        f"FileSink. {cores} processes: serve --processes {cores} (forked processes, each listening on the "
        "port with SO_REUSEPORT). The per-client rate limit is off (every client is 127.0.0.1)."
    )
    result.tables.append(table)
    return result
