"""Writing files: all of a buffer to a descriptor, and a whole file replaced atomically.

The loops every writer of the package uses (sinks, spool, dead letters, archives,
retention), and the spool's append that keeps the GIL (:func:`write_all_holding_gil`).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

#: A write that keeps the GIL and takes longer than this (ns) is slow.  A thread preempted
#: on a busy machine loses the CPU for a few milliseconds; a file system that blocks
#: (writeback throttling, a network file system) for longer, and again and again.
SLOW_WRITE_NS = 10_000_000
#: Two slow writes within this time (ns): the file system blocks ...
SLOW_AGAIN_NS = 1_000_000_000
#: ... and the writes release the GIL for this long (ns), as ``os.write`` does.
RELEASE_AFTER_SLOW_NS = 60 * 1_000_000_000


def write_all(fd: int, data: bytes | bytearray | memoryview) -> int:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write less); return the count.

    An ``OSError`` (a full disk, a closed descriptor) propagates; the bytes before it
    may have been written.
    """
    view = memoryview(data)
    total = len(view)
    while view:
        view = view[os.write(fd, view) :]
    return total


def _libc_write() -> tuple[Callable[..., int] | None, Callable[[], int], Callable[[int], Any]]:
    """libc's ``write`` called without releasing the GIL (``ctypes.PyDLL``; None where there is no
    ctypes or no C library to load: then ``os.write`` is used), ``get_errno`` and ``c_size_t``."""
    try:
        import ctypes

        function = ctypes.PyDLL(None, use_errno=True).write
    except Exception:  # no _ctypes, no dlopen(NULL) (Windows), no write symbol
        return None, int, int
    # No argtypes (converting through them costs more than the system call): the
    # descriptor is passed as a C int and the count as a c_size_t, as write() declares.
    function.restype = ctypes.c_ssize_t
    return function, ctypes.get_errno, ctypes.c_size_t


_libc_write_call, _get_errno, _size_t = _libc_write()
_release_until = 0  # perf_counter_ns before which writes release the GIL (after slow ones)
_last_slow = -SLOW_AGAIN_NS  # perf_counter_ns of the last slow write
_clock = time.perf_counter_ns


def write_all_holding_gil(fd: int, data: bytes) -> int:
    """``write_all`` for a small append to a regular file, without releasing the GIL; return the count.

    ``os.write`` releases the GIL around the system call, as it must for pipes and
    sockets that can block.  An append of a few hundred bytes into the page cache
    takes about half a microsecond, less than handing the GIL over and taking it
    back; and while another thread (a sink's worker) waits for the GIL, each release
    hands it over, so the writing thread waits for that thread's work on every call
    (the convoy effect): the durable spool's ``emit()`` ran at a third of the
    memory-only one for that reason.  So the spool appends through libc's ``write``
    called with the GIL held.  If two such writes within ``SLOW_AGAIN_NS`` take
    longer than ``SLOW_WRITE_NS`` each (a file system that blocks: writeback
    throttling, a network file system), the writes of the next
    ``RELEASE_AFTER_SLOW_NS`` release the GIL again, so that a slow disk never stops
    the application's other threads for long.
    """
    global _release_until, _last_slow
    write = _libc_write_call
    if write is None or type(data) is not bytes or (_release_until and _clock() < _release_until):
        return write_all(fd, data)
    size = len(data)
    start = _clock()
    count = write(fd, data, _size_t(size))
    took = _clock() - start
    if took > SLOW_WRITE_NS:
        if start - _last_slow < SLOW_AGAIN_NS:
            _release_until = start + took + RELEASE_AFTER_SLOW_NS
        _last_slow = start
    if count == size:
        return count
    if count < 0:
        code = _get_errno()
        if code != errno.EINTR:
            raise OSError(code, os.strerror(code))
        count = 0
    return count + write_all(fd, memoryview(data)[count:])


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_file(target: str, chunks: Iterable[bytes], gz: bool = False) -> None:
    """Write ``chunks`` to ``target`` atomically: a temporary file, fsync, rename, fsync of the directory.

    A crash at any moment leaves the old ``target`` or the complete new one.
    """
    import gzip

    tmp = target + ".tmp"
    with open(tmp, "wb") as raw:
        out: Any = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if gz else raw
        try:
            for chunk in chunks:
                out.write(chunk)
        finally:
            if gz:
                out.close()
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, target)
    _fsync_directory(os.path.dirname(os.path.abspath(target)))


__all__ = ["replace_file", "write_all"]
