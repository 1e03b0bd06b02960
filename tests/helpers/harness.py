"""Real backends for every network sink, behind a proxy that can cut the network, for fault tests.

Each :class:`Backend` starts a real server on 127.0.0.1 (the collector as a
subprocess for ``http``, Tansu for ``kafka``, moto for ``cloudwatch``, the fake
Cloud Logging API for ``stackdriver``, osmem-server for ``elasticsearch`` and
``opensearch``), builds sinks that talk to it, and reads back what it received,
as ``(event_id or None, payload)`` pairs.

``down()`` / ``up()`` make the backend unreachable and reachable again: the
collector process is killed (SIGKILL) and restarted (its files survive); for the
backends that keep their data in memory, a :class:`FlappingProxy` in front of
them refuses connections and cuts the open ones, so nothing already received is
forgotten.  ``slow(delay)`` makes every answer of the backend arrive ``delay``
seconds late (the proxy holds it), ``slow(0)`` ends that.

The cloud backends are used only when their sink module imports and their
test helpers exist (:func:`available_backends`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import struct
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from helpers.servers import ServerProcess, free_port, osmem_server, port_is_free, tansu_broker, wait_for_port

TESTS = Path(__file__).resolve().parents[1]

SCHEMA = {
    "$id": "https://events.example.org/reliability",
    "version": 1,
    "type": "object",
    "required": ["seq"],
    "properties": {
        "seq": {"type": "integer"},
        "producer": {"type": "string"},
        "note": {"type": "string"},
        "user": {"type": "string", "categories": ["user-identifier"]},
    },
}
SID = SCHEMA["$id"]

#: Delivery options that keep the tests short: small batching delay and backoffs.
FAST = {
    "flush_interval": 0.05,
    "retry_initial_backoff": 0.05,
    "retry_max_backoff": 0.5,
    "close_timeout": 5.0,
}


# ---------------------------------------------------------------------- network faults


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset (the peer sees ECONNRESET, as when a host goes away)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FlappingProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream_port`` that can go down and up.

    Down: the port refuses connections and every open connection is reset.  ``delay``:
    seconds each chunk of the upstream's answers is held before it is passed on (slow).
    """

    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.delay = 0.0
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._generation = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> FlappingProxy:
        deadline = time.monotonic() + 10
        while True:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                listener.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        listener.listen(128)
        listener.settimeout(0.05)
        with self._lock:
            self._generation += 1
            self._listener = listener
            generation = self._generation
        threading.Thread(target=self._accept, args=(listener, generation), daemon=True).start()
        return self

    start = up

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            self._generation += 1
            connections, self._connections = self._connections, set()
        if listener is not None:
            listener.close()
        for conn in connections:
            _reset(conn)

    stop = down

    def _accept(self, listener: socket.socket, generation: int) -> None:
        while True:
            with self._lock:
                if self._generation != generation:
                    return
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if self._generation != generation:
                    _reset(client)
                    _reset(upstream)
                    return
                self._connections.update((client, upstream))
            for src, dst, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(src, dst, answers), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while data := src.recv(65536):
                if answers and self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._connections.discard(src)
                self._connections.discard(dst)
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()


