"""Retry policy: exponential backoff with jitter, and helpers adapters use to classify failures."""

from __future__ import annotations

import datetime as _dt
import os
import random
from collections.abc import Callable
from email.utils import parsedate_to_datetime

#: The jitter's own generator: retries never draw from (or disturb) the application's
#: seeded ``random`` module state.
_JITTER = random.Random()
if hasattr(os, "register_at_fork"):  # forked workers must not retry in lockstep
    os.register_at_fork(after_in_child=_JITTER.seed)

#: HTTP statuses worth retrying: request timeout, too early, throttling, server errors.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
#: HTTP statuses that refuse the caller's credentials (401) or permissions (403): retried,
#: never dead-lettered, because an operator fixes them (see ``envelope.AuthError``).
AUTH_STATUSES = frozenset({401, 403})


def error_text(exc: BaseException) -> str:
    """``Type: message`` of an exception (``Type`` alone when it has no message): a reason."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_retryable_status(status: int) -> bool:
    """True for 408, 425, 429 and 5xx: the same request may succeed later."""
    return status in RETRYABLE_STATUSES or 500 <= status <= 599


def is_auth_status(status: int | None) -> bool:
    """True for 401 and 403: the credentials or permissions were refused (retried, warned about)."""
    return status in AUTH_STATUSES


def parse_retry_after(value: str | float | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date); None if unusable."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return max(0.0, float(value))
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return max(0.0, (when - _dt.datetime.now(_dt.timezone.utc)).total_seconds())


class Backoff:
    """Delays between attempts: the n-th is random in [d/2, d] with d = min(maximum, initial·2ⁿ⁻¹).

    "Equal jitter" spreads retries of many processes apart while keeping a floor,
    so a recovering backend is not hit by everybody at once.  A backend's own
    ``retry_after`` always wins when it is longer.
    """

    def __init__(
        self, initial: float, maximum: float, rand: Callable[[], float] = _JITTER.random
    ) -> None:
        self.initial = initial
        self.maximum = max(initial, maximum)
        self._rand = rand

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` >= 1 failures so far)."""
        ceiling = min(self.maximum, self.initial * 2 ** min(max(attempt - 1, 0), 64))
        delay = ceiling / 2 + self._rand() * ceiling / 2
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay


__all__ = [
    "AUTH_STATUSES",
    "Backoff",
    "RETRYABLE_STATUSES",
    "error_text",
    "is_auth_status",
    "is_retryable_status",
    "parse_retry_after",
]
