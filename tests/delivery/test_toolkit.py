"""The request toolkit: splitting a batch into requests, sending them, bisecting refused ones."""

from __future__ import annotations

import pytest

from telemetry_sinks.delivery import (
    BatchResult,
    Envelope,
    PermanentError,
    RequestRefused,
    RetryableError,
    send_requests,
    split_requests,
)


def envelopes(*sizes: int) -> list[Envelope]:
    return [Envelope(f"e{i}", "x" * size) for i, size in enumerate(sizes)]


def ids(requests):
    return [[e.event_id for e in request] for request in requests]


def test_split_by_count_and_bytes():
    batch = envelopes(10, 10, 10, 10, 10)
    assert ids(split_requests(batch, 2, 1000)) == [["e0", "e1"], ["e2", "e3"], ["e4"]]
    assert ids(split_requests(batch, 10, 25)) == [["e0", "e1"], ["e2", "e3"], ["e4"]]
    # An item larger than max_bytes is a request of its own, never dropped.
    assert ids(split_requests(envelopes(5, 50, 5), 10, 20)) == [["e0"], ["e1"], ["e2"]]
    # A size function adds per-item overhead.
    assert ids(split_requests(batch, 10, 30, size=lambda e: e.size + 5)) == [
        ["e0", "e1"], ["e2", "e3"], ["e4"]]
    assert list(split_requests([], 10, 10)) == []


def test_split_by_time_window():
    batch = envelopes(1, 1, 1, 1)
    times = {"e0": 0, "e1": 50, "e2": 100, "e3": 120}
    requests = split_requests(batch, 10, 100, time=lambda e: times[e.event_id], max_span=100)
    assert ids(requests) == [["e0", "e1"], ["e2", "e3"]]


def test_split_reads_lazily():
    consumed = []

    def items():
        for env in envelopes(1, 1, 1, 1, 1):
            consumed.append(env.event_id)
            yield env

    first = next(split_requests(items(), 2, 100))
    assert [e.event_id for e in first] == ["e0", "e1"] and consumed == ["e0", "e1", "e2"]


def test_after_the_first_retryable_request_the_rest_is_not_sent():
    requests = [envelopes(1, 1)[:1], envelopes(1, 1)[1:], [Envelope("e9", "x")]]
    sent = []

    def send(request):
        sent.append(request[0].event_id)
        if request[0].event_id == "e1":
            raise RetryableError("throttled", retry_after=3.0)
        return None

    result = send_requests(requests, send)
    assert sent == ["e0", "e1"]
    assert result.retryable == {"e1": "throttled", "e9": "throttled"}
    assert result.retry_after == 3.0 and result.permanent == {}


def test_per_item_results_and_permanent_requests_are_merged_and_sending_goes_on():
    requests = [envelopes(1, 1), [Envelope("e7", "x")], [Envelope("e8", "x")]]

    def send(request):
        if request[0].event_id == "e0":
            result = BatchResult()
            result.reject("e1", "bad field")
            return result
        if request[0].event_id == "e7":
            raise PermanentError("no such log")
        return None

    result = send_requests(requests, send)
    assert result.permanent == {"e1": "bad field", "e7": "no such log"}
    assert result.retryable == {}


def test_a_request_too_large_is_halved_down_to_the_event_that_cannot_fit():
    batch = envelopes(10, 10, 500, 10, 10, 10)
    sent = []

    def send(request):
        size = sum(e.size for e in request)
        if size > 100:
            raise RequestRefused("HTTP 413", too_large=True)
        sent.extend(e.event_id for e in request)
        return None

    result = send_requests([batch], send)
    assert result.permanent == {"e2": "HTTP 413"} and result.retryable == {}
    assert sorted(sent) == ["e0", "e1", "e3", "e4", "e5"]


def test_a_refused_request_is_searched_for_its_bad_event():
    batch = envelopes(1, 1, 1, 1, 1, 1, 1, 1)
    calls = []

    def send(request):
        calls.append(len(request))
        if any(e.event_id == "e5" for e in request):
            raise RequestRefused("InvalidParameterException")
        return None

    result = send_requests([batch], send)
    assert result.permanent == {"e5": "InvalidParameterException"}
    assert calls == [8, 4, 4, 2, 2, 1, 1]


def test_when_both_halves_are_refused_the_request_itself_is_at_fault():
    batch = envelopes(1, 1, 1, 1)
    calls = []

    def send(request):
        calls.append(len(request))
        raise RequestRefused("log group name is invalid")

    result = send_requests([batch], send)
    assert set(result.permanent) == {"e0", "e1", "e2", "e3"}
    assert calls == [4, 2, 2]  # not one call per event


@pytest.mark.parametrize("too_large", [False, True])
def test_a_retryable_failure_while_bisecting_retries_what_is_unsettled(too_large):
    batch = envelopes(1, 1, 1, 1)
    later = [Envelope("e9", "x")]

    def send(request):
        names = [e.event_id for e in request]
        if len(request) == 4:
            raise RequestRefused("refused", too_large=too_large)
        if names == ["e0", "e1"]:
            return None
        raise RetryableError("unavailable")

    result = send_requests([batch, later], send)
    assert result.permanent == {}
    assert set(result.retryable) == {"e2", "e3", "e9"}  # e0 and e1 were delivered