class HangingServer:
    """Accepts TCP connections, reads whatever comes, and never answers."""

    def __init__(self) -> None:
        self.port = free_port()
        self.accepted = 0
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HangingServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            self.accepted += 1
            self._sockets.append(conn)
            threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()

    @staticmethod
    def _swallow(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        for conn in self._sockets:
            _reset(conn)


# ---------------------------------------------------------------------- backends


class Backend:
    """A real backend for one sink type (see the module docstring)."""

    name = ""
    #: Whether ``received()`` carries the event id (else duplicates are found by content).
    carries_event_id = True

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def start(self) -> Backend:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def down(self) -> None:
        raise NotImplementedError

    def up(self) -> None:
        raise NotImplementedError

    #: The proxy every connection of a sink goes through (``slow()`` delays its answers).
    proxy: FlappingProxy | None = None

    def slow(self, delay: float) -> None:
        """Every answer arrives ``delay`` seconds late from now on (0: on time again)."""
        assert self.proxy is not None
        self.proxy.delay = delay

    @classmethod
    def sink_class(cls) -> type:
        raise NotImplementedError

    def sink_options(self) -> dict[str, Any]:
        """Options that point a sink at this backend."""
        raise NotImplementedError

    @classmethod
    def hanging_options(cls, url: str, port: int) -> dict[str, Any]:
        """Options that point a sink at a server that never answers (see :class:`HangingServer`)."""
        raise NotImplementedError

    def make_sink(self, **options: Any) -> Any:
        return self.sink_class()(**{**FAST, **self.sink_options(), **options})

    def received(self) -> list[tuple[str | None, dict]]:
        raise NotImplementedError

    def raw(self) -> bytes:
        """Everything the backend received (and logged), for searching it for leaked values."""
        return json.dumps(self.received()).encode()

    def wait_received(self, count: int, timeout: float = 30.0) -> list[tuple[str | None, dict]]:
        """``received()`` once it holds at least ``count`` items (or after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.received()
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.2)


#: Runs ``telemetry-sinks serve`` with an audit hook that logs every file-system access
#: (``open``, ``os.*``, ``shutil.*`` audit events with a path) as a JSON line.
AUDITED_SERVE = """
import json, sys
log = open(sys.argv[1], "a", buffering=1)
def hook(event, args):
    if event == "open" or event.startswith(("os.", "shutil.", "pathlib.", "glob.")):
        paths = [a.decode("utf-8", "replace") if isinstance(a, bytes) else a for a in args
                 if isinstance(a, (str, bytes))]
        if paths:
            log.write(json.dumps([event, paths]) + "\\n")
sys.addaudithook(hook)
from telemetry_sinks.cli import main
sys.exit(main(sys.argv[2:]))
"""


class CollectorServer(ServerProcess):
    """``telemetry-sinks serve`` as a subprocess, writing to rotating ``events.jsonl`` files.

    ``schemas`` are registered and ``allowed_schemas`` is its policy (default: every
    schema, unrestricted properties only); ``extra_config`` lines are appended.
    """

    def __init__(
        self,
        directory: Path,
        *,
        schemas: list[dict] | None = None,
        allowed_schemas: Any = None,
        token: str | None = None,
        extra_config: str = "",
        port: int | None = None,
        audit_log: Path | None = None,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        schemas = schemas or [SCHEMA]
        paths = []
        for index, schema in enumerate(schemas):
            path = directory / f"schema-{index}.json"
            path.write_text(json.dumps(schema))
            paths.append(str(path))
        if allowed_schemas is None:
            allowed_schemas = [s["$id"] for s in schemas]
        self.events_file = directory / "events.jsonl"
        config = directory / "collector_config.py"
        config.write_text(
            f"c.EventLog.schema_paths = {paths!r}\n"
            "c.EventLog.load_schema_entry_points = False\n"
            f"c.EventLog.allowed_schemas = {allowed_schemas!r}\n"
            "c.EventLog.sinks = ['rotating_file']\n"
            f"c.RotatingFileSink.filename = {str(self.events_file)!r}\n"
            "c.RotatingFileSink.max_bytes = 500000\n"
            "c.RotatingFileSink.backup_count = 100\n"
            + (f"c.Collector.token = {token!r}\n" if token else "")
            + extra_config
        )
        port = port or free_port()
        serve = ["serve", "--config", str(config), "--port", str(port)]
        if audit_log is not None:
            argv = [sys.executable, "-c", AUDITED_SERVE, str(audit_log), *serve]
        else:
            argv = [sys.executable, "-m", "telemetry_sinks", *serve]
        super().__init__("collector", argv, port, directory)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/api/events"

    def event_files(self) -> list[Path]:
        """The collector's output files, oldest first."""
        rotated = [p for p in self.events_file.parent.glob(self.events_file.name + ".*")
                   if p.suffix[1:].isdigit()]
        rotated.sort(key=lambda p: -int(p.suffix[1:]))
        return [*rotated, self.events_file]

    def received(self) -> list[dict]:
        """Every line the collector wrote, oldest first, across rotated files."""
        lines = []
        for path in self.event_files():
            if path.exists():
                lines.extend(json.loads(x) for x in path.read_text().splitlines())
        return lines

    def all_output(self) -> bytes:
        """Every byte the collector wrote into its directory (events, logs, anything)."""
        return b"".join(p.read_bytes() for p in sorted(self.log_path.parent.rglob("*")) if p.is_file())


class HTTPBackend(Backend):
    """The real collector (``telemetry-sinks serve``) as a subprocess, writing JSONL files.

    Sinks reach it through a :class:`FlappingProxy` (for ``slow()``); ``down()`` kills the
    collector itself.
    """

    name = "http"

    def __init__(self, directory: Path, **collector: Any) -> None:
        super().__init__(directory)
        self.server = CollectorServer(directory / "collector", **collector)
        self.token = collector.get("token")
        self.proxy = FlappingProxy(self.server.port)

    def start(self) -> HTTPBackend:
        self.server.start()
        self.proxy.up()
        return self

    def stop(self) -> None:
        self.proxy.down()
        self.server.stop()

    def down(self) -> None:
        self.server.stop()  # SIGKILL: accepted-but-unanswered events come again (same id)

    def up(self) -> None:
        self.server.start()

    @classmethod
    def sink_class(cls) -> type:
        from telemetry_sinks.sinks.http import HTTPSink

        return HTTPSink

    def sink_options(self) -> dict[str, Any]:
        url = f"{self.proxy.url}/api/events"
        options: dict[str, Any] = {"url": url, "connect_timeout": 1.0, "read_timeout": 5.0}
        if self.token:
            options["token"] = self.token
        return options

    @classmethod
    def hanging_options(cls, url: str, port: int) -> dict[str, Any]:
        return {"url": url + "/api/events", "connect_timeout": 1.0, "read_timeout": 600.0}

    def received(self) -> list[tuple[str | None, dict]]:
        out = []
        for line in self.server.received():
            event_id = line.pop("__event_id__", None)
            out.append((event_id, line))
        return out

    def raw(self) -> bytes:
        return self.server.all_output()


class KafkaBackend(Backend):
    """Tansu (memory storage), advertising the flapping proxy's address to clients."""

    name = "kafka"

    def __init__(self, directory: Path, client: str = "kafka-python") -> None:
        super().__init__(directory)
        self.client = client  # the Kafka sink's client: "kafka-python" or "confluent" (librdkafka)
        self.broker_port = free_port()
        self.proxy = FlappingProxy(self.broker_port)
        self.topic = f"reliability-{uuid.uuid4().hex[:10]}"
        self.broker = tansu_broker(self.broker_port, directory)
        advertised = f"tcp://127.0.0.1:{self.proxy.port}"
        self.broker.argv[self.broker.argv.index("--advertised-listener-url") + 1] = advertised

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy.port}"

    def start(self) -> KafkaBackend:
        self.broker.start()
        self.proxy.up()
        return self

    def stop(self) -> None:
        self.proxy.down()
        self.broker.stop()

    def down(self) -> None:
        self.proxy.down()

    def up(self) -> None:
        self.proxy.up()

    @classmethod
    def sink_class(cls) -> type:
        from telemetry_sinks.sinks.kafka import KafkaSink

        return KafkaSink

    @staticmethod
    def _producer_config() -> dict[str, Any]:
        return {"request_timeout_ms": 2000, "reconnect_backoff_ms": 50, "reconnect_backoff_max_ms": 300}

    def sink_options(self) -> dict[str, Any]:
        # kafka-python unless the test asks for librdkafka; tests/sinks/kafka runs the Kafka
        # sink's own suite with both clients.
        options: dict[str, Any] = {"client": self.client, "bootstrap_servers": self.bootstrap,
                                   "topic": self.topic, "ack_timeout": 2.0}
        if self.client == "confluent":
            options["librdkafka_config"] = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 300}
        else:
            options["producer_config"] = self._producer_config()
        return options

    @classmethod
    def hanging_options(cls, url: str, port: int) -> dict[str, Any]:
        # 60 s to bootstrap is "forever" for a test whose close_timeout is 1 s, and a stuck
        # producer does not reconnect to a closed port for the next ten minutes of the session.
        config = {**cls._producer_config(), "max_block_ms": 600_000, "request_timeout_ms": 600_000,
                  "bootstrap_timeout_ms": 60_000, "reconnect_backoff_max_ms": 1000}
        return {"client": "kafka-python", "bootstrap_servers": f"127.0.0.1:{port}", "topic": "hang",
                "ack_timeout": 600.0, "producer_config": config}

    def received(self) -> list[tuple[str | None, dict]]:
        out = []
        for message in self._consume():
            event_id = dict(message.headers or []).get("event_id")
            out.append((event_id.decode() if event_id else None, json.loads(message.value)))
        return out

    def raw(self) -> bytes:
        return b"\n".join(
            b"%r %r %r" % (m.key, m.headers, m.value) for m in self._consume()
        )

    def _consume(self) -> list[Any]:
        """Every message of the topic, read from the start until nothing comes for 1.5 s."""
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            consumer_timeout_ms=1500,
            request_timeout_ms=10000,
        )
        out = []
        try:
            idle_until = time.monotonic() + 3.0
            while time.monotonic() < idle_until:
                batch = consumer.poll(timeout_ms=500, max_records=10_000)
                for records in batch.values():
                    out.extend(records)
                    idle_until = time.monotonic() + 1.5
        finally:
            consumer.close()
        return out


