"""Python apps that crash, hang or leave processes behind: for the tests of the app pools."""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading


def write_pid(path: str) -> None:
    """Record which process ran this app."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))


def abort() -> None:
    os.abort()


def segfault() -> None:
    ctypes.string_at(0)


def exit3() -> None:
    os._exit(3)


def system_exit() -> None:
    raise SystemExit(7)


def forever(path: str | None = None, child: bool = False) -> None:
    """Never return. With ``path``, first write ``PID`` (and ``PID CHILD_PID`` with ``child``: a
    ``sleep 1000`` started in the app's process group) there, so a test knows the app runs."""
    pids = [os.getpid()]
    if child:
        pids.append(subprocess.Popen(["sleep", "1000"]).pid)
    if path is not None:
        with open(path + ".tmp", "w") as f:
            f.write(" ".join(map(str, pids)))
        os.rename(path + ".tmp", path)
    threading.Event().wait()


#: Set by a test to let every `stuck` app (in the test's own process) return.
RELEASE = threading.Event()


def stuck(path: str | None = None) -> str:
    """Return only when a test sets RELEASE (in a thread of the test's process); writes ``path`` first."""
    if path is not None:
        with open(path, "w") as f:
            f.write(str(os.getpid()))
    RELEASE.wait()
    return "late"


def wait_for_file(path: str) -> str:
    """Return once ``path`` exists (another process creates it): an app that a test holds open."""
    import time

    while not os.path.exists(path):
        time.sleep(0.02)  # the app's own wait, in a worker process; the test itself never sleeps
    return "released"
