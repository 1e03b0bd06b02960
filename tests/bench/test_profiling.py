"""The benchmarks' profiling helpers: a profiled sink still delivers, and the profile says where."""

from __future__ import annotations

import sys
from pathlib import Path

from helpers.delivery import MemorySink

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: ``bench`` is a package there

from bench.profiling import profile_table, profile_worker  # noqa: E402


def test_a_profiled_worker_delivers_and_its_profile_names_the_adapter():
    """profile_worker wraps the delivery worker's target, whatever arguments it takes."""
    sink = MemorySink(None, flush_interval=0.01)
    profiler = profile_worker(sink)
    for n in range(20):
        sink.write_payload({"n": n})
    assert sink.flush(5)
    sink.close()
    assert sink.delivered_numbers == list(range(20))
    table, rows = profile_table(profiler, 20, "worker")
    assert any("send_batch" in row["function"] for row in rows), rows
