"""Waiting for a condition, with a deadline (never a bare ``sleep`` in a test)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(
    predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.002, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it is true and return its value; fail after ``timeout`` seconds
    (the message says ``what`` was awaited)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(interval)


__all__ = ["wait_until"]
