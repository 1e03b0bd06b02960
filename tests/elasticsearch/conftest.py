"""Elasticsearch for the Elasticsearch sink's integration tests.

With ``ELASTICSEARCH_URL`` set (docker-compose.test.yml has Elasticsearch 8 on
``http://127.0.0.1:9200``), the tests run against that real Elasticsearch;
only the tests that own a server (``bulk_server``, e.g. to stop it mid-stream) always
use a local one.

Without it, the suite starts osmem-server (in-memory, OpenSearch-compatible, a
binary in the osmem-server wheel) on a free 127.0.0.1 port behind
:class:`ElasticsearchCompatProxy`.  The elasticsearch client 8/9 sends the
versioned media types ``application/vnd.elasticsearch+json; compatible-with=9``
(and ``+x-ndjson``) as Content-Type and Accept; Elasticsearch accepts them,
osmem answers 406.  The proxy rewrites exactly those two request headers to
``application/json`` / ``application/x-ndjson``, and the answer's Content-Type
back to the versioned type the client asked for; it changes nothing else, and
the sink is the same code as in production.

Here Elasticsearch gets the neutral fixtures (``bulk_url``, ``proxy``, ``bulk_server``...)
that ``bulk_sink_cases``, the cases shared with OpenSearch, use: see ``bulk_fixtures``.
"""

from __future__ import annotations

import re

import pytest
from backends import HTTPProxy, env, free_port, osmem_server
from bulk_fixtures import LocalBulkServer, bulk_client, close_sinks_after_test, make_bulk_sink, prefix  # noqa: F401

_VERSIONED = re.compile(r"application/vnd\.elasticsearch\+([\w.+-]+)\s*(?:;\s*compatible-with=(\d+))?")


class ElasticsearchCompatProxy(HTTPProxy):
    """:class:`backends.HTTPProxy` that lets the elasticsearch client talk to osmem (see above)."""

    def request_headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {
            name: _VERSIONED.sub(r"application/\1", value)
            if name.lower() in ("content-type", "accept")
            else value
            for name, value in headers.items()
        }

    def response_headers(self, headers: dict[str, str], request: dict[str, str]) -> dict[str, str]:
        accept = next((v for k, v in request.items() if k.lower() == "accept"), "")
        wanted = _VERSIONED.search(accept)
        out = dict(headers)
        for name, value in headers.items():
            if wanted and name.lower() == "content-type" and value.startswith("application/json"):
                out[name] = f"application/vnd.elasticsearch+json; compatible-with={wanted.group(2)}"
        return out


def _proxy_class(upstream_is_osmem: bool) -> type[HTTPProxy]:
    return ElasticsearchCompatProxy if upstream_is_osmem else HTTPProxy


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """(URL the sink and the reading client use, upstream URL, upstream is osmem)."""
    external = env("ELASTICSEARCH_URL")
    if external:
        yield external.rstrip("/"), external.rstrip("/"), False
        return
    server = osmem_server(free_port(), tmp_path_factory.mktemp("osmem")).start()
    upstream = f"http://127.0.0.1:{server.port}"
    compat = ElasticsearchCompatProxy(upstream).start()
    yield compat.url, upstream, True
    compat.stop()
    server.stop()


@pytest.fixture(scope="session")
def bulk_sink_class():
    """The sink under test: ElasticsearchSink."""
    from telemetry_sinks import ElasticsearchSink

    return ElasticsearchSink


@pytest.fixture(scope="session")
def bulk_client_for():
    """``url -> elasticsearch.Elasticsearch``, to read back what the sink wrote."""
    from elasticsearch import Elasticsearch

    return lambda url: Elasticsearch(url, request_timeout=30)


@pytest.fixture(scope="module")
def bulk_url(backend):
    """URL of the server shared by a module's tests (through the compat proxy for osmem)."""
    return backend[0]


@pytest.fixture
def proxy(backend):
    """A fault-injecting proxy in front of the shared server (rewriting media types for osmem)."""
    _, upstream, is_osmem = backend
    server = _proxy_class(is_osmem)(upstream).start()
    yield server
    server.stop()


@pytest.fixture
def bulk_server(tmp_path):
    """An osmem-server this test owns, behind its compat proxy (``direct_url`` bypasses it)."""
    server = osmem_server(free_port(), tmp_path).start()
    local = LocalBulkServer(server, ElasticsearchCompatProxy(f"http://127.0.0.1:{server.port}").start())
    yield local
    local.stop()
