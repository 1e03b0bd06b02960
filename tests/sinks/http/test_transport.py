"""The HTTP sink's transport against real local servers: TLS (CA bundle, verify off, client
certificates), basic auth, kept-alive connections a server closes, redirects, bad URLs."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers.servers import free_port, wait_delivered

from telemetry_sinks import HTTPSink, SinkConfigError

pytestmark = pytest.mark.integration
FAST = dict(flush_interval=0.05, retry_initial_backoff=0.05, retry_max_backoff=0.3)


def _certificate(name: str, key, issuer_name, issuer_key, *, ca: bool = False):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test CA", ca_key, None, None, ca=True)
    files = {"ca": directory / "ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(name, key, ca.subject, ca_key)
        files[name] = directory / f"{name}.pem"
        files[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}_key"] = directory / f"{name}.key"
        files[f"{name}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return files


class _Recorder(BaseHTTPRequestHandler):
    """HTTP/1.1 endpoint: records each request and the connection it came on."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status, extra = self.server.answers.pop(0) if self.server.answers else (200, {})
        with self.server.lock:
            self.server.requests.append((dict(self.headers), body, status))
        self.send_response(status)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if self.server.drop_after_answer:
            self.close_connection = True  # closed without saying so: the client's connection goes stale

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext | None = None):
        super().__init__(("127.0.0.1", free_port()), _Recorder)
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: list = []
        self.answers: list = []
        self.drop_after_answer = False
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.server_address[1]}/ingest?source=test"

    def events(self) -> list[dict]:
        return [item for _, body, status in self.requests if status == 200 for item in json.loads(body)]

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def tls_server(pki):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server"], pki["server_key"])
    server = _Server(context)
    yield server
    server.stop()


def _send(sink: HTTPSink, count: int = 3) -> None:
    for i in range(count):
        sink.handle_capsule({"seq": i})


def test_tls_with_the_ca_bundle_is_delivered_and_an_unknown_ca_is_retried_not_dead_lettered(pki, tls_server):
    trusted = HTTPSink(url=tls_server.url("https"), verify=str(pki["ca"]), **FAST)
    _send(trusted)
    wait_delivered(trusted, 30)
    trusted.close()
    assert sorted(e["seq"] for e in tls_server.events()) == [0, 1, 2]

    unknown = HTTPSink(url=tls_server.url("https"), **FAST)  # the system's CAs do not know the test CA
    _send(unknown, 1)
    assert not unknown.flush(timeout=1)
    stats = unknown.stats()
    assert "CERTIFICATE_VERIFY_FAILED" in stats["last_error"]
    assert stats["dead_lettered"] == 0 and stats["dropped"] == 0
    unknown._engine._close_timeout = 0.2
    unknown.close()

    unchecked = HTTPSink(url=tls_server.url("https"), verify=False, **FAST)
    _send(unchecked, 1)
    wait_delivered(unchecked, 30)
    unchecked.close()


def test_a_client_certificate_is_presented_when_the_server_requires_one(pki):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca"]))
    context.load_cert_chain(pki["server"], pki["server_key"])
    context.verify_mode = ssl.CERT_REQUIRED
    server = _Server(context)
    try:
        without = HTTPSink(url=server.url("https"), verify=str(pki["ca"]), **FAST)
        _send(without, 1)
        assert not without.flush(timeout=1)
        without._engine._close_timeout = 0.2
        without.close()
        assert server.events() == []

        sink = HTTPSink(url=server.url("https"), verify=str(pki["ca"]), client_cert=str(pki["client"]),
                        client_key=str(pki["client_key"]), **FAST)  # fmt: skip
        _send(sink)
        wait_delivered(sink, 30)
        sink.close()
        assert sorted(e["seq"] for e in server.events()) == [0, 1, 2]
    finally:
        server.stop()


def test_basic_auth_headers_and_the_url_query_reach_the_server_and_the_password_is_never_shown():
    server = _Server()
    try:
        sink = HTTPSink(url=server.url(), username="ada", password="pa55-s3cret", headers={"X-Team": "lab"},
                        **FAST)  # fmt: skip
        _send(sink)
        wait_delivered(sink, 30)
        sink.close()
        headers = server.requests[0][0]
        assert headers["Authorization"] == "Basic " + base64.b64encode(b"ada:pa55-s3cret").decode()
        assert headers["X-Team"] == "lab" and headers["Content-Type"] == "application/json"
        assert headers["Host"] == f"127.0.0.1:{server.server_address[1]}"
        assert "pa55-s3cret" not in repr(sink) + json.dumps(sink.stats(), default=str)
    finally:
        server.stop()


def test_batches_share_one_kept_alive_connection():
    server = _Server()
    try:
        sink = HTTPSink(url=server.url(), max_batch_events=10, **FAST)
        for _ in range(3):
            _send(sink, 25)
            assert sink.flush(timeout=30), sink.stats()
        sink.close()
        assert len(server.requests) >= 6 and server.connections == 1
        assert len(server.events()) == 75
    finally:
        server.stop()


def test_a_connection_the_server_closed_while_idle_is_made_anew_without_a_failed_attempt():
    server = _Server()
    server.drop_after_answer = True
    try:
        sink = HTTPSink(url=server.url(), **FAST)
        for _ in range(4):
            _send(sink, 5)
            assert sink.flush(timeout=30), sink.stats()
        stats = sink.stats()
        sink.close()
        assert len(server.events()) == 20
        assert stats["last_error"] is None and stats["retried"] == 0, stats
        assert server.connections == len(server.requests) == 4
    finally:
        server.stop()


def test_a_redirect_is_not_followed_and_its_dead_letter_names_the_new_url(tmp_path):
    server = _Server()
    server.answers = [(301, {"Location": "https://events.example.org/ingest"})]
    dead = tmp_path / "dead.jsonl"
    try:
        sink = HTTPSink(url=server.url(), dead_letter_file=str(dead), **FAST)
        _send(sink, 1)
        assert sink.flush(timeout=30)
        sink.close()
        [line] = dead.read_text().splitlines()
        reason = json.loads(line)["reason"]
        assert "HTTP 301" in reason and "https://events.example.org/ingest" in reason and "set url" in reason
    finally:
        server.stop()


@pytest.mark.parametrize("url", ["localhost:8080/ingest", "ftp://example.org/x", "http:///nohost"])
def test_a_url_that_is_not_http_is_refused_at_configuration(url):
    with pytest.raises(SinkConfigError, match="url"):
        HTTPSink(url=url)
