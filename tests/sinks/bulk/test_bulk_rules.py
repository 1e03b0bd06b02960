"""The bulk-indexing rules both search sinks share (telemetry_sinks.sinks._bulk), checked
with a client that replays recorded bulk answers: how each item and each whole-request
failure is classified, and how a 413 splits a batch."""

from __future__ import annotations

import json

import opensearchpy
import pytest

from telemetry_sinks import OpenSearchSink
from telemetry_sinks.capsule import encode
from telemetry_sinks.delivery import Envelope
from telemetry_sinks.sinks._bulk import (
    DELIVERED,
    REJECT,
    RETRY,
    SPLIT,
    classify_item,
    classify_request,
    index_safe,
)

# The answer osmem-server gave to a bulk request of three actions on an index whose
# "n" field is mapped as a long: a create that worked, a string in "n", and a create of
# an id that already existed (recorded with curl).
RECORDED = {
    "errors": True,
    "items": [
        {"create": {"_id": "a", "_index": "t1", "_primary_term": 1, "_seq_no": 0,
                    "_shards": {"failed": 0, "successful": 1, "total": 2}, "_version": 1,
                    "result": "created", "status": 201}},
        {"create": {"_id": "b", "_index": "t1", "status": 400, "error": {
            "caused_by": {"reason": 'For input string: "abc"', "type": "illegal_argument_exception"},
            "reason": "failed to parse field [n] of type [long] in document with id 'b'. "
                      "Preview of field's value: 'abc'",
            "type": "mapper_parsing_exception"}}},
        {"create": {"_id": "a", "_index": "t1", "status": 409, "error": {
            "index": "t1", "index_uuid": "_na_", "shard": "0",
            "reason": "[a]: version conflict, document already exists (current version [1])",
            "type": "version_conflict_engine_exception"}}},
    ],
    "took": 1,
}

# Item failures as Elasticsearch reports them (from its documentation).
ES_ITEMS = [
    (429, {"type": "es_rejected_execution_exception", "reason": "rejected execution of ..."}),
    (503, {"type": "unavailable_shards_exception", "reason": "primary shard is not active"}),
    (403, {"type": "cluster_block_exception",
           "reason": "index [x] blocked by: [FORBIDDEN/8/index write (api)];"}),
    (404, {"type": "index_not_found_exception", "reason": "no such index [x]"}),
    (400, {"type": "document_parsing_exception",
           "reason": "[1:42] failed to parse field [n] of type [long]"}),
]


class ReplayClient:
    """Stands in for opensearchpy.OpenSearch: answers bulk() from a function of the body."""

    def __init__(self, answer):
        self.answer = answer
        self.bodies: list[str] = []

    def bulk(self, body, **params):
        self.bodies.append(body)
        return self.answer(body, params)

    def close(self):
        pass


def envelopes(count: int, **fields) -> list[Envelope]:
    return [
        Envelope(f"producer-{i:012d}", encode({"__timestamp__": "2024-01-02T03:04:05.000000Z",
                                                "__schema__": "s", "seq": i, **fields}))
        for i in range(count)
    ]


def sink_with(answer, **options) -> tuple[OpenSearchSink, ReplayClient]:
    client = ReplayClient(answer)
    return OpenSearchSink(client=client, index="t1", **options), client


@pytest.mark.parametrize(
    ("status", "error", "create", "verdict"),
    [
        (201, None, True, DELIVERED),
        (200, None, False, DELIVERED),
        (409, {"type": "version_conflict_engine_exception"}, True, DELIVERED),
        (409, {"type": "version_conflict_engine_exception"}, False, REJECT),
        (429, {"type": "es_rejected_execution_exception"}, True, RETRY),
        (500, {"type": "exception"}, True, RETRY),
        (503, {"type": "unavailable_shards_exception"}, True, RETRY),
        (401, {"type": "security_exception"}, True, RETRY),
        (403, {"type": "cluster_block_exception"}, True, RETRY),
        (404, {"type": "index_not_found_exception"}, True, RETRY),
        (400, {"type": "illegal_argument_exception",
               "reason": "pipeline with id [p] does not exist"}, True, RETRY),
        (400, {"type": "index_closed_exception", "reason": "closed"}, True, RETRY),
        (400, {"type": "mapper_parsing_exception"}, True, REJECT),
        (400, {"type": "document_parsing_exception"}, True, REJECT),
        (400, {"type": "strict_dynamic_mapping_exception"}, True, REJECT),
        (400, {"type": "invalid_index_name_exception"}, True, REJECT),
        (413, {"type": "illegal_argument_exception"}, True, REJECT),
        ("?", None, True, RETRY),
    ],
)
def test_item_classification(status, error, create, verdict):
    assert classify_item(status, error, create) == verdict


@pytest.mark.parametrize(
    ("status", "error_type", "verdict"),
    [(None, None, RETRY), (200, None, RETRY), (401, "security_exception", RETRY),
     (403, "security_exception", RETRY), (404, None, RETRY), (408, None, RETRY),
     (429, "es_rejected_execution_exception", RETRY), (500, None, RETRY), (502, None, RETRY),
     (503, None, RETRY), (406, None, RETRY), (415, None, RETRY),
     (400, "media_type_header_exception", RETRY), (413, None, SPLIT),
     (400, "parse_exception", REJECT), (400, None, REJECT), (405, None, REJECT)],
)
def test_request_classification(status, error_type, verdict):
    assert classify_request(status, error_type) == verdict


