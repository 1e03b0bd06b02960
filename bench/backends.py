"""The backends of the benchmarks (the same local servers the tests use) and the sinks for them.

Every backend is a separate process on a free 127.0.0.1 port, started through the
test suite's ``tests/helpers/servers.py`` (``ServerProcess``, ``tansu_broker``, ``osmem_server``).
A sink whose module cannot be imported (not written yet, or its extra not installed)
is skipped with a note.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helpers.servers as test_backends  # tests/ is on sys.path (see common.py)

from .common import REPO

free_port = test_backends.free_port
wait_delivered = test_backends.wait_delivered
ServerProcess = test_backends.ServerProcess

_SERVERS_MAIN = f"import sys; sys.path.insert(0, {str(REPO)!r}); from bench.servers import main; main()"

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def bench_server(kind: str, port: int, log_dir: Path, *extra: str) -> ServerProcess:
    argv = [sys.executable, "-c", _SERVERS_MAIN, kind, "--port", str(port), *extra]
    return ServerProcess(f"bench-{kind}", argv, port, log_dir)


def fast_http(port: int, log_dir: Path) -> ServerProcess:
    return bench_server("http", port, log_dir)


def slow_http(port: int, log_dir: Path, delay: float = 1.0) -> ServerProcess:
    return bench_server("http", port, log_dir, "--delay", str(delay))


def delay_proxy(port: int, upstream_port: int, log_dir: Path, delay: float = 1.0) -> ServerProcess:
    upstream = f"127.0.0.1:{upstream_port}"
    return bench_server("proxy", port, log_dir, "--upstream", upstream, "--delay", str(delay))


def tansu(port: int, log_dir: Path, advertised_port: int | None = None) -> ServerProcess:
    """Tansu (memory storage); ``advertised_port``: the port clients are told to use (a proxy)."""
    server = test_backends.tansu_broker(port, log_dir)
    if advertised_port is not None:
        argv = server.argv
        argv[argv.index("--advertised-listener-url") + 1] = f"tcp://127.0.0.1:{advertised_port}"
    return server


def moto(port: int, log_dir: Path) -> ServerProcess:
    return ServerProcess(
        "moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, log_dir
    )


def osmem(port: int, log_dir: Path) -> ServerProcess:
    return test_backends.osmem_server(port, log_dir)


def fake_stackdriver(port: int, log_dir: Path) -> ServerProcess:
    return bench_server("stackdriver", port, log_dir)


# ---------------------------------------------------------------------- sink kinds


class Servers(contextlib.AbstractContextManager):
    """Starts backends and stops every one of them at the end."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="bench-servers-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.started: list[ServerProcess] = []

    def start(self, server: ServerProcess, timeout: float = 60.0) -> ServerProcess:
        server.start(timeout=timeout)
        self.started.append(server)
        return server

    def stop(self, server: ServerProcess) -> None:
        server.stop()
        if server in self.started:
            self.started.remove(server)

    def __exit__(self, *exc: Any) -> None:
        for server in reversed(self.started):
            with contextlib.suppress(Exception):
                server.stop()


@dataclass
class SinkKind:
    """One network sink: how to start its backend (up or slow) and how to build the sink."""

    name: str
    module: str
    backend: Callable[[int, Path], ServerProcess]
    make: Callable[..., Any]  # make(port, **options) -> sink
    #: "server": a slow server of its own (HTTP); "proxy": the delaying TCP proxy in front
    slow: str = "proxy"
    #: a proxy between the sink and the backend (the elasticsearch client needs one with osmem)
    front: Callable[[int, int, Path], ServerProcess] | None = None
    notes: list[str] = field(default_factory=list)

    def available(self) -> str | None:
        """None if the sink's module imports, else why not."""
        try:
            importlib.import_module(self.module)
        except Exception as exc:  # ImportError, or a module being written
            return f"{self.module} cannot be imported ({type(exc).__name__}: {exc})"
        return None

    def start_up(self, servers: Servers) -> int:
        """Start the backend; return the port a sink connects to."""
        port = servers.start(self.backend(free_port(), servers.log_dir)).port
        if self.front is not None:
            port = servers.start(self.front(free_port(), port, servers.log_dir)).port
        return port

    def start_slow(self, servers: Servers, delay: float = 1.0) -> int:
        """Start the backend behind a 1 s delay; return the port a sink connects to."""
        if self.slow == "server":
            return servers.start(slow_http(free_port(), servers.log_dir, delay)).port
        if self.name == "kafka":
            # The broker must advertise the proxy, or clients would go around it after bootstrap.
            proxy_port, broker_port = free_port(), free_port()
            servers.start(tansu(broker_port, servers.log_dir, advertised_port=proxy_port))
            return servers.start(delay_proxy(proxy_port, broker_port, servers.log_dir, delay)).port
        port = self.start_up(servers)
        return servers.start(delay_proxy(free_port(), port, servers.log_dir, delay)).port


