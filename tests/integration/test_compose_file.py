"""docker-compose.test.yml offers the backends the integration tests expect, on the ports they read."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_lists_the_backends_with_health_checks_and_ports():
    compose = yaml.safe_load((ROOT / "docker-compose.test.yml").read_text())
    services = compose["services"]
    expected = {"kafka": "9092:9092", "elasticsearch": "9200:9200", "opensearch": "9201:9200",
                "cloudwatch": "4566:4566"}
    assert set(expected) <= set(services)
    for name, ports in expected.items():
        service = services[name]
        assert service["image"]
        assert "test" in service["healthcheck"]
        assert f"127.0.0.1:{ports}" in service["ports"]
    # The Elasticsearch image's major version must match the client the tests install.
    import elasticsearch

    image_major = services["elasticsearch"]["image"].rsplit(":", 1)[1].split(".")[0]
    assert image_major == str(elasticsearch.__versionstr__.split(".")[0])
    kafka_env = services["kafka"]["environment"]
    assert "PLAINTEXT://127.0.0.1:9092" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    text = (ROOT / "docker-compose.test.yml").read_text()
    for variable in ("KAFKA_BOOTSTRAP_SERVERS", "ELASTICSEARCH_URL", "OPENSEARCH_URL", "AWS_ENDPOINT_URL"):
        assert variable in text
