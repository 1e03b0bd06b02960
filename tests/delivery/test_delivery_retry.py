"""Retries, backoff, Retry-After, permanent failures and the dead-letter file."""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import time

import pytest
from helpers.delivery import MemorySink
from helpers.waiting import wait_until
from traitlets import Unicode

from telemetry_sinks.delivery import (
    AuthError,
    Backoff,
    BatchResult,
    PermanentError,
    RetryableError,
    is_retryable_status,
    parse_retry_after,
)


def failing(times: int, exc: Exception):
    """A behavior that raises ``exc`` on the first ``times`` calls."""
    calls = []

    def behavior(batch):
        calls.append(1)
        if len(calls) <= times:
            raise exc

    return behavior


def gaps(sink: MemorySink) -> list[float]:
    times = [t for t, _ in sink.attempts]
    return [b - a for a, b in zip(times, times[1:])]


# ---------------------------------------------------------------------- policy helpers


def test_backoff_doubles_with_jitter_and_a_ceiling():
    low, high = Backoff(0.1, 1.0, rand=lambda: 0.0), Backoff(0.1, 1.0, rand=lambda: 1.0)
    assert [high.delay(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert [low.delay(n) for n in range(1, 4)] == pytest.approx([0.05, 0.1, 0.2])
    assert high.delay(1, retry_after=7.5) == 7.5
    assert high.delay(1000) == 1.0


def test_backoff_jitter_leaves_the_applications_random_state_alone():
    random.seed(1234)
    state = random.getstate()
    backoff = Backoff(0.1, 10.0)
    delays = [backoff.delay(n) for n in range(1, 50)]
    assert random.getstate() == state  # a seeded application sees the same sequence
    assert len(set(delays)) > 40  # and the delays are still jittered


def test_forked_processes_do_not_retry_in_lockstep():
    """A child of a pre-fork server draws other jitter than its parent."""
    backoff = Backoff(1.0, 1.0)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its delays and leave at once
        os.write(write, json.dumps([backoff.delay(1) for _ in range(5)]).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = json.loads(pipe.read())
    os.waitpid(pid, 0)
    parent = [backoff.delay(1) for _ in range(5)]
    assert child != parent


def test_retry_after_parsing_and_status_classes():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(3) == 3.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= parse_retry_after(later) <= 31
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert [s for s in (200, 400, 404, 408, 413, 429, 500, 503) if is_retryable_status(s)] == [
        408,
        429,
        500,
        503,
    ]


# ---------------------------------------------------------------------- retries


def test_retry_with_backoff_then_success(make_sink):
    sink = make_sink(
        failing(3, ConnectionError("connection refused")),
        retry_initial_backoff=0.02,
        retry_max_backoff=1.0,
    )
    sink.write_payload({"n": 0})
    assert sink.flush(5)
    assert sink.delivered_numbers == [0]
    first, second, third = gaps(sink)
    assert first >= 0.01 and second >= 0.02 and third >= 0.04  # at least half of 2ⁿ·initial
    stats = sink.stats()
    assert stats["retried"] == 3 and stats["sent"] == 1
    assert stats["last_error"] == "ConnectionError: connection refused"


def throttled_once(how: str, retry_after: float):
    """(behavior, calls): a behavior whose first call is a 429 asking for ``retry_after`` seconds
    (as a result or an exception), and the time of each call."""
    calls: list[float] = []

    def behavior(batch):
        calls.append(time.monotonic())
        if len(calls) == 1:
            if how == "exception":
                raise RetryableError("HTTP 429", retry_after=retry_after)
            return BatchResult.retry_all(batch, "HTTP 429", retry_after=retry_after)
        return None

    return behavior, calls


@pytest.mark.parametrize("how", ["result", "exception"])
def test_retry_after_is_honoured(make_sink, how):
    sink = make_sink(throttled_once(how, 0.3)[0], retry_initial_backoff=0.001)
    sink.write_payload({"n": 0})
    assert sink.flush(5)
    assert gaps(sink)[0] >= 0.29
    assert sink.stats()["last_error"] == ("RetryableError: HTTP 429" if how == "exception" else "HTTP 429")


@pytest.mark.parametrize("how", ["result", "exception"])
def test_flush_skips_the_backoff_but_not_the_backends_retry_after(make_sink, how):
    """flush() tries a waiting retry at once, except when the backend itself asked for a delay
    (a 429/503 with Retry-After): that request is honoured, within the flush's timeout."""
    behavior, calls = throttled_once(how, 0.5)
    sink = make_sink(behavior, retry_initial_backoff=0.001)
    sink.write_payload({"n": 0})
    wait_until(lambda: sink.stats()["last_error"], what="the first attempt's 429 handled")
    assert sink.flush(5)
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.45


def test_only_failed_events_of_a_batch_are_retried(make_sink):
    def partial(batch):
        result = BatchResult()
        if len(batch) == 3:
            result.retry(batch[1].event_id, "shard busy")
        return result

    sink = make_sink(partial, flush_interval=60, max_batch_events=3)
    for n in range(3):
        sink.write_payload({"n": n})
    assert sink.flush(5)
    assert [len(ids) for _, ids in sink.attempts] == [3, 1]
    assert sink.delivered_numbers == [0, 2, 1]


def test_a_backend_down_at_start_does_not_stop_the_application(make_sink):
    class Flaky(MemorySink):
        def open(self):
            self.opened += 1
            if self.opened < 3:
                raise ConnectionRefusedError("no route to host")

    sink = Flaky(flush_interval=0.0, retry_initial_backoff=0.01, retry_max_backoff=0.02)
    try:
        sink.write_payload({"n": 0})
        assert sink.flush(5)
        assert sink.opened == 3 and sink.delivered_numbers == [0]
    finally:
        sink.close()
    assert sink.backend_closed == 1


def test_max_retry_time_is_deprecated_and_changes_nothing(make_sink, tmp_path):
    with pytest.warns(DeprecationWarning, match="max_retry_time"):
        sink = make_sink(failing(3, TimeoutError("timed out")), spool_dir=str(tmp_path), max_retry_time=0.01)
    sink.write_payload({"n": 0})
    assert sink.flush(5)  # retried until delivered, as without it
    assert sink.delivered_numbers == [0] and sink.stats()["retried"] == 3


def test_without_spool_a_failing_batch_is_retried_until_delivered(make_sink, tmp_path):
    # An outage loses nothing while memory has room.
    dead = tmp_path / "dead.jsonl"
    sink = make_sink(
        failing(8, TimeoutError("timed out")),
        dead_letter_file=str(dead),
        retry_initial_backoff=0.02,
        retry_max_backoff=0.05,
    )
    sink.write_payload({"n": 0})
    wait_until(lambda: sink.stats()["retried"] >= 3)
    sink.write_payload({"n": 1})  # waits in the queue behind the failing batch
    assert sink.flush(10)
    stats = sink.stats()
    assert stats["dropped"] == 0 and stats["dead_lettered"] == 0
    assert sink.delivered_numbers == [0, 1]
    assert not dead.exists()


# ---------------------------------------------------------------------- credentials refused


class Refusing(MemorySink):
    credentials_help = "the test's token"


@pytest.mark.parametrize("how", ["exception", "result"])
def test_refused_credentials_are_retried_counted_and_warned_about_once_never_dead_lettered(
    tmp_path, caplog, how
):
    caplog.set_level(logging.WARNING, logger="telemetry_sinks.delivery")
    dead = tmp_path / "dead.jsonl"
    fixed = {"now": False}

    def backend(batch):
        if fixed["now"]:
            return None
        if how == "exception":
            raise AuthError("HTTP 401: invalid token")
        result = BatchResult()
        result.retry(batch[0].event_id, "HTTP 403: no write privilege", auth=True)
        return result

    sink = Refusing(backend, flush_interval=0.0, retry_initial_backoff=0.01, retry_max_backoff=0.02,
                    dead_letter_file=str(dead), close_timeout=1.0)
    sink.name = "refusing"
    try:
        for n in range(3):
            sink.write_payload({"n": n})
        wait_until(lambda: sink.stats()["auth_failures"] >= 5)
        stats = sink.stats()
        assert stats["dead_lettered"] == 0 and stats["dropped"] == 0
        assert ("401" if how == "exception" else "403") in stats["last_error"]
        warnings = [r.getMessage() for r in caplog.records if "refused its credentials" in r.getMessage()]
        assert len(warnings) == 1  # at most once per drop_report_interval (60 s)
        assert "'refusing'" in warnings[0] and "Check the test's token." in warnings[0]
        assert "in memory" in warnings[0]
        fixed["now"] = True
        assert sink.flush(5)
        assert sorted(sink.delivered_numbers) == [0, 1, 2]
        assert not dead.exists()
    finally:
        sink.close()


def test_error_for_status_is_the_one_rule_for_http_answers():
    from telemetry_sinks.delivery import RequestRefused, error_for_status

    kinds = {status: type(error_for_status(status, f"HTTP {status}"))
             for status in (400, 401, 403, 404, 408, 413, 422, 429, 500, 503)}
    assert kinds == {400: PermanentError, 401: AuthError, 403: AuthError, 404: PermanentError,
                     408: RetryableError, 413: RequestRefused, 422: PermanentError, 429: RetryableError,
                     500: RetryableError, 503: RetryableError}
    assert error_for_status(429, "slow down", retry_after=3.0).retry_after == 3.0
    assert issubclass(AuthError, RetryableError)


# ---------------------------------------------------------------------- permanent failures


def test_permanent_rejections_go_to_the_dead_letter_file(make_sink, tmp_path):
    dead = tmp_path / "dead" / "letters.jsonl"

    def reject_big(batch):
        result = BatchResult()
        for env in batch:
            if env.payload.get("big"):
                result.reject(env.event_id, "HTTP 413: event too large")
        return result

    sink = make_sink(reject_big, dead_letter_file=str(dead), flush_interval=60)
    sink.name = "collector"
    for payload in ({"n": 0}, {"n": 1, "big": True}, {"n": 2}):
        sink.write_payload(payload)
    assert sink.flush(5)
    assert sink.delivered_numbers == [0, 2]
    assert len(sink.attempts) == 1  # never retried
    [entry] = [json.loads(line) for line in dead.read_text().splitlines()]
    assert set(entry) == {"time", "sink", "event_id", "reason", "payload"}
    assert entry["payload"] == {"n": 1, "big": True}
    assert entry["reason"] == "HTTP 413: event too large"
    assert entry["sink"] == "collector" and entry["time"].endswith("Z")
    assert entry["event_id"] == sink.attempts[0][1][1]
    stats = sink.stats()
    assert stats["dead_lettered"] == 1 and stats["sent"] == 2 and stats["dropped"] == 0


def test_permanent_error_rejects_the_whole_batch_once(make_sink, tmp_path):
    dead = tmp_path / "dead.jsonl"

    def bad_request(batch):
        raise PermanentError("HTTP 400: mapping conflict")

    sink = make_sink(bad_request, dead_letter_file=str(dead), flush_interval=60)
    for n in range(3):
        sink.write_payload({"n": n})
    assert sink.flush(5)
    assert len(sink.attempts) == 1
    lines = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [e["payload"]["n"] for e in lines] == [0, 1, 2]
    assert {e["reason"] for e in lines} == {"PermanentError: HTTP 400: mapping conflict"}


def test_rejections_without_dead_letter_file_are_counted_and_reported(make_sink, caplog):
    caplog.set_level(logging.WARNING, logger="telemetry_sinks.delivery")
    sink = make_sink(lambda batch: BatchResult.reject_all(batch, "HTTP 422"))
    sink.write_payload({"n": 0})
    assert sink.flush(5)
    assert sink.stats()["dropped"] == 1
    wait_until(lambda: any("no dead_letter_file" in r.getMessage() for r in caplog.records))


def test_the_spool_has_a_default_dead_letter_file(make_sink, tmp_path):
    sink = make_sink(lambda batch: BatchResult.reject_all(batch, "HTTP 422"), spool_dir=str(tmp_path))
    sink.write_payload({"n": 0})
    assert sink.flush(5)
    assert (tmp_path / "dead_letters.jsonl").read_text().count("\n") == 1


# ---------------------------------------------------------------------- secrets


class SecretSink(MemorySink):
    api_key = Unicode("s3cr3t-key", help="Credential.").tag(config=True, secret=True)


def test_last_error_and_dead_letters_never_show_secrets(tmp_path):
    dead = tmp_path / "dead.jsonl"
    calls = []

    def leaky(batch):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("POST https://bob:hunter2@example.com/?key=s3cr3t-key failed")
        raise PermanentError("rejected key s3cr3t-key")

    sink = SecretSink(leaky, flush_interval=0.0, retry_initial_backoff=0.01, dead_letter_file=str(dead))
    try:
        sink.write_payload({"n": 0})
        wait_until(lambda: sink.stats()["last_error"])
        error = sink.stats()["last_error"]
        assert "hunter2" not in error and "s3cr3t-key" not in error
        assert "https://***@example.com" in error
        assert sink.flush(5)
        assert "s3cr3t-key" not in dead.read_text() and "***" in dead.read_text()
        assert "s3cr3t-key" not in repr(sink)
    finally:
        sink.close()


def test_an_unexpected_error_inside_the_worker_loses_no_event(make_sink, tmp_path, caplog):
    """A failure in the core's own bookkeeping (here: writing a dead letter) retries the batch."""
    from telemetry_sinks.delivery import BatchResult

    def reject_one(batch):
        result = BatchResult()
        for env in batch:
            if env.payload["n"] == 1:
                result.reject(env.event_id, "refused")
        return result

    dead = tmp_path / "dead.jsonl"
    sink = make_sink(reject_one, dead_letter_file=str(dead), max_batch_events=10, flush_interval=0.5)
    engine = sink._engine
    original, calls = engine._reject, []

    def flaky_reject(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("dead-letter file briefly unwritable")
        return original(*args, **kwargs)

    engine._reject = flaky_reject
    for n in range(3):
        sink.write_payload({"n": n})
    assert sink.flush(10)
    stats = sink.stats()
    assert stats["dropped"] == 0 and stats["dead_lettered"] == 1
    assert {0, 2} <= set(sink.delivered_numbers)  # delivered (possibly twice: at-least-once)
    assert json.loads(dead.read_text())["payload"] == {"n": 1}
    assert "delivery worker" in caplog.text
