"""Scenario 10: the relay (Kafka -> sinks) against a raw consumer loop, and its lag recovery.

Ours: :class:`telemetry_sinks.relay.Relay` (in a thread of this process, a consumer group
of its own per run) reading a Tansu topic of N capsules (4 partitions) into the archive
sink, and into the HTTP sink posting to the bench's fast endpoint.  Time runs from the
first message consumed until every message is committed (``stats()["delivered"] == N``).

The anchor is the raw consumer loop an operator would otherwise write with the same
client (confluent-kafka): ``consume(1000)``, decode each message, write the batch (one
``os.write`` of the JSON lines / one ``requests`` POST per 500), commit synchronously.

Lag recovery: capsules are produced at a steady rate while no relay runs (30 s of
production, 10 s with ``--quick``); then the relay starts while production goes on, and
the time until it has caught up (everything produced so far committed) is measured.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

import orjson

from .backends import Servers, fast_http, free_port, tansu
from .common import ScenarioResult, Settings, Table, fmt_num, median, progress, spread
from .events import sample_capsules

PARTITIONS = 4
GROUP_TIMEOUTS = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def _produce(bootstrap: str, topic: str, capsules: list[dict[str, Any]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    for seq, capsule in enumerate(capsules):
        headers = [("event_id", f"bench-{seq:012d}".encode()), ("schema", capsule["__schema__"].encode()),
                   ("schema_version", str(capsule["__schema_version__"]).encode())]  # fmt: skip
        while True:
            try:
                producer.produce(topic, orjson.dumps(capsule), headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("the topic could not be filled")


def _create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS)]).values():
        future.result(timeout=30)


def run_relay(bootstrap: str, topic: str, handler: Any, expected: int, timeout: float = 300) -> float:
    """Seconds from the relay's first consumed message until ``expected`` are committed."""
    from telemetry_sinks.relay import Relay

    relay = Relay(bootstrap_servers=bootstrap, topics=[topic], group_id=f"bench-{uuid.uuid4().hex[:8]}",
                  handlers=[handler], consumer_config=GROUP_TIMEOUTS, stats_interval=0)  # fmt: skip
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    start = None
    try:
        while True:
            stats = relay.stats()
            if start is None and stats["consumed"]:
                start = time.perf_counter()
            if stats["delivered"] >= expected:
                return time.perf_counter() - (start or time.perf_counter())
            if time.monotonic() > deadline:
                raise RuntimeError(f"relay did not deliver {expected} in {timeout} s: {stats}")
            time.sleep(0.002)
    finally:
        relay.stop()
        thread.join(60)


def run_raw(bootstrap: str, topic: str, deliver: Any, expected: int, timeout: float = 300) -> float:
    """The raw loop: consume(1000), decode, ``deliver(lines)``, commit; seconds as for the relay."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest", **GROUP_TIMEOUTS})
    consumer.subscribe([topic])
    done, start = 0, None
    deadline = time.monotonic() + timeout
    try:
        while done < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"raw consumer read {done} of {expected}")
            messages = consumer.consume(1000, 0.5)
            if not messages:
                continue
            if start is None:
                start = time.perf_counter()
            lines = []
            for message in messages:
                payload = orjson.loads(message.value())
                if isinstance(payload, dict):
                    lines.append(message.value().decode())
            deliver(lines)
            consumer.commit(asynchronous=False)
            done += len(messages)
        return time.perf_counter() - (start or time.perf_counter())
    finally:
        consumer.close()


class _SameSink:
    """The raw loop handing each message to the relay's own sink: the relay's overhead alone."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def __call__(self, lines: list[str]) -> None:
        handle = self.sink.handle_capsule
        for line in lines:
            handle(orjson.loads(line))
        settled = self.sink.flush(float("inf")) if hasattr(self.sink, "stats") else self.sink.flush()
        if settled is False:
            raise RuntimeError("the sink did not settle")

    def close(self) -> None:
        self.sink.close()


