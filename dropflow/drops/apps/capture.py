"""What a Python app prints, captured per app: the tail of it goes back with the app's outcome.

Theory of operation
-------------------
Python apps run in threads of the engine's process, or in worker processes; either way ``print()`` writes to
``sys.stdout``, which is the process's. Left alone, an app's prints land in the middle of ``dropflow run``'s
progress bar, or in a daemon's log with nothing to say which app printed them. :func:`captured` routes what
the *current thread* writes to ``sys.stdout`` and ``sys.stderr`` into a bounded buffer of its own for as long
as the app runs, one buffer per stream; their texts become :attr:`~dropflow.drops.apps.base.Outcome.stdout`
and ``stderr`` (in a worker process, what C code or subprocesses write to the file descriptors is added by
the worker's :class:`~dropflow.drops.apps.base.OutputCapture`).

The routing needs one stand-in for each stream, put in place the first time an app runs in the process
(:func:`install`). It passes every write of a thread that captures nothing straight to the stream it stands
in for, so the rest of the process sees no difference; and it steps aside (does nothing) if something else
has replaced ``sys.stdout`` since. Threads an app starts itself are not captured. Output written by C code or
subprocesses to file descriptor 1 bypasses ``sys.stdout`` and is not captured either.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["TAIL", "Printed", "Tail", "captured", "install"]

#: Characters of an app's output that are kept (the end of it).
TAIL = 4096


class Tail:
    """The last ``limit`` characters written to it."""

    __slots__ = ("_chunks", "_size", "limit")

    def __init__(self, limit: int = TAIL) -> None:
        self.limit = limit
        self._chunks: deque[str] = deque()
        self._size = 0

    def write(self, text: str) -> None:
        if not text:
            return
        self._chunks.append(text)
        self._size += len(text)
        while self._size - len(self._chunks[0]) >= self.limit:
            self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        joined = "".join(self._chunks)
        return joined[-self.limit :] if len(joined) > self.limit else joined


class Printed:
    """What one app printed: the tails of its standard output and error."""

    __slots__ = ("err", "out")

    def __init__(self, limit: int) -> None:
        self.out = Tail(limit)
        self.err = Tail(limit)


class _Router:
    """Stands in for ``sys.stdout`` or ``sys.stderr``: a capturing thread's writes go to its buffer."""

    def __init__(self, stream: TextIO, local: threading.local, which: str) -> None:
        self._stream = stream
        self._local = local
        self._which = which  # "out" or "err"

    def write(self, text: str) -> int:
        sink: Printed | None = getattr(self._local, "sink", None)
        if sink is None:
            return self._stream.write(text)
        getattr(sink, self._which).write(text)
        return len(text)

    def flush(self) -> None:
        if getattr(self._local, "sink", None) is None:
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_local = threading.local()
_lock = threading.Lock()


def install() -> bool:
    """Put the routers in place of ``sys.stdout`` and ``sys.stderr`` (once); False if they cannot be."""
    with _lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, _Router):
                continue
            if stream is None:
                return False
            setattr(sys, name, _Router(stream, _local, name[3:]))
    return True


@contextlib.contextmanager
def captured(limit: int = TAIL) -> Iterator[Printed]:
    """Capture what this thread prints while the block runs; the tails are in the yielded buffers."""
    printed = Printed(limit)
    routed = install() and isinstance(sys.stdout, _Router)
    previous = getattr(_local, "sink", None)
    _local.sink = printed if routed else None
    try:
        yield printed
    finally:
        _local.sink = previous
