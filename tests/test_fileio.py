"""The file-writing loops: ``write_all`` and the spool's append that keeps the GIL."""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from telemetry_sinks import fileio
from telemetry_sinks.delivery.envelope import Envelope, next_event_id
from telemetry_sinks.delivery.spool import Spool


@pytest.fixture
def fresh_guard(monkeypatch):
    """No slow write seen yet in this process (another test's may have been)."""
    monkeypatch.setattr(fileio, "_release_until", 0)
    monkeypatch.setattr(fileio, "_last_slow", -fileio.SLOW_AGAIN_NS)


def test_the_libc_write_is_available_here():
    """Linux with CPython: the spool's appends keep the GIL (else they fall back to os.write)."""
    assert fileio._libc_write_call is not None


def test_writes_every_byte_and_returns_the_count(tmp_path, fresh_guard):
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        data = [bytes([n % 251]) * (n + 1) for n in range(200)]
        assert [fileio.write_all_holding_gil(fd, chunk) for chunk in data] == [len(c) for c in data]
        assert fileio.write_all_holding_gil(fd, bytearray(b"not bytes")) == 9  # through os.write
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(data) + b"not bytes"


def test_an_error_is_the_oserror_os_write_raises(tmp_path, fresh_guard):
    fd = os.open(tmp_path / "read-only", os.O_RDONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError) as caught:
            fileio.write_all_holding_gil(fd, b"x")
    finally:
        os.close(fd)
    assert caught.value.errno == errno.EBADF
    assert caught.value.strerror == os.strerror(errno.EBADF)


def test_a_partial_write_is_completed(tmp_path, monkeypatch, fresh_guard):
    real = fileio._libc_write_call

    def short(fd, data, size):  # the kernel may write less than asked
        return real(fd, data[:3], 3)

    monkeypatch.setattr(fileio, "_libc_write_call", short)
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        assert fileio.write_all_holding_gil(fd, b"0123456789") == 10
    finally:
        os.close(fd)
    assert path.read_bytes() == b"0123456789"


def test_spool_appends_do_not_hand_the_gil_to_other_threads(tmp_path, fresh_guard):
    """``os.write`` releases the GIL, so a sink's worker waiting for it takes it on every event
    and the emitting thread waits for the worker: the durable emit ran at a third of the
    memory-only one.  The spool's appends keep the GIL: with a switch interval longer than the
    test, another thread runs only if a write releases it."""
    spool = Spool(str(tmp_path), max_bytes=10**8, segment_bytes=10**8)
    batch = [Envelope(next_event_id(), '{"n": 1}') for _ in range(2001)]
    spool.write(batch[0])  # the head segment is opened (os.open releases the GIL)
    ran = 0
    stop = False

    def other_thread() -> None:
        nonlocal ran
        while not stop:
            ran += 1
            time.sleep(0)  # gives the GIL back at once

    interval = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    thread = threading.Thread(target=other_thread, daemon=True)
    try:
        thread.start()
        time.sleep(0.05)
        before = ran
        for env in batch[1:]:
            spool.write(env)
        during = ran - before
    finally:
        stop = True
        sys.setswitchinterval(interval)
        thread.join()
        spool.close()
    assert during == 0, f"another thread ran {during} times during 2,000 spool writes"


def test_slow_writes_release_the_gil_for_a_while(tmp_path, monkeypatch, fresh_guard):
    """A file system that blocks (two writes over SLOW_WRITE_NS within SLOW_AGAIN_NS) must not
    stop the application's other threads: the writes of the next RELEASE_AFTER_SLOW_NS go
    through os.write, which releases the GIL; then the GIL is kept again."""
    now = [10**12]
    monkeypatch.setattr(fileio, "_clock", lambda: now[0])
    calls = []
    real = fileio._libc_write_call

    def blocking(fd, data, size):
        calls.append(len(data))
        now[0] += fileio.SLOW_WRITE_NS + 1  # this write took longer than SLOW_WRITE_NS
        return real(fd, data, size)

    released = []

    def releasing(fd, data):
        released.append(len(data))
        return os.write(fd, data)

    monkeypatch.setattr(fileio, "_libc_write_call", blocking)
    monkeypatch.setattr(fileio, "write_all", releasing)
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        fileio.write_all_holding_gil(fd, b"a")  # slow once: could be a preempted thread
        now[0] += 2 * fileio.SLOW_AGAIN_NS
        fileio.write_all_holding_gil(fd, b"b")  # slow again, but long after: still kept
        fileio.write_all_holding_gil(fd, b"c")  # slow again soon after: the file system blocks
        assert calls == [1, 1, 1] and released == []
        fileio.write_all_holding_gil(fd, b"d")
        fileio.write_all_holding_gil(fd, b"e")
        assert calls == [1, 1, 1] and released == [1, 1]  # released the GIL
        now[0] += fileio.RELEASE_AFTER_SLOW_NS
        fileio.write_all_holding_gil(fd, b"f")
        assert calls == [1, 1, 1, 1]  # kept again
    finally:
        os.close(fd)
    assert Path(path).read_bytes() == b"abcdef"
