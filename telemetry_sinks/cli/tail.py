"""``telemetry-sinks tail``: the last lines of a JSONL sink's file, filtered by schema, followed
through rotation and truncation."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from .common import EXIT_OK

# --------------------------------------------------------------------------- tail


def _schema_matcher(schemas: list[str] | None) -> Callable[[bytes], bool]:
    """A line filter: its ``__schema__`` (or mybinder's ``schema``) is one of ``schemas``.

    A filter matches a schema id exactly, or its last path segment (``app-launch``
    matches ``https://events.example.org/app-launch``).
    """
    if not schemas:
        return lambda line: True
    wanted = set(schemas)

    def match(line: bytes) -> bool:
        try:
            obj = json.loads(line)
        except ValueError:
            return False
        if not isinstance(obj, dict):
            return False
        sid = obj.get("__schema__", obj.get("schema"))
        return isinstance(sid, str) and (sid in wanted or sid.rstrip("/").rsplit("/", 1)[-1] in wanted)

    return match


def _last_lines(
    stream: IO[bytes], end: int, n: int, match: Callable[[bytes], bool]
) -> tuple[list[bytes], int]:
    """The last ``n`` complete matching lines before ``end``, and where the complete lines end."""
    found: list[bytes] = []
    position, carry, complete_end = end, b"", None
    while position > 0 and len(found) < n:
        size = min(64 * 1024, position)
        position -= size
        stream.seek(position)
        pieces = (stream.read(size) + carry).split(b"\n")
        if complete_end is None:
            complete_end = end - len(pieces[-1])  # a partial last line is left for --follow
            pieces[-1] = b""
        carry = pieces[0]
        for line in reversed(pieces[1:]):
            if line.strip() and match(line):
                found.append(line)
                if len(found) == n:
                    break
    if position == 0 and len(found) < n and carry.strip() and match(carry):
        found.append(carry)
    if complete_end is None:  # n == 0 or an empty file: find the end of the last complete line
        stream.seek(max(0, end - 64 * 1024))
        tail = stream.read(end - max(0, end - 64 * 1024))
        complete_end = end - (len(tail) - tail.rfind(b"\n") - 1) if b"\n" in tail else max(0, end - len(tail))
    return found[::-1], complete_end


def _write_lines(lines: list[bytes]) -> None:
    for line in lines:
        sys.stdout.write(line.decode("utf-8", "replace").rstrip("\r") + "\n")
    sys.stdout.flush()


def cmd_tail(args: argparse.Namespace) -> int:
    match = _schema_matcher(args.schema)
    path = args.file
    try:
        return _tail(path, args, match)
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # e.g. piped into head
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def _tail(path: str, args: argparse.Namespace, match: Callable[[bytes], bool]) -> int:
    if path.endswith(".gz"):
        if args.follow:
            raise OSError(f"{path}: a compressed file is complete; --follow reads a growing JSONL file")
        import collections
        import gzip

        with gzip.open(path, "rb") as compressed:
            last = collections.deque(
                (line.rstrip(b"\n") for line in compressed if line.strip() and match(line)),
                maxlen=max(args.lines, 0),
            )
        _write_lines(list(last))
        return EXIT_OK
    if not args.follow:
        with open(path, "rb") as whole:
            lines, _ = _last_lines(whole, os.fstat(whole.fileno()).st_size, args.lines, match)
        _write_lines(lines)
        return EXIT_OK

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    interval = args.interval

    waited = False

    def wait_open(announce: bool) -> IO[bytes]:
        nonlocal waited
        while True:
            try:
                return open(path, "rb")
            except FileNotFoundError:
                if announce:
                    print(f"telemetry-sinks tail: waiting for {path} to appear", file=sys.stderr, flush=True)
                    announce = False
                waited = True
                time.sleep(interval)

    stream = wait_open(announce=True)
    try:
        info = os.fstat(stream.fileno())
        if not waited:
            lines, position = _last_lines(stream, info.st_size, args.lines, match)
            _write_lines(lines)
            stream.seek(position)
        # else: the file appeared while we waited, so all of it is new: read it from its start
        identity = (info.st_dev, info.st_ino)
        buffer = b""

        def drain() -> None:
            nonlocal buffer
            while True:
                chunk = stream.read(64 * 1024)
                if not chunk:
                    return
                *complete, buffer = (buffer + chunk).split(b"\n")
                _write_lines([line for line in complete if line.strip() and match(line)])

        while True:
            drain()
            try:
                current = os.stat(path)
            except FileNotFoundError:  # between a rotation's rename and the new file
                time.sleep(interval)
                continue
            if (current.st_dev, current.st_ino) != identity:
                drain()  # the rest of the rotated file, then the new file from its start
                if buffer.strip() and match(buffer):
                    _write_lines([buffer])
                stream.close()
                stream = wait_open(announce=False)
                info = os.fstat(stream.fileno())
                identity, buffer = (info.st_dev, info.st_ino), b""
                continue
            if current.st_size < stream.tell():  # truncated: start again from the top
                stream.seek(0)
                buffer = b""
                continue
            time.sleep(interval)
    finally:
        stream.close()