class _ProxiedHTTPBackend(Backend):
    """A backend server behind a :class:`FlappingProxy` (``self.upstream_port``)."""

    upstream_port: int
    proxy: FlappingProxy

    def down(self) -> None:
        self.proxy.down()

    def up(self) -> None:
        self.proxy.up()


class CloudWatchBackend(_ProxiedHTTPBackend):
    """moto's CloudWatch Logs server (memory only) behind the flapping proxy."""

    name = "cloudwatch"
    carries_event_id = True  # the message is the capsule with "__event_id__" added

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        from helpers import cloudwatch

        self.helpers = cloudwatch
        self.server = cloudwatch.moto_server(free_port(), directory)
        self.proxy = FlappingProxy(self.server.port)
        self.group = f"/reliability/{uuid.uuid4().hex[:10]}"

    def start(self) -> CloudWatchBackend:
        self.server.start()
        self.proxy.up()
        return self

    def stop(self) -> None:
        self.proxy.down()
        self.server.stop()

    @classmethod
    def sink_class(cls) -> type:
        from telemetry_sinks.sinks.cloudwatch import CloudWatchSink

        return CloudWatchSink

    def sink_options(self) -> dict[str, Any]:
        return {
            "log_group_name": self.group,
            "log_stream_name": "stream",
            "endpoint_url": self.proxy.url,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "request_timeout": 2.0,
        }

    @classmethod
    def hanging_options(cls, url: str, port: int) -> dict[str, Any]:
        return {"log_group_name": "/hang", "log_stream_name": "stream", "endpoint_url": url,
                "region_name": "us-east-1", "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing", "request_timeout": 600.0}

    def received(self) -> list[tuple[str | None, dict]]:
        endpoint = f"http://127.0.0.1:{self.server.port}"
        try:
            events = self.helpers.read_events(endpoint, self.group)
        except Exception as exc:  # no group yet: nothing was received
            if "ResourceNotFound" in type(exc).__name__ or "ResourceNotFound" in str(exc):
                return []
            raise
        out = []
        for event in events:
            message = json.loads(event["message"])
            out.append((message.pop("__event_id__", None), message))
        return out


