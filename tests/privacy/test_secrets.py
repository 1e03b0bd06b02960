"""Secrets never show: not in logs (every logger at DEBUG, the clients' too), reprs, stats,
dead letters, spool files, exceptions or the collector's output.

Every option tagged ``secret=True`` of every network sink is found by
introspection and given a distinctive value; then the sink works against its real
backend, against a port where nothing listens, and misconfigured, and everything
observable is searched for the value.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import pytest
from helpers.harness import BACKENDS, CollectorServer, available_backends, free_port
from helpers.privacy import POLICY, PSID, SCHEMA, private_event

from telemetry_sinks import EventLog, SinkConfigError

pytestmark = [pytest.mark.integration]


#: Values for dict-valued secret options, as a working configuration would have them.
WORKING = {
    "headers": lambda token: {"X-Api-Key": token},
    "producer_config": lambda token: {"sasl_plain_password": token},
    "client_options": lambda token: {"headers": {"x-api-key": token}},
}
#: Realistic mistakes that make a client quote the value back in its error.
BROKEN = {
    # A value read from a file with its newline: requests refuses the header and quotes it.
    "headers": lambda token: {"X-Api-Key": token + "\n"},
    "token": lambda token: token + "\n",
    # A misspelled option: kafka-python answers "Unrecognized configs: {...}" with the values.
    "producer_config": lambda token: {"sasl_plain_passwrd": token},
}
#: Sinks that speak to their backend through the standard library alone (no client's DEBUG logs).
OWN_TRANSPORT = {"http"}
#: Third-party clients that log secrets at DEBUG themselves (findings; not filterable here).
CLIENT_DEBUG_FINDINGS = {
    "cloudwatch": "botocore logs the signing details at DEBUG (x-amz-security-token, "
                  "Credential=<access key id>)",
    "elasticsearch": "elastic_transport logs every request header but Authorization at DEBUG: "
                     "a secret header in client_options shows",
    "opensearch": "opensearch-py logs request headers at DEBUG: a secret header in client_options shows",
}


def secret_options(cls: type, broken: bool = False) -> tuple[dict[str, object], dict[str, str]]:
    """A distinctive value for every option of ``cls`` tagged ``secret=True``, and the words to
    search for by option (``Any`` secrets, a ready client object, have no string to search)."""
    values: dict[str, object] = {}
    words: dict[str, str] = {}
    for name in sorted(cls.class_trait_names(secret=True)):
        kind = type(cls.class_traits()[name]).__name__
        token = f"S3CR3T{uuid.uuid4().hex[:12]}"
        if broken and name in BROKEN:
            values[name] = BROKEN[name](token)
        elif kind == "Unicode":
            values[name] = token
        elif kind == "Dict":
            values[name] = WORKING.get(name, lambda t: {"x_option": t})(token)
        else:
            continue
        words[name] = token
    return values, words


def own_observables(sink, caplog) -> str:
    """What the sink and telemetry_sinks show: repr, stats, its files, its logs, every log
    record at INFO or above (any logger), exceptions attached to records."""
    parts = [repr(sink), str(sink.stats())]
    for record in caplog.records:
        if record.name.startswith("telemetry_sinks") or record.levelno >= logging.INFO:
            parts += [record.getMessage(), str(record.args)]
            if record.exc_info and record.exc_info[1] is not None:
                parts.append(repr(record.exc_info[1]))
    if sink.spool_dir:
        for path in Path(sink.spool_dir).rglob("*"):
            if path.is_file():
                parts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def third_party_debug(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records
                     if not r.name.startswith("telemetry_sinks") and r.levelno < logging.INFO)


@pytest.fixture
def debug_logs(caplog):
    caplog.set_level(logging.DEBUG)
    noisy = ["urllib3", "requests", "kafka", "botocore", "boto3", "elastic_transport", "elasticsearch",
             "opensearch", "google", "grpc", "telemetry_sinks", "tornado"]
    for name in noisy:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield caplog
    for name in noisy:
        logging.getLogger(name).setLevel(logging.NOTSET)


def with_secret_options() -> list[str]:
    """The available network sinks that have string options tagged ``secret=True``."""
    return [name for name in available_backends() if secret_options(BACKENDS[name][0].sink_class())[0]]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", with_secret_options())
def test_secret_options_never_show_anywhere(name, backend_factory, debug_logs, tmp_path):
    cls = BACKENDS[name][0].sink_class()
    secrets, words = secret_options(cls)
    broken, broken_words = secret_options(cls, broken=True)
    backend = backend_factory(name)
    own: list[str] = []

    def exercise(sink) -> None:
        log = EventLog(handlers=[sink], allowed_schemas=POLICY)
        log.register_schema(SCHEMA)
        for seq in range(5):
            log.emit(schema_id=PSID, data=private_event(seq))
        sink.flush(timeout=3)
        time.sleep(0.3)
        own.append(own_observables(sink, debug_logs))
        sink.close()
        own.append(own_observables(sink, debug_logs))

    # 1. Working secrets against the real backend (which may refuse or ignore them).
    exercise(backend.make_sink(**secrets, spool_dir=str(tmp_path / "spool-1"), close_timeout=1.0))
    # 2. Mistaken secrets (a trailing newline, a misspelled option) that the client quotes back.
    exercise(backend.make_sink(**broken, spool_dir=str(tmp_path / "spool-2"), close_timeout=1.0))
    # 3. Against a port where nothing listens: connection errors, retries, spooling.
    down = {**backend.hanging_options(f"http://127.0.0.1:{free_port()}", free_port()), **secrets}
    down.update({key: 2.0 for key in ("read_timeout", "request_timeout", "ack_timeout") if key in down})
    exercise(cls(**down, spool_dir=str(tmp_path / "spool-3"), close_timeout=1.0, flush_interval=0.01,
                 retry_initial_backoff=0.05))
    # 4. A secret option of the wrong type: the error names the option, never the value.
    for option, value in secrets.items():
        wrong = [value] if isinstance(value, str) else str(value)
        with pytest.raises(SinkConfigError) as error:
            cls(**{**backend.sink_options(), option: wrong})
        own.append(str(error.value) + repr(error.value))
    text = "\n".join(own)
    everything = {**{f"{k} (working)": v for k, v in words.items()},
                  **{f"{k} (mistaken)": v for k, v in broken_words.items()}}
    leaked = [option for option, word in everything.items() if word in text]
    assert not leaked, f"{cls.__name__}: the values of secret options {leaked} showed up"
    # The clients' own DEBUG logs (urllib3, kafka, botocore, elastic_transport, ...).
    debug = third_party_debug(debug_logs)
    if name in OWN_TRANSPORT:  # no client library: nothing but our own records to log
        assert not debug, f"{cls.__name__}: unexpected DEBUG records of a client library: {debug[:300]}"
        return
    assert debug, "no DEBUG records from the clients: the check would be empty"
    leaked = [option for option, word in everything.items() if word in debug]
    if leaked and name in CLIENT_DEBUG_FINDINGS:
        pytest.xfail(f"finding: {CLIENT_DEBUG_FINDINGS[name]}: {leaked}")
    assert not leaked, f"{cls.__name__}: a client logged the values of secret options {leaked} at DEBUG"


@pytest.mark.timeout(90)
def test_the_collector_token_never_shows_in_its_output_or_the_sink_side(debug_logs, tmp_path):
    token = f"tok-{uuid.uuid4().hex}"
    collector = CollectorServer(tmp_path / "collector", schemas=[SCHEMA], allowed_schemas=POLICY,
                                token=token).start()
    try:
        from telemetry_sinks import HTTPSink

        good = HTTPSink(url=collector.url, token=token, flush_interval=0.01,
                        spool_dir=str(tmp_path / "spool-good"))
        bad = HTTPSink(url=collector.url, token=token[:-1] + "x", flush_interval=0.01,
                       spool_dir=str(tmp_path / "spool-bad"))
        log = EventLog(handlers=[good, bad], allowed_schemas=POLICY)
        log.register_schema(SCHEMA)
        for seq in range(3):
            log.emit(schema_id=PSID, data=private_event(seq))
        assert good.flush(10)
        assert not bad.flush(1)  # 401: the events are kept and retried, never acknowledged
        stats = bad.stats()
        assert stats["dead_lettered"] == 0 and stats["auth_failures"] >= 1 and "401" in stats["last_error"]
        good_seen = own_observables(good, debug_logs) + third_party_debug(debug_logs)
        bad_seen = own_observables(bad, debug_logs)
        good.close()
        bad.close()
    finally:
        collector.stop()
    assert len(collector.received()) == 3
    config = (collector.log_path.parent / "collector_config.py").read_bytes()  # holds the token
    output = collector.all_output().replace(config, b"")
    for text in (good_seen, bad_seen, output.decode("utf-8", "replace")):
        assert token not in text and token[:-1] not in text


# ---------------------------------------------------------------------- the pseudonym key


def key_sources() -> list[str]:
    """EventLog options naming where a secret is read from (tagged ``secret_source``), by introspection."""
    return sorted(EventLog.class_trait_names(secret_source=lambda kind: kind is not None))


PSEUDONYMIZING = {PSID: {"allowed_categories": [], "round_timestamp": "minute",
                         "category_actions": {"user-identifier": "pseudonymize"},
                         "property_actions": {"client.ip": {"generalize": "ip_network"},
                                              "files[].path": "pseudonymize"}}}


def addressed_event(seq: int) -> dict:
    """``private_event`` with a real IP address (the policy generalizes it)."""
    event = private_event(seq)
    event["client"]["ip"] = "203.0.113.77"
    return event


def provide_key(option: str, secret: str, tmp_path: Path, monkeypatch) -> str:
    """The value of ``option`` that makes EventLog read ``secret`` (a file path or a variable name)."""
    kind = EventLog.class_traits()[option].metadata["secret_source"]
    if kind == "file":
        path = tmp_path / f"key-{uuid.uuid4().hex[:6]}"
        path.write_text(secret + "\n")
        return str(path)
    assert kind == "env", f"a secret_source kind this test does not know: {kind!r}"
    name = f"PRIVACY_TEST_KEY_{uuid.uuid4().hex[:6].upper()}"
    monkeypatch.setenv(name, secret)
    return name


def test_the_introspection_finds_the_key_options():
    assert key_sources() == ["pseudonym_key_env", "pseudonym_key_file"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("option", key_sources())
def test_the_pseudonym_key_never_shows_anywhere(option, debug_logs, tmp_path, monkeypatch):
    import json

    from helpers.privacy import ALLOWED, LocalSinks, local_kinds

    from telemetry_sinks import EventValidationError, HTTPSink
    from telemetry_sinks.describe import describe

    secret = f"K3Y{uuid.uuid4().hex}"
    value = provide_key(option, secret, tmp_path, monkeypatch)
    seen: list[str] = []

    # 1. Every local sink, the plan and its description, the pages, reprs, config and stats.
    local = LocalSinks(tmp_path / "local")
    kinds = local_kinds()
    handlers = [local.make(kind) for kind in kinds]
    log = EventLog(handlers=handlers, allowed_schemas=PSEUDONYMIZING, load_schema_entry_points=False,
                   **{option: value})
    log.register_schema(SCHEMA)
    capsules = [log.emit(schema_id=PSID, data=addressed_event(seq)) for seq in range(5)]
    pseudonym = capsules[0]["username"]
    assert pseudonym.startswith(log.pseudonym_key.id + ":") and pseudonym != ALLOWED["username"]
    with pytest.raises(EventValidationError) as error:
        log.emit(schema_id=PSID, data={**private_event(9), "client": {"ip": "not-an-ip"}})
    seen += [str(error.value), repr(error.value), error.value.reason]
    seen += [repr(log), repr(log.pseudonym_key), str(log.config), repr(log.redaction_plan(PSID)),
             json.dumps(log.describe_redaction(PSID)), describe(log, "html"), describe(log, "md"),
             json.dumps(capsules)]
    seen += [repr(h) for h in handlers]
    for handler in handlers:
        handler.flush()
        handler.close()
    seen += [local.output(kind).decode("utf-8", "replace") for kind in kinds]

    # 2. The collector configured with the same option: its logs, pages, answers and files.
    extra = f"c.EventLog.{option} = {value!r}\n"
    collector = CollectorServer(tmp_path / "collector", schemas=[SCHEMA], allowed_schemas=PSEUDONYMIZING,
                                extra_config=extra).start()
    try:
        sink = HTTPSink(url=collector.url, flush_interval=0.01, spool_dir=str(tmp_path / "spool"))
        client = EventLog(handlers=[sink], allowed_schemas=[PSID], load_schema_entry_points=False)
        client.register_schema(SCHEMA)
        # A client that knows nothing of the key: the collector applies the plan before its sinks.
        for seq in range(3):
            sink.handle_capsule({"__timestamp__": "2024-05-06T07:08:09.123456Z", "__schema__": PSID,
                                 "__schema_version__": 1, "__metadata_version__": 1, **addressed_event(seq)})
        assert sink.flush(10)
        seen.append(own_observables(sink, debug_logs))
        sink.close()
        import urllib.request

        for path in ("/", "/?format=md", "/api/health", "/api/schemas"):
            with urllib.request.urlopen(collector.base_url + path, timeout=10) as answer:
                seen.append(answer.read().decode("utf-8", "replace"))
    finally:
        collector.stop()
    received = collector.received()
    assert len(received) == 3
    assert received[0]["username"] == pseudonym  # the same key: the same pseudonym as in this process
    assert received[0]["__timestamp__"] == "2024-05-06T07:08:00.000000Z"
    assert received[0]["client"]["ip"] == "203.0.113.0"
    # The collector and the Python EventLog record exactly the same capsule.
    same = log.prepare(PSID, 1, addressed_event(0), "2024-05-06T07:08:09.123456Z")
    assert {k: v for k, v in received[0].items() if k != "__event_id__"} == same
    seen.append(collector.all_output().decode("utf-8", "replace"))

    # 3. A key too short: the error names where it came from, never what it is.
    short = f"S{uuid.uuid4().hex[:8]}"
    with pytest.raises(Exception) as error:
        EventLog(allowed_schemas=PSEUDONYMIZING, load_schema_entry_points=False,
                 **{option: provide_key(option, short, tmp_path, monkeypatch)})
    seen += [str(error.value), repr(error.value)]

    seen += [record.getMessage() + str(record.args) for record in debug_logs.records]
    everything = "\n".join(seen)
    assert secret not in everything, f"the pseudonym key read through {option} showed up"
    assert short not in everything
