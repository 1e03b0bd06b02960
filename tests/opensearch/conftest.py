"""OpenSearch for the OpenSearch sink's integration tests.

The suite starts osmem-server (an in-memory, OpenSearch-compatible server shipped as
a binary in the osmem-server wheel) on a free 127.0.0.1 port; opensearch-py talks to
it directly.  With ``OPENSEARCH_URL`` set (e.g. ``http://127.0.0.1:9201``), the
tests that do not need to stop the server use that cluster instead.  Faults (429,
401, 413, lost answers) come from :class:`backends.HTTPProxy` in front of it.

osmem-server's own pytest plugin (``osmem_server``/``osmem_clone`` fixtures) is not
used: its base cluster is frozen and shared, while these tests need servers they
can stop and restart on the same port.

This file defines for OpenSearch what ``bulk_fixtures`` describes: the fixtures the
cases shared with Elasticsearch (``bulk_sink_cases``) run on.
"""

from __future__ import annotations

import pytest
from backends import HTTPProxy, env, free_port, osmem_server
from bulk_fixtures import LocalBulkServer, bulk_client, close_sinks_after_test, make_bulk_sink, prefix  # noqa: F401


@pytest.fixture(scope="session")
def bulk_sink_class():
    """The sink under test: OpenSearchSink."""
    from telemetry_sinks import OpenSearchSink

    return OpenSearchSink


@pytest.fixture(scope="session")
def bulk_client_for():
    """``url -> opensearchpy.OpenSearch``, to read back what the sink wrote."""
    from opensearchpy import OpenSearch

    return lambda url: OpenSearch(hosts=[url], timeout=30)


@pytest.fixture(scope="module")
def bulk_url(tmp_path_factory):
    """URL of a cluster shared by a module's tests."""
    external = env("OPENSEARCH_URL")
    if external:
        yield external.rstrip("/")
        return
    server = osmem_server(free_port(), tmp_path_factory.mktemp("osmem")).start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture
def proxy(bulk_url):
    """A fault-injecting proxy in front of the shared cluster."""
    server = HTTPProxy(bulk_url).start()
    yield server
    server.stop()


@pytest.fixture
def bulk_server(tmp_path):
    """An osmem-server this test owns, reached directly (no proxy in front)."""
    local = LocalBulkServer(osmem_server(free_port(), tmp_path).start())
    yield local
    local.stop()
