"""A ``telemetry-sinks serve`` process started by a test; its port is read from its stdout."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


class ServeProcess:
    """``python -m telemetry_sinks serve *args`` in ``cwd``, ready once ``processes`` collector
    processes said they listen (or are ready); ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(
        self, args: list[str], cwd: Path, env: dict | None = None, processes: int = 1, timeout: float = 20
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telemetry_sinks", "serve", *args],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
        self.stdout: list[str] = []
        self.port = 0
        ready = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                self.stdout.append(line)
                match = LISTENING.search(line)
                if match:
                    self.port = int(match.group(1))
                if self.port and sum("ready" in x or "listening on" in x for x in self.stdout) >= processes:
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(timeout) or not self.port:
            self.proc.kill()
            raise AssertionError(f"not ready: {self.stdout} {self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{self.port}"

    def terminate(self, timeout: float = 10) -> tuple[int, str, str]:
        """SIGTERM, wait up to ``timeout`` (then kill -9); return (exit code, stdout, stderr)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(5)
        return code, "".join(self.stdout), self.proc.stderr.read()  # type: ignore[union-attr]
