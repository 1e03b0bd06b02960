"""CloudWatchSink against a real CloudWatch Logs API server (moto's) on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.config
import time

import boto3
import pytest
from helpers.cloudwatch import REGION, logs_client, moto_server, payloads, read_events
from helpers.events import FAST, LAUNCH, SCHEMAS, make_log
from helpers.jsonl import read_jsonl as dead_letters
from helpers.servers import free_port, wait_delivered
from helpers.waiting import wait_until as wait_for

from telemetry_sinks import EventLog, SinkConfigError, get_sink, sink_class
from telemetry_sinks.capsule import format_timestamp, make_capsule
from telemetry_sinks.delivery import Envelope
from telemetry_sinks.sinks.cloudwatch import (
    CloudWatchSink,
    _Event,
    _requests,
    group_safe,
    rejected_indices,
    stream_safe,
    timestamp_ms,
)

pytestmark = pytest.mark.integration



def capsule_at(when: dt.datetime, seq: int) -> dict:
    return make_capsule(LAUNCH, 1, {"seq": seq}, timestamp=format_timestamp(when))


# ---------------------------------------------------------------------- delivery


def test_five_thousand_events_arrive_complete_and_equal(endpoint, group):
    sink = CloudWatchSink(
        log_group_name=group, log_stream_name="{hostname}/{date}", endpoint_url=endpoint, **FAST
    )
    log = make_log(sink)
    sent = [
        log.emit(schema_id=SCHEMAS[seq % 2]["$id"], data={"seq": seq, "note": "é✓" * (seq % 40)})
        for seq in range(5000)
    ]
    stats = wait_delivered(sink, timeout=60)
    sink.close()
    assert stats["sent"] == 5000 and stats["dropped"] == 0 and stats["dead_lettered"] == 0, stats

    events = read_events(endpoint, group)
    received = payloads(events)
    assert len(received) == 5000
    # Each message carries its event id first (readers drop duplicates by it), then the capsule.
    assert all(e["message"].startswith('{"__event_id__":"') for e in events)
    assert len({json.loads(e["message"])["__event_id__"] for e in events}) == 5000
    by_key = {(p["__schema__"], p["seq"]): p for p in received}
    assert len(by_key) == 5000  # no duplicates
    assert all(by_key[(c["__schema__"], c["seq"])] == c for c in sent)
    # The CloudWatch timestamp is the capsule's, to the millisecond.
    first = next(e for e in events if json.loads(e["message"])["seq"] == 0)
    assert first["timestamp"] == timestamp_ms(sent[0])
    # One stream per host and UTC date of the events.
    streams = {e["logStreamName"] for e in events}
    assert {s.rsplit("/", 1)[1] for s in streams} == {c["__timestamp__"][:10] for c in sent}


def test_messages_without_event_ids_are_the_capsule_alone(endpoint, group):
    sink = CloudWatchSink(
        log_group_name=group, log_stream_name="s", endpoint_url=endpoint, include_event_id=False, **FAST
    )
    capsule = make_log(sink).emit(schema_id=SCHEMAS[0]["$id"], data={"seq": 1})
    wait_delivered(sink, timeout=30)
    sink.close()
    (event,) = read_events(endpoint, group)
    assert json.loads(event["message"]) == capsule


def test_group_and_stream_templates_are_made_cloudwatch_safe(endpoint):
    sink = CloudWatchSink(
        log_group_name="/telemetry-test/{__schema__}",
        log_stream_name="v{__schema_version__}:{missing}*",
        endpoint_url=endpoint,
        **FAST,
    )
    log = make_log(sink)
    log.emit(schema_id=LAUNCH, data={"seq": 1})
    log.emit(schema_id=SCHEMAS[1]["$id"], data={"seq": 2})
    wait_delivered(sink, timeout=30)
    sink.close()
    launch_group = "/telemetry-test/https_//events.example.org/launch"
    assert group_safe("/telemetry-test/" + LAUNCH) == launch_group
    (event,) = read_events(endpoint, launch_group, stream="v1_unknown_")
    assert json.loads(event["message"])["seq"] == 1
    save = payloads(read_events(endpoint, "/telemetry-test/https_//events.example.org/save"))
    assert [p["seq"] for p in save] == [2]


def test_backend_restarted_mid_stream_loses_nothing_and_emit_stays_fast(
    local_moto, tmp_path, group
):
    endpoint = f"http://127.0.0.1:{local_moto.port}"
    sink = CloudWatchSink(
        log_group_name=group,
        log_stream_name="{__schema__}",
        endpoint_url=endpoint,
        spool_dir=str(tmp_path / "spool"),
        request_timeout=2.0,
        **FAST,
    )
    log = make_log(sink)
    for seq in range(200):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    wait_delivered(sink, timeout=30)

    local_moto.stop()  # moto keeps everything in memory: it comes back empty
    slowest = 0.0
    for seq in range(200, 1200):
        start = time.perf_counter()
        log.emit(schema_id=LAUNCH, data={"seq": seq})
        slowest = max(slowest, time.perf_counter() - start)
        if seq % 100 == 0:
            time.sleep(0.3)  # an outage of several seconds of steady emitting
    assert sink.stats()["spooled"] > 0, sink.stats()
    local_moto.start()
    for seq in range(1200, 1300):
        start = time.perf_counter()
        log.emit(schema_id=LAUNCH, data={"seq": seq})
        slowest = max(slowest, time.perf_counter() - start)
    stats = wait_delivered(sink, timeout=60)
    sink.close()
    assert slowest < 0.05, f"emit() blocked for {slowest * 1000:.1f} ms"
    assert stats["dropped"] == 0 and stats["dead_lettered"] == 0, stats

    # The group and stream were created again; every event emitted during and after
    # the outage is there (at-least-once: duplicates allowed, none lost).
    seqs = [p["seq"] for p in payloads(read_events(endpoint, group, stream=group_safe(LAUNCH)))]
    missing = set(range(200, 1300)) - set(seqs)
    assert not missing, sorted(missing)[:20]


def test_backend_down_at_start_does_not_stop_the_application(tmp_path, group):
    port = free_port()
    sink = CloudWatchSink(
        log_group_name=group,
        endpoint_url=f"http://127.0.0.1:{port}",
        spool_dir=str(tmp_path / "spool"),
        request_timeout=2.0,
        **FAST,
    )
    log = make_log(sink)
    start = time.perf_counter()
    for seq in range(50):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    assert time.perf_counter() - start < 0.5
    assert not sink.flush(timeout=1)  # nothing can be acknowledged: flush() says so, in time
    stats = sink.stats()
    assert stats["sent"] == 0 and stats["spooled"] == 50 and stats["spool_bytes"] > 0, stats
    server = moto_server(port, tmp_path).start()
    try:
        wait_delivered(sink, timeout=30)
        sink.close()
        seqs = [p["seq"] for p in payloads(read_events(f"http://127.0.0.1:{port}", group))]
        assert sorted(set(seqs)) == list(range(50))
    finally:
        server.stop()


def test_plain_log_records_and_capsules_through_dict_config(endpoint, group):
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "cloudwatch": {
                    "()": "telemetry_sinks.get_sink",
                    "name": "cloudwatch",
                    "log_group_name": group,
                    "log_stream_name": "app",
                    "endpoint_url": endpoint,
                    "region_name": REGION,
                    "flush_interval": 0.05,
                }
            },
            "loggers": {"cwtest.app": {"handlers": ["cloudwatch"], "level": "INFO"}},
        }
    )
    logger = logging.getLogger("cwtest.app")
    (sink,) = logger.handlers
    try:
        assert isinstance(sink, CloudWatchSink)
        logger.warning("disk %s is full", "/data", extra={"host_id": 7})
        capsule = capsule_at(dt.datetime.now(dt.timezone.utc), 42)
        logger.info(capsule)
        wait_delivered(sink, timeout=30)
    finally:
        logger.removeHandler(sink)
        sink.close()
    received = payloads(read_events(endpoint, group, stream="app"))
    record = next(p for p in received if "message" in p)
    assert record["message"] == "disk /data is full" and record["level"] == "WARNING"
    assert record["logger"] == "cwtest.app" and record["host_id"] == 7
    assert capsule in received


def test_traitlets_config_two_lines(endpoint, group):
    from traitlets.config import Config

    c = Config()
    c.EventLog.sinks = ["cloudwatch"]
    c.CloudWatchSink.log_group_name = group
    c.CloudWatchSink.endpoint_url = endpoint
    c.CloudWatchSink.flush_interval = 0.05
    log = EventLog(config=c, allowed_schemas=[LAUNCH])
    log.register_schema(SCHEMAS[0])
    log.emit(schema_id=LAUNCH, data={"seq": 7})
    (sink,) = log.all_handlers
    assert isinstance(sink, CloudWatchSink) and sink.log_group_name == group
    wait_delivered(sink, timeout=30)
    log.close()
    assert [p["seq"] for p in payloads(read_events(endpoint, group))] == [7]
    assert sink_class("cloudwatch") is CloudWatchSink


def test_retention_and_tags_are_set_on_the_group(endpoint, group):
    sink = CloudWatchSink(
        log_group_name=group,
        endpoint_url=endpoint,
        log_group_retention_days=7,
        log_group_tags={"team": "platform"},
        **FAST,
    )
    log = make_log(sink)
    log.emit(schema_id=LAUNCH, data={"seq": 1})
    wait_delivered(sink, timeout=30)
    sink.close()
    client = logs_client(endpoint)
    (info,) = client.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert info["retentionInDays"] == 7
    assert client.list_tags_log_group(logGroupName=group)["tags"] == {"team": "platform"}


def test_group_that_may_not_be_created_is_retried_until_it_exists(endpoint, group):
    sink = CloudWatchSink(
        log_group_name=group, endpoint_url=endpoint, create_log_group=False, **FAST
    )
    log = make_log(sink)
    log.emit(schema_id=LAUNCH, data={"seq": 1})
    assert sink.flush(timeout=0.5) is False
    wait_for(lambda: "create_log_group is False" in (sink.stats()["last_error"] or ""))
    logs_client(endpoint).create_log_group(logGroupName=group)  # the operator creates it
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["sent"] == 1 and stats["dead_lettered"] == 0
    assert [p["seq"] for p in payloads(read_events(endpoint, group))] == [1]


# ---------------------------------------------------------------------- limits


def test_oversized_event_is_dead_lettered_and_the_rest_flows(proxy, tmp_path, group):
    dead = tmp_path / "dead.jsonl"
    sink = CloudWatchSink(
        log_group_name=group, endpoint_url=proxy.url, dead_letter_file=str(dead), **FAST
    )
    log = make_log(sink)
    log.emit(schema_id=LAUNCH, data={"seq": 1})
    log.emit(schema_id=LAUNCH, data={"seq": 2, "note": "x" * 300_000})
    log.emit(schema_id=LAUNCH, data={"seq": 3, "note": "y" * (262_144 - 250)})  # just fits
    log.emit(schema_id=LAUNCH, data={"seq": 4})
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["sent"] == 3 and stats["dead_lettered"] == 1, stats
    assert sorted(p["seq"] for p in payloads(read_events(proxy.url, group))) == [1, 3, 4]
    (letter,) = dead_letters(dead)
    assert "larger than CloudWatch Logs' limit of 262144 bytes" in letter["reason"]
    assert letter["payload"]["seq"] == 2 and len(letter["payload"]["note"]) == 300_000


def test_batches_are_split_within_request_bytes_and_time_span(proxy, tmp_path, group):
    dead = tmp_path / "dead.jsonl"
    sink = CloudWatchSink(
        log_group_name=group,
        log_stream_name="s",
        endpoint_url=proxy.url,
        dead_letter_file=str(dead),
        max_batch_events=5000,
        max_batch_bytes=8 * 1024 * 1024,
        flush_interval=0.5,
    )
    now = dt.datetime.now(dt.timezone.utc)
    note = "z" * 1000
    for seq in range(3000):  # about 3.2 MB: at least four requests of at most 1 MiB
        sink.handle_capsule({**capsule_at(now - dt.timedelta(seconds=seq), seq), "note": note})
    for days in (3, 2, 1):  # three days: three requests, each within 24 hours
        sink.handle_capsule(capsule_at(now - dt.timedelta(days=days, minutes=1), 10_000 + days))
    stats = wait_delivered(sink, timeout=60)
    sink.close()
    assert stats["sent"] == 3003 and stats["dead_lettered"] == 0, (stats, dead_letters(dead)[:1])
    calls = [c for c in proxy.calls() if c.code != "ResourceNotFoundException"]  # first use
    assert all(c.status == 200 for c in calls), calls  # nothing broke CloudWatch's rules
    # 3.2 MB need four requests; the three older days need two more (each within 24 hours).
    assert len(calls) >= 6 and sum(c.events for c in calls) == 3003, calls
    events = read_events(proxy.url, group)
    assert len(events) == 3003
    # Within each request the events are in timestamp order (CloudWatch requires it).
    assert {p["seq"] for p in payloads(events)} == set(range(3000)) | {10_001, 10_002, 10_003}


def test_too_old_and_too_new_events_are_dead_lettered(proxy, tmp_path, group):
    dead = tmp_path / "dead.jsonl"
    sink = CloudWatchSink(
        log_group_name=group, endpoint_url=proxy.url, dead_letter_file=str(dead), **FAST
    )
    now = dt.datetime.now(dt.timezone.utc)
    sink.handle_capsule(capsule_at(now - dt.timedelta(days=15), 1))
    sink.handle_capsule(capsule_at(now + dt.timedelta(hours=3), 2))
    sink.handle_capsule(capsule_at(now, 3))
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["sent"] == 1 and stats["dead_lettered"] == 2, stats
    reasons = {d["payload"]["seq"]: d["reason"] for d in dead_letters(dead)}
    assert "tooOld" in reasons[1] and "tooNew" in reasons[2]
    assert [p["seq"] for p in payloads(read_events(proxy.url, group))] == [3]


def test_throttling_is_retried_then_delivered(proxy, group):
    proxy.fail("ThrottlingException", status=400, message="Rate exceeded", times=3)
    proxy.fail("ServiceUnavailableException", status=500, message="Service unavailable", times=1)
    sink = CloudWatchSink(log_group_name=group, endpoint_url=proxy.url, **FAST)
    log = make_log(sink)
    for seq in range(20):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    # Four refused attempts, each retrying the events of the batch it carried (the first batch
    # may hold fewer than 20: the worker takes what is queued when it wakes).
    assert stats["sent"] == 20 and stats["dead_lettered"] == 0 and stats["retried"] >= 4, stats
    statuses = [c.status for c in proxy.calls()]
    assert statuses[:4] == [400, 400, 400, 500] and statuses[-1] == 200, statuses
    assert sorted(p["seq"] for p in payloads(read_events(proxy.url, group))) == list(range(20))


def test_invalid_parameter_dead_letters_only_the_bad_event(proxy, tmp_path, group):
    dead = tmp_path / "dead.jsonl"
    proxy.fail(
        "InvalidParameterException",
        message="Log event rejected: the message is malformed",
        times=None,
        when=lambda body: b"poison-pill" in body,
    )
    sink = CloudWatchSink(
        log_group_name=group,
        endpoint_url=proxy.url,
        dead_letter_file=str(dead),
        flush_interval=1.0,  # one batch of 32 events
        retry_initial_backoff=0.1,
        retry_max_backoff=0.5,
    )
    log = make_log(sink)
    for seq in range(32):
        log.emit(schema_id=LAUNCH, data={"seq": seq, "note": "poison-pill" if seq == 13 else ""})
    stats = wait_delivered(sink, timeout=30)
    for seq in range(32, 40):  # and later events keep flowing
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["sent"] == 39 and stats["dead_lettered"] == 1, stats
    (letter,) = dead_letters(dead)
    assert letter["payload"]["seq"] == 13
    assert "InvalidParameterException" in letter["reason"] and "malformed" in letter["reason"]
    seqs = sorted(p["seq"] for p in payloads(read_events(proxy.url, group)))
    assert seqs == [s for s in range(40) if s != 13]
    assert len(proxy.calls()) <= 2 * 5 + 3  # halving: a few requests, not one per event


def test_request_level_invalid_parameter_dead_letters_the_batch_quickly(proxy, tmp_path, group):
    dead = tmp_path / "dead.jsonl"
    proxy.fail(
        "InvalidParameterException", message="The log group name is not valid.", times=None
    )
    sink = CloudWatchSink(
        log_group_name=group,
        endpoint_url=proxy.url,
        dead_letter_file=str(dead),
        flush_interval=2.0,  # one batch
    )
    log = make_log(sink)
    for seq in range(100):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["dead_lettered"] == 100 and stats["sent"] == 0, stats
    assert len(proxy.calls()) == 3  # the request, then both halves: the request is at fault
    assert all("log group name is not valid" in d["reason"] for d in dead_letters(dead))


def test_rejected_log_events_info_both_index_conventions():
    now = int(time.time() * 1000)
    old, ok, new = now - 15 * 86_400_000, now, now + 3 * 3_600_000
    stamps = [old, old, ok, ok, new, new]
    aws = {"tooOldLogEventEndIndex": 2, "tooNewLogEventStartIndex": 4}  # exclusive / inclusive
    moto = {"tooOldLogEventEndIndex": 1, "tooNewLogEventStartIndex": 5}  # last index of each
    for info in (aws, moto):
        rejected = rejected_indices(info, stamps, now)
        assert sorted(rejected) == [0, 1, 4, 5]
        assert "tooOld" in rejected[0] and "tooNew" in rejected[5]
    assert sorted(rejected_indices({"expiredLogEventEndIndex": 2}, stamps, now)) == [0, 1]


def test_requests_respect_count_bytes_and_span_limits():
    def items(count, size=2, step=0):
        return [_Event(i * step, i, Envelope(f"e{i}", "x" * size), "g", "s") for i in range(count)]

    assert [len(c) for c in _requests(items(10_001))] == [10_000, 1]
    big = list(_requests(items(9, size=200_000)))  # 5 x 200,026 bytes fit in 1 MiB
    assert [len(c) for c in big] == [5, 4]
    day = 24 * 3600 * 1000
    assert [len(c) for c in _requests(items(5, step=day // 2))] == [2, 2, 1]


# ---------------------------------------------------------------------- configuration


def test_bad_options_fail_at_construction(monkeypatch):
    with pytest.raises(SinkConfigError, match="needs option 'log_group_name'"):
        CloudWatchSink()
    with pytest.raises(SinkConfigError) as info:
        CloudWatchSink(log_group_name="bad group!")
    assert "CloudWatchSink option 'log_group_name'" in str(info.value)
    assert "'bad_group_'" in str(info.value)
    with pytest.raises(SinkConfigError, match="':' and '\\*' are not allowed"):
        CloudWatchSink(log_group_name="g", log_stream_name="a:b")
    with pytest.raises(SinkConfigError, match="not a valid template"):
        CloudWatchSink(log_group_name="g-{__schema__")
    with pytest.raises(SinkConfigError, match="must be one of 1, 3, 5"):
        CloudWatchSink(log_group_name="g", log_group_retention_days=2)
    with pytest.raises(SinkConfigError, match="has no option 'log_group'"):
        CloudWatchSink(log_group="g")
    with pytest.raises(SinkConfigError, match="not both"):
        CloudWatchSink(log_group_name="g", boto3_session=object(), boto3_client=object())
    with pytest.raises(SinkConfigError, match="'endpoint_url' cannot be used with boto3_client"):
        CloudWatchSink(log_group_name="g", boto3_client=object(), endpoint_url="http://x")
    with pytest.raises(SinkConfigError, match="'aws_secret_access_key' cannot be used with"):
        CloudWatchSink(log_group_name="g", boto3_session=object(), aws_secret_access_key="k")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(SinkConfigError, match="needs an AWS region"):
        CloudWatchSink(log_group_name="g")
    CloudWatchSink(log_group_name="g", region_name="eu-west-1").close()
    assert stream_safe("a:b*c") == "a_b_c"


def test_secrets_never_in_repr_stats_or_errors(endpoint, group, tmp_path):
    secret_key, token = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY", "FwoGZXIvYXdzEXAMPLE-session-token"
    sink = get_sink(
        "cloudwatch",
        log_group_name=group,
        endpoint_url=endpoint,
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key=secret_key,
        aws_session_token=token,
        **FAST,
    )
    log = make_log(sink)
    log.emit(schema_id=LAUNCH, data={"seq": 1})
    wait_delivered(sink, timeout=30)
    sink.close()
    assert [p["seq"] for p in payloads(read_events(endpoint, group))] == [1]
    for text in (repr(sink), json.dumps(sink.stats(), default=str)):
        assert secret_key not in text and token not in text and "AKIAIOSFODNN7EXAMPLE" not in text
    assert "aws_secret_access_key='***'" in repr(sink)

    # An unreachable endpoint: the error names the problem, not the credentials.
    down = get_sink(
        "cloudwatch",
        log_group_name=group,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        aws_secret_access_key=secret_key,
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        close_timeout=0.5,
        **FAST,
    )
    down.handle_capsule(capsule_at(dt.datetime.now(dt.timezone.utc), 1))
    assert down.flush(timeout=0.5) is False
    wait_for(lambda: down.stats()["last_error"])
    error = down.stats()["last_error"]
    down.close()
    assert error and secret_key not in error and secret_key not in repr(down)
    with pytest.raises(SinkConfigError) as info:
        CloudWatchSink(log_group_name=group, aws_secret_access_key=12345)
    assert "12345" not in str(info.value) and "secret" in str(info.value)


def test_boto3_session_and_client_are_python_only_and_not_shown(endpoint, group):
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    by_session = CloudWatchSink(
        log_group_name=group, log_stream_name="session", endpoint_url=endpoint,
        boto3_session=session, **FAST,
    )  # fmt: skip
    by_client = CloudWatchSink(
        log_group_name=group, log_stream_name="client", boto3_client=logs_client(endpoint), **FAST
    )
    for sink, seq in ((by_session, 1), (by_client, 2)):
        sink.handle_capsule(capsule_at(dt.datetime.now(dt.timezone.utc), seq))
        wait_delivered(sink, timeout=30)
        sink.close()
        assert "boto3" not in repr(sink)
    assert [p["seq"] for p in payloads(read_events(endpoint, group, stream="session"))] == [1]
    assert [p["seq"] for p in payloads(read_events(endpoint, group, stream="client"))] == [2]
    assert "boto3_client" not in CloudWatchSink.option_names()
