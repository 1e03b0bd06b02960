"""The Elasticsearch and OpenSearch backends of the bulk sinks' tests, and what their cases share.

One harness for both backends: a :class:`BulkBackend` says how to reach a server
shared by a module's tests, put a fault-injecting proxy in front of it, start a
server a test owns, build the sink and read back what it wrote.

* OpenSearch: osmem-server (an in-memory, OpenSearch-compatible server shipped as a
  binary in the osmem-server wheel) on a free 127.0.0.1 port; with ``OPENSEARCH_URL``
  set, the tests that do not stop the server use that cluster.
* Elasticsearch: with ``ELASTICSEARCH_URL`` set (docker-compose.test.yml has
  Elasticsearch 8), a real Elasticsearch; otherwise osmem-server behind
  :class:`ElasticsearchCompatProxy`.  The elasticsearch client 8/9 sends the versioned
  media types ``application/vnd.elasticsearch+json; compatible-with=9`` (and
  ``+x-ndjson``) as Content-Type and Accept; Elasticsearch accepts them, osmem answers
  406.  The proxy rewrites exactly those two request headers to ``application/json`` /
  ``application/x-ndjson``, and the answer's Content-Type back to the versioned type the
  client asked for; it changes nothing else, and the sink is the same code as in
  production.

osmem-server's own pytest plugin is not used: its base cluster is frozen and shared,
while these tests need servers they can stop and restart on the same port.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

from helpers.events import LAUNCH, make_log
from helpers.servers import HTTPProxy, env, free_port, osmem_server, search_hits, wait_delivered

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


class BulkBackend:
    """One backend of the bulk sinks: its sink class, client, servers and proxy."""

    name = ""
    #: The variable naming an external server (the shared server is then that one).
    url_variable = ""

    def sink_class(self) -> type:
        raise NotImplementedError

    def client(self, url: str) -> Any:
        """The backend's own Python client on ``url``, to read back what a sink wrote."""
        raise NotImplementedError

    def proxy_class(self, upstream_is_osmem: bool) -> type[HTTPProxy]:
        return HTTPProxy

    @contextlib.contextmanager
    def shared(self, directory: Any) -> Iterator[tuple[str, str, bool]]:
        """(URL sinks and clients use, upstream URL, upstream is osmem) of a shared server."""
        external = env(self.url_variable)
        if external:
            yield external.rstrip("/"), external.rstrip("/"), False
            return
        server = osmem_server(free_port(), directory).start()
        upstream = f"http://127.0.0.1:{server.port}"
        front = self.front(upstream)
        try:
            yield (front.url if front is not None else upstream), upstream, True
        finally:
            if front is not None:
                front.stop()
            server.stop()

    def front(self, upstream: str) -> HTTPProxy | None:
        """What stands between clients and an osmem-server (None: nothing)."""
        return None

    def own_server(self, directory: Any) -> LocalBulkServer:
        """An osmem-server a test owns (and may stop), behind this backend's front."""
        server = osmem_server(free_port(), directory).start()
        return LocalBulkServer(server, self.front(f"http://127.0.0.1:{server.port}"))


class OpenSearchBackend(BulkBackend):
    name = "opensearch"
    url_variable = "OPENSEARCH_URL"

    def sink_class(self) -> type:
        from telemetry_sinks import OpenSearchSink

        return OpenSearchSink

    def client(self, url: str) -> Any:
        from opensearchpy import OpenSearch

        return OpenSearch(hosts=[url], timeout=30)


class ElasticsearchBackend(BulkBackend):
    name = "elasticsearch"
    url_variable = "ELASTICSEARCH_URL"

    def sink_class(self) -> type:
        from telemetry_sinks import ElasticsearchSink

        return ElasticsearchSink

    def client(self, url: str) -> Any:
        from elasticsearch import Elasticsearch

        return Elasticsearch(url, request_timeout=30)

    def proxy_class(self, upstream_is_osmem: bool) -> type[HTTPProxy]:
        return ElasticsearchCompatProxy if upstream_is_osmem else HTTPProxy

    def front(self, upstream: str) -> HTTPProxy | None:
        return ElasticsearchCompatProxy(upstream).start()


BULK_BACKENDS: dict[str, BulkBackend] = {b.name: b for b in (ElasticsearchBackend(), OpenSearchBackend())}


# --------------------------------------------------------------------------- what the cases share

def capsule(seq: int, **fields) -> dict:
    return {"__timestamp__": "2024-03-04T05:06:07.000008Z", "__schema__": LAUNCH,
            "__schema_version__": 1, "__metadata_version__": 1, "seq": seq, **fields}


def bulk_statuses(proxy) -> list[int]:
    return [status for _, path, status, _ in proxy.requests if "_bulk" in path]


def check_auth_failures_are_retried_and_secrets_never_shown(
    proxy, bulk_client, make_bulk_sink, prefix, caplog, secret: str, **credentials
) -> dict[str, str]:
    """401 is an operator problem: the events wait (here in memory) until the credentials
    work, and ``secret`` never shows.  Returns the last request's headers (lowercase names)
    for the backend's own check of its auth header."""
    proxy.fail(
        401, times=3, path="_bulk",
        error={"type": "security_exception", "reason": f"unable to authenticate with {secret}"},
    )
    sink = make_bulk_sink(proxy.url, prefix, **credentials)
    log = make_log(sink)
    caplog.set_level(logging.WARNING, logger="telemetry_sinks.delivery")
    for seq in range(20):
        log.emit(schema_id=LAUNCH, data={"seq": seq})
    deadline = time.monotonic() + 10
    while bulk_statuses(proxy).count(401) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    last_error = sink.stats()["last_error"]
    assert "HTTP 401" in last_error and "security_exception" in last_error
    assert secret not in last_error and "***" in last_error
    stats = wait_delivered(sink, timeout=30)
    sink.close()
    assert stats["sent"] == 20 and stats["dead_lettered"] == 0 and stats["dropped"] == 0
    assert len(search_hits(bulk_client, f"{prefix}-*")) == 20
    warnings = [r.getMessage() for r in caplog.records if "HTTP 401" in r.getMessage()]
    assert len(warnings) == 1 and secret not in warnings[0]
    for text in (repr(sink), json.dumps(sink.stats(), default=str), caplog.text):
        assert secret not in text
    return {k.lower(): v for k, v in proxy.requests[-1][3].items()}
