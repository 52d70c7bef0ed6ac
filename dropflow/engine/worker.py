"""The worker process of the process pool: ``python -m dropflow.engine.worker RFD WFD``.

Theory of operation
-------------------
The pool starts this module as a fresh interpreter (not a fork of the engine, and without importing the
caller's ``__main__``), with one pipe to read tasks from and one to write outcomes to, framed by
``multiprocessing.connection``. The first message is the parent's ``sys.path``, so user modules import the
same way in both. Then each task is executed and its :class:`Outcome` sent back, until the pipe closes --
which also happens when the parent dies, so a worker never outlives its engine. SIGINT is ignored: Ctrl-C
is the parent's to handle.
"""

from __future__ import annotations

import signal
import sys
from multiprocessing.connection import Connection


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rfd, wfd = int(argv[0]), int(argv[1])
    inbox, outbox = Connection(rfd, writable=False), Connection(wfd, readable=False)
    try:
        path = inbox.recv()
    except EOFError:
        return 0
    sys.path[:] = path
    from ..drops.apps.base import CancelToken, Outcome
    from ..drops.kinds import execute

    while True:
        try:
            task = inbox.recv()
        except EOFError:
            return 0
        outcome = execute(task, CancelToken())
        try:
            outbox.send(outcome)
        except Exception as exc:  # an outcome that cannot be pickled is the app's failure
            outbox.send(Outcome.failed(f"cannot send the app's result back: {exc}"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