class StackdriverBackend(_ProxiedHTTPBackend):
    """The fake Cloud Logging API (REST) behind the flapping proxy; entries keep insertId."""

    name = "stackdriver"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        from helpers.fake_logging_api import FakeLoggingAPI

        self.api = FakeLoggingAPI()
        self.proxy: FlappingProxy | None = None  # type: ignore[assignment]

    def start(self) -> StackdriverBackend:
        self.api.start()
        self.proxy = FlappingProxy(self.api.port).up()
        return self

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.down()
        self.api.stop()

    @classmethod
    def sink_class(cls) -> type:
        from telemetry_sinks.sinks.stackdriver import StackdriverSink

        return StackdriverSink

    def sink_options(self) -> dict[str, Any]:
        assert self.proxy is not None
        return {"project": "test-project", "api_endpoint": self.proxy.url, "anonymous": True,
                "request_timeout": 2.0}

    @classmethod
    def hanging_options(cls, url: str, port: int) -> dict[str, Any]:
        return {"project": "test-project", "api_endpoint": url, "anonymous": True,
                "request_timeout": 600.0}

    def received(self) -> list[tuple[str | None, dict]]:
        return [(e.get("insertId"), e["jsonPayload"]) for e in self.api.entries]

    def raw(self) -> bytes:
        return json.dumps(self.api.entries).encode()


