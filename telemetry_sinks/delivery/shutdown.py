"""Closing the sinks when the process is told to stop: an opt-in signal hook for plain services.

Python's default action for SIGTERM (what ``kill``, systemd, Docker and Kubernetes send)
ends the process at once: no ``atexit`` hook runs, so what a sink without a
``spool_dir`` holds in memory is lost (with a spool every event is on disk already,
and the next process on it delivers them).  :func:`install_signal_handlers` makes the
signal close the sinks first, then does what was there before:

* every open network sink is closed, all at once, each delivering for at most its
  ``close_timeout`` (the process waits for the slowest, not for the sum); then every
  other logging handler is flushed and closed (``logging.shutdown()``), so buffering
  sinks write out too;
* the handler that was installed before is called (a Python function: it may exit,
  raise, or let the process go on, and the sinks then open again on their next event);
  if it was the default action, the default is restored and the signal sent again, so
  the process ends exactly as it would have (killed by the signal); if the signal was
  ignored, the process goes on.

Applications that already run a handler of their own (Jupyter Server, tornado, asyncio
services) need nothing: their graceful exit runs the ``atexit`` hook, which closes the
sinks the same way.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterable
from types import FrameType
from typing import Any

from .engine import close_engines

log = logging.getLogger("telemetry_sinks.delivery")


class _CloseSinks:
    """The installed handler: close the sinks, then chain to ``previous``."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        try:
            close_engines()
            logging.shutdown()
        except Exception:  # never keep the process from stopping
            log.exception("closing the sinks on signal %d failed", signum)
        previous = self.previous
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # the default action (or one set outside Python)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def install_signal_handlers(signals: Iterable[int] = (signal.SIGTERM,)) -> None:
    """On each of ``signals`` (SIGTERM by default), close the sinks, then chain to the
    handler installed before (see the module doc).  Call it from the main thread, after
    the application installed its own handlers; calling it again changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("install_signal_handlers() must be called from the main thread")
    for signum in signals:
        previous = signal.getsignal(signum)
        if isinstance(previous, _CloseSinks):
            continue
        signal.signal(signum, _CloseSinks(previous))


__all__ = ["install_signal_handlers"]
