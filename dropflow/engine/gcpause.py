"""Keep the cyclic garbage collector out of bulk graph construction.

Theory of operation
-------------------
Building a graph creates millions of long-lived container objects at once. CPython's collector responds
with repeated collections of the young generations, each promoting what it walks, and full collections
that walk everything built so far. :func:`bulk_allocation` pauses the collector while the graph is built
and turns it back on afterwards; the objects built are then collected (or kept) by the normal rules.

Nothing is frozen (``gc.freeze`` would move every live object of the process -- other sessions' included --
into a permanent generation that a long-running daemon never collects again), and the pause is only the
length of one build. A session breaks its graph's reference cycles when it is released (see
``Session.release``), so reference counting frees a deleted session without the collector's help; the
daemon memory test (tests/test_daemon_memory.py) checks that nothing accumulates.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["bulk_allocation"]


@contextmanager
def bulk_allocation() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
