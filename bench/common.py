"""Shared helpers of the benchmarks: paths, machine description, statistics, progress, tables."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
TESTS = REPO / "tests"
FIXTURES = (REPO / "tests" / "fixtures").resolve()

if str(TESTS) not in sys.path:
    # tests/helpers/servers.py: free_port, ServerProcess, tansu_broker, wait_delivered, ...
    sys.path.insert(0, str(TESTS))


# ---------------------------------------------------------------------- run settings


@dataclass
class Settings:
    """What the command line asked for."""

    quick: bool = False
    reps: int = 5
    workdir: Path = Path("/tmp")
    progress: bool = True

    def pick(self, full: Any, quick: Any) -> Any:
        """``full`` in a full run, ``quick`` with ``--quick``."""
        return quick if self.quick else full


# ---------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def cpu_snapshot() -> dict[str, float]:
    """Machine-wide CPU seconds (busy, steal) from /proc/stat, and this process tree's CPU seconds."""
    import resource

    out = {"busy": 0.0, "steal": 0.0, "total": 0.0, "ours": 0.0, "wall": time.monotonic()}
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(v) for v in fields]
        tick = os.sysconf("SC_CLK_TCK")
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        steal = values[7] if len(values) > 7 else 0
        total = sum(values[:8])
        out.update(busy=(total - idle - steal) / tick, steal=steal / tick, total=total / tick)
    except (OSError, ValueError, IndexError):
        pass
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        out["ours"] += usage.ru_utime + usage.ru_stime
    return out


def cpu_report(start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
    """Shares of the machine's CPU capacity during a run: ours, other processes', steal."""
    capacity = (end["total"] - start["total"]) or 1e-9
    busy = end["busy"] - start["busy"]
    ours = end["ours"] - start["ours"]
    return {
        "ours_percent": 100 * ours / capacity,
        "others_percent": max(0.0, 100 * (busy - ours) / capacity),
        "steal_percent": 100 * (end["steal"] - start["steal"]) / capacity,
    }


def machine() -> dict[str, Any]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_average_at_start": load_average(),
    }


def machine_line(info: dict[str, Any]) -> str:
    return (
        f"{info['cores']} cores ({info['usable_cores']} usable), {info['cpu_model']}, "
        f"{info['implementation']} {info['python']}, {info['platform']}; "
        f"load average at start {info['load_average_at_start']}"
    )


# ---------------------------------------------------------------------- statistics


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values (nearest rank)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def spread(values: Sequence[float]) -> str:
    """min-max of repetitions, for the tables."""
    if len(values) < 2:
        return ""
    return f"{fmt_num(min(values))}-{fmt_num(max(values))}"


def read_proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS / VmHWM / ... of a process in bytes (Linux)."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Vm"):
                key, value = line.split(":", 1)
                parts = value.split()
                if len(parts) == 2 and parts[1] == "kB":
                    out[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


# ---------------------------------------------------------------------- formatting


def fmt_num(value: float | int | None, digits: int = 3) -> str:
    """A number with thousands separators and about ``digits`` significant digits."""
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:
        return "n/a"
    if isinstance(value, int) or abs(value) >= 10 ** (digits - 1):
        return f"{round(value):,}"
    return f"{value:.{digits}g}"


def fmt_us(ns: float | None) -> str:
    """Nanoseconds as microseconds (or milliseconds when large)."""
    if ns is None or ns != ns:
        return "n/a"
    us = ns / 1000
    if us >= 10_000:
        return f"{us / 1000:,.0f} ms"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    if us >= 100:
        return f"{us:.0f} µs"
    return f"{us:.1f} µs"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def fmt_s(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "n/a"
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


# ---------------------------------------------------------------------- results


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        self.rows.append([str(c) for c in cells])

    def text(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))
        lines = [self.title, ""]
        lines.append("  ".join(c.ljust(w) for c, w in zip(self.columns, widths)).rstrip())
        lines.append("  ".join("-" * w for w in widths))
        for row in self.rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        for note in self.notes:
            lines.append(f"  * {note}")
        return "\n".join(lines)

    def markdown(self) -> str:
        def esc(cell: str) -> str:
            return cell.replace("|", "\\|")

        lines = [f"**{self.title}**", ""]
        lines.append("| " + " | ".join(esc(c) for c in self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(esc(c) for c in row) + " |")
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": self.rows, "notes": self.notes}


@dataclass
class Target:
    """One target of the issue: what, the measured value, the goal and whether it is met."""

    name: str
    measured: str
    goal: str
    ok: bool | None
    cause: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "measured": self.measured,
            "goal": self.goal,
            "met": self.ok,
            "cause": self.cause,
        }


@dataclass
class ScenarioResult:
    key: str
    title: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "seconds": round(self.seconds, 1),
            "error": self.error,
            "tables": [t.as_json() for t in self.tables],
            "targets": [t.as_json() for t in self.targets],
            "notes": self.notes,
            "data": self.data,
        }


# ---------------------------------------------------------------------- progress


class _FallbackBar:
    """A small progress line on stderr when tqdm is not installed."""

    def __init__(self, total: int | None, desc: str, unit: str, enabled: bool) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n = 0
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.start = time.monotonic()
        self.last = 0.0
        if enabled and not self.tty:
            sys.stderr.write(f"  {desc} ...\n")
            sys.stderr.flush()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.enabled and self.tty and now - self.last >= 0.25:
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = now - self.start
        if self.total:
            width = 30
            done = int(width * min(self.n, self.total) / self.total)
            bar = "#" * done + "." * (width - done)
            text = f"\r  {self.desc} [{bar}] {self.n}/{self.total} {self.unit} {elapsed:5.1f}s"
        else:
            text = f"\r  {self.desc} {self.n} {self.unit} {elapsed:5.1f}s"
        sys.stderr.write(text)
        sys.stderr.flush()

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def close(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
        else:
            sys.stderr.write(f"  {self.desc}: {self.n} {self.unit} in {time.monotonic() - self.start:.1f}s\n")
        sys.stderr.flush()

    def __enter__(self) -> _FallbackBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(total: int | None, desc: str, unit: str = "steps", enabled: bool = True) -> Any:
    """A progress bar: tqdm when it is installed, else a simple line on stderr."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _FallbackBar(total, desc, unit, enabled)
    return tqdm(total=total, desc=f"  {desc}", unit=unit, disable=not enabled, leave=False, file=sys.stderr)


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Silence the warnings of the library (dropped events) and of the clients (reconnecting)
    while a backend is down on purpose: they would bury the tables."""
    import logging

    levels = {"telemetry_sinks.delivery": logging.ERROR}
    for name in ("kafka", "elastic_transport", "opensearch", "urllib3", "botocore", "google"):
        levels[name] = logging.CRITICAL
    previous = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
