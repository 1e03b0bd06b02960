"""Writing bytes to a file descriptor: the one loop every writer here uses."""

from __future__ import annotations

import os


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


__all__ = ["write_all"]
