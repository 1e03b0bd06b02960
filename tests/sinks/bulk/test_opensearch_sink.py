"""OpenSearchSink against a real OpenSearch-compatible server (osmem-server) on 127.0.0.1.

The bulk behaviours it shares with ElasticsearchSink are the cases of ``test_bulk_contract.py``,
run against both backends; this module adds the OpenSearch-only ones (basic auth
header, opensearch-py option names, AWS SigV4).  Everything is read back through the
server's own REST API (search, count, _doc).
"""

from __future__ import annotations

import base64

import pytest
from helpers.bulk import BULK_BACKENDS, check_auth_failures_are_retried_and_secrets_never_shown

from telemetry_sinks import OpenSearchSink

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bulk_backend():
    """This module's cases are opensearch's own."""
    return BULK_BACKENDS["opensearch"]


def test_auth_failures_are_retried_and_secrets_never_shown(
    proxy, bulk_client, make_bulk_sink, prefix, caplog
):
    secret = "s3cret-pass"
    headers = check_auth_failures_are_retried_and_secrets_never_shown(
        proxy, bulk_client, make_bulk_sink, prefix, caplog, secret, username="svc", password=secret
    )
    assert headers["authorization"] == "Basic " + base64.b64encode(f"svc:{secret}".encode()).decode()


def test_basic_auth_and_timeout_take_the_opensearch_client_names():
    sink = OpenSearchSink(hosts="https://a:9200", username="u", password="p4ss", request_timeout=3.0)
    options = sink.client_options_for()
    assert options["http_auth"] == ("u", "p4ss") and options["timeout"] == 3.0
    sink.close()


def test_aws_sigv4_auth(monkeypatch):
    from opensearchpy import Urllib3AWSV4SignerAuth

    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    sink = OpenSearchSink(hosts="https://search.example.com:443", aws_region="eu-west-1")
    auth = sink.client_options_for()["http_auth"]
    assert isinstance(auth, Urllib3AWSV4SignerAuth) and auth.service == "es"
    signed = auth("POST", "https://search.example.com/_bulk", b"{}\n", {})
    assert "eu-west-1/es/aws4_request" in signed["Authorization"]
    sink.close()
