"""Small local servers for the benchmarks, each run as its own process (``python -m bench.servers``).

* ``http``: a fast HTTP/1.1 endpoint (asyncio, keep-alive) that parses each JSON (or NDJSON,
  optionally gzip) body and answers 200 ``{"accepted": N}``; ``--delay S`` makes it answer
  each request only after S seconds (the "slow" backend).  ``GET /stats`` returns the number
  of requests and events it took.
* ``proxy``: a TCP proxy that forwards each chunk, in both directions, ``--delay`` seconds after
  it arrived (a slow network path to any backend, e.g. Kafka).
* ``es-compat``: the test suite's proxy (tests/helpers/bulk.py) that rewrites the
  elasticsearch client's versioned media types so that osmem-server takes its requests.
* ``stackdriver``: the test suite's fake Cloud Logging API (tests/helpers/fake_logging_api.py)
  in a process of its own, so that its threads do not share our GIL.

Running them as separate processes keeps their CPU time out of the measured process.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import sys
import time

from .common import TESTS

# ---------------------------------------------------------------------- HTTP endpoint


class _Stats:
    requests = 0
    events = 0


class _HTTPProtocol(asyncio.Protocol):
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.chain: asyncio.Future | None = None  # answers go out in request order

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            lines = head.split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self._handle(lines[0], headers, body)

    def _handle(self, request_line: str, headers: dict[str, str], body: bytes) -> None:
        method, _, rest = request_line.partition(" ")
        path = rest.split(" ")[0]
        status, answer = 200, b""
        if method == "GET" and path.startswith("/stats"):
            answer = json.dumps({"requests": _Stats.requests, "events": _Stats.events}).encode()
        elif method == "POST":
            try:
                if headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if "ndjson" in headers.get("content-type", ""):
                    items = [json.loads(line) for line in body.splitlines() if line.strip()]
                    count = len(items)
                else:
                    parsed = json.loads(body)
                    count = len(parsed) if isinstance(parsed, list) else 1
                _Stats.requests += 1
                _Stats.events += count
                answer = b'{"accepted":%d}' % count
            except ValueError as exc:
                status, answer = 400, json.dumps({"error": str(exc)}).encode()
        else:
            status, answer = 404, b'{"error":"not found"}'
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        response = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(answer)}\r\nConnection: keep-alive\r\n\r\n"
        ).encode() + answer
        if self.delay <= 0:
            if self.transport is not None:
                self.transport.write(response)
            return
        previous = self.chain
        self.chain = asyncio.ensure_future(self._later(response, previous))

    async def _later(self, response: bytes, previous: asyncio.Future | None) -> None:
        await asyncio.sleep(self.delay)
        if previous is not None:
            await previous
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)


async def serve_http(port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _HTTPProtocol(delay), "127.0.0.1", port, backlog=256)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------------- delaying TCP proxy


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue = asyncio.Queue()

    async def pump() -> None:
        while True:
            due, chunk = await queue.get()
            if chunk is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        writer.close()

    task = asyncio.ensure_future(pump())
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            queue.put_nowait((time.monotonic() + delay, chunk))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((0.0, None))
    try:
        await task
    except (ConnectionError, OSError):
        pass


async def serve_proxy(port: int, upstream: str, delay: float) -> None:
    host, _, upstream_port = upstream.rpartition(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host or "127.0.0.1", int(upstream_port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer, delay), _pipe(up_reader, writer, delay))

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=256)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------------- fake Cloud Logging API


def serve_stackdriver(port: int) -> None:
    sys.path.insert(0, str(TESTS))
    from helpers.fake_logging_api import FakeLoggingAPI  # type: ignore[import-not-found]

    api = FakeLoggingAPI(port).start()
    while True:  # keep memory flat over long runs: forget what was written
        time.sleep(5)
        api.clear()


def serve_es_compat(port: int, upstream: str) -> None:
    """The test suite's header-rewriting proxy that lets the elasticsearch client talk to osmem."""
    sys.path.insert(0, str(TESTS))
    from helpers.bulk import ElasticsearchCompatProxy  # type: ignore[import-not-found]

    ElasticsearchCompatProxy(f"http://{upstream}", port).start()
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("kind", choices=["http", "proxy", "stackdriver", "es-compat"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--upstream", default="")
    args = parser.parse_args(argv)
    try:
        if args.kind == "http":
            asyncio.run(serve_http(args.port, args.delay))
        elif args.kind == "proxy":
            asyncio.run(serve_proxy(args.port, args.upstream, args.delay))
        elif args.kind == "es-compat":
            serve_es_compat(args.port, args.upstream)
        else:
            serve_stackdriver(args.port)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
