"""Helpers of the CloudWatch sink's tests: moto's server, and reading events back with boto3."""

from __future__ import annotations

import json

import boto3

from helpers.servers import ServerProcess, python_server

REGION = "us-east-1"


def moto_server(port: int, log_dir) -> ServerProcess:
    """moto's server (memory only: a restart forgets every group and event)."""
    argv = ["-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return python_server("moto", argv, port, log_dir)


def logs_client(endpoint: str):
    return boto3.client(
        "logs",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def read_events(endpoint: str, group: str, stream: str | None = None) -> list[dict]:
    """Every event of ``group`` (or one stream of it), read back with filter_log_events."""
    client = logs_client(endpoint)
    kwargs = {"logGroupName": group}
    if stream is not None:
        kwargs["logStreamNames"] = [stream]
    events = []
    while True:
        page = client.filter_log_events(**kwargs)
        events.extend(page["events"])
        token = page.get("nextToken")
        if not token or not page["events"]:
            return events
        kwargs["nextToken"] = token


def payloads(events: list[dict]) -> list[dict]:
    """The events' messages as sent by the application: without the sink's ``__event_id__``."""
    out = []
    for event in events:
        message = json.loads(event["message"])
        message.pop("__event_id__", None)
        out.append(message)
    return out