def test_a_recorded_answer_is_settled_item_by_item():
    sink, client = sink_with(lambda body, params: RECORDED)
    batch = envelopes(3)
    result = sink.send_batch(batch)
    sink.close()
    assert result.retryable == {}
    assert list(result.permanent) == [batch[1].event_id]  # 201 and 409-on-create: delivered
    reason = result.permanent[batch[1].event_id]
    assert reason.startswith("index t1: HTTP 400 mapper_parsing_exception: failed to parse field [n]")
    assert "(caused by illegal_argument_exception: For input string" in reason
    lines = [json.loads(line) for line in client.bodies[0].splitlines()]
    assert lines[0] == {"create": {"_index": "t1", "_id": batch[0].event_id}}
    assert lines[1] == batch[0].payload


def test_elasticsearch_item_failures():
    answer = {"errors": True, "items": [{"create": {"status": s, "error": e}} for s, e in ES_ITEMS]}
    sink, _ = sink_with(lambda body, params: answer)
    batch = envelopes(len(ES_ITEMS))
    result = sink.send_batch(batch)
    sink.close()
    assert set(result.retryable) == {e.event_id for e in batch[:4]}
    assert set(result.permanent) == {batch[4].event_id}
    assert "es_rejected_execution_exception" in result.retryable[batch[0].event_id]
    assert "document_parsing_exception" in result.permanent[batch[4].event_id]


def test_a_413_splits_the_batch_until_the_event_that_cannot_fit_is_alone():
    def answer(body, params):
        if len(body) > 2000:
            raise opensearchpy.TransportError(413, "", "")
        count = body.count("\n") // 2
        return {"errors": False, "items": [{"create": {"status": 201}}] * count}

    sink, client = sink_with(answer)
    batch = envelopes(8)
    batch[5] = Envelope("producer-big", encode({"seq": 5, "note": "x" * 3000}))
    result = sink.send_batch(batch)
    sink.close()
    assert result.retryable == {}
    assert list(result.permanent) == ["producer-big"]
    assert "HTTP 413" in result.permanent["producer-big"]
    indexed = {json.loads(line)["create"]["_id"]
               for body in client.bodies if len(body) <= 2000
               for line in body.splitlines()[::2]}
    assert indexed == {e.event_id for e in batch} - {"producer-big"}


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (opensearchpy.ConnectionError("N/A", "Connection refused", OSError("refused")), True),
        (opensearchpy.ConnectionTimeout("TIMEOUT", "timed out", OSError("timed out")), True),
        (opensearchpy.TransportError(429, "es_rejected_execution_exception", {}), True),
        (opensearchpy.TransportError(503, "unavailable", {}), True),
        (opensearchpy.AuthenticationException(401, "security_exception", {}), True),
        (opensearchpy.AuthorizationException(403, "security_exception", {}), True),
        (opensearchpy.RequestError(400, "parse_exception", {
            "error": {"type": "parse_exception", "reason": "request body is required"}}), False),
    ],
)
def test_whole_request_failures(error, retried):
    def answer(body, params):
        raise error

    sink, _ = sink_with(answer)
    batch = envelopes(3)
    result = sink.send_batch(batch)
    sink.close()
    failed = result.retryable if retried else result.permanent
    assert set(failed) == {e.event_id for e in batch}
    assert not (result.permanent if retried else result.retryable)
    assert next(iter(failed.values())).startswith("bulk request failed (")


def test_an_unknown_exception_reaches_the_delivery_core():
    def answer(body, params):
        raise ValueError("bug")

    sink, _ = sink_with(answer)
    with pytest.raises(ValueError):
        sink.send_batch(envelopes(1))
    sink.close()


def test_an_answer_without_an_item_per_action_retries_the_batch():
    sink, _ = sink_with(lambda body, params: {"errors": False, "items": []})
    batch = envelopes(2)
    result = sink.send_batch(batch)
    sink.close()
    assert set(result.retryable) == {e.event_id for e in batch}
    assert "0 items for 2 actions" in result.retryable[batch[0].event_id]


def test_options_reach_the_request():
    seen = []

    def answer(body, params):
        seen.append(params)
        return {"errors": False, "items": [{"index": {"status": 201}}]}

    sink, client = sink_with(answer, pipeline="enrich", op_type="index", document_ids=False)
    sink.send_batch(envelopes(1))
    sink.close()
    assert seen == [{"filter_path": "errors,items.*.status,items.*.error", "pipeline": "enrich"}]
    assert json.loads(client.bodies[0].splitlines()[0]) == {"index": {"_index": "t1"}}


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("events-2024.01.02", "events-2024.01.02"),
        ("Events-https://events.example.org/App Launch", "events-https___events.example.org_app_launch"),
        ('a\\b/c*d?e"f<g>h|i,j#k:l m', "a_b_c_d_e_f_g_h_i_j_k_l_m"),
        ("-_+leading", "leading"),
        ("_", "unknown"),
        ("..", "unknown"),
        ("é" * 200, "é" * 127),  # at most 255 bytes, never half a character
    ],
)
def test_index_names_are_made_safe(name, safe):
    assert index_safe(name) == safe


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-03-04T05:06:07.000008Z",  # telemetry-sinks, jupyter_telemetry
        "2024-03-04T05:06:07.000008+00:00Z",  # jupyter_events: an offset and a Z
        "2024-03-04T06:06:07.000008+01:00",
    ],
)
def test_event_time_from_each_timestamp_format(timestamp):
    sink = OpenSearchSink(client=ReplayClient(None), index="e-%Y.%m.%d-%H", timestamp_field="@timestamp")
    envelope = Envelope("p-1", encode({"__timestamp__": timestamp, "seq": 1}))
    assert sink.index_for(envelope) == "e-2024.03.04-05"
    document = json.loads(sink.document(envelope))
    assert document == {"@timestamp": "2024-03-04T05:06:07.000008Z", "__timestamp__": timestamp, "seq": 1}
    sink.close()