def _http_sink(port: int, **options: Any) -> Any:
    from telemetry_sinks.sinks.http import HTTPSink

    return HTTPSink(url=f"http://127.0.0.1:{port}/api/events", **options)


def _kafka_sink(port: int, topic: str | None = None, **options: Any) -> Any:
    from telemetry_sinks.sinks.kafka import KafkaSink

    # The scenarios that compare a sink with its raw client use kafka-python against raw
    # kafka-python; the kafka scenario compares the two clients (it passes client=...).
    options.setdefault("client", "kafka-python")
    return KafkaSink(bootstrap_servers=f"127.0.0.1:{port}", topic=topic or f"bench-{uuid.uuid4().hex[:8]}",
                     **options)  # fmt: skip


def _cloudwatch_sink(port: int, **options: Any) -> Any:
    from telemetry_sinks.sinks.cloudwatch import CloudWatchSink

    os.environ.update(AWS_ENV)
    return CloudWatchSink(
        log_group_name=f"/bench/{uuid.uuid4().hex[:8]}",
        log_stream_name="bench",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        **options,
    )


def _opensearch_sink(port: int, **options: Any) -> Any:
    from telemetry_sinks.sinks.opensearch import OpenSearchSink

    return OpenSearchSink(hosts=f"http://127.0.0.1:{port}", index=f"bench-{uuid.uuid4().hex[:8]}", **options)


def _elasticsearch_sink(port: int, **options: Any) -> Any:
    from telemetry_sinks.sinks.elasticsearch import ElasticsearchSink

    return ElasticsearchSink(hosts=f"http://127.0.0.1:{port}", index=f"bench-{uuid.uuid4().hex[:8]}",
                             **options)  # fmt: skip


def _stackdriver_sink(port: int, **options: Any) -> Any:
    from telemetry_sinks.sinks.stackdriver import StackdriverSink

    return StackdriverSink(project="bench-project", anonymous=True, api_endpoint=f"http://127.0.0.1:{port}",
                           log_name="bench", **options)  # fmt: skip


def es_compat(port: int, upstream_port: int, log_dir: Path) -> ServerProcess:
    return bench_server("es-compat", port, log_dir, "--upstream", f"127.0.0.1:{upstream_port}")


SINKS: dict[str, SinkKind] = {
    "http": SinkKind("http", "telemetry_sinks.sinks.http", fast_http, _http_sink, slow="server"),
    "kafka": SinkKind("kafka", "telemetry_sinks.sinks.kafka", tansu, _kafka_sink),
    "cloudwatch": SinkKind("cloudwatch", "telemetry_sinks.sinks.cloudwatch", moto, _cloudwatch_sink),
    "opensearch": SinkKind("opensearch", "telemetry_sinks.sinks.opensearch", osmem, _opensearch_sink),
    "elasticsearch": SinkKind(
        "elasticsearch",
        "telemetry_sinks.sinks.elasticsearch",
        osmem,
        _elasticsearch_sink,
        front=es_compat,
        notes=["elasticsearch: osmem-server behind the test suite's header-rewriting proxy "
               "(tests/helpers/bulk.py), one process of its own; the proxy opens a "
               "connection per request."],
    ),  # fmt: skip
    "stackdriver": SinkKind("stackdriver", "telemetry_sinks.sinks.stackdriver", fake_stackdriver,
                            _stackdriver_sink),  # fmt: skip
}


def available_kinds(notes: list[str]) -> list[SinkKind]:
    """The sinks of :data:`SINKS` whose client and backend are here; the others noted as skipped."""
    kinds = []
    for name, kind in SINKS.items():
        problem = kind.available()
        if problem:
            notes.append(f"{name}: skipped, {problem}")
        else:
            kinds.append(kind)
    return kinds
