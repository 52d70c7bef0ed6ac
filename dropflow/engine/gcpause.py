"""Keep the cyclic garbage collector out of bulk graph construction.

Theory of operation
-------------------
Building a graph creates millions of long-lived container objects at once. CPython's collector responds
with repeated full collections, each walking every object built so far: about half again the build time at
a million drops. :func:`bulk_allocation` collects once beforehand (cheap while the heap is small), pauses
the collector while the graph is built, then *freezes* what exists -- moves it to the permanent generation --
so that later collections do not walk the graph again and again while it runs. Frozen objects are still
freed by reference counting; a session breaks its graph's reference cycles when it is released (see
``Session.release``), so nothing frozen leaks.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["bulk_allocation"]


@contextmanager
def bulk_allocation() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
