"""The Arrow schema derived from real JSON Schemas, and capsules fitted to it without loss.

Real schemas: BinderHub's launch event v1-v6, Wikimedia's recentchange (type
unions, ``additionalProperties: true``, nested objects, its own example event),
jupyter_server's kernel_actions.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from telemetry_sinks.lake.arrow import EXTRA, EventTable, as_capsule, restore_events

LAUNCH_VERSIONS = {1: "v1-ba15091", 2: "v2-76d8599", 3: "v3-3bfee95", 4: "v4-23ae206", 5: "v5-b3f9e7c",
                   6: "v6-a0c55e8"}
RECENTCHANGE = "wikimedia_schemas-event-primary/jsonschema/mediawiki/recentchange/1.0.1.yaml"
CAPSULE = ["__timestamp__", "__schema__", "__schema_version__", "__metadata_version__"]


def launch_schema(fixtures_dir, version: int) -> dict:
    path = fixtures_dir / "binderhub" / "launch-history" / LAUNCH_VERSIONS[version] / "launch.json"
    return json.loads(path.read_text())


def field_meta(field: pa.Field) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}


def roundtrip(table: EventTable, capsules: list[dict], tmp_path) -> list[dict]:
    """Fit, write a Parquet file, read it back and restore the events."""
    path = tmp_path / "t.parquet"
    pq.write_table(table.to_arrow([table.fit(c) for c in capsules]), path)
    return restore_events(pq.read_table(path))


@pytest.mark.parametrize("version", range(1, 7))
def test_binderhub_launch_columns_are_typed_and_documented(fixtures_dir, version):
    body = launch_schema(fixtures_dir, version)
    table = EventTable(body["$id"], version, body)
    schema = table.arrow
    props = list(body["properties"])
    assert schema.names == [*CAPSULE, *props, EXTRA]
    assert schema.field("__timestamp__").type == pa.timestamp("us", tz="UTC")
    assert schema.field("__schema_version__").type == pa.int64()
    for name in ("provider", "status"):  # enums
        assert schema.field(name).type == pa.dictionary(pa.int32(), pa.string())
        assert json.loads(field_meta(schema.field(name))["enum"]) == body["properties"][name]["enum"]
    assert schema.field("spec").type == pa.string()
    if "build_token" in props:
        assert schema.field("build_token").type == pa.bool_()
    for name in props:
        assert field_meta(schema.field(name))["description"] == body["properties"][name]["description"]
    meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    assert meta["telemetry_sinks.schema.id"] == "binderhub.jupyter.org/launch"
    assert meta["telemetry_sinks.schema.version"] == str(version)
    assert meta["telemetry_sinks.schema.title"] == "BinderHub Launch Events"
    assert json.loads(meta["telemetry_sinks.schema.json_schema"]) == body
    columns = json.loads(meta["telemetry_sinks.columns"])
    assert columns["spec"]["description"] == body["properties"]["spec"]["description"]


def test_the_wikimedia_recentchange_example_survives_unions_and_additional_properties(fixtures_dir, tmp_path):
    body = yaml.safe_load((fixtures_dir / RECENTCHANGE).read_text())
    table = EventTable(body["$id"], 1, body)
    schema = table.arrow
    assert schema.field("id").type == pa.int64()  # [integer, "null"]
    assert schema.field("log_params").type == pa.string()  # [array, object, string]
    assert field_meta(schema.field("log_params"))["encoding"] == "json"
    assert schema.field("meta").type == pa.struct([(n, pa.string()) for n in body["properties"]["meta"]
                                                   ["properties"]])
    assert schema.field("length").type == pa.struct([("new", pa.int64()), ("old", pa.int64())])
    meta_fields = schema.field("meta").type
    assert field_meta(meta_fields.field("dt"))["description"] == "UTC event datetime, in ISO-8601 format"

    example = body["examples"][0]
    capsule = {"__timestamp__": "2026-11-22T10:00:00.000000Z", "__schema__": body["$id"],
               "__schema_version__": 1, "__metadata_version__": 1, **example}
    # additionalProperties: true, at the top and inside a declared object.
    odd = {**capsule, "x_custom": {"a": [1, 2]}, "meta": {**example["meta"], "partition": 3},
           "log_params": {"userid": 7}, "namespace": 2**70}
    events = roundtrip(table, [capsule, odd], tmp_path)
    assert events == [capsule, odd]
    rows = pq.read_table(tmp_path / "t.parquet").to_pylist()
    assert rows[0][EXTRA] is None
    assert json.loads(rows[1][EXTRA]) == {"x_custom": {"a": [1, 2]}, "meta": {"partition": 3},
                                          "namespace": 2**70}  # beyond int64
    assert rows[1]["meta"]["stream"] == "mediawiki.recentchange" and rows[1]["namespace"] is None
    assert json.loads(rows[1]["log_params"]) == {"userid": 7}


def test_nested_arrays_maps_partition_key_names_and_misfits(tmp_path):
    body = {
        "$id": "https://events.example.org/session", "version": 2, "type": "object",
        "properties": {
            "kernel": {"type": "object", "properties": {"name": {"type": "string"},
                                                        "language": {"enum": ["python", "r"]}}},
            "cells": {"type": "array", "items": {"type": "object", "properties": {
                "execution_count": {"type": ["integer", "null"]}, "status": {"enum": ["ok", "error"]}}}},
            "flags": {"type": "object", "additionalProperties": {"type": "boolean"}},
            "duration": {"type": "number"},
            "value": {"type": ["string", "number"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "date": {"type": "string", "description": "the day the user picked"},
            "ref": {"$ref": "#/definitions/ref"},
        },
        "definitions": {"ref": {"type": "integer"}},
    }
    table = EventTable(body["$id"], 2, body)
    schema = table.arrow
    assert schema.field("cells").type == pa.list_(pa.struct([
        ("execution_count", pa.int64()), ("status", pa.dictionary(pa.int32(), pa.string()))]))
    assert schema.field("flags").type == pa.map_(pa.string(), pa.bool_())
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("ref").type == pa.int64()
    assert "date" not in schema.names and field_meta(schema.field("date_"))["property"] == "date"
    base = {"__timestamp__": "2024-05-04T23:22:40.338884+00:00Z", "__schema__": body["$id"],
            "__schema_version__": "2"}  # jupyter_events' timestamp and string version
    events = [
        {**base, "kernel": {"name": "python3", "language": "python"}, "cells": [
            {"execution_count": 1, "status": "ok"}, {"status": "error"}], "flags": {"a": True},
         "duration": 1.5, "value": "x", "tags": ["a"], "date": "2026-01-01", "ref": 4},
        {**base, "value": 3, "duration": 2, "cells": [{"execution_count": "one"}], "tags": [1],
         "flags": {"b": "yes"}},
    ]
    back = roundtrip(table, events, tmp_path)
    canonical = {"__timestamp__": "2024-05-04T23:22:40.338884Z", "__schema_version__": 2}
    expected = [{**e, **canonical} for e in events]
    assert back == expected
    rows = pq.read_table(tmp_path / "t.parquet").to_pylist()
    assert rows[0]["__timestamp__"].isoformat() == "2024-05-04T23:22:40.338884+00:00"
    assert rows[0]["date_"] == "2026-01-01" and rows[0]["duration"] == 1.5
    # Arrays and maps with an item that does not fit go to __extra__ whole.
    assert rows[1]["cells"] is None and rows[1]["tags"] is None and rows[1]["flags"] is None
    assert json.loads(rows[1][EXTRA]) == {"cells": [{"execution_count": "one"}], "tags": [1],
                                          "flags": {"b": "yes"}}
    assert rows[1]["duration"] == 2.0 and json.loads(rows[1]["value"]) == 3


def test_an_unknown_schema_keeps_every_property_in_extra(tmp_path):
    table = EventTable("https://events.example.org/unknown", 1, None)
    assert table.arrow.names == [*CAPSULE, EXTRA]
    capsule = {"__timestamp__": "2026-11-22T10:00:00.000000Z", "__schema__": "https://events.example.org/unknown",
               "__schema_version__": 1, "__metadata_version__": 1, "a": 1, "b": {"c": [None, "d"]}}
    assert roundtrip(table, [capsule], tmp_path) == [capsule]


def test_an_unreadable_timestamp_is_kept_in_extra(fixtures_dir, tmp_path):
    body = launch_schema(fixtures_dir, 1)
    table = EventTable(body["$id"], 1, body)
    capsule = {"__timestamp__": "yesterday", "__schema__": body["$id"], "__schema_version__": 1,
               "spec": "a/b"}
    row = table.fit(capsule)
    assert row[0] is None and json.loads(row[-1]) == {"__timestamp__": "yesterday"}
    assert roundtrip(table, [capsule], tmp_path) == [capsule]


def test_binderhub_archive_lines_get_the_capsule_field_names():
    line = {"timestamp": "2018-11-03T00:00:00+00:00", "schema": "binderhub.jupyter.org/launch", "version": 1,
            "provider": "GitHub", "spec": "Qiskit/qiskit-tutorial/master", "status": "success"}
    assert as_capsule(line) == {"__timestamp__": "2018-11-03T00:00:00+00:00",
                                "__schema__": "binderhub.jupyter.org/launch", "__schema_version__": 1,
                                "provider": "GitHub", "spec": "Qiskit/qiskit-tutorial/master",
                                "status": "success"}
    capsule = {"__timestamp__": "t", "__schema__": "s", "__schema_version__": 1, "schema": "kept"}
    assert as_capsule(capsule) is capsule
    log_record = {"timestamp": "2026-11-22T10:00:00.000000Z", "level": "INFO", "message": "hi"}
    assert as_capsule(log_record) is log_record
