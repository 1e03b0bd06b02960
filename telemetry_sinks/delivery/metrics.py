"""Self-metrics: the counters behind ``sink.stats()`` and their Prometheus export.

When ``prometheus_client`` is importable, one collector is registered (once per
process, on the first network sink) in its default registry.  It reads
``stats()`` of every live sink at scrape time, so emitting costs nothing extra.
Sinks are labelled by name (``sink="..."``); sinks sharing a name are summed.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Any, Protocol

#: Monotonic counters, in the order ``stats()`` lists them.
COUNTERS = (
    "emitted", "sent", "retried", "spooled", "replayed", "dead_lettered", "dropped", "auth_failures",
)  # fmt: skip
#: Current levels.
GAUGES = ("queue_events", "queue_bytes", "spool_bytes")

_HELP = {
    "emitted": "Events given to the sink.",
    "sent": "Events acknowledged by the backend.",
    "retried": "Events sent again after a retryable failure.",
    "spooled": "Events written to the disk spool (with a spool_dir: every event accepted, "
    "unless the spool was full or could not be written).",
    "replayed": "Events read back from the disk spool and acknowledged by the backend.",
    "dead_lettered": "Events the backend rejected for good, written to the dead-letter file.",
    "dropped": "Events lost: queue or spool full, or nowhere left to keep them.",
    "auth_failures": "Attempts the backend refused for the sink's credentials or permissions "
    "(retried, never dead-lettered).",
    "queue_events": "Events waiting in memory.",
    "queue_bytes": "Memory of the events waiting in the queue (JSON + 384 bytes each).",
    "spool_bytes": "Bytes in the disk spool.",
}


class _Observed(Protocol):
    @property
    def label(self) -> str: ...

    def stats(self) -> dict[str, Any]: ...


_observed: weakref.WeakSet[Any] = weakref.WeakSet()
_registered = False
_lock = threading.Lock()


def observe(source: _Observed) -> None:
    """Export ``source.stats()`` as Prometheus metrics (if prometheus_client is installed)."""
    global _registered
    _observed.add(source)
    if _registered:
        return
    with _lock:
        if _registered:
            return
        _registered = True
        register_collector(_Collector())


def register_collector(collector: Any) -> None:
    """Add ``collector`` (an object with ``collect()``) to prometheus_client's default registry,
    if prometheus_client is installed; call it once per kind of collector."""
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return
    try:
        REGISTRY.register(collector)
    except ValueError:  # already registered by another copy of the module
        pass


class _Collector:
    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        totals: dict[str, dict[str, float]] = {}
        for source in list(_observed):
            stats = source.stats()
            row = totals.setdefault(source.label, dict.fromkeys(COUNTERS + GAUGES, 0.0))
            for key in row:
                row[key] += stats[key]
        for key in COUNTERS + GAUGES:
            family_cls = CounterMetricFamily if key in COUNTERS else GaugeMetricFamily
            family = family_cls(f"telemetry_sinks_delivery_{key}", _HELP[key], labels=["sink"])
            for label, row in sorted(totals.items()):
                family.add_metric([label], row[key])
            yield family

    def describe(self) -> Iterator[Any]:
        return self.collect()


__all__ = ["COUNTERS", "GAUGES", "observe", "register_collector"]
