"""Shared by the lake tests: the real BinderHub schemas and mybinder.org lines, and reading a lake back."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

BINDER = "binderhub.jupyter.org/launch"
#: One file per version of BinderHub's launch schema (the last blob of each version).
LAUNCH_VERSIONS = {1: "v1-ba15091", 2: "v2-76d8599", 3: "v3-3bfee95", 4: "v4-23ae206", 5: "v5-b3f9e7c",
                   6: "v6-a0c55e8"}
SAMPLE_2019 = "from-binderlyzer-c956adf/events-2019-sample.reconstructed.jsonl"
SYDNEY_DAY = "from-sydney-lesson-e1a67d9/events-2018-11-03.jsonl"


def launch_schema_paths(fixtures_dir: Path) -> list[str]:
    history = fixtures_dir / "binderhub" / "launch-history"
    return [str(history / LAUNCH_VERSIONS[v] / "launch.json") for v in sorted(LAUNCH_VERSIONS)]


def mybinder_lines(fixtures_dir: Path) -> list[dict]:
    """The 13 real archive lines (BinderHub launch v1-v3, mybinder.org's flat form)."""
    archive = fixtures_dir / "mybinder_archive"
    lines = []
    for name in (SYDNEY_DAY, SAMPLE_2019):
        lines += [json.loads(line) for line in (archive / name).read_text().splitlines() if line.strip()]
    assert len(lines) == 13
    return lines


def later_version_lines(fixtures_dir: Path, count: int = 30, seed: int = 4) -> list[dict]:
    """Launch lines of versions 4-6 in the same flat form, built here from the real lines' providers
    and specs plus the fields those versions added (ref, build_token, request_origin)."""
    rng = random.Random(seed)
    real = mybinder_lines(fixtures_dir)
    out = []
    for i in range(count):
        base = rng.choice(real)
        version = 4 + i % 3
        line = {"timestamp": f"2026-03-{1 + i % 3:02d}T{i % 24:02d}:{i % 60:02d}:00+00:00", "schema": BINDER,
                "version": version, "provider": base["provider"], "spec": base["spec"],
                "status": rng.choice(["success", "failure"]), "origin": "gke.mybinder.org",
                "ref": "".join(rng.choice("0123456789abcdef") for _ in range(40))}
        if version >= 5:
            line["build_token"] = rng.random() < 0.5
        if version >= 6:
            line["request_origin"] = rng.choice(["https://mybinder.org", "same-origin", ""])
        out.append(line)
    return out


def write_archive(directory: Path, lines: list[dict], gzip_days: tuple[str, ...] = ()) -> dict[str, int]:
    """An archive directory of events-YYYY-MM-DD.jsonl(.gz) files, lines sorted; returns counts per day."""
    directory.mkdir(parents=True, exist_ok=True)
    days: dict[str, list[dict]] = {}
    for line in sorted(lines, key=lambda e: e["timestamp"]):
        days.setdefault(line["timestamp"][:10], []).append(line)
    for day, items in days.items():
        text = "".join(json.dumps(e) + "\n" for e in items)
        if day in gzip_days:
            (directory / f"events-{day}.jsonl.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (directory / f"events-{day}.jsonl").write_text(text)
    return {day: len(items) for day, items in days.items()}


def pandas():
    try:
        import pandas
    except ImportError:
        pytest.fail("pandas is not installed: it is in the test extra (scripts/run-tests.sh installs it)")
    return pandas


def duckdb():
    try:
        import duckdb
    except ImportError:
        pytest.fail("duckdb is not installed: it is in the test extra (scripts/run-tests.sh installs it)")
    return duckdb


def read_lake(root: Path, where: str = "true", order: str = "__timestamp__, spec"):
    """Every row of the lake through DuckDB, as dicts (hive partition columns included)."""
    con = duckdb().connect()
    rel = con.sql(f"select * from read_parquet('{root}/**/*.parquet', hive_partitioning=true, "
                  f"union_by_name=true) where {where} order by {order}")
    names = rel.columns
    return [dict(zip(names, row)) for row in rel.fetchall()]
