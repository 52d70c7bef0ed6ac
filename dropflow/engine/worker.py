"""The worker process of the process pool: ``python -m dropflow.engine.worker RFD WFD PARENT_PID``.

Theory of operation
-------------------
The pool forks a worker from its zygote (:mod:`dropflow.engine.zygote`), or starts this module as a fresh
interpreter (never a fork of the engine, and without importing the caller's ``__main__``); either way it gets
one pipe to read tasks from and one to write outcomes to, framed by ``multiprocessing.connection``. The first
message is the parent's ``sys.path``, so user modules import the same way in both. The worker then imports the
app runners at once (warm: the first task does not pay for it), and executes each task and sends its
:class:`Outcome` back, until the pipe closes.

A worker never outlives its engine: it asks the kernel for SIGKILL when its parent dies
(``PR_SET_PDEATHSIG``, on Linux), and exits if the parent is already gone by then; and it exits when its
task pipe closes. SIGINT is ignored: Ctrl-C is the parent's to handle. Its pipes are not inherited by what
user code starts, so a stray grandchild never holds them open. ``faulthandler`` prints the Python stack of a
crash (a segfault in an extension) to standard error, which the daemon logs. While a task runs, the worker's
standard output and error are captured (:class:`~dropflow.drops.apps.base.OutputCapture`): passed on to the
daemon's as before, and their tails returned in the outcome for the drop's log.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import sys
from multiprocessing.connection import Connection

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent (the thread that started it) ends; exit now if it has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(0)


def prepare() -> None:
    """Import the app runners now, so that the first task does not pay for it."""
    from ..drops import kinds  # noqa: F401


def serve(rfd: int, wfd: int, parent_pid: int | None) -> int:
    """Be a worker on these pipes until the task pipe closes (in a fresh interpreter or a zygote's fork)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        die_with_parent(parent_pid)
    os.set_inheritable(rfd, False)
    os.set_inheritable(wfd, False)
    faulthandler.enable()
    inbox, outbox = Connection(rfd, writable=False), Connection(wfd, readable=False)
    try:
        path = inbox.recv()
    except EOFError:
        return 0
    sys.path[:] = path
    from ..drops.apps.base import CancelToken, Outcome, OutputCapture, format_exception
    from ..drops.kinds import execute

    capture = OutputCapture()
    while True:
        try:
            task = inbox.recv()
        except EOFError:
            return 0
        try:
            with capture:
                outcome = execute(task, CancelToken())
        except BaseException as exc:  # sys.exit() in user code fails its app, not the worker
            outcome = Outcome.failed(format_exception(exc))
        capture.fill(outcome)
        try:
            outbox.send(outcome)
        except Exception as exc:  # an outcome that cannot be pickled is the app's failure
            outbox.send(Outcome.failed(f"cannot send the app's result back: {exc}"))


def main(argv: list[str]) -> int:
    return serve(int(argv[0]), int(argv[1]), int(argv[2]) if len(argv) > 2 else None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
