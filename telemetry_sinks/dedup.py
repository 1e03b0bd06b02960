"""Dropping duplicates by event id: the ids seen most recently, in a bounded window.

At-least-once delivery repeats events (a client retrying after a lost answer, a
relay delivering its last round again after a crash), each copy under the same
event id.  The collector and the archive sink remember the last ids they took and
skip a repeated one.
"""

from __future__ import annotations

from collections import OrderedDict


class RecentIds:
    """The ``capacity`` most recently seen event ids (least recently seen are forgotten first)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def seen(self, event_id: str) -> bool:
        """Whether ``event_id`` was added before (and is still remembered); refreshes it."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return True
        return False

    def add(self, event_id: str) -> None:
        if self.capacity <= 0:
            return
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


__all__ = ["RecentIds"]
