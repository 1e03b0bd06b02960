"""Where the time goes: cProfile summaries for the tables of gaps."""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import REPO, Table


def _where(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    path = Path(filename)
    parts = path.parts
    if "site-packages" in parts:
        short = "/".join(parts[parts.index("site-packages") + 1 :])
    else:
        try:
            short = str(path.resolve().relative_to(REPO))
        except ValueError:
            short = path.name
    return f"{short}:{line}({name})"


def profile(run: Callable[[], Any], count: int, title: str, top: int = 10) -> tuple[Table, list[dict]]:
    """Profile ``run`` (which handles ``count`` events); the ``top`` functions by own time.

    Times are per event and include cProfile's overhead (it slows Python calls down
    more than C calls): read them as shares, not as absolute costs.
    """
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    table, rows = profile_table(profiler, count, title, top)
    table.notes.append(
        f"cProfile over {count:,} events; its overhead inflates Python-level calls, so read shares."
    )
    return table, rows


def profile_worker(sink: Any) -> cProfile.Profile:
    """Profile the delivery worker thread of a network sink that has not started it yet.

    The returned profiler holds data once the worker has ended (after ``sink.close()``).
    """
    engine = sink._engine
    original = engine._run
    profiler = cProfile.Profile()

    def run(*args: Any) -> None:  # whatever the worker's target takes (its generation)
        profiler.enable()
        try:
            original(*args)
        finally:
            profiler.disable()

    engine._run = run
    return profiler


def profile_table(
    profiler: cProfile.Profile, count: int, title: str, top: int = 12
) -> tuple[Table, list[dict]]:
    """The ``top`` functions by own (wall) time of a finished profiler, per event."""
    stats = pstats.Stats(profiler)
    total = stats.total_tt or 1e-12  # type: ignore[attr-defined]
    rows = []
    for key, (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": _where(key),
                "calls_per_event": ncalls / count,
                "own_share": tottime / total,
                "own_us_per_event": tottime / count * 1e6,
                "cum_us_per_event": cumtime / count * 1e6,
            }
        )
    rows.sort(key=lambda r: -r["own_share"])
    table = Table(title, ["function", "calls/event", "own time", "own µs/event", "cumulative µs/event"])
    for row in rows[:top]:
        table.add(row["function"], f"{row['calls_per_event']:.2f}", f"{row['own_share'] * 100:.1f}%",
                  f"{row['own_us_per_event']:.2f}", f"{row['cum_us_per_event']:.2f}")  # fmt: skip
    return table, rows[:25]


#: C functions in which a thread waits (for the network, a lock, the GIL after I/O), not computes.
WAITING = ("recv_into", "recv", "'acquire'", "'wait'", "select", "poll", "sleep", "connect", "sendall")


def split_waiting(rows: list[dict]) -> tuple[float, list[dict]]:
    """The share of time spent waiting, and the other rows (shares renormalised to computing time)."""
    waiting = sum(r["own_share"] for r in rows if _is_waiting(r["function"]))
    busy = [dict(r) for r in rows if not _is_waiting(r["function"])]
    return waiting, busy


def _is_waiting(function: str) -> bool:
    return function.startswith("<") and any(w in function for w in WAITING)


class HTTPTrace:
    """Records every HTTP request made through urllib3 (requests, botocore, opensearch-py,
    elastic-transport, google-cloud-logging's REST transport) or the HTTP sink's own
    ``Connection``: duration and body size."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, int]] = []
        self._patched: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> HTTPTrace:
        import urllib3.connectionpool as pool

        from telemetry_sinks.sinks.http import Connection

        self._wrap(pool.HTTPConnectionPool, "urlopen", body_at=3)
        self._wrap(Connection, "post", body_at=1)
        return self

    def _wrap(self, owner: Any, name: str, body_at: int) -> None:
        import time

        original = getattr(owner, name)
        calls = self.calls

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                body = args[body_at] if len(args) > body_at else kwargs.get("body")
                size = len(body) if isinstance(body, (bytes, str)) else 0
                calls.append((time.perf_counter() - start, size))

        self._patched.append((owner, name, original))
        setattr(owner, name, timed)

    def __exit__(self, *exc: Any) -> None:
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()

    @property
    def seconds(self) -> float:
        return sum(d for d, _ in self.calls)

    @property
    def mean_bytes(self) -> float:
        return sum(s for _, s in self.calls) / len(self.calls) if self.calls else 0.0
