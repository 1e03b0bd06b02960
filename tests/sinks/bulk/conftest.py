"""Fixtures of the bulk sinks' tests, on the one harness of :mod:`helpers.bulk`.

``bulk_backend`` is each of Elasticsearch and OpenSearch in turn, so the shared
cases (``test_bulk_contract.py``) run once against each; a backend's own module
(``test_elasticsearch_sink.py``, ``test_opensearch_sink.py``) pins it by defining
``bulk_backend`` itself.  The other fixtures are neutral:

* ``bulk_sink_class``: ``ElasticsearchSink`` or ``OpenSearchSink``;
* ``bulk_url``: the server shared by a module's tests, and ``bulk_client`` on it
  (``bulk_client_for(url)`` on another);
* ``proxy``: a fault-injecting :class:`helpers.servers.HTTPProxy` in front of that server;
* ``bulk_server``: a :class:`helpers.bulk.LocalBulkServer` the test owns and may stop and start;
* ``make_bulk_sink``: a sink of the backend's class with short delays.
"""

from __future__ import annotations

import uuid

import pytest
from helpers.bulk import BULK_BACKENDS
from helpers.events import FAST


@pytest.fixture(scope="module", params=sorted(BULK_BACKENDS))
def bulk_backend(request):
    return BULK_BACKENDS[request.param]


@pytest.fixture(scope="module")
def shared_bulk_server(bulk_backend, tmp_path_factory):
    """(URL the sink and the reading client use, upstream URL, upstream is osmem)."""
    with bulk_backend.shared(tmp_path_factory.mktemp("osmem")) as server:
        yield server


@pytest.fixture(scope="module")
def bulk_sink_class(bulk_backend):
    """The sink under test."""
    return bulk_backend.sink_class()


@pytest.fixture(scope="module")
def bulk_url(shared_bulk_server):
    """URL of the server shared by a module's tests (through the compat proxy for osmem)."""
    return shared_bulk_server[0]


@pytest.fixture(scope="module")
def bulk_client_for(bulk_backend):
    """``url -> client`` of the backend's Python client, to read back what a sink wrote."""
    return bulk_backend.client


@pytest.fixture(scope="module")
def bulk_client(bulk_backend, bulk_url):
    """The backend's Python client on the shared server, to read back what the sink wrote."""
    client = bulk_backend.client(bulk_url)
    yield client
    client.close()


@pytest.fixture
def proxy(bulk_backend, shared_bulk_server):
    """A fault-injecting proxy in front of the shared server (rewriting media types for osmem)."""
    _, upstream, is_osmem = shared_bulk_server
    server = bulk_backend.proxy_class(is_osmem)(upstream).start()
    yield server
    server.stop()


@pytest.fixture
def bulk_server(bulk_backend, tmp_path):
    """An osmem-server this test owns, behind the backend's front (``direct_url`` bypasses it)."""
    local = bulk_backend.own_server(tmp_path)
    yield local
    local.stop()


@pytest.fixture
def prefix():
    """A unique index prefix for one test."""
    return f"ts-{uuid.uuid4().hex[:10]}"


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
