"""Test adapters for the delivery core, importable by the tests and by their subprocesses."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from traitlets import Unicode

from telemetry_sinks.delivery import BatchResult, Envelope
from telemetry_sinks.sinks.network import NetworkSink

Behavior = Callable[[list[Envelope]], "BatchResult | None"]


class MemorySink(NetworkSink):
    """Delivers to a list.  ``behavior(batch)`` may return a BatchResult or raise."""

    sink_name = "memory"

    def __init__(self, behavior: Behavior | None = None, **options: Any) -> None:
        self.behavior = behavior
        self.attempts: list[tuple[float, list[str]]] = []
        self.delivered: list[Envelope] = []
        self.opened = 0
        self.backend_closed = 0
        super().__init__(**options)

    def open(self) -> None:
        self.opened += 1

    def close_backend(self) -> None:
        self.backend_closed += 1

    def send_batch(self, batch: list[Envelope]) -> BatchResult | None:
        self.attempts.append((time.monotonic(), [e.event_id for e in batch]))
        result = self.behavior(batch) if self.behavior else None
        failed = set(result.retryable) | set(result.permanent) if result else set()
        self.delivered.extend(e for e in batch if e.event_id not in failed)
        return result

    @property
    def delivered_numbers(self) -> list[Any]:
        return [e.payload["n"] for e in self.delivered]


class Gate:
    """A behavior that holds every send until ``release()``; ``entered`` is set on the first."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self, batch: list[Envelope]) -> None:
        self.entered.set()
        self.released.wait()

    def release(self) -> None:
        self.released.set()


class FileBackendSink(NetworkSink):
    """A backend in a file: each acknowledged event is a line ``<event_id> <json>``.

    While ``down_file`` exists every send fails with ConnectionError, so two processes
    can share the backend and switch it on and off.
    """

    sink_name = "file_backend"

    out_file = Unicode("", help="Where delivered events go.").tag(config=True)
    down_file = Unicode("", help="While this file exists, the backend is down.").tag(config=True)

    def send_batch(self, batch: list[Envelope]) -> None:
        if self.down_file and os.path.exists(self.down_file):
            raise ConnectionError("backend down")
        with open(self.out_file, "a", encoding="utf-8") as out:
            out.writelines(f"{e.event_id} {e.data}\n" for e in batch)

    @staticmethod
    def read(out_file: str) -> list[tuple[str, str]]:
        if not os.path.exists(out_file):
            return []
        with open(out_file, encoding="utf-8") as out:
            return [tuple(line.rstrip("\n").split(" ", 1)) for line in out]  # type: ignore[misc]


