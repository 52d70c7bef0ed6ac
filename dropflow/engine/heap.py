"""Giving a deleted session's memory back to the system, in a long-running daemon.

Theory of operation
-------------------
A session of 100,000 drops makes a few hundred thousand small objects; deleting it frees them all (the
session breaks its own cycles, :meth:`dropflow.engine.session.Session.release`). Freed is not returned,
though. CPython's small-object allocator (pymalloc) gives an arena of 1 MiB back only when every block in it
is free, and the few long-lived objects a daemon makes while a session runs (log records kept, counters,
registries growing) land in the session's arenas and pin them: measured, a node manager fed the same graph
again and again settled 25-35 % above its size after the first session.

So the daemons run on the C library's allocator (``PYTHONMALLOC=malloc``, chosen before the interpreter
starts: :func:`daemon_allocator` re-executes the daemon's command with it), and after each deletion
:func:`give_back` asks glibc to return every free page (``malloc_trim``): a freed block then costs nothing,
wherever its neighbours live. The price, measured on 100k-drop graphs: about 10 % more peak memory and
10-20 % more time to build a session, for a daemon that ends each session where it started. ``dropflow
run`` (one session, then exit) and the worker processes keep pymalloc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Callable, Sequence

__all__ = ["daemon_allocator", "give_back"]

log = logging.getLogger(__name__)

#: Set for the re-executed daemon, which removes it (and PYTHONMALLOC) from its environment at once.
MARK = "DROPFLOW_DAEMON_MALLOC"


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_trim = _load_trim()


def give_back() -> None:
    """Return the allocator's free memory to the system (glibc only; elsewhere a no-op). Milliseconds."""
    if _trim is not None:
        _trim(0)


def daemon_allocator(argv: Sequence[str], allocator: str) -> None:
    """Re-execute this daemon's command (``python -m dropflow ARGV``) with the C allocator, unless it
    already runs on the allocator asked for. Same pid: whoever started the daemon still holds it.

    Call before starting any thread or process. ``allocator`` is ``"malloc"`` or ``"pymalloc"``."""
    if os.environ.pop(MARK, None) == "1":
        # Re-executed already. The variable has done its work (the interpreter reads it at start only):
        # the daemon's children -- worker processes, users' commands -- get the environment it was given.
        os.environ.pop("PYTHONMALLOC", None)
        return
    if allocator != "malloc" or os.environ.get("PYTHONMALLOC") or _trim is None:
        return
    env = dict(os.environ, PYTHONMALLOC="malloc", **{MARK: "1"})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "dropflow", *argv], env)
