"""A watchdog process that kills the apps' process groups when the node manager that started them dies.

Theory of operation
-------------------
Shell and MPI apps run in process groups of their own, started from the node manager's threads. If the
node manager is killed (SIGKILL, OOM killer), nothing stops them: they are orphaned and run on. So every
process that starts app groups holds one *reaper*: a tiny separate process (``python -I -S`` running this
file, importing nothing of dropflow, about 10 ms to start) that reads a pipe from its parent. The parent
writes ``+PGID`` when an app's group starts and ``-PGID`` when it is gone -- a few microseconds each, one
small atomic write, fed by the group hooks of :mod:`dropflow.drops.apps.base` (which
:class:`~dropflow.drops.apps.base.CancelToken` and the process pool call). When the pipe reaches end of
file -- the parent closed it, or died, which the kernel turns into the same thing -- the reaper SIGKILLs
every group still registered, and every process left in those groups' sessions (MPI ranks in groups of
their own), and exits.

The reaper runs in a session of its own, so that Ctrl-C at a terminal or a kill of the manager's process
group does not take it down with the manager; it ignores SIGINT and SIGTERM anyway (Slurm signals every
process of a job it ends). The pipe's write end is never inherited by children (``os.pipe`` makes it
close-on-exec) and is closed in children forked with ``os.fork``, so no other process keeps the reaper
waiting after its node is gone.

One reaper serves the whole process: nodes :func:`acquire` it when they start and :func:`release` it when
they close; the last release closes the pipe, which kills what is left (nothing, after a clean close) and
ends the reaper.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def watch(fd: int = 0) -> int:
    """The reaper's main loop (in the reaper process): register groups until EOF, then kill them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A batch scheduler ending the job SIGTERMs every process of it, this one too: it must outlive its
    # node to kill what the node leaves (its end of file comes as soon as the node is gone).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: set[int] = set()
    partial = b""
    while chunk := os.read(fd, 65536):
        lines = (partial + chunk).split(b"\n")
        partial = lines.pop()
        for line in lines:
            if line[:1] == b"+":
                groups.add(int(line[1:]))
            elif line[:1] == b"-":
                groups.discard(int(line[1:]))
    kill_all(groups)
    return 0


def kill_all(leaders: set[int]) -> None:
    """SIGKILL the process groups led by ``leaders``, and every process still in their sessions.

    An app's group leader also leads a session (``start_new_session``), and some launchers move their
    children to process groups of their own within that session (Open MPI puts each rank in one), so a
    group kill alone would orphan them: the processes of the sessions are found in ``/proc`` and killed
    one by one, over a few passes in case one forked meanwhile.
    """
    for pgid in leaders:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for _ in range(3):
        if not _kill_members(leaders):
            break


def _kill_members(leaders: set[int]) -> bool:
    """One pass over /proc: kill the live processes in a group or session of ``leaders``; any found?"""
    found = False
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs: the group kills are all there is
        return False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[0] == b"Z":
            continue
        if int(fields[2]) in leaders or int(fields[3]) in leaders:
            found = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry), signal.SIGKILL)
    return found


if __name__ == "__main__":  # the reaper process: stop here, before importing anything else
    sys.exit(watch())

import logging  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402

__all__ = ["Reaper", "acquire", "current", "release"]

log = logging.getLogger(__name__)


class Reaper:
    """The parent's end of one reaper process: a :class:`~dropflow.drops.apps.base.GroupHook`."""

    def __init__(self) -> None:
        read_end, self._fd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            os.close(self._fd)
            raise
        finally:
            os.close(read_end)
        # Writes are serialized with close, so that a closed descriptor number is never written to after
        # being reused by another file.
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def group_started(self, pgid: int) -> None:
        self._write(b"+%d\n" % pgid)

    def group_ended(self, pgid: int) -> None:
        self._write(b"-%d\n" % pgid)

    def _write(self, line: bytes) -> None:
        with self._lock:
            if self._fd < 0:
                return
            try:
                os.write(self._fd, line)  # shorter than PIPE_BUF: atomic, never interleaved
            except OSError as exc:  # the reaper died: apps still run, but nothing guards them any more
                log.error("the reaper (pid %d) is gone: %s", self.proc.pid, exc)
                os.close(self._fd)
                self._fd = -1

    def close(self, timeout: float = 5.0) -> None:
        """Close the pipe (the reaper kills any group still registered) and wait for the reaper to exit."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _forget(self) -> None:
        """In a forked child: drop the inherited write end, so the reaper still sees its parent's EOF."""
        self._lock = threading.Lock()  # another thread may have held it at the fork
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


_lock = threading.Lock()
_reaper: Reaper | None = None
_users = 0


def acquire() -> Reaper:
    """Start the process's reaper if it is not running, count one more user, and return it."""
    global _reaper, _users
    # Imported here, not at the top: this file also runs as the bare reaper process, outside the package.
    from ..drops.apps.base import add_group_hook

    with _lock:
        if _reaper is None:
            _reaper = Reaper()
            add_group_hook(_reaper)
        _users += 1
        return _reaper


def release(timeout: float = 5.0) -> None:
    """One user fewer; the last one stops the reaper (see :meth:`Reaper.close`)."""
    global _reaper, _users
    from ..drops.apps.base import remove_group_hook

    with _lock:
        if _reaper is None:
            return
        _users -= 1
        if _users > 0:
            return
        reaper, _reaper = _reaper, None
        remove_group_hook(reaper)
    reaper.close(timeout)


def current() -> Reaper | None:
    """The running reaper, if any (for tests and diagnostics)."""
    return _reaper


def _after_fork_in_child() -> None:
    global _lock, _reaper, _users
    _lock = threading.Lock()
    if _reaper is not None:
        _reaper._forget()
    _reaper, _users = None, 0


os.register_at_fork(after_in_child=_after_fork_in_child)
