"""OpenSearch for the OpenSearch sink's integration tests.

The suite starts osmem-server (an in-memory, OpenSearch-compatible server shipped as
a binary in the osmem-server wheel) on a free 127.0.0.1 port; opensearch-py talks to
it directly.  With ``OPENSEARCH_URL`` set (e.g. ``http://127.0.0.1:9201``), the
tests that do not need to stop the server use that cluster instead.  Faults (429,
401, 413, lost answers) come from :class:`backends.HTTPProxy` in front of it.

osmem-server's own pytest plugin (``osmem_server``/``osmem_clone`` fixtures) is not
used: its base cluster is frozen and shared, while these tests need servers they
can stop and restart on the same port.
"""

from __future__ import annotations

import pytest
from backends import HTTPProxy, env, free_port, osmem_server
from bulk_fixtures import close_sinks_after_test, prefix  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def opensearch_url(tmp_path_factory):
    """URL of a cluster shared by a module's tests."""
    external = env("OPENSEARCH_URL")
    if external:
        yield external.rstrip("/")
        return
    server = osmem_server(free_port(), tmp_path_factory.mktemp("osmem")).start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture(scope="module")
def os_client(opensearch_url):
    """An opensearch-py client to read back what the sink wrote."""
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[opensearch_url], timeout=30)
    yield client
    client.close()


@pytest.fixture
def proxy(opensearch_url):
    """A fault-injecting proxy in front of the shared cluster."""
    server = HTTPProxy(opensearch_url).start()
    yield server
    server.stop()


@pytest.fixture
def local_osmem(tmp_path):
    """An osmem-server this test owns: it may stop and restart it (same port, empty again)."""
    server = osmem_server(free_port(), tmp_path).start()
    yield server
    server.stop()
