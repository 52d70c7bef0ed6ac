"""The watcher: one thread that drives every running command of a node, so that no thread waits for one.

Theory of operation
-------------------
A shell app's command is started on the owner thread (a ``vfork`` and an ``exec``: the same work a pool
thread did, without handing the app to it) and handed to :meth:`Children.watch` as a
:class:`~dropflow.drops.apps.command.Command`. The watcher thread waits in one ``epoll`` on the descriptors of
all of them -- each process's pidfd, the pipes it writes its output to, the pipe of its standard input -- and
on the earliest of their deadlines, and calls the commands back (:mod:`dropflow.drops.apps.command`): drain a
pipe, feed standard input, expire a timeout. When a process has exited, the watcher makes its outcome and
passes it to the command's ``then``, which posts it to the owner. A chain of commands thus costs one thread
switch per command (watcher to owner, with the news) instead of two, and a thousand running commands cost no
thousand threads.

Threads: :meth:`watch` and :meth:`close` run on other threads (the owner's). ``epoll`` allows descriptors
to be added while another thread waits on it; the map from descriptor to command is filled *before* the
descriptor is added, and a descriptor is removed from the epoll *before* it is closed -- so a number the
kernel reuses for a new command's pipe can never be taken for an old one's. A new deadline earlier than
the one the watcher sleeps towards wakes it through an eventfd (rare: only apps with a ``timeout``).
Everything else -- the commands' state, their deadlines' heap -- is the watcher thread's alone.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import select
import threading
import time
from collections.abc import Callable

from ..drops.apps.base import Outcome
from ..drops.apps.command import Command

__all__ = ["Children"]

log = logging.getLogger(__name__)

Then = Callable[[Outcome], None]


class Children:
    """The commands of one node, driven by one thread; see the module's docstring."""

    def __init__(self, name: str = "dropflow-children") -> None:
        self._epoll = select.epoll()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        #: Descriptor -> (its command, what to call with the outcome). Written by watch() before the
        #: descriptor enters the epoll; read and emptied by the watcher.
        self._fds: dict[int, tuple[Command, Then]] = {}
        self._new_deadlines: list[
            tuple[float, int, Command]
        ] = []  # appended by watch(), taken by the watcher
        self._deadlines: list[tuple[float, int, Command]] = []  # the watcher's heap
        self._seq = itertools.count()
        self._sleeping_until = float("inf")
        self._lock = threading.Lock()  # guards _new_deadlines and _sleeping_until
        self._started = 0  # written by watch() only
        self._ended = 0  # written by the watcher only
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def watch(self, command: Command, then: Then) -> None:
        """Drive a started command; ``then(outcome)`` is called on the watcher thread when it has ended."""
        if self._closed:
            command.token.cancel()
            raise RuntimeError("the node's command watcher is closed")
        pairs = command.fds()
        for fd, _ in pairs:
            self._fds[fd] = (command, then)
        self._started += 1
        if command.deadline is not None:
            with self._lock:
                self._new_deadlines.append((command.deadline, next(self._seq), command))
                wake = command.deadline < self._sleeping_until
            if wake:
                os.eventfd_write(self._wake, 1)
        # The pidfd last: once it is in, the watcher may end the command and close all its descriptors.
        for fd, events in sorted(pairs, key=lambda pair: pair[0] == command.pidfd):
            self._epoll.register(fd, select.EPOLLIN if events == 1 else select.EPOLLOUT)

    def running(self) -> int:
        """Commands started and not yet ended (for the monitor and tests)."""
        return self._started - self._ended

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the watcher: commands still running are cancelled (their groups killed) and never answered.

        True if the thread ended within ``timeout``."""
        if self._closed:
            return True
        self._closed = True
        for command, _ in list(self._fds.values()):
            command.token.cancel()
        os.eventfd_write(self._wake, 1)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the watcher thread ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        deadlines = self._deadlines
        fds, epoll = self._fds, self._epoll
        while not self._closed:
            with self._lock:
                for item in self._new_deadlines:
                    heapq.heappush(deadlines, item)
                self._new_deadlines.clear()
                while deadlines and deadlines[0][2].deadline is None:  # ended, or already expired
                    heapq.heappop(deadlines)
                self._sleeping_until = deadlines[0][0] if deadlines else float("inf")
            timeout = max(0.0, deadlines[0][0] - time.monotonic()) if deadlines else -1
            try:
                events = epoll.poll(timeout)
            except InterruptedError:
                continue
            now = time.monotonic()
            while deadlines and deadlines[0][0] <= now:
                _, _, command = heapq.heappop(deadlines)
                if command.deadline is not None:  # still running
                    command.expire()
            for fd, _ in events:
                if fd == self._wake:
                    with contextlib.suppress(BlockingIOError):
                        os.eventfd_read(self._wake)
                    continue
                entry = fds.get(fd)
                if entry is None:  # its command ended earlier in this batch
                    continue
                command, then = entry
                if fd == command.pidfd:
                    self._end(command, then)
                    continue
                try:
                    more = command.write() if fd == command.writer else command.read(fd)
                except Exception:  # an engine bug must not stop every other command's news
                    log.exception("command watcher: driving %r failed", command)
                    self._end(command, then, broken=True)
                    continue
                if not more:
                    self._forget(fd)
                    command.release(fd)
        self._epoll.close()
        os.close(self._wake)
        # Closed while commands ran: nobody waits for them any more. Kill and reap them.
        for command in {command for command, _ in fds.values()}:
            for fd, _ in command.fds():
                self._forget(fd)
            self._kill(command)

    @staticmethod
    def _kill(command: Command) -> None:
        command.token.detach()  # SIGKILL to its group
        with contextlib.suppress(Exception):
            command.proc.wait(5.0)
        command.close()

    def _forget(self, fd: int) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(fd)
        self._fds.pop(fd, None)

    def _end(self, command: Command, then: Then, broken: bool = False) -> None:
        for fd, _ in command.fds():
            self._forget(fd)
        self._ended += 1
        if command.deadline is not None:  # not kept alive in the heap until its deadline
            command.deadline = None
            self._deadlines[:] = [d for d in self._deadlines if d[2] is not command]
            heapq.heapify(self._deadlines)
        outcome = None
        if not broken:
            try:
                command.exited()
                outcome = command.outcome()
            except Exception:
                log.exception("command watcher: ending %r failed", command)
        if outcome is None:
            self._kill(command)
            outcome = Outcome.failed("the engine lost track of the command (see the node's log)")
        try:
            then(outcome)
        except Exception:
            log.exception("command watcher: passing on the outcome of %r failed", command)
