"""Writing files: all of a buffer to a descriptor, and a whole file replaced atomically.

The loops every writer of the package uses (sinks, spool, dead letters, archives,
retention).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any


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
