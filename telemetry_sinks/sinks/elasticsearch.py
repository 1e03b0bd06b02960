"""Elasticsearch sink: events indexed with the ``_bulk`` API through the official client.

A thin adapter of :class:`~telemetry_sinks.sinks._bulk.BulkIndexSink`, which does
the bulk indexing and classifies failures (see its module doc); this module only
builds an ``elasticsearch.Elasticsearch`` client from the options and reads its
exceptions.  The client's own retries are off: the delivery core retries, spools
and dead-letters.
"""

from __future__ import annotations

import base64
from typing import Any

import elastic_transport
import elasticsearch
from traitlets import Unicode

from ..delivery.retry import error_text, parse_retry_after
from ._bulk import BulkIndexSink, RequestFailure


class ElasticsearchSink(BulkIndexSink):
    """Index events into Elasticsearch (``pip install "telemetry-sinks[elasticsearch]"``)."""

    sink_name = "elasticsearch"
    backend_name = "Elasticsearch"

    cloud_id = Unicode(
        None, allow_none=True, help="Elastic Cloud deployment id (instead of hosts)."
    ).tag(config=True)
    api_key = Unicode(
        None,
        allow_none=True,
        help='API key: the encoded key, or "id:api_key" (used instead of username/password).',
    ).tag(config=True, secret=True)

    def secret_fragments(self) -> list[str]:
        fragments = super().secret_fragments()
        if self.api_key:
            _, sep, key = self.api_key.partition(":")
            if sep:
                fragments.append(key)
            fragments.append(base64.b64encode(self.api_key.encode()).decode())
        return fragments

    def client_options_for(self) -> dict[str, Any]:
        """The keyword arguments given to ``elasticsearch.Elasticsearch``."""
        options: dict[str, Any] = {
            "request_timeout": self.request_timeout,
            "max_retries": 0,
            "retry_on_timeout": False,
            "http_compress": self.http_compress,
        }
        if self.cloud_id:
            options["cloud_id"] = self.cloud_id
        else:
            options["hosts"] = self.host_list()
        if self.api_key:
            key_id, sep, key = self.api_key.partition(":")
            options["api_key"] = (key_id, key) if sep else self.api_key
        elif self.username is not None:
            options["basic_auth"] = (self.username, self.password or "")
        options.update(self.tls_options())
        options.update(self.client_options)
        return options

    def make_client(self) -> elasticsearch.Elasticsearch:
        return elasticsearch.Elasticsearch(**self.client_options_for())

    def bulk_request(self, client: Any, body: str, params: dict[str, str]) -> dict[str, Any]:
        return client.bulk(operations=body, **params).body

    def request_failure(self, exc: Exception) -> RequestFailure | None:
        if isinstance(exc, elasticsearch.ApiError):
            meta = exc.meta
            status = getattr(meta, "status", None)
            headers = getattr(meta, "headers", None) or {}
            error = exc.body.get("error") if isinstance(exc.body, dict) else None
            return RequestFailure(
                status,
                _api_error_message(exc),
                parse_retry_after(headers.get("retry-after")),
                error.get("type") if isinstance(error, dict) else None,
            )
        if isinstance(exc, elastic_transport.TransportError):
            return RequestFailure(None, error_text(exc))
        return None


def _api_error_message(exc: elasticsearch.ApiError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return f"{error.get('type', type(exc).__name__)}: {error.get('reason', '')}"
    if isinstance(exc, elasticsearch.UnsupportedProductError):
        return "the server does not answer as Elasticsearch (X-Elastic-Product header missing)"
    return f"{type(exc).__name__}: {exc.message}"


__all__ = ["ElasticsearchSink"]
