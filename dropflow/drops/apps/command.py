"""A started command: its process, the pipes that feed and drain it, its deadline, and how it ends.

Theory of operation
-------------------
Commands need no thread of their own while they run. A kind that runs commands (shell apps) *starts* one
and returns a :class:`Command`; whoever drives it -- the engine's watcher thread, which drives every command
of a node at once (:mod:`dropflow.engine.children`), or :func:`drive` in the calling thread -- waits on
three kinds of file descriptor and calls the command back:

- its process's *pidfd*, readable once the process has exited (:meth:`Command.exited`: the process is
  reaped, its group killed, what its pipes still hold read);
- its standard output and error, *pipes* drained as they fill into a :class:`Sink` each: every byte for an
  output drop, only the last ``OUTPUT_TAIL`` bytes for the drop's log, so a chatty command costs bounded
  memory and no file (creating and removing two log files was a third of a short command's cost);
- its standard input, a pipe fed from the input drop's bytes as the command reads them.

A deadline (the app's ``timeout``) is the driver's to keep: when it passes, :meth:`Command.expire` cancels
the token, which signals the command's process group. When the process has exited, :meth:`Command.outcome`
makes the app's outcome with the kind's own ``finish``. Everything here runs on the driver's thread, one
command at a time; the cancel token is the only thing shared with another thread (the owner's).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import time
from collections.abc import Callable

from .base import CancelToken, Outcome

__all__ = ["Command", "Sink", "drive"]

#: Bytes read from a pipe at a time.
READ_SIZE = 65536


class Sink:
    """What a command wrote to one pipe: every byte (``limit`` None), or only the last ``limit`` bytes."""

    __slots__ = ("_buf", "limit", "total")

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.total = 0
        self._buf = bytearray()

    def add(self, data: bytes) -> None:
        self.total += len(data)
        self._buf += data
        if self.limit is not None and len(self._buf) > 2 * self.limit:
            del self._buf[: -self.limit]  # amortised: the buffer is trimmed once per `limit` bytes

    def value(self) -> bytes:
        buf = self._buf if self.limit is None else self._buf[-self.limit :]
        return bytes(buf)

    def text(self) -> str:
        return self.value().decode("utf-8", "replace")


class Command:
    """A command whose process has started; see the module's docstring."""

    __slots__ = (
        "_finish",
        "_stdin",
        "deadline",
        "pidfd",
        "proc",
        "readers",
        "returncode",
        "started",
        "timed_out",
        "token",
        "writer",
    )

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        token: CancelToken,
        finish: Callable[[Command], Outcome],
        *,
        sinks: dict[int, Sink],
        stdin: bytes | None = None,
        timeout: float | None = None,
        started: float | None = None,
    ) -> None:
        self.proc = proc
        self.token = token
        self._finish = finish
        self.started = time.perf_counter() if started is None else started
        #: Pipe read ends (non-blocking) and where their bytes go.
        self.readers = sinks
        for fd in sinks:
            os.set_blocking(fd, False)
        #: The write end of standard input, while bytes are left to feed.
        self.writer: int | None = None
        self._stdin = memoryview(stdin or b"")
        if stdin is not None and proc.stdin is not None:
            self.writer = proc.stdin.fileno()
            os.set_blocking(self.writer, False)
            if not stdin:
                self._close_writer()
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.timed_out = False
        self.returncode: int | None = None
        # Readable once the process has exited (Linux 5.3+); the process is not reaped until then, so its pid
        # cannot be reused under it.
        self.pidfd = os.pidfd_open(proc.pid)

    # -- called by the driver -------------------------------------------------------------------------------

    def read(self, fd: int) -> bool:
        """Read what a pipe holds; False once it reached end of file (the driver then stops waiting on it and
        calls :meth:`release`)."""
        sink = self.readers.get(fd)
        if sink is None:
            return False
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return True
            except OSError:
                data = b""
            if not data:
                return False
            sink.add(data)
            if len(data) < READ_SIZE:
                return True

    def write(self) -> bool:
        """Feed standard input what it takes now; False once all was written, or the command closed it (the
        driver then stops waiting on it and calls :meth:`release`)."""
        fd = self.writer
        if fd is None:
            return False
        view = self._stdin
        try:
            while view:
                view = view[os.write(fd, view[:READ_SIZE]) :]
        except BlockingIOError:
            self._stdin = view
            return True
        except OSError:  # EPIPE: the command does not read (all of) its input, which is its right
            pass
        return False

    def release(self, fd: int) -> None:
        """Close a pipe the driver no longer waits on (never before: its number could be reused meanwhile)."""
        if fd == self.writer:
            self._close_writer()
        elif self.readers.pop(fd, None) is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def exited(self) -> None:
        """The process has exited (its pidfd is readable): reap it, end its group, take what its pipes hold.

        The driver no longer waits on any of the command's descriptors: they are all closed here."""
        self.returncode = self.proc.wait()
        # Stragglers the command left in the background end with it (SIGKILL to its group): nothing leaks.
        self.token.detach()
        # What the command wrote before it exited is in the pipes; a process that escaped into a session of
        # its own could keep them open for ever, so take what is there and never wait for end of file.
        for fd in list(self.readers):
            self.read(fd)
        self.close()

    def expire(self) -> None:
        """The deadline passed: stop the command (its group is signalled; its exit comes later)."""
        self.timed_out = True
        self.deadline = None
        self.token.cancel()

    def outcome(self) -> Outcome:
        """The app's outcome, once the process has exited."""
        try:
            outcome = self._finish(self)
        except Exception as exc:  # a failing store write, say: the app fails, the driver goes on
            outcome = Outcome.failed(f"could not finish the command: {type(exc).__name__}: {exc}")
        outcome.seconds = time.perf_counter() - self.started
        return outcome

    def fds(self) -> list[tuple[int, int]]:
        """Every descriptor to wait on, with its events: the pidfd, the pipes to drain, standard input."""
        out = [(self.pidfd, selectors.EVENT_READ)]
        out += [(fd, selectors.EVENT_READ) for fd in self.readers]
        if self.writer is not None:
            out.append((self.writer, selectors.EVENT_WRITE))
        return out

    def close(self) -> None:
        """Close every descriptor left (after :meth:`exited`, or when the driver gives the command up)."""
        for fd in list(self.readers):
            del self.readers[fd]
            with contextlib.suppress(OSError):
                os.close(fd)
        self._close_writer()
        if self.pidfd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = -1

    def _close_writer(self) -> None:
        if self.writer is not None:
            self.writer = None
            self._stdin = memoryview(b"")
            # Through the file object, so that Popen does not close the descriptor (number) again later.
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()


def drive(command: Command) -> Outcome:
    """Run a started command to its end in the calling thread (one command: no watcher thread needed)."""
    with selectors.DefaultSelector() as sel:
        for fd, events in command.fds():
            sel.register(fd, events)
        while command.returncode is None:
            timeout = None if command.deadline is None else max(0.0, command.deadline - time.monotonic())
            ready = sel.select(timeout)
            if command.deadline is not None and time.monotonic() >= command.deadline:
                command.expire()
            for key, _ in ready:
                fd = key.fd
                if fd == command.pidfd:
                    for other in list(sel.get_map()):
                        sel.unregister(other)
                    command.exited()
                    break
                if not (command.write() if fd == command.writer else command.read(fd)):
                    sel.unregister(fd)
                    command.release(fd)
    return command.outcome()
