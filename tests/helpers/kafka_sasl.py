"""A SASL/PLAIN gate in front of a Kafka-protocol broker without authentication (Tansu).

Tansu's own authentication cannot be set up here (its users are created through the
broker, which then already asks for them), so the credential tests put this gate
between the clients and the broker.  Per client connection it speaks the start of the
Kafka protocol the way a broker with ``sasl.enabled.mechanisms=PLAIN`` does:

* ``ApiVersions`` is forwarded to the broker and its answer passed back;
* ``SaslHandshake`` is answered with the mechanism list ``["PLAIN"]``;
* ``SaslAuthenticate`` checks the user name and password against :attr:`users`: a
  refusal is answered with ``SASL_AUTHENTICATION_FAILED`` (58) and the connection is
  closed, as Kafka does; once accepted, every byte passes through unchanged.

Any other request before authentication closes the connection.  :attr:`users` may be
changed while clients retry (the operator fixing the credentials).  The broker must
advertise the gate's address, so that clients come back through it after metadata.
The frames are read and written with kafka-python's own protocol classes.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from kafka.protocol.sasl import SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeResponse

from helpers.servers import free_port

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
SASL_AUTHENTICATION_FAILED = 58


def _read_frame(sock: socket.socket, buf: bytearray) -> bytes | None:
    """One size-prefixed frame (without its size) from ``buf`` and then ``sock``; None at EOF."""
    while True:
        if len(buf) >= 4:
            (size,) = struct.unpack_from(">i", buf)
            if len(buf) >= 4 + size:
                frame = bytes(buf[4 : 4 + size])
                del buf[: 4 + size]
                return frame
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk


class SaslPlainFront:
    """Listen on ``port`` (a free one by default) in front of ``upstream_port``."""

    def __init__(self, upstream_port: int, users: dict[str, str], port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.users = dict(users)
        self.port = port or free_port()
        self.refused = 0
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []

    def start(self) -> SaslPlainFront:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._sockets += [client, upstream]
        pending = bytearray()
        try:
            if not self._authenticate(client, upstream, pending):
                return
            if pending:
                upstream.sendall(bytes(pending))
        except OSError:
            return
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    def _authenticate(self, client: socket.socket, upstream: socket.socket, pending: bytearray) -> bool:
        """Answer the connection's first requests; True once the client is authenticated."""
        upstream_buf = bytearray()
        while True:
            frame = _read_frame(client, pending)
            if frame is None:
                self._close(client, upstream)
                return False
            api_key, version, correlation_id = struct.unpack_from(">hhi", frame)
            if api_key == API_VERSIONS:
                upstream.sendall(struct.pack(">i", len(frame)) + frame)
                answer = _read_frame(upstream, upstream_buf)
                if answer is None:
                    self._close(client, upstream)
                    return False
                client.sendall(struct.pack(">i", len(answer)) + answer)
            elif api_key == SASL_HANDSHAKE:
                response = SaslHandshakeResponse[version](error_code=0, mechanisms=["PLAIN"])
                response.with_header(correlation_id=correlation_id)
                client.sendall(response.encode(header=True, framed=True))
            elif api_key == SASL_AUTHENTICATE:
                request = SaslAuthenticateRequest.decode(frame, version=version, header=True)
                parts = bytes(request.auth_bytes).split(b"\0")
                user, password = (parts[1].decode(), parts[2].decode()) if len(parts) == 3 else ("", "")
                ok = self.users.get(user) == password
                fields = {"error_code": 0 if ok else SASL_AUTHENTICATION_FAILED,
                          "error_message": None if ok else f"Authentication failed for user {user}",
                          "auth_bytes": b""}
                if version >= 1:
                    fields["session_lifetime_ms"] = 0
                response = SaslAuthenticateResponse[version](**fields)
                response.with_header(correlation_id=correlation_id)
                client.sendall(response.encode(header=True, framed=True))
                if ok:
                    self.accepted += 1
                    return True
                self.refused += 1
                self._close(upstream)
                self._linger(client)  # let the client read the refusal before the connection ends
                return False
            else:  # anything else needs authentication first
                self._close(client, upstream)
                return False

    @staticmethod
    def _linger(sock: socket.socket) -> None:
        """Wait (up to 2 s, like Kafka's connection.failed.authentication.delay.ms) for the
        client to close first, then close."""
        with contextlib.suppress(OSError):
            sock.settimeout(2.0)
            while sock.recv(65536):
                pass
        with contextlib.suppress(OSError):
            sock.close()

    @staticmethod
    def _close(*sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


__all__ = ["SaslPlainFront"]
