"""``telemetry-sinks archive export``: real mybinder.org lines into Parquet, read back by DuckDB and pandas.

Schemas: BinderHub's launch event v1-v6 (fixtures).  Lines: the 13 real mybinder.org
lines (v1-v3) and v4-v6 lines in the same flat form (``timestamp``, ``schema``,
``version``) with the fields those versions added.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from lake_helpers import (
    BINDER,
    duckdb,
    later_version_lines,
    launch_schema_paths,
    mybinder_lines,
    pandas,
    read_lake,
    write_archive,
)

from telemetry_sinks.lake import partition_path, read_index

pytestmark = pytest.mark.timeout(120)

FIELDS = ("provider", "spec", "status", "origin", "ref", "build_token", "request_origin")


def run(*args):
    return subprocess.run([sys.executable, "-m", "telemetry_sinks", *map(str, args)], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def source(fixtures_dir, tmp_path):
    lines = mybinder_lines(fixtures_dir) + later_version_lines(fixtures_dir)
    archive = tmp_path / "archive"
    counts = write_archive(archive, lines, gzip_days=("2019-01-14", "2026-03-02"))
    # The real index of the mybinder.org archive (count as a string) is in the directory too.
    (archive / "index.jsonl").write_text(
        (fixtures_dir / "mybinder_archive" / "from-sydney-lesson-e1a67d9" / "index.jsonl").read_text())
    return archive, sorted(lines, key=lambda e: (e["timestamp"], e["spec"])), counts


def export(archive, lake, fixtures_dir, *extra):
    schemas = [arg for path in launch_schema_paths(fixtures_dir) for arg in ("--schema", path)]
    return run("archive", "export", archive, lake, *schemas, *extra)


def test_export_reads_back_in_duckdb_with_the_jsonl_values_and_derived_types(source, fixtures_dir, tmp_path):
    archive, lines, counts = source
    lake = tmp_path / "lake"
    result = export(archive, lake, fixtures_dir)
    assert result.returncode == 0, result.stderr
    assert f"exported {len(lines)} events of {len(counts)} day files" in result.stdout
    assert result.stderr == ""

    rows = read_lake(lake)
    assert len(rows) == len(lines)
    for row, line in zip(rows, lines):
        assert row["__timestamp__"] == dt.datetime.fromisoformat(line["timestamp"])
        assert row["__schema__"] == row["schema"] == BINDER
        assert row["__schema_version__"] == row["version"] == line["version"]
        assert row["date"] == dt.date.fromisoformat(line["timestamp"][:10])
        assert {f: row.get(f) for f in FIELDS} == {f: line.get(f) for f in FIELDS}
        assert row["__extra__"] is None

    con = duckdb().connect()
    types = dict(con.sql(f"select column_name, column_type from (describe select * from read_parquet("
                         f"'{lake}/**/*.parquet', hive_partitioning=true, union_by_name=true))").fetchall())
    assert types["__timestamp__"] == "TIMESTAMP WITH TIME ZONE"
    assert types["__schema_version__"] == types["version"] == "BIGINT"
    assert types["build_token"] == "BOOLEAN" and types["date"] == "DATE"
    assert types["provider"] == types["spec"] == "VARCHAR"

    # The bench's query: launches per day and provider, the same as counted from the JSONL lines.
    by_day = con.sql(f"select date, provider, count(*) from read_parquet('{lake}/**/*.parquet', "
                     "hive_partitioning=true, union_by_name=true) "
                     "where schema = 'binderhub.jupyter.org/launch' group by all order by all").fetchall()
    expected: dict[tuple, int] = {}
    for line in lines:
        key = (dt.date.fromisoformat(line["timestamp"][:10]), line["provider"])
        expected[key] = expected.get(key, 0) + 1
    assert by_day == [(*key, n) for key, n in sorted(expected.items())]


def test_each_version_has_its_own_columns_and_documentation(source, fixtures_dir, tmp_path):
    archive, lines, _ = source
    lake = tmp_path / "lake"
    assert export(archive, lake, fixtures_dir).returncode == 0
    pd = pandas()
    for version, path in enumerate(launch_schema_paths(fixtures_dir), start=1):
        body = json.loads(open(path).read())
        frame = pd.read_parquet(partition_path(lake, BINDER, version))
        mine = [e for e in lines if e["version"] == version]
        assert len(frame) == len(mine)
        # Schema evolution: each version's files have exactly that version's properties.
        properties = [c for c in frame.columns if not c.startswith("__") and c != "date"]
        assert properties == list(body["properties"])
        assert str(frame["provider"].dtype) == "category" and str(frame["status"].dtype) == "category"
        frame = frame.sort_values(["__timestamp__", "spec"])
        assert list(frame["spec"]) == [e["spec"] for e in mine]
        assert [t.isoformat() for t in frame["__timestamp__"]] == [e["timestamp"] for e in mine]
        if version >= 5:
            assert list(frame["build_token"]) == [e["build_token"] for e in mine]

        file = next((lake / partition_path("", BINDER, version)).rglob("*.parquet"))
        schema = pq.read_schema(file)
        meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
        assert meta["telemetry_sinks.schema.title"] == "BinderHub Launch Events"
        assert meta["telemetry_sinks.schema.version"] == str(version)
        assert json.loads(meta["telemetry_sinks.schema.json_schema"]) == body
        for name, prop in body["properties"].items():
            assert schema.field(name).metadata[b"description"].decode() == prop["description"]
    # DuckDB shows the file metadata too (it does not show field metadata).
    con = duckdb().connect()
    kv = dict((k.decode(), v.decode()) for k, v in con.sql(
        f"select key, value from parquet_kv_metadata('{lake}/schema=*/version=6/*/*.parquet')").fetchall())
    assert json.loads(kv["telemetry_sinks.columns"])["ref"]["description"].startswith("Resolved reference")

    # Across versions DuckDB unions the columns: v1-v2 rows have no origin, v3+ do.
    rows = read_lake(lake)
    assert {r["version"] for r in rows if r["origin"] is None} == {1, 2}
    assert all(r["origin"] == "gke.mybinder.org" for r in rows if r["version"] >= 3)


def test_the_index_counts_each_day_and_version_and_export_again_replaces(source, fixtures_dir, tmp_path):
    archive, lines, counts = source
    lake = tmp_path / "lake"
    assert export(archive, lake, fixtures_dir).returncode == 0
    index = read_index(lake)
    expected: dict[tuple, int] = {}
    for line in lines:
        key = (line["timestamp"][:10], line["version"])
        expected[key] = expected.get(key, 0) + 1
    assert {(e["date"], e["version"]): e["count"] for e in index} == expected
    assert all(e["closed"] and e["files"] == 1 and e["schema"] == BINDER for e in index)
    pd = pandas()
    assert pd.read_json(lake / "_index.jsonl", lines=True)["count"].sum() == len(lines)

    files_before = sorted(p.name for p in lake.rglob("*.parquet"))
    again = export(archive, lake, fixtures_dir)
    assert again.returncode == 0, again.stderr
    assert len(read_lake(lake)) == len(lines)  # replaced, not added
    assert len(list(lake.rglob("*.parquet"))) == len(files_before)
    assert not set(p.name for p in lake.rglob("*.parquet")) & set(files_before)
    assert read_index(lake) == index


def test_without_the_schemas_the_properties_are_kept_in_extra(source, tmp_path):
    archive, lines, _ = source
    lake = tmp_path / "lake"
    result = run("archive", "export", archive, lake)
    assert result.returncode == 0, result.stderr
    assert "no JSON Schema given for 'binderhub.jupyter.org/launch' version 1 (8 events)" in result.stderr
    con = duckdb().connect()
    got = con.sql(f"select json_extract_string(__extra__, '$.spec'), json_extract_string(__extra__, "
                  f"'$.provider') from read_parquet('{lake}/**/*.parquet', hive_partitioning=true, "
                  "union_by_name=true) order by __timestamp__, 1").fetchall()
    assert got == [(e["spec"], e["provider"]) for e in lines]


def test_lines_that_are_not_json_objects_are_reported_and_the_rest_exported(source, fixtures_dir, tmp_path):
    archive, lines, _ = source
    day = archive / "events-2018-11-03.jsonl"
    day.write_text(day.read_text() + "{not json\n[1, 2]\n")
    lake = tmp_path / "lake"
    result = export(archive, lake, fixtures_dir)
    assert result.returncode == 1
    assert f"{day}, line 4: not JSON" in result.stderr and f"{day}, line 5: a JSON list" in result.stderr
    assert "2 lines were not JSON objects" in result.stderr
    assert len(read_lake(lake)) == len(lines)


def test_export_errors_name_the_problem(fixtures_dir, tmp_path):
    result = run("archive", "export", tmp_path / "missing", tmp_path / "lake")
    assert result.returncode == 2 and "no such archive directory" in result.stderr
    history = fixtures_dir / "binderhub" / "launch-history"
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "events-2018-11-03.jsonl").write_text("{}\n")
    result = run("archive", "export", tmp_path / "archive", tmp_path / "lake", "--schema", history)
    assert result.returncode == 2
    assert "version 1 is also in" in result.stderr and "give one file per version" in result.stderr
