"""Fixtures shared by the Elasticsearch and OpenSearch sinks' tests (one bulk mechanism, one set).

Each backend's conftest.py imports these and defines the backend's own neutral fixtures,
which the shared cases of ``bulk_sink_cases`` use:

* ``bulk_sink_class``: ``ElasticsearchSink`` or ``OpenSearchSink``;
* ``bulk_client_for``: ``url -> client`` of that backend's Python client, to read back;
* ``bulk_url``: the server shared by a module's tests;
* ``proxy``: a fault-injecting :class:`backends.HTTPProxy` in front of that server;
* ``bulk_server``: a :class:`LocalBulkServer` the test owns and may stop and start.
"""

from __future__ import annotations

import uuid

import pytest

#: Short delivery delays, so that the tests do not wait for the production defaults.
FAST = {"flush_interval": 0.05, "retry_initial_backoff": 0.1, "retry_max_backoff": 0.5}


class LocalBulkServer:
    """An osmem-server a test owns, possibly behind a proxy (``front``), on fixed ports.

    ``stop()`` stops the proxy first (it cuts the open connections, so clients see
    connection errors), then the server; ``start()`` brings both back on the same
    ports.  osmem keeps everything in memory: it comes back empty.
    """

    def __init__(self, server, front=None) -> None:
        self.server = server
        self.front = front

    @property
    def direct_url(self) -> str:
        """The server itself, bypassing ``front``."""
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def url(self) -> str:
        """Where clients and sinks connect: ``front`` if there is one."""
        return self.front.url if self.front is not None else self.direct_url

    def stop(self) -> None:
        if self.front is not None:
            self.front.stop()
        self.server.stop()

    def start(self) -> None:
        self.server.start()
        if self.front is not None:
            self.front.start()


@pytest.fixture
def prefix():
    """A unique index prefix for one test."""
    return f"ts-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def bulk_client(bulk_client_for, bulk_url):
    """The backend's Python client on the shared server, to read back what the sink wrote."""
    client = bulk_client_for(bulk_url)
    yield client
    client.close()


@pytest.fixture
def make_bulk_sink(bulk_sink_class):
    """``make(url, prefix, **options)``: a sink of the backend's class with short delays,
    writing to ``<prefix>-<schema>-<day>`` unless ``index`` says otherwise."""

    def make(url: str, prefix: str, **options):
        options = {**FAST, "index": f"{prefix}-{{__schema__}}-%Y.%m.%d", **options}
        return bulk_sink_class(hosts=[url], **options)

    return make


@pytest.fixture(autouse=True)
def close_sinks_after_test(monkeypatch):
    """Close every sink a test made, also when the test fails.

    A sink left open with undelivered events would hold up a later
    ``logging.config.dictConfig()``, which flushes every handler of the process.
    """
    from telemetry_sinks.sinks._bulk import BulkIndexSink

    made = []
    original = BulkIndexSink.__init__

    def recording_init(self, **options):
        made.append(self)
        original(self, **options)

    monkeypatch.setattr(BulkIndexSink, "__init__", recording_init)
    yield
    for sink in made:
        sink.close()
