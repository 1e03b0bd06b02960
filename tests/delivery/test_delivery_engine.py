"""The engine on its own: a plain adapter object and plain options, no traitlets and no sink."""

from __future__ import annotations

import json

import pytest
from helpers.waiting import wait_until

from telemetry_sinks.delivery import (
    Adapter,
    BatchResult,
    DeliveryEngine,
    DeliveryOptions,
    Envelope,
    OptionError,
    RetryableError,
)

FAST = DeliveryOptions(flush_interval=0.0, retry_initial_backoff=0.01, retry_max_backoff=0.02,
                       close_timeout=2.0)


class ListAdapter:
    """An adapter that is not a sink: it delivers to a list and logs its calls."""

    label = "list"

    def __init__(self, answers=()):
        self.answers = list(answers)  # what the next sends do: None, a BatchResult or an exception
        self.calls: list[str] = []
        self.delivered: list[str] = []

    def open(self) -> None:
        self.calls.append("open")
        if self.answers and self.answers[0] == "open fails":
            self.answers.pop(0)
            raise ConnectionRefusedError("no backend yet")

    def send_batch(self, batch: list[Envelope]) -> BatchResult | None:
        self.calls.append("send")
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, Exception):
            raise answer
        failed = set(answer.retryable) | set(answer.permanent) if answer else set()
        self.delivered += [e.data for e in batch if e.event_id not in failed]
        return answer

    def close_backend(self) -> None:
        self.calls.append("close")

    def mask(self, text: str) -> str:
        return text.replace("s3cret", "***")


def test_a_plain_object_is_an_adapter_and_the_engine_delivers_through_it():
    adapter = ListAdapter()
    assert isinstance(adapter, Adapter)
    engine = DeliveryEngine(adapter, FAST)
    for n in range(5):
        engine.put(json.dumps({"n": n}))
    assert engine.flush(5)
    engine.close()
    assert [json.loads(d)["n"] for d in adapter.delivered] == [0, 1, 2, 3, 4]
    assert adapter.calls[0] == "open" and adapter.calls[-1] == "close"
    assert adapter.calls.count("open") == adapter.calls.count("close") == 1
    assert engine.stats()["sent"] == 5


def test_a_failed_open_is_retried_by_the_engine():
    adapter = ListAdapter(["open fails"])
    engine = DeliveryEngine(adapter, FAST)
    engine.put('{"n":1}')
    assert engine.flush(5)
    engine.close()
    assert adapter.calls[:3] == ["open", "open", "send"]
    assert adapter.delivered == ['{"n":1}']
    assert engine.stats()["retried"] == 1 and engine.stats()["sent"] == 1


def test_a_result_asking_to_reconnect_gets_a_new_connection_before_the_retry():
    class Reconnecting(ListAdapter):
        def send_batch(self, batch):
            self.calls.append("send")
            if self.calls.count("send") == 1:
                result = BatchResult.retry_all(batch, "connection lost")
                result.reconnect = True
                return result
            self.delivered += [e.data for e in batch]
            return None

    adapter = Reconnecting()
    engine = DeliveryEngine(adapter, FAST)
    engine.put('{"n":1}')
    assert engine.flush(5)
    engine.close()
    assert adapter.calls == ["open", "send", "close", "open", "send", "close"]
    assert adapter.delivered == ['{"n":1}']


def test_reasons_go_through_the_adapters_mask():
    adapter = ListAdapter([RetryableError("token s3cret refused")])
    engine = DeliveryEngine(adapter, FAST)
    engine.put('{"n":1}')
    wait_until(lambda: engine.stats()["last_error"])
    assert engine.flush(5)
    engine.close()
    assert engine.stats()["last_error"] == "RetryableError: token *** refused"


@pytest.mark.parametrize(
    ("options", "option", "problem"),
    [
        ({"max_batch_events": 0}, "max_batch_events", "must be 1 or more, not 0."),
        ({"close_timeout": -1.0}, "close_timeout", "must be 0 or more, not -1.0."),
        ({"overflow": "sometimes"}, "overflow", "must be one of spill, drop_newest"),
        ({"overflow": "spill"}, "overflow", "is 'spill' but no spool_dir is set"),
    ],
)
def test_bad_options_name_the_option(options, option, problem):
    with pytest.raises(OptionError) as info:
        DeliveryOptions(**options)
    assert info.value.option == option and problem in info.value.problem


def test_defaults_follow_the_spool():
    assert DeliveryOptions().effective_overflow == "drop_newest"
    spooled = DeliveryOptions(spool_dir="/var/spool/x", overflow="DROP_OLDEST")
    assert spooled.effective_overflow == "drop_oldest"
    assert DeliveryOptions(spool_dir="/var/spool/x").effective_overflow == "spill"
    assert spooled.dead_letter_path == "/var/spool/x/dead_letters.jsonl"
    assert DeliveryOptions().dead_letter_path is None
