"""``telemetry-sinks relay`` as a real subprocess, and the Kafka-side helpers of its tests."""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.request
from pathlib import Path

from .servers import ServerProcess, free_port
from .waiting import wait_until

#: Consumer timeouts small enough that the group forms in seconds and a killed member's
#: partitions move within a few seconds (librdkafka's defaults take tens of seconds).
FAST_GROUP = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "topic.metadata.refresh.interval.ms": 1000,
}


class RelayProcess(ServerProcess):
    """A relay configured by a config file of its own; ``port`` is its metrics server."""

    def __init__(self, directory: Path, bootstrap: str, topic: str, group: str, sink_lines: str,
                 relay_lines: str = "") -> None:  # fmt: skip
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        port = free_port()
        config = directory / "relay_config.py"
        config.write_text(
            f"c.Relay.bootstrap_servers = {bootstrap!r}\n"
            f"c.Relay.topics = [{topic!r}]\n"
            f"c.Relay.group_id = {group!r}\n"
            f"c.Relay.consumer_config = {FAST_GROUP!r}\n"
            f"c.Relay.metrics_port = {port}\n"
            "c.Relay.max_poll_records = 200\n"
            "c.Relay.stats_interval = 1.0\n"
            + relay_lines
            + sink_lines
        )
        argv = [sys.executable, "-m", "telemetry_sinks", "relay", "--config", str(config)]
        super().__init__(f"relay-{directory.name}", argv, port, directory)

    def health(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/health", timeout=10) as answer:
            return json.loads(answer.read())

    def stats(self) -> dict:
        return self.health()["relay"]

    def metrics(self) -> str:
        """The Prometheus exposition of ``GET /metrics``."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as answer:
            return answer.read().decode()

    def wait_assigned(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.stats()["partitions"]) != count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} has not {count} partitions: {self.stats()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no round is finished, nothing is committed or closed."""
        self.stop()

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code (the relay drains, commits and closes first)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1)
    for future in admin.create_topics([new]).values():
        future.result(timeout=30)


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (-1001: none), read without joining the group."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


def wait_for(predicate, timeout: float, what: str):
    """``wait_until`` at a pace for requests to a relay or a broker (every 0.1 s)."""
    return wait_until(predicate, timeout, interval=0.1, what=what)
