"""Property-based tests of the collector's request parsing and per-event processing.

``parse_body`` and ``process_events`` get arbitrary bytes and arbitrary JSON
(hypothesis); then arbitrary requests go to a running collector over HTTP.
Proves: the only failures are :class:`ApiError` 400/413 (never another
exception, never a 500); every item gets exactly one result; every item
answered "accepted" reaches the sink, once, as the capsule of that item.
"""

from __future__ import annotations

import json
import logging

import pytest
import requests
from helpers.harness import SCHEMA, SID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from traitlets.config import Config

from telemetry_sinks import EventLog
from telemetry_sinks.server import Collector
from telemetry_sinks.server.handlers import ApiError, parse_body, process_events

STATUSES = {"accepted", "not_recorded", "duplicate", "rejected"}
OTHER = {**SCHEMA, "$id": "https://events.example.org/registered-not-allowed"}

pytestmark = [
    pytest.mark.timeout(120),
    # Other tests' background threads (clients reconnecting) may use ``random`` meanwhile.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]


class Collecting(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.capsules: list[dict] = []

    def handle_capsule(self, capsule: dict) -> None:
        self.capsules.append(capsule)

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - not used
        self.capsules.append(record.msg)


def make_collector(**options) -> tuple[Collector, Collecting]:
    sink = Collecting()
    eventlog = EventLog(handlers=[sink], allowed_schemas={SID: {"allowed_categories": []}},
                        load_schema_entry_points=False)
    eventlog.register_schema(SCHEMA)
    eventlog.register_schema(OTHER)
    config = Config()
    config.Collector.port = 0
    for name, value in options.items():
        setattr(config.Collector, name, value)
    return Collector(config=config, eventlog=eventlog), sink


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                       max_size=4),
    max_leaves=12,
)
schema_ids = st.sampled_from([SID, OTHER["$id"], "unknown", "", "../../etc/passwd"]) | st.text(max_size=10)
versions = st.sampled_from([1, "1", 2, None, -1, 1.0, True, "one", [1]])
datas = st.fixed_dictionaries(
    {},
    optional={"seq": st.integers(-5, 2**64) | json_values, "producer": st.text(max_size=5) | json_values,
              "user": st.text(max_size=5), "__event_id__": st.text(max_size=3), "extra": json_values},
)
body_shaped = st.fixed_dictionaries(
    {"schema_id": schema_ids},
    optional={"version": versions, "data": datas | json_values,
              "timestamp": st.sampled_from(["2025-01-31T12:00:00Z", "yesterday", "", "2025-13-01"])
              | json_values,
              "event_id": st.text(max_size=6) | json_values},
)
capsule_shaped = st.fixed_dictionaries(
    {"__schema__": schema_ids},
    optional={"__schema_version__": versions, "__timestamp__": st.text(max_size=30) | json_values,
              "__event_id__": st.text(max_size=6) | json_values, "seq": st.integers(0, 10) | json_values,
              "user": st.text(max_size=4)},
)
items = body_shaped | capsule_shaped | json_values


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode), st.booleans(), st.integers(1, 5))
def test_parse_body_on_arbitrary_bytes_returns_items_or_a_400_or_413(body, ndjson, max_events):
    try:
        parsed = parse_body(body, max_events, ndjson)
    except ApiError as exc:
        assert exc.status_code in (400, 413), exc.status_code
        assert exc.message
        return
    assert isinstance(parsed, list) and len(parsed) <= max_events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(items, max_size=6), st.booleans())
def test_parse_body_on_arbitrary_json_keeps_every_item(values, ndjson):
    if ndjson:
        body = "\n".join(json.dumps(v) for v in values).encode()
    else:
        body = json.dumps(values).encode()
    try:
        parsed = parse_body(body, 5, ndjson)
    except ApiError as exc:
        assert exc.status_code == 413 and len(values) > 5, exc.message
        assert "max_events_per_request" in exc.message
        return
    assert parsed == values


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(items, max_size=8))
def test_every_item_gets_one_result_and_every_accepted_item_reaches_the_sink_once(batch):
    collector, sink = make_collector(dedup_window=100)
    body = process_events(collector, batch)
    assert len(body["results"]) == len(batch)
    assert [r["index"] for r in body["results"]] == list(range(len(batch)))
    assert {r["status"] for r in body["results"]} <= STATUSES
    assert sum(body[s] for s in STATUSES) == len(batch)
    accepted = [batch[r["index"]] for r in body["results"] if r["status"] == "accepted"]
    assert len(sink.capsules) == len(accepted), "an accepted item did not reach the sink exactly once"
    for item, capsule in zip(accepted, sink.capsules):
        data = item.get("data") if "schema_id" in item else item
        assert capsule["__schema__"] == SID
        assert capsule["seq"] == data["seq"]
        assert "user" not in capsule  # redacted: user-identifier is not allowed
        event_id = item.get("event_id") if "schema_id" in item else item.get("__event_id__")
        if event_id is not None:
            assert capsule["__event_id__"] == event_id
    for result in body["results"]:
        if result["status"] == "rejected":
            assert set(result["error"]) == {"path", "reason", "message"}
            assert result["error"]["path"].startswith("$")


@pytest.fixture(scope="module")
def running_collector():
    collector, sink = make_collector(max_body_bytes=4096, max_events_per_request=5)
    port = collector.start()
    yield f"http://127.0.0.1:{port}/api/events", sink
    collector.stop()


content_types = st.sampled_from([
    "application/json", "application/x-ndjson", "application/json; charset=utf-8", "text/plain", "",
    "application/json; charset=utf-16",
])


@pytest.mark.integration
@pytest.mark.timeout(120)
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=600),
        st.lists(items, max_size=7).map(lambda v: json.dumps(v).encode()),
        items.map(lambda v: json.dumps(v).encode()),
    ),
    content_types,
)
def test_arbitrary_requests_to_a_running_collector_never_get_a_500(running_collector, body, content_type):
    url, sink = running_collector
    before = len(sink.capsules)
    answer = requests.post(url, data=body, headers={"Content-Type": content_type}, timeout=30)
    assert answer.status_code in (200, 400, 413, 415), (answer.status_code, answer.text[:300])
    payload = answer.json()
    if answer.status_code in (200, 400) and "results" in payload:
        accepted = sum(1 for r in payload["results"] if r["status"] == "accepted")
        assert len(sink.capsules) - before == accepted
    else:
        assert payload["error"] and len(sink.capsules) == before
