"""ElasticsearchSink against a real server on 127.0.0.1: Elasticsearch (``ELASTICSEARCH_URL``)
or osmem-server behind the media-type proxy described in helpers/bulk.py.

The bulk behaviours it shares with OpenSearchSink are the cases of ``test_bulk_contract.py``,
run against both backends; this module adds the Elasticsearch-only ones (API keys,
Elastic Cloud, the elasticsearch client's exceptions and media types).  Everything is
read back with the elasticsearch client (search, count, _doc).
"""

from __future__ import annotations

import base64

import pytest
from helpers.bulk import BULK_BACKENDS, capsule, check_auth_failures_are_retried_and_secrets_never_shown

from telemetry_sinks import ElasticsearchSink, SinkConfigError
from telemetry_sinks.capsule import encode
from telemetry_sinks.delivery import Envelope
from telemetry_sinks.delivery.envelope import next_event_id

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bulk_backend():
    """This module's cases are elasticsearch's own."""
    return BULK_BACKENDS["elasticsearch"]


def test_auth_failures_are_retried_and_secrets_never_shown(
    proxy, bulk_client, make_bulk_sink, prefix, caplog
):
    secret = "s3cret-key"
    headers = check_auth_failures_are_retried_and_secrets_never_shown(
        proxy, bulk_client, make_bulk_sink, prefix, caplog, secret, api_key=f"key-id:{secret}"
    )
    assert headers["authorization"] == "ApiKey " + base64.b64encode(
        f"key-id:{secret}".encode()
    ).decode()


def test_api_key_is_hidden_in_repr_and_config_errors():
    sink = ElasticsearchSink(
        hosts=["http://svc:url-pass@127.0.0.1:9200"], password="s3cret-pass", api_key="s3cret-key",
        client_options={"headers": {"x-token": "hdr-token"}},
    )
    text = repr(sink)
    for secret in ("s3cret-pass", "s3cret-key", "url-pass", "hdr-token"):
        assert secret not in text
    assert "password='***'" in text and "api_key='***'" in text
    sink.close()
    with pytest.raises(SinkConfigError) as info:
        ElasticsearchSink(api_key=["s3cret-key"])
    assert "s3cret-key" not in str(info.value) and "'api_key'" in str(info.value)
    with pytest.raises(SinkConfigError) as info:
        ElasticsearchSink(hosts="localhost", password="s3cret-pass")  # no scheme nor port
    assert "cannot build its Elasticsearch client" in str(info.value)
    assert "s3cret-pass" not in str(info.value)


def test_basic_auth_and_timeout_take_the_elasticsearch_client_names():
    sink = ElasticsearchSink(hosts="https://a:9200", username="u", password="p4ss", request_timeout=3.0)
    options = sink.client_options_for()
    assert options["basic_auth"] == ("u", "p4ss") and options["request_timeout"] == 3.0
    sink.close()


def test_cloud_id_and_api_key():
    cloud_id = "deployment:" + base64.b64encode(b"eu-west-1.aws.found.io$abc123$def456").decode()
    sink = ElasticsearchSink(cloud_id=cloud_id, api_key="ZW5jb2RlZC1rZXk=")
    options = sink.client_options_for()
    assert options["cloud_id"] == cloud_id and "hosts" not in options
    assert options["api_key"] == "ZW5jb2RlZC1rZXk="  # an encoded key is passed as it is
    client = sink.make_client()
    assert client.transport.node_pool.all()[0].base_url == "https://abc123.eu-west-1.aws.found.io:443"
    client.close()
    sink.close()


def api_error(status: int, body, headers=None, cls=None):
    import elasticsearch
    from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig

    meta = ApiResponseMeta(
        status, "1.1", HttpHeaders(headers or {}), 0.01, NodeConfig("http", "127.0.0.1", 9200)
    )
    cls = cls or elasticsearch.ApiError
    return cls(message=str(body), meta=meta, body=body)


def test_client_exceptions_are_read_as_request_failures():
    import elasticsearch

    sink = ElasticsearchSink()
    throttled = sink.request_failure(api_error(
        429, {"error": {"type": "es_rejected_execution_exception", "reason": "queue full"}},
        {"Retry-After": "7"},
    ))
    assert (throttled.status, throttled.retry_after) == (429, 7.0)
    assert throttled.message == "es_rejected_execution_exception: queue full"
    refused = sink.request_failure(elasticsearch.ConnectionError("Connection refused"))
    assert refused.status is None and "ConnectionError" in refused.message
    timeout = sink.request_failure(elasticsearch.ConnectionTimeout("timed out"))
    assert timeout.status is None
    other = sink.request_failure(
        api_error(200, {"hello": 1}, cls=elasticsearch.UnsupportedProductError)
    )
    assert other.status == 200 and "not answer as Elasticsearch" in other.message
    assert sink.request_failure(ValueError("bug")) is None
    sink.close()


def test_a_whole_request_429_is_retried_after_the_servers_delay():
    class Throttled:
        def bulk(self, operations, **params):
            raise api_error(429, {"error": {"type": "es_rejected_execution_exception"}},
                            {"Retry-After": "3"})

        def close(self):
            pass

    sink = ElasticsearchSink(client=Throttled())
    batch = [Envelope(next_event_id(), encode(capsule(i))) for i in range(3)]
    result = sink.send_batch(batch)
    sink.close()
    assert set(result.retryable) == {e.event_id for e in batch} and result.retry_after == 3.0
    assert "HTTP 429" in result.retryable[batch[0].event_id]


def test_a_client_the_server_does_not_understand_is_waited_for(bulk_server):
    # Straight to osmem, without the media-type proxy: osmem answers the elasticsearch
    # client's versioned media types with 406 (as Elasticsearch 8 answers a 9 client).
    # That is a deployment mismatch, not a bad event: retried, never dead-lettered.
    sink = ElasticsearchSink(hosts=[bulk_server.direct_url], index="mismatch")
    envelope = Envelope(next_event_id(), encode(capsule(1)))
    sink.open()
    result = sink.send_batch([envelope])
    sink.close()
    assert result.permanent == {}
    assert "HTTP 406" in result.retryable[envelope.event_id]
    assert "client version" in result.retryable[envelope.event_id]
