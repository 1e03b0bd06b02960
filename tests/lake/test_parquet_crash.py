"""kill -9 of a real process writing through the parquet sink, at seeded random moments, then a restart.

The application (``parquet_app.py``) emits, flushes every few events and prints
what it has flushed; its days close (and are compacted) every few hundred events.
While it runs, a reader reads every visible ``*.parquet`` file.  After the kill:
every visible file is complete; a new process on the same directory finishes what
was interrupted and continues; every flushed event is there exactly once.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from lake_helpers import read_lake

from telemetry_sinks.lake import read_index

pytestmark = pytest.mark.timeout(120)

APP = Path(__file__).with_name("parquet_app.py")
RESTART = 1_000_000


def start_app(config: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(APP), json.dumps(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


class Reader(threading.Thread):
    """Reads every visible Parquet file, again and again, while the writer runs."""

    def __init__(self, lake: Path) -> None:
        super().__init__(daemon=True)
        self.lake, self.stop, self.reads, self.failures = lake, threading.Event(), 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            for path in list(self.lake.rglob("*.parquet")):
                try:
                    pq.read_table(path)
                    self.reads += 1
                except Exception as exc:
                    if path.exists():  # a file compacted away between listing and reading is fine
                        self.failures.append(f"{path}: {exc!r}")


def unreadable(lake: Path) -> list[str]:
    bad = []
    for path in lake.rglob("*.parquet"):
        try:
            pq.read_table(path)
        except Exception as exc:
            bad.append(f"{path}: {exc!r}")
    return bad


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_kill_9_while_writing_then_restart_loses_no_flushed_event(seed, tmp_path):
    rng = random.Random(seed)
    lake = tmp_path / "lake"
    config = {"directory": str(lake), "start": 0, "per_day": rng.choice([60, 150, 400]),
              "round": rng.choice([7, 20, 50]), "max_buffer_events": rng.choice([13, 40, 1000])}
    app = start_app(config)
    lines: list[str] = []
    collector = threading.Thread(target=lambda: lines.extend(line.strip() for line in app.stdout),
                                 daemon=True)
    collector.start()
    reader = Reader(lake)
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("flushed") for line in lines):
            assert app.poll() is None and time.monotonic() < deadline, app.stderr.read()[-3000:]
            time.sleep(0.01)
        reader.start()
        time.sleep(rng.uniform(0.3, 1.5))
    finally:
        app.kill()
        app.wait(10)
        collector.join(10)
        reader.stop.set()
        reader.join(30)
    flushed = max(int(line.split()[1]) for line in lines if line.startswith("flushed"))
    assert flushed >= config["round"] - 1
    assert not reader.failures, reader.failures[:5]
    assert reader.reads > 0
    assert not unreadable(lake)  # what a reader sees after the crash: complete files only

    restart = start_app({**config, "start": RESTART, "stop": RESTART + 100})
    out, err = restart.communicate(timeout=60)
    assert restart.returncode == 0 and out.strip().endswith("closed"), err[-3000:]

    seqs = [row["seq"] for row in read_lake(lake, order="seq")]
    assert None not in seqs, "a typed column became untyped"
    assert len(seqs) == len(set(seqs)), "an event is in the lake twice"
    missing = sorted(set(range(flushed + 1)) - set(seqs))
    assert not missing, f"flushed before the kill, missing after the restart: {missing[:20]}"
    assert set(range(RESTART, RESTART + 100)) <= set(seqs)
    # The bookkeeping agrees with the files: counts in the index and manifests, nothing left over.
    assert sum(e["count"] for e in read_index(lake)) == len(seqs)
    for manifest_path in lake.rglob("_manifest.json"):
        manifest = json.loads(manifest_path.read_text())
        assert sorted(manifest["files"]) == sorted(p.name for p in manifest_path.parent.glob("*.parquet"))
        assert manifest["count"] == sum(pq.ParquetFile(p).metadata.num_rows
                                        for p in manifest_path.parent.glob("*.parquet"))
    assert not list(lake.rglob("*.tmp")) and not list((lake / "_journal").glob("replace-*"))
    print(f"\nseed {seed}: flushed {flushed + 1} before the kill, {len(seqs) - 100} in the lake after the "
          f"restart, {reader.reads} reads during the run")
