"""OpenSearch sink: events indexed with the ``_bulk`` API through opensearch-py.

A thin adapter of :class:`~telemetry_sinks.sinks._bulk.BulkIndexSink`, which does
the bulk indexing and classifies failures (see its module doc); this module only
builds an ``opensearchpy.OpenSearch`` client from the options (HTTP basic auth or
AWS SigV4 for Amazon OpenSearch Service) and reads its exceptions.  The client's
own retries are off: the delivery core retries, spools and dead-letters.
"""

from __future__ import annotations

from typing import Any

import opensearchpy
from traitlets import CaselessStrEnum, Unicode

from ._bulk import BulkIndexSink, RequestFailure


class OpenSearchSink(BulkIndexSink):
    """Index events into OpenSearch (``pip install "telemetry-sinks[opensearch]"``)."""

    sink_name = "opensearch"
    backend_name = "OpenSearch"

    aws_region = Unicode(
        None,
        allow_none=True,
        help="Sign requests with AWS SigV4 for this region (Amazon OpenSearch Service); "
        "credentials come from boto3's usual chain (environment, profile, instance role). "
        "Needs boto3. Used instead of username/password.",
    ).tag(config=True)
    aws_service = CaselessStrEnum(
        ["es", "aoss"],
        default_value="es",
        help="With aws_region: 'es' (managed domains) or 'aoss' (OpenSearch Serverless).",
    ).tag(config=True)

    def client_options_for(self) -> dict[str, Any]:
        """The keyword arguments given to ``opensearchpy.OpenSearch``."""
        options: dict[str, Any] = {
            "hosts": self.host_list(),
            "timeout": self.request_timeout,
            "max_retries": 0,
            "retry_on_timeout": False,
            "http_compress": self.http_compress,
        }
        if self.aws_region:
            options["http_auth"] = self._aws_auth()
        elif self.username is not None:
            options["http_auth"] = (self.username, self.password or "")
        options.update(self.tls_options())
        options.update(self.client_options)
        return options

    def _aws_auth(self) -> Any:
        try:
            import boto3
        except ImportError:
            raise RuntimeError("aws_region needs boto3: pip install boto3") from None
        credentials = boto3.Session().get_credentials()
        if credentials is None:
            raise RuntimeError("aws_region is set but boto3 finds no AWS credentials")
        return opensearchpy.Urllib3AWSV4SignerAuth(credentials, self.aws_region, self.aws_service)

    def make_client(self) -> opensearchpy.OpenSearch:
        return opensearchpy.OpenSearch(**self.client_options_for())

    def bulk_request(self, client: Any, body: str, params: dict[str, str]) -> dict[str, Any]:
        return client.bulk(body=body, **params)

    def request_failure(self, exc: Exception) -> RequestFailure | None:
        if isinstance(exc, opensearchpy.ConnectionError):  # also timeouts and TLS errors
            return RequestFailure(None, f"{type(exc).__name__}: {exc.info or exc.error}")
        if isinstance(exc, opensearchpy.TransportError):
            status = exc.status_code if isinstance(exc.status_code, int) else None
            info = exc.info
            message, error_type = f"{type(exc).__name__}: {exc.error}", None
            if isinstance(info, dict) and isinstance(info.get("error"), dict):
                error = info["error"]
                error_type = error.get("type")
                message = f"{error_type or type(exc).__name__}: {error.get('reason', '')}"
            return RequestFailure(status, message, None, error_type)
        return None


__all__ = ["OpenSearchSink"]
