"""A warm process that forks the process pool's workers: a worker starts in milliseconds, not half a second.

Theory of operation
-------------------
A worker must be a clean interpreter with the app runners imported (numpy, msgspec, ...): importing them
takes about half a second, which a pool of fresh interpreters pays on the critical path of every run that
has process apps. The *zygote* pays it once, in the background: it is a fresh interpreter
(``python -c`` running :func:`main`, never a fork of the engine, whose threads and locks a fork would
copy) that imports the runners and then waits on a Unix socket. Asked for a worker, it forks: the child
takes the two pipe ends passed with the request (``SCM_RIGHTS``), leads a process group of its own and runs
:func:`dropflow.engine.worker.serve`; the zygote answers with the child's pid.

The zygote is the workers' parent, so it also reaps them -- only when asked (``wait``), after the pool has
killed the worker's process group: until a process is reaped its pid cannot be reused, so killing a group by
that pid never reaches an unrelated process. :class:`Worker` gives the pool the ``pid`` / ``poll`` / ``wait``
/ ``returncode`` of a ``subprocess.Popen`` for such a worker.

A zygote that dies (killed, out of memory) is not reused: its socket is closed only by :meth:`Zygote.close`,
never under a request (a closed descriptor's number is soon another file's), its waiting callers get an
error, and :func:`acquire` starts a new one; a node whose zygote failed acquires again before its next fork.

Nothing outlives the engine: the zygote asks the kernel to SIGKILL it when the thread that started it ends
(``PR_SET_PDEATHSIG``; that thread, ``dropflow-zygote``, lives as long as the zygote and also reads its
answers), and each worker does the same about the zygote. The zygote exits when its socket closes.

Messages are msgpack arrays on a SOCK_SEQPACKET pair: ``["fork"]`` (with the two fds) -> ``["forked",
pid]`` or ``["error", message]``; ``["wait", pid]`` -> ``["exited", pid, returncode]`` when the worker has
ended (reaped then).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from typing import Any

import msgspec

__all__ = ["Worker", "Zygote", "acquire", "release"]

log = logging.getLogger(__name__)

_MAX = 4096
#: The first message carries sys.path, which a long PYTHONPATH makes long (a seqpacket read of less than
#: the whole message truncates it).
_MAX_PATH = 1 << 20
#: How the zygote is started: this module is part of the engine package, so ``-m`` would import it twice.
_MAIN = "import sys; from dropflow.engine.zygote import main; sys.exit(main(sys.argv[1:]))"


class Worker:
    """A worker forked by the zygote, seen like a ``subprocess.Popen``: it is not our child."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote = zygote
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The return code if the worker has ended (asking the zygote to reap it), else None."""
        if self.returncode is None and not _alive(self.pid):
            return self.wait()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            try:
                self.returncode = self.zygote.wait(self.pid, timeout)
            except OSError:
                if not self.zygote.failed:
                    raise
                # Its zygote is gone, and it with it (parent-death signal); the kernel reaped it.
                self.returncode = -signal.SIGKILL
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """False once the process has ended (a zombie waiting to be reaped counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in (b"Z", b"X")


class Zygote:
    """The engine's side of the zygote: start it, ask it for workers, have it reap them."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # one request at a time on the socket
        self._cond = threading.Condition()
        self._forks: deque[list[Any]] = deque()  # answers to fork requests, in order
        self._exits: dict[int, int] = {}
        self._ready = threading.Event()
        self._error: str | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Zygote:
        """Start the zygote in the background (returns at once; the first fork waits until it is ready)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dropflow-zygote", daemon=True)
            self._thread.start()
        return self

    def fork(self, task_r: int, out_w: int, timeout: float = 60.0) -> Worker:
        """A new worker reading tasks from ``task_r`` and writing outcomes to ``out_w`` (both passed to it;
        the caller closes its copies). Raises OSError if the zygote cannot make one."""
        if not self._ready.wait(timeout):
            raise OSError("the worker zygote did not start")
        with self._lock:
            if self._sock is None or self._error is not None:
                raise OSError(f"the worker zygote is not available: {self._error or 'it is closed'}")
            socket.send_fds(self._sock, [msgspec.msgpack.encode(["fork"])], [task_r, out_w])
            with self._cond:
                if not self._cond.wait_for(lambda: self._forks or self._error is not None, timeout):
                    raise OSError("the worker zygote did not answer")
                if not self._forks:
                    raise OSError(f"the worker zygote failed: {self._error}")
                answer = self._forks.popleft()
        if answer[0] != "forked":
            raise OSError(f"cannot fork a worker: {answer[1]}")
        return Worker(self, int(answer[1]))

    def wait(self, pid: int, timeout: float | None = None) -> int:
        """Reap a worker that has ended (or will end soon: kill it first); its return code."""
        with self._lock:
            if self._sock is None or self._error is not None:
                raise OSError(f"the worker zygote is not available: {self._error or 'it is closed'}")
            self._sock.send(msgspec.msgpack.encode(["wait", pid]))
        with self._cond:
            if not self._cond.wait_for(lambda: pid in self._exits or self._error is not None, timeout):
                raise subprocess.TimeoutExpired(f"worker {pid}", timeout or 0)
            if pid not in self._exits:
                raise OSError(f"the worker zygote failed: {self._error}")
            return self._exits.pop(pid)

    @property
    def failed(self) -> bool:
        """True once the zygote has gone (or could not start): it forks nothing more."""
        return self._error is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def close(self) -> None:
        """Stop the zygote (its workers are the pool's to stop first; any left die with it)."""
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        if sock is not None:
            sock.close()  # only now: the reader thread has stopped using it

    # -- the reader thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        """Start the zygote from this thread (its parent-death signal follows this thread), then read its
        answers until it goes."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _MAIN, str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            self._fail(f"cannot start the worker zygote: {exc}")
            ours.close()
            return
        finally:
            theirs.close()
        ours.send(msgspec.msgpack.encode(["path", list(sys.path)]))
        self._sock = ours
        try:
            hello = msgspec.msgpack.decode(ours.recv(_MAX))
            if hello != ["ready"]:
                raise OSError(f"unexpected greeting {hello!r}")
            self._ready.set()
            while True:
                data = ours.recv(_MAX)
                if not data:
                    break
                answer = msgspec.msgpack.decode(data)
                with self._cond:
                    if answer[0] == "exited":
                        self._exits[int(answer[1])] = int(answer[2])
                    else:
                        self._forks.append(answer)
                    self._cond.notify_all()
        except (OSError, msgspec.DecodeError) as exc:
            self._fail(f"the worker zygote went away: {exc}")
        else:
            self._fail("the worker zygote exited")
        finally:
            # The socket stays open (close() closes it): a request may be sending on it right now.
            self._ready.set()
            proc = self._proc
            if proc is not None:
                with contextlib.suppress(OSError):
                    proc.kill()
                proc.wait()

    def _fail(self, error: str) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()
        self._ready.set()


# -- one per process, shared by its nodes --------------------------------------------------------------------

_shared: Zygote | None = None
_users: dict[Zygote, int] = {}
_shared_lock = threading.Lock()


def acquire() -> Zygote:
    """The process's zygote, started if need be (in the background: this returns at once), or started
    again if the last one failed. Every acquire needs its release, with the zygote it returned; a zygote
    stops with its last release. ``dropflow run`` acquires it before it even reads a graph with process
    apps, so that the zygote's start overlaps the graph's loading."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.failed:
            _shared = Zygote().start()
        _users[_shared] = _users.get(_shared, 0) + 1
        return _shared


def release(zygote: Zygote) -> None:
    global _shared
    with _shared_lock:
        _users[zygote] -= 1
        if _users[zygote] > 0:
            return
        del _users[zygote]
        if _shared is zygote:
            _shared = None
    zygote.close()


# -- the zygote process -------------------------------------------------------------------------------------


def _serve_worker(task_r: int, out_w: int) -> None:
    """In a forked child: become a worker."""
    os.setpgid(0, 0)  # a process group of its own: killing it kills what user code started
    from .worker import serve

    serve(task_r, out_w, os.getppid())


def main(argv: list[str]) -> int:
    from .worker import die_with_parent, prepare

    sock = socket.socket(fileno=int(argv[0]))
    die_with_parent(int(argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    first = msgspec.msgpack.decode(sock.recv(_MAX_PATH))
    sys.path[:] = first[1]
    prepare()  # the app runners, imported once for every worker forked from here
    sock.send(msgspec.msgpack.encode(["ready"]))
    waiting: set[int] = set()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD wakes the selector
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj is sock:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(sock, _MAX, 2)
                except OSError:
                    return 0
                if not data:
                    return 0
                request = msgspec.msgpack.decode(data)
                if request[0] == "fork":
                    _fork(sock, fds, wake_r, wake_w)
                elif request[0] == "wait":
                    waiting.add(int(request[1]))
            else:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
        for pid in list(waiting):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 255 << 8
            if done:
                waiting.discard(pid)
                sock.send(msgspec.msgpack.encode(["exited", pid, os.waitstatus_to_exitcode(status)]))


def _fork(sock: socket.socket, fds: list[int], wake_r: int, wake_w: int) -> None:
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        sock.send(msgspec.msgpack.encode(["error", "a fork request needs two file descriptors"]))
        return
    try:
        pid = os.fork()
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        sock.send(msgspec.msgpack.encode(["error", str(exc)]))
        return
    if pid == 0:  # the child: nothing of the zygote's loop may run here
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            sock.close()
            os.close(wake_r)
            os.close(wake_w)
            _serve_worker(fds[0], fds[1])
        finally:
            os._exit(0)
    for fd in fds:
        os.close(fd)
    sock.send(msgspec.msgpack.encode(["forked", pid]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
