"""The raw clients: the same delivery work as a sink, with no library around it (the anchors).

Each ``Raw*`` class connects in ``__init__`` (not timed), ``send(capsules)`` delivers
them and returns once every one is acknowledged, and ``close()`` disconnects.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

BATCH = 500  # the sinks' default max_batch_events


def _dumps(capsule: dict[str, Any]) -> str:
    return json.dumps(capsule, separators=(",", ":"))


class RawHTTP:
    """``requests.Session`` POSTing JSON arrays of BATCH capsules; every answer must be 2xx."""

    label = "requests.Session.post, batches of 500"

    def __init__(self, port: int) -> None:
        import requests

        self.url = f"http://127.0.0.1:{port}/api/events"
        self.session = requests.Session()
        self.session.trust_env = False

    def send(self, capsules: list[dict[str, Any]]) -> None:
        post, url = self.session.post, self.url
        headers = {"Content-Type": "application/json"}
        for start in range(0, len(capsules), BATCH):
            body = ("[" + ",".join(map(_dumps, capsules[start : start + BATCH])) + "]").encode()
            response = post(url, data=body, headers=headers, timeout=(5, 30))
            if not 200 <= response.status_code < 300:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")

    def close(self) -> None:
        self.session.close()


class RawKafka:
    """kafka-python ``KafkaProducer.send`` of every capsule, then one ``flush()``; acks="all".

    Each message carries the same three headers the sink adds by default (event_id, schema,
    schema_version), built from the capsule dict: the same work, no library around it.
    """

    label = "KafkaProducer.send each (same 3 headers) + flush()"

    def __init__(self, port: int, flush_every: int = 0) -> None:
        self.flush_every = flush_every
        from kafka import KafkaProducer

        self.topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
        self.producer_id, self.sequence = uuid.uuid4().hex[:16], 0
        self.producer = KafkaProducer(
            bootstrap_servers=f"127.0.0.1:{port}", acks="all", linger_ms=5, batch_size=16384
        )
        self.producer.send(self.topic, b"{}").get(timeout=30)  # topic and connection ready

    def send(self, capsules: list[dict[str, Any]]) -> None:
        send, topic = self.producer.send, self.topic
        step = self.flush_every or len(capsules)
        futures = []
        for start in range(0, len(capsules), step):
            futures.extend(
                send(topic, _dumps(c).encode(), headers=self._headers(c))
                for c in capsules[start : start + step]
            )
            self.producer.flush(timeout=60)
        failed = [f for f in futures if not f.succeeded()]
        if failed:
            raise RuntimeError(f"{len(failed)} messages not acknowledged: {failed[0].exception}")

    def _headers(self, capsule: dict[str, Any]) -> list[tuple[str, bytes]]:
        self.sequence += 1
        return [
            ("event_id", f"{self.producer_id}-{self.sequence:012d}".encode()),
            ("schema", capsule["__schema__"].encode()),
            ("schema_version", str(capsule["__schema_version__"]).encode()),
        ]

    def close(self) -> None:
        self.producer.close(timeout=5)


class RawConfluentKafka:
    """confluent-kafka (librdkafka) ``Producer.produce`` of every capsule, then one ``flush()``;
    acks="all", linger 5 ms, the same three headers as ``RawKafka``, each delivery report checked."""

    label = "confluent_kafka.Producer.produce each (same 3 headers) + flush()"

    def __init__(self, port: int) -> None:
        from confluent_kafka import Producer

        self.topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
        self.producer_id, self.sequence = uuid.uuid4().hex[:16], 0
        self.producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "acks": "all", "linger.ms": 5})
        self.failed: list[Any] = []
        self.producer.produce(self.topic, b"{}")
        if self.producer.flush(30):
            raise RuntimeError("the broker did not acknowledge the first message")

    def _report(self, error: Any, message: Any) -> None:
        if error is not None:
            self.failed.append(error)

    def send(self, capsules: list[dict[str, Any]]) -> None:
        produce, poll, topic, report = self.producer.produce, self.producer.poll, self.topic, self._report
        for capsule in capsules:
            self.sequence += 1
            headers = [
                ("event_id", f"{self.producer_id}-{self.sequence:012d}".encode()),
                ("schema", capsule["__schema__"].encode()),
                ("schema_version", str(capsule["__schema_version__"]).encode()),
            ]
            while True:
                try:
                    produce(topic, _dumps(capsule).encode(), headers=headers, on_delivery=report)
                    break
                except BufferError:  # the local queue is full: serve delivery reports, then again
                    poll(0.05)
        if self.producer.flush(60) or self.failed:
            raise RuntimeError(f"messages not acknowledged: {self.failed[:1]}")

    def close(self) -> None:
        self.producer.flush(5)


class RawCloudWatch:
    """watchtower's ``CloudWatchLogHandler`` alone (its own queue and thread), then ``flush()``."""

    label = "watchtower.CloudWatchLogHandler + flush()"

    def __init__(self, port: int) -> None:
        import boto3
        import watchtower

        client = boto3.client(
            "logs",
            region_name="us-east-1",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.handler = watchtower.CloudWatchLogHandler(
            log_group_name=f"/bench-raw/{uuid.uuid4().hex[:8]}", log_stream_name="raw", boto3_client=client
        )
        self.logger = logging.getLogger(f"bench.raw.cloudwatch.{uuid.uuid4().hex[:6]}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)
        self.logger.info({"warm": "up"})
        self.handler.flush()

    def send(self, capsules: list[dict[str, Any]]) -> None:
        info = self.logger.info
        for capsule in capsules:
            info(capsule)
        self.handler.flush()

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()


class _RawBulk:
    module = ""
    label = ""

    def __init__(self, port: int) -> None:
        import importlib

        lib = importlib.import_module(self.module)
        self.helpers = importlib.import_module(f"{self.module}.helpers")
        cls = lib.OpenSearch if self.module == "opensearchpy" else lib.Elasticsearch
        self.client = cls(hosts=[f"http://127.0.0.1:{port}"], max_retries=0)
        self.index = f"bench-raw-{uuid.uuid4().hex[:8]}"
        self.count = 0

    def send(self, capsules: list[dict[str, Any]]) -> None:
        start = self.count
        self.count += len(capsules)
        actions = (
            {"_op_type": "create", "_index": self.index, "_id": f"raw-{start + i}", "_source": c}
            for i, c in enumerate(capsules)
        )
        ok, errors = self.helpers.bulk(self.client, actions, chunk_size=BATCH, raise_on_error=False)
        if errors:
            raise RuntimeError(f"{len(errors)} bulk errors: {errors[0]}")

    def close(self) -> None:
        self.client.close()


class RawOpenSearch(_RawBulk):
    module = "opensearchpy"
    label = "opensearchpy.helpers.bulk, chunks of 500"


class RawElasticsearch(_RawBulk):
    module = "elasticsearch"
    label = "elasticsearch.helpers.bulk, chunks of 500"


class RawStackdriver:
    """google-cloud-logging: ``logger.batch()`` of BATCH ``log_struct`` entries, ``commit()``."""

    label = "google.cloud.logging Batch.log_struct + commit, 500 a batch"

    def __init__(self, port: int) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import logging as gcl

        self.client = gcl.Client(
            project="bench-project",
            credentials=AnonymousCredentials(),
            _use_grpc=False,
            client_options={"api_endpoint": f"http://127.0.0.1:{port}"},
        )
        self.logger = self.client.logger("bench-raw")

    def send(self, capsules: list[dict[str, Any]]) -> None:
        for start in range(0, len(capsules), BATCH):
            batch = self.logger.batch()
            for capsule in capsules[start : start + BATCH]:
                batch.log_struct(capsule)
            batch.commit()

    def close(self) -> None:
        self.client.close()


RAW = {
    "http": RawHTTP,
    "kafka": RawKafka,
    "cloudwatch": RawCloudWatch,
    "opensearch": RawOpenSearch,
    "elasticsearch": RawElasticsearch,
    "stackdriver": RawStackdriver,
}
