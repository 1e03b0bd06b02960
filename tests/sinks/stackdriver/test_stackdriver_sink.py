"""StackdriverSink against a local stand-in of the Cloud Logging API (REST and gRPC) on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import logging.config
import time
from collections import Counter

import pytest
from helpers.events import FAST, LAUNCH, SCHEMAS, make_log
from helpers.fake_logging_api import FakeLoggingAPI, recorded
from helpers.jsonl import read_jsonl as dead_letters
from helpers.servers import free_port, wait_delivered
from helpers.waiting import wait_until as wait_for

from telemetry_sinks import EventLog, SinkConfigError, get_sink, sink_class
from telemetry_sinks.sinks.stackdriver import StackdriverSink, log_id_safe, rfc3339

pytestmark = pytest.mark.integration

PROJECT = "test-project"


def sink_for(api: FakeLoggingAPI, **options) -> StackdriverSink:
    options = {**FAST, **options}
    return StackdriverSink(project=PROJECT, api_endpoint=api.url, anonymous=True, **options)


def seqs(api: FakeLoggingAPI) -> list[int]:
    return [e["jsonPayload"]["seq"] for e in api.entries]


def gcl_client():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import logging as gcl

    return gcl.Client(project=PROJECT, credentials=AnonymousCredentials(), _use_grpc=False)


# ---------------------------------------------------------------------- delivery


def test_five_thousand_events_arrive_complete_and_equal(fake_api):
    sink = sink_for(fake_api, max_batch_events=2500)
    log = make_log(sink)
    sent = [
        log.emit(schema_id=SCHEMAS[seq % 2]["$id"], data={"seq": seq, "note": "é✓" * (seq % 40)})
        for seq in range(5000)
    ]
    stats = wait_delivered(sink, timeout=60)
    sink.close()
    assert stats["sent"] == 5000 and stats["dropped"] == 0 and stats["dead_lettered"] == 0, stats

    entries = fake_api.entries
    assert len(entries) == 5000
    by_key = {(e["jsonPayload"]["__schema__"], e["jsonPayload"]["seq"]): e for e in entries}
    assert len(by_key) == 5000  # no duplicates
    for capsule in sent:
        entry = by_key[(capsule["__schema__"], capsule["seq"])]
        assert entry["jsonPayload"] == capsule
        assert entry["timestamp"] == capsule["__timestamp__"]
    entry = entries[0]
    assert entry["logName"] == f"projects/{PROJECT}/logs/telemetry-events"
    assert entry["resource"] == {"type": "global", "labels": {"project_id": PROJECT}}
    assert entry["severity"] == "INFO"
    assert len({e["insertId"] for e in entries}) == 5000  # the event ids: dedup downstream
    requests = fake_api.requests
    assert all(r.status == 200 and r.entries <= 1000 for r in requests), requests


def test_log_name_template_resource_and_labels(fake_api):
    sink = sink_for(
        fake_api,
        log_name="events.{__schema__}",
        resource_type="k8s_container",
        resource_labels={"cluster_name": "hub", "namespace_name": "jhub"},
        labels={"deployment": "staging"},
    )
    log = make_log(sink)
    log.emit(schema_id=LAUNCH, data={"seq": 1})
    wait_delivered(sink, timeout=30)
    sink.close()
    (entry,) = fake_api.entries
    log_id = log_id_safe("events." + LAUNCH)
    assert log_id == "events.https_//events.example.org/launch"
    assert entry["logName"] == (
        f"projects/{PROJECT}/logs/events.https_%2F%2Fevents.example.org%2Flaunch"
    )
    assert entry["resource"] == {
        "type": "k8s_container",
        "labels": {"cluster_name": "hub", "namespace_name": "jhub"},
    }
    assert entry["labels"] == {"deployment": "staging"}


def test_api_stopped_mid_stream_loses_nothing_and_emit_stays_fast(fake_api_process, tmp_path):
    url = f"http://127.0.0.1:{fake_api_process.port}"
    sink = StackdriverSink(
        project=PROJECT,
        api_endpoint=url,
        anonymous=True,
        spool_dir=str(tmp_path / "spool"),
        request_timeout=2.0,
        **FAST,
    )
    log = make_log(sink)
    for seq in range(200):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    wait_delivered(sink, timeout=30)

    fake_api_process.stop()  # killed: like a real server, it forgets what it had
    slowest = 0.0
    for seq in range(200, 1200):
        start = time.perf_counter()
        log.emit(schema_id=LAUNCH, data={"seq": seq})
        slowest = max(slowest, time.perf_counter() - start)
        if seq % 100 == 0:
            time.sleep(0.3)  # an outage of several seconds of steady emitting
    assert sink.stats()["spooled"] > 0, sink.stats()
    fake_api_process.start()  # the same port
    for seq in range(1200, 1300):
        start = time.perf_counter()
        log.emit(schema_id=LAUNCH, data={"seq": seq})
        slowest = max(slowest, time.perf_counter() - start)
    stats = wait_delivered(sink, timeout=60)
    sink.close()
    assert slowest < 0.05, f"emit() blocked for {slowest * 1000:.1f} ms"
    assert stats["dropped"] == 0 and stats["dead_lettered"] == 0, stats
    # Everything emitted during and after the outage is there (duplicates allowed, none lost).
    received = {e["jsonPayload"]["seq"] for e in recorded(url)["entries"]}
    missing = set(range(200, 1300)) - received
    assert not missing, sorted(missing)[:20]


def test_api_down_at_start_does_not_stop_the_application(tmp_path):
    port = free_port()
    sink = StackdriverSink(
        project=PROJECT,
        api_endpoint=f"http://127.0.0.1:{port}",
        anonymous=True,
        spool_dir=str(tmp_path / "spool"),
        **FAST,
    )
    log = make_log(sink)
    start = time.perf_counter()
    for seq in range(50):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    assert time.perf_counter() - start < 0.5
    assert not sink.flush(timeout=1)  # nothing can be acknowledged: flush() says so, in time
    assert sink.stats()["sent"] == 0 and sink.stats()["spooled"] == 50
    api = FakeLoggingAPI(port).start()
    try:
        wait_delivered(sink, timeout=30)
        sink.close()
        assert sorted(seqs(api)) == list(range(50))
    finally:
        api.stop()


def test_plain_log_records_carry_their_severity_through_dict_config(fake_api):
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "gcp": {
                    "()": "telemetry_sinks.get_sink",
                    "name": "gcp_logging",
                    "project": PROJECT,
                    "api_endpoint": fake_api.url,
                    "anonymous": True,
                    "log_name": "app",
                    "flush_interval": 0.05,
                }
            },
            "loggers": {"sdtest.app": {"handlers": ["gcp"], "level": "DEBUG"}},
        }
    )
    logger = logging.getLogger("sdtest.app")
    (sink,) = logger.handlers
    try:
        assert isinstance(sink, StackdriverSink)
        logger.debug("starting")
        logger.warning("disk %s is full", "/data", extra={"host_id": 7})
        logger.error("failed")
        logger.critical("down")
        capsule = {"__timestamp__": "2024-05-01T10:00:00.123456Z", "__schema__": LAUNCH,
                   "__schema_version__": 1, "__metadata_version__": 1, "seq": 5}  # fmt: skip
        logger.warning(capsule)  # a capsule is an event: INFO whatever the record says
        wait_delivered(sink, timeout=30)
    finally:
        logger.removeHandler(sink)
        sink.close()
    entries = fake_api.entries
    by_message = {e["jsonPayload"].get("message"): e for e in entries}
    assert by_message["starting"]["severity"] == "DEBUG"
    warning = by_message["disk /data is full"]
    assert warning["severity"] == "WARNING" and warning["jsonPayload"]["host_id"] == 7
    assert warning["jsonPayload"]["logger"] == "sdtest.app"
    assert warning["timestamp"] == warning["jsonPayload"]["timestamp"]
    assert by_message["failed"]["severity"] == "ERROR"
    assert by_message["down"]["severity"] == "CRITICAL"
    (event,) = [e for e in entries if "__schema__" in e["jsonPayload"]]
    assert event["severity"] == "INFO" and event["jsonPayload"] == capsule
    assert event["timestamp"] == "2024-05-01T10:00:00.123456Z"
    assert event["logName"] == f"projects/{PROJECT}/logs/app"


def test_traitlets_config(fake_api):
    from traitlets.config import Config

    c = Config()
    c.EventLog.sinks = ["stackdriver"]
    c.StackdriverSink.project = PROJECT
    c.StackdriverSink.api_endpoint = fake_api.url
    c.StackdriverSink.anonymous = True
    c.StackdriverSink.log_name = "jupyter-events"
    c.StackdriverSink.flush_interval = 0.05
    log = EventLog(config=c, allowed_schemas=[LAUNCH])
    log.register_schema(SCHEMAS[0])
    log.emit(schema_id=LAUNCH, data={"seq": 7})
    (sink,) = log.all_handlers
    assert isinstance(sink, StackdriverSink)
    wait_delivered(sink, timeout=30)
    log.close()
    (entry,) = fake_api.entries
    assert entry["jsonPayload"]["seq"] == 7
    assert entry["logName"] == f"projects/{PROJECT}/logs/jupyter-events"
    assert sink_class("stackdriver") is sink_class("gcp_logging") is StackdriverSink


# ---------------------------------------------------------------------- limits


def test_oversized_entry_is_dead_lettered_and_the_rest_flows(fake_api, tmp_path):
    dead = tmp_path / "dead.jsonl"
    sink = sink_for(fake_api, dead_letter_file=str(dead))
    log = make_log(sink)
    log.emit(schema_id=LAUNCH, data={"seq": 1})
    log.emit(schema_id=LAUNCH, data={"seq": 2, "note": "x" * 300_000})
    log.emit(schema_id=LAUNCH, data={"seq": 3, "note": "y" * (256 * 1024 - 500)})  # just fits
    log.emit(schema_id=LAUNCH, data={"seq": 4})
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["sent"] == 3 and stats["dead_lettered"] == 1, stats
    assert sorted(seqs(fake_api)) == [1, 3, 4]
    (letter,) = dead_letters(dead)
    assert "larger than Cloud Logging's limit of 262144 bytes" in letter["reason"]
    assert letter["payload"]["seq"] == 2 and len(letter["payload"]["note"]) == 300_000


def test_entry_the_api_refuses_is_dead_lettered_others_in_its_request_written(fake_api, tmp_path):
    # With a client-side limit above the API's, the API itself refuses the entry: with
    # partialSuccess it writes the others and names the failed entry by index.
    dead = tmp_path / "dead.jsonl"
    sink = sink_for(
        fake_api, dead_letter_file=str(dead), max_entry_bytes=1024 * 1024, flush_interval=0.5
    )
    log = make_log(sink)
    for seq in range(10):
        log.emit(schema_id=LAUNCH, data={"seq": seq, "note": "x" * 300_000 if seq == 4 else ""})
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["sent"] == 9 and stats["dead_lettered"] == 1, stats
    assert sorted(seqs(fake_api)) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert [r.status for r in fake_api.requests] == [400]  # one request, partly written
    (letter,) = dead_letters(dead)
    assert letter["payload"]["seq"] == 4
    assert "INVALID_ARGUMENT" in letter["reason"] and "exceeds maximum size of 256.0K" in (
        letter["reason"]
    )


def test_quota_exceeded_and_unavailable_are_retried_then_delivered(fake_api):
    fake_api.fail_next(2, 429, retry_after=0.4)
    fake_api.fail_next(1, 503)
    sink = sink_for(fake_api)
    log = make_log(sink)
    start = time.monotonic()
    for seq in range(20):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    stats = wait_delivered(sink, timeout=30)
    elapsed = time.monotonic() - start
    sink.close()
    assert stats["sent"] == 20 and stats["dead_lettered"] == 0 and stats["retried"] >= 20, stats
    statuses = [r.status for r in fake_api.requests]
    assert statuses[:3] == [429, 429, 503] and statuses[-1] == 200, statuses
    assert elapsed >= 0.8  # RetryInfo's delay was honoured, twice
    assert sorted(seqs(fake_api)) == list(range(20))


def test_permanent_error_dead_letters_the_request_and_the_rest_flows(fake_api, tmp_path):
    dead = tmp_path / "dead.jsonl"
    sink = sink_for(fake_api, dead_letter_file=str(dead))
    log = make_log(sink)
    fake_api.fail_next(1, 400)
    log.emit(schema_id=LAUNCH, data={"seq": 1})
    assert sink.flush(timeout=30)
    for seq in range(2, 6):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["sent"] == 4 and stats["dead_lettered"] == 1, stats
    assert sorted(seqs(fake_api)) == [2, 3, 4, 5]
    (letter,) = dead_letters(dead)
    assert letter["payload"]["seq"] == 1 and "400 INVALID_ARGUMENT" in letter["reason"], letter["reason"]


def test_permission_denied_is_retried_never_dead_lettered(fake_api, tmp_path):
    dead = tmp_path / "dead.jsonl"
    sink = sink_for(fake_api, dead_letter_file=str(dead))
    log = make_log(sink)
    fake_api.fail_next(2, 403)  # until the operator grants roles/logging.logWriter
    for seq in range(1, 6):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["sent"] == 5 and stats["dead_lettered"] == 0 and stats["auth_failures"] == 2, stats
    assert sorted(seqs(fake_api)) == [1, 2, 3, 4, 5]
    assert not dead.exists()


def test_per_entry_errors_retry_or_dead_letter_by_their_own_status(fake_api, tmp_path):
    dead = tmp_path / "dead.jsonl"
    once = Counter()

    def first_time(seq):  # the entry ``seq`` fails the first time only
        def match(entry):
            if entry["jsonPayload"]["seq"] != seq or once[seq]:
                return False
            once[seq] += 1
            return True

        return match

    fake_api.reject_entries(first_time(3), code=14, message="The service is currently unavailable.")
    fake_api.reject_entries(first_time(5), code=7, message="Permission denied on log.")
    fake_api.reject_entries(lambda e: e["jsonPayload"]["seq"] == 6, code=3, message="Invalid entry.")
    sink = sink_for(fake_api, dead_letter_file=str(dead), flush_interval=0.5)
    log = make_log(sink)
    for seq in range(10):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["sent"] == 9 and stats["dead_lettered"] == 1 and stats["retried"] == 2, stats
    assert stats["auth_failures"] == 1, stats  # PERMISSION_DENIED: retried, never dead-lettered
    assert sorted(seqs(fake_api)) == [0, 1, 2, 3, 4, 5, 7, 8, 9]  # 3 and 5 once, after a retry
    (letter,) = dead_letters(dead)
    assert letter["payload"]["seq"] == 6
    assert letter["reason"] == "INVALID_ARGUMENT: Invalid entry."


def test_batches_are_split_by_entries_and_bytes(fake_api):
    sink = sink_for(
        fake_api,
        max_batch_events=5000,
        max_batch_bytes=64 * 1024 * 1024,
        flush_interval=0.5,
        max_request_bytes=200_000,
    )
    log = make_log(sink)
    for seq in range(2500):
        log.emit(schema_id=LAUNCH, data={"seq": seq, "note": "z" * (500 if seq < 500 else 0)})
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["sent"] == 2500 and stats["dead_lettered"] == 0, stats
    requests = fake_api.requests
    assert all(r.status == 200 and r.entries <= 1000 and r.size <= 200_000 for r in requests)
    assert len(requests) >= 4  # 500 big entries need two requests; 2000 small ones two more
    assert sorted(seqs(fake_api)) == list(range(2500))


# ---------------------------------------------------------------------- transports and config


def test_grpc_transport_with_partial_errors_and_quota(fake_grpc_api, tmp_path):
    import grpc
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import logging as gcl
    from google.cloud.logging_v2 import _gapic
    from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client
    from google.cloud.logging_v2.services.logging_service_v2.transports import (
        LoggingServiceV2GrpcTransport,
    )

    # The library's gRPC client, on a plaintext channel to the local stand-in.
    client = gcl.Client(project=PROJECT, credentials=AnonymousCredentials(), _use_grpc=True)
    channel = grpc.insecure_channel(f"127.0.0.1:{fake_grpc_api.grpc_port}")
    gapic = LoggingServiceV2Client(transport=LoggingServiceV2GrpcTransport(channel=channel))
    client._logging_api = _gapic._LoggingAPI(gapic, client)

    dead = tmp_path / "dead.jsonl"
    fake_grpc_api.fail_next(1, 429, retry_after=0.2)
    fake_grpc_api.reject_entries(
        lambda e: e["jsonPayload"]["seq"] == 2, code=3, message="Invalid log entry."
    )
    sink = StackdriverSink(
        client=client, dead_letter_file=str(dead), **{**FAST, "flush_interval": 0.5}
    )  # one batch
    assert "client" not in repr(sink)
    log = make_log(sink)
    sent = [log.emit(schema_id=LAUNCH, data={"seq": seq, "note": "ü"}) for seq in range(5)]
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    channel.close()
    assert stats["sent"] == 4 and stats["dead_lettered"] == 1, stats
    assert [r.transport for r in fake_grpc_api.requests] == ["grpc", "grpc"]
    assert [r.status for r in fake_grpc_api.requests] == [429, 400]
    entries = {e["jsonPayload"]["seq"]: e for e in fake_grpc_api.entries}
    assert sorted(entries) == [0, 1, 3, 4]
    assert entries[0]["jsonPayload"] == {**sent[0], "seq": 0.0, "__schema_version__": 1.0,
                                          "__metadata_version__": 1.0}  # fmt: skip
    assert entries[0]["severity"] == "INFO" and entries[0]["insertId"]
    (letter,) = dead_letters(dead)
    assert letter["payload"]["seq"] == 2 and letter["reason"] == "INVALID_ARGUMENT: Invalid log entry."


def test_service_account_credentials_and_secrets_never_shown(tmp_path, monkeypatch):
    import google.auth.credentials
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    # google-auth looks up a service account's "regional access boundary" at
    # iamcredentials.googleapis.com in the background: not from a test.
    monkeypatch.setattr(
        google.auth.credentials.CredentialsWithRegionalAccessBoundary,
        "_is_regional_access_boundary_lookup_required",
        lambda self: False,
    )

    api = FakeLoggingAPI(require_auth=True).start()
    try:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        key_file = tmp_path / "service-account.json"
        key_file.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": PROJECT,
                    "private_key_id": "0123456789abcdef",
                    "private_key": pem,
                    "client_email": f"events@{PROJECT}.iam.gserviceaccount.com",
                    "client_id": "1234567890",
                    "token_uri": f"{api.url}/token",
                }
            )
        )
        sink = get_sink(
            "stackdriver", credentials_file=str(key_file), api_endpoint=api.url, **FAST
        )  # the project comes from the key file
        log = make_log(sink)
        log.emit(schema_id=LAUNCH, data={"seq": 1})
        stats = wait_delivered(sink, timeout=30)
        sink.close()
        assert stats["sent"] == 1, stats
        (entry,) = api.entries
        assert entry["logName"] == f"projects/{PROJECT}/logs/telemetry-events"
        assert api.tokens  # it authenticated with a token from the key

        # Without credentials, the API refuses (401, retried): no secret in what is shown.
        anonymous = StackdriverSink(
            project=PROJECT, api_endpoint=api.url, anonymous=True, close_timeout=0.2, **FAST
        )
        anonymous.handle_capsule({"__schema__": LAUNCH, "seq": 2})
        assert anonymous.flush(timeout=0.5) is False
        wait_for(lambda: anonymous.stats()["last_error"])
        error = anonymous.stats()["last_error"]
        anonymous.close()
        assert "Anonymous credentials cannot be refreshed" in error  # google-auth's answer to 401
        secret_bits = [pem.splitlines()[1], *api.tokens]
        for text in (repr(sink), json.dumps(sink.stats()), error, repr(anonymous)):
            assert not any(bit in text for bit in secret_bits)
    finally:
        api.stop()


def test_bad_options_fail_at_construction(tmp_path):
    with pytest.raises(SinkConfigError) as info:
        StackdriverSink(log_name="bad name!")
    assert "StackdriverSink option 'log_name'" in str(info.value) and "'bad_name_'" in str(
        info.value
    )
    with pytest.raises(SinkConfigError, match="not a valid template"):
        StackdriverSink(log_name="events.{__schema__")
    with pytest.raises(SinkConfigError, match="not both"):
        StackdriverSink(anonymous=True, credentials_file=str(tmp_path / "k.json"))
    with pytest.raises(SinkConfigError, match="no such file"):
        StackdriverSink(credentials_file=str(tmp_path / "missing.json"))
    with pytest.raises(SinkConfigError, match="maps strings to strings"):
        StackdriverSink(labels={"n": 1})
    with pytest.raises(SinkConfigError, match="must be a google.cloud.logging.Client"):
        StackdriverSink(client=object())
    with pytest.raises(SinkConfigError, match="cannot be used with client"):
        StackdriverSink(client=gcl_client(), api_endpoint="http://127.0.0.1:1")
    with pytest.raises(SinkConfigError, match="has no option 'logname'"):
        StackdriverSink(logname="x")
    assert rfc3339({"__timestamp__": "2024-05-01T10:00:00+02:00"}) == "2024-05-01T08:00:00.000000Z"
    assert rfc3339({"timestamp": "not a time"}) is None


def test_no_project_is_reported_not_fatal(fake_api):
    sink = StackdriverSink(api_endpoint=fake_api.url, close_timeout=0.2, **FAST)
    sink.handle_capsule({"__schema__": LAUNCH, "seq": 1})
    assert sink.flush(timeout=0.5) is False
    wait_for(lambda: "no project" in (sink.stats()["last_error"] or ""))
    error = sink.stats()["last_error"]
    sink.close()
    assert "StackdriverSink has no project" in error and "GOOGLE_CLOUD_PROJECT" in error


def test_capsule_entries_read_from_the_encoded_head_equal_the_decoded_ones():
    from telemetry_sinks.capsule import encode, make_capsule
    from telemetry_sinks.delivery import Envelope

    sink = StackdriverSink(project=PROJECT, anonymous=True, api_endpoint="http://127.0.0.1:9")
    sink._project = PROJECT
    name = json.dumps(sink.log_name_for(None))
    for schema_id in (LAUNCH, 'we"ird\\id'):
        env = Envelope("abc-000000000001", encode(make_capsule(schema_id, 3, {"seq": 1})))
        fast = sink._capsule_entry_head(env, name)
        assert fast is not None and json.loads(fast + "}") == json.loads(sink._entry_head(env) + "}")
    odd = Envelope("abc-2", json.dumps({"__timestamp__": "2026-01-02T03:04:05+01:00", "__schema__": "s",
                                         "__schema_version__": 1}, separators=(",", ":")))
    assert sink._capsule_entry_head(odd, name) is None  # not canonical: decoded and converted
    assert json.loads(sink._entry_head(odd) + "}")["timestamp"] == "2026-01-02T02:04:05.000000Z"
    sink.close()