class _FileTarget:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def __call__(self, lines: list[str]) -> None:
        data = ("\n".join(lines) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def close(self) -> None:
        os.close(self.fd)


class _HTTPTarget:
    def __init__(self, url: str) -> None:
        import requests

        self.url, self.session = url, requests.Session()
        self.session.trust_env = False

    def __call__(self, lines: list[str]) -> None:
        for start in range(0, len(lines), 500):
            body = ("[" + ",".join(lines[start : start + 500]) + "]").encode()
            answer = self.session.post(self.url, data=body, headers={"Content-Type": "application/json"},
                                       timeout=30)  # fmt: skip
            answer.raise_for_status()

    def close(self) -> None:
        self.session.close()


def _lag_recovery(settings: Settings, bootstrap: str, workdir: Any, result: ScenarioResult) -> Table:
    from telemetry_sinks import ArchiveSink
    from telemetry_sinks.relay import Relay

    down = settings.pick(30.0, 10.0)
    rate = settings.pick(5000, 2000)
    topic = f"bench-lag-{uuid.uuid4().hex[:8]}"
    _create_topic(bootstrap, topic)
    capsules = sample_capsules(2000)
    produced = [0]
    stop = threading.Event()

    def producer() -> None:
        from confluent_kafka import Producer

        client = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
        start = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - start) * rate)
            while produced[0] < due:
                capsule = capsules[produced[0] % len(capsules)]
                client.produce(topic, orjson.dumps(capsule), headers=[("event_id", b"lag-%d" % produced[0])])
                produced[0] += 1
            client.poll(0)
            time.sleep(0.005)
        client.flush(60)

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    time.sleep(down)
    backlog = produced[0]
    sink = ArchiveSink(directory=str(workdir / "lag-archive"))
    relay = Relay(bootstrap_servers=bootstrap, topics=[topic], group_id=f"bench-lag-{uuid.uuid4().hex[:6]}",
                  handlers=[sink], consumer_config=GROUP_TIMEOUTS, stats_interval=0)  # fmt: skip
    runner = threading.Thread(target=relay.run, daemon=True)
    started = time.perf_counter()
    runner.start()
    first = caught_up = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            stats = relay.stats()
            if first is None and stats["consumed"]:
                first = time.perf_counter()
            if stats["delivered"] >= produced[0] - rate * 0.05 and stats["delivered"] >= backlog:
                caught_up = time.perf_counter()
                break
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(60)
        relay.stop()
        runner.join(60)
        sink.close()
    table = Table(
        f"Relay lag recovery: {rate:,} events/s produced, relay down for {down:.0f} s, then started "
        "while production goes on (Tansu -> archive sink)",
        ["backlog when started", "group join", "caught up after (from first message)", "catch-up rate"],
    )
    if caught_up is None or first is None:
        table.add(f"{backlog:,}", "-", "not within 300 s", "-")
        return table
    catch_up = caught_up - first
    table.add(f"{backlog:,}", f"{first - started:.1f} s", f"{catch_up:.1f} s",
              f"{fmt_num((backlog + rate * catch_up) / catch_up)} events/s")  # fmt: skip
    result.data["lag_recovery"] = {"backlog": backlog, "rate": rate, "down_s": down,
                                   "join_s": first - started, "catch_up_s": catch_up}  # fmt: skip
    table.notes.append("catch-up rate: (backlog + what was produced meanwhile) / catch-up time; the relay "
                       "catches up while production goes on as long as it exceeds the production rate.")
    return table


def run(settings: Settings) -> ScenarioResult:
    from telemetry_sinks import ArchiveSink, HTTPSink

    result = ScenarioResult("relay", "10. Relay: Kafka topic -> sinks, against a raw consumer loop")
    n = settings.pick(50_000, 10_000)
    capsules = sample_capsules(n)
    workdir = settings.workdir / "relay"
    workdir.mkdir(parents=True, exist_ok=True)
    table = Table(
        f"Relay throughput, events/s from a Tansu topic ({PARTITIONS} partitions, {n:,} capsules) to a "
        "sink, until all committed (median of repetitions; min-max in brackets)",
        ["target", "relay", "raw loop, same sink", "relay / same sink", "raw loop, own write (floor)",
         "relay / floor"],
    )  # fmt: skip
    kinds = {
        "archive sink": (
            lambda rep: ArchiveSink(directory=str(workdir / f"archive-{rep}")),
            lambda rep: _FileTarget(str(workdir / f"raw-{rep}.jsonl")),
        ),
        "HTTP sink -> fast endpoint": (
            lambda rep: HTTPSink(url=url, dead_letter_file=str(workdir / "dead.jsonl"), close_timeout=5.0),
            lambda rep: _HTTPTarget(url),
        ),
    }
    with Servers(workdir / "servers") as servers, progress(settings.reps * 6, "relay", "runs",
                                                           settings.progress) as bar:  # fmt: skip
        broker = servers.start(tansu(free_port(), servers.log_dir))
        http_port = servers.start(fast_http(free_port(), servers.log_dir)).port
        bootstrap = f"127.0.0.1:{broker.port}"
        topic = f"bench-relay-{uuid.uuid4().hex[:8]}"
        _create_topic(bootstrap, topic)
        _produce(bootstrap, topic, capsules)
        url = f"http://127.0.0.1:{http_port}/api/events"
        for key, (make_sink, make_floor) in kinds.items():
            ours, same, floor = [], [], []
            for rep in range(settings.reps):
                sink = make_sink(rep)
                ours.append(n / run_relay(bootstrap, topic, sink, n))
                sink.close()
                bar.update(1)
                target = _SameSink(make_sink(f"same-{rep}"))
                same.append(n / run_raw(bootstrap, topic, target, n))
                target.close()
                bar.update(1)
                target = make_floor(rep)
                floor.append(n / run_raw(bootstrap, topic, target, n))
                target.close()
                bar.update(1)
            table.add(key, f"{fmt_num(median(ours))} ({spread(ours)})",
                      f"{fmt_num(median(same))} ({spread(same)})", f"{median(ours) / median(same):.2f}",
                      f"{fmt_num(median(floor))} ({spread(floor)})", f"{median(ours) / median(floor):.2f}")
            result.data[key] = {"relay_events_per_s": ours, "raw_same_sink_events_per_s": same,
                                "raw_floor_events_per_s": floor}  # fmt: skip
        table.notes.append(
            "relay: max_poll_records=1000 per round; each round is handed to the sink, flushed (for the "
            "HTTP sink: acknowledged by the endpoint) and committed before the next. Raw loop: "
            "consume(1000), orjson.loads each message, then either the same sink (handle_capsule per "
            "message, flush per batch) or its own write: one os.write of the lines / requests POSTs of "
            "500 (no per-day files, no index, no event ids, no retries); commit(asynchronous=False). All "
            "in this process, one after the other, each run a consumer group of its own."
        )
        result.tables.append(table)
        result.tables.append(_lag_recovery(settings, bootstrap, workdir, result))
    return result