class _SearchBackend(_ProxiedHTTPBackend):
    """osmem-server (memory only); documents are read back by search, ``_id`` is the event id."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.server = osmem_server(free_port(), directory)
        self.prefix = f"rel-{uuid.uuid4().hex[:10]}"
        self.front: Any = None
        self.proxy: FlappingProxy | None = None  # type: ignore[assignment]

    def start(self) -> _SearchBackend:
        self.server.start()
        self.front = self.make_front(f"http://127.0.0.1:{self.server.port}")
        front_port = self.front.port if self.front is not None else self.server.port
        self.proxy = FlappingProxy(front_port).up()
        return self

    def make_front(self, upstream: str) -> Any:
        return None

    @property
    def read_url(self) -> str:
        return self.front.url if self.front is not None else f"http://127.0.0.1:{self.server.port}"

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.down()
        if self.front is not None:
            self.front.stop()
        self.server.stop()

    def sink_options(self) -> dict[str, Any]:
        assert self.proxy is not None
        return {"hosts": [self.proxy.url], "index": f"{self.prefix}-events", "request_timeout": 2.0}

    @classmethod
    def hanging_options(cls, url: str, port: int) -> dict[str, Any]:
        return {"hosts": [url], "index": "hang-events", "request_timeout": 600.0}

    def client(self) -> Any:
        raise NotImplementedError

    def received(self) -> list[tuple[str | None, dict]]:
        from helpers.servers import search_hits

        client = self.client()
        try:
            if not client.indices.exists(index=f"{self.prefix}-*"):
                return []
            hits = search_hits(client, f"{self.prefix}-*")
        finally:
            client.close()
        return [(hit["_id"], hit["_source"]) for hit in hits]


class ElasticsearchBackend(_SearchBackend):
    name = "elasticsearch"

    def make_front(self, upstream: str) -> Any:
        from helpers.bulk import ElasticsearchCompatProxy

        return ElasticsearchCompatProxy(upstream).start()

    @classmethod
    def sink_class(cls) -> type:
        from telemetry_sinks.sinks.elasticsearch import ElasticsearchSink

        return ElasticsearchSink

    def client(self) -> Any:
        from elasticsearch import Elasticsearch

        return Elasticsearch(self.read_url, request_timeout=30)


class OpenSearchBackend(_SearchBackend):
    name = "opensearch"

    @classmethod
    def sink_class(cls) -> type:
        from telemetry_sinks.sinks.opensearch import OpenSearchSink

        return OpenSearchSink

    def client(self) -> Any:
        from opensearchpy import OpenSearch

        return OpenSearch(hosts=[self.read_url], timeout=30)


BACKENDS: dict[str, tuple[type[Backend], str | None, str | None]] = {
    # name: (class, sink module, test helper file that must exist)
    "http": (HTTPBackend, "telemetry_sinks.sinks.http", None),
    "kafka": (KafkaBackend, "telemetry_sinks.sinks.kafka", None),
    "cloudwatch": (CloudWatchBackend, "telemetry_sinks.sinks.cloudwatch",
                   "helpers/cloudwatch.py"),
    "stackdriver": (StackdriverBackend, "telemetry_sinks.sinks.stackdriver",
                    "helpers/fake_logging_api.py"),
    "elasticsearch": (ElasticsearchBackend, "telemetry_sinks.sinks.elasticsearch",
                      "helpers/bulk.py"),
    "opensearch": (OpenSearchBackend, "telemetry_sinks.sinks.opensearch", None),
}
REQUIRED = ("http", "kafka")


def available_backends() -> list[str]:
    """``http`` and ``kafka`` always; a cloud sink when its module imports and its helpers exist."""
    names = []
    for name, (_, module, helper) in BACKENDS.items():
        if name not in REQUIRED:
            if helper is not None and not (TESTS / helper).is_file():
                continue
            try:
                importlib.import_module(module)
            except Exception:
                continue
        names.append(name)
    return names


def aws_test_environment(monkeypatch: Any, tmp_path: Path) -> None:
    """Dummy AWS credentials and no real AWS or Google configuration."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL",
                 "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud-config"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")


