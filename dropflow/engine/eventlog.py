"""A bounded log of state changes, each with its cause, and ``story(uid)`` over it.

Theory of operation
-------------------
The owner loop appends one tuple per state change -- time, drop id, old state, new state, cause -- to a
``deque`` with a maximum length, so the log costs a fixed amount of memory however large the graph. The
cause is the id of the drop whose change triggered this one, or a word (``trigger``, ``cancel``,
``lifespan``) for changes from outside the cascade; following causes backwards explains why a drop ended
where it did. Formatting happens only when someone asks.
"""

from __future__ import annotations

import time
from collections import deque
from typing import NamedTuple

__all__ = ["Event", "EventLog"]


class Event(NamedTuple):
    time: float
    uid: str
    start: str
    end: str
    cause: str

    def __str__(self) -> str:
        return f"{self.time:.6f} {self.uid}: {self.start} -> {self.end} (cause: {self.cause})"


class EventLog:
    """Keeps the last ``maxlen`` events."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self._events: deque[tuple[float, str, str, str, str]] = deque(maxlen=maxlen)
        #: Wall-clock seconds: what users compare with their own logs.
        self.clock = time.time
        self.append = self._events.append

    def __len__(self) -> int:
        return len(self._events)

    def events(self) -> list[Event]:
        """A snapshot (any thread): copying the deque is one C call, so the owner cannot append mid-copy."""
        return [Event(*e) for e in tuple(self._events)]

    def snapshot(self) -> tuple[tuple[float, str, str, str, str], ...]:
        """The raw records (time, uid, start, end, cause), oldest first (any thread): for readers that go
        through the whole log and need no Event objects."""
        return tuple(self._events)

    def story(self, *uids: str) -> list[Event]:
        """Every logged event of these drops, oldest first (any thread)."""
        wanted = set(uids)
        return [Event(*e) for e in tuple(self._events) if e[1] in wanted]