# ---------------------------------------------------------------------- checks


def check_at_least_once(
    received: list[tuple[str | None, dict]], sent: list[dict], by_event_id: bool = True
) -> int:
    """No loss, nothing extra, every duplicate identical to its first copy; return the duplicates.

    Duplicates are identified by event id (or by ``seq`` when the backend carries no id).
    """
    first: dict[Any, dict] = {}
    for event_id, payload in received:
        key = event_id if by_event_id else payload.get("seq")
        assert key is not None, f"an item without an event id: {payload}"
        if key in first:
            assert payload == first[key], f"a duplicate differs from its first copy: {key}"
            continue
        first[key] = payload
    expected = {c["seq"]: c for c in sent}
    got: dict[int, dict] = {}
    for payload in first.values():
        assert payload["seq"] not in got, f"seq {payload['seq']} arrived under two event ids"
        got[payload["seq"]] = payload
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert not missing, f"{len(missing)} events lost, e.g. {missing[:10]}"
    assert not extra, f"unexpected events {extra[:10]}"
    for seq, capsule in expected.items():
        assert got[seq] == capsule, f"event {seq} arrived changed: {got[seq]} != {capsule}"
    return len(received) - len(first)


def spool_files_bytes(directory: str | os.PathLike) -> int:
    """Bytes of spool segments on disk (not the dead-letter file)."""
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if entry.name.endswith(".wal"):
                with contextlib.suppress(FileNotFoundError):
                    total += entry.stat().st_size
    return total


class BoundsMonitor:
    """Samples a sink's stats (and its spool directory) from a thread; records the peaks."""

    def __init__(self, sink: Any, interval: float = 0.01) -> None:
        self.sink = sink
        self.interval = interval
        self.peak: dict[str, int] = {"queue_bytes": 0, "queue_events": 0, "spool_bytes": 0,
                                     "spool_disk_bytes": 0}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        spool_dir = self.sink.spool_dir
        while not self._stop.wait(self.interval):
            stats = self.sink.stats()
            for key in ("queue_bytes", "queue_events", "spool_bytes"):
                self.peak[key] = max(self.peak[key], stats[key])
            if spool_dir:
                self.peak["spool_disk_bytes"] = max(self.peak["spool_disk_bytes"],
                                                    spool_files_bytes(spool_dir))
            self.samples += 1

    def __enter__(self) -> BoundsMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)

    def check(self) -> None:
        sink = self.sink
        assert self.samples > 10, "the monitor did not run"
        assert self.peak["queue_bytes"] <= sink.max_queue_bytes, self.peak
        assert self.peak["queue_events"] <= sink.max_queue_events, self.peak
        assert self.peak["spool_bytes"] <= sink.max_spool_bytes, self.peak
        assert self.peak["spool_disk_bytes"] <= sink.max_spool_bytes, self.peak


__all__ = [
    "BACKENDS",
    "Backend",
    "BoundsMonitor",
    "CollectorServer",
    "FAST",
    "FlappingProxy",
    "HangingServer",
    "SCHEMA",
    "SID",
    "available_backends",
    "check_at_least_once",
    "free_port",
    "port_is_free",
    "spool_files_bytes",
    "wait_for_port",
]


# --------------------------------------------------------------------------- fixtures
# Shared by the reliability and privacy tests' conftest files.

@pytest.fixture(autouse=True)
def no_cloud_configuration(monkeypatch, tmp_path):
    """Dummy AWS credentials; nothing from the machine's AWS or Google configuration."""
    aws_test_environment(monkeypatch, tmp_path)


@pytest.fixture
def backend_factory(tmp_path):
    """``backend_factory(name, **kwargs)``: a started backend of that sink type; all stopped at teardown."""
    started = []

    def make(name: str, **kwargs):
        backend = BACKENDS[name][0](tmp_path / f"backend-{name}-{len(started)}", **kwargs)
        started.append(backend)
        return backend.start()

    yield make
    for backend in started:
        backend.stop()
