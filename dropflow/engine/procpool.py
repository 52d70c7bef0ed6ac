"""A pool of worker processes for apps that must not share the owner's GIL, where each task can be killed.

Theory of operation
-------------------
``concurrent.futures.ProcessPoolExecutor`` can neither stop one running task nor survive one worker dying
(the whole pool breaks), and cancelling a session must stop its apps. So each worker process here has a
pipe and a *slot thread* in the parent that feeds it one task at a time: it sends the task, blocks on the
reply (no polling), and reports the :class:`Outcome` through the callback. Slots take tasks from one queue;
they start lazily, up to the pool size, or all at once with :meth:`ProcessPool.start` (a *warm* pool: no
run waits for an interpreter to start and import the engine). Workers outlive the tasks and sessions they
run; a slot replaces its worker as soon as it dies, so the next task finds a warm one.

Failures stay with their task:

- ``kill(task_id)`` SIGKILLs the process group of the worker running that task and returns at once; the
  slot thread sees the pipe close, reports the task as cancelled and starts a fresh worker.
- A worker that dies on its own (``os.abort()``, a segfault in an extension, ``os._exit``) fails only its
  task, with the signal or exit status in the message.
- A worker that cannot be started (no file descriptors left, no memory) fails the task with the cause; the
  slot thread lives on and tries again for the next task.

Nothing outlives the pool or its process. Each worker leads a process group of its own, so killing it kills
what user code started there too; the group is announced to the group hooks (the node's reaper kills it if
the node manager dies). The worker also asks the kernel to SIGKILL it when its parent dies
(``PR_SET_PDEATHSIG``). That signal follows the *thread* that started the process, which is why each slot
thread starts its own workers and lives as long as the pool. A slot done with a worker (dead, killed, or
at close) kills its group, then reaps it. Workers ignore SIGINT so that Ctrl-C reaches the parent, which
cancels cleanly, and exit when their task pipe closes. They are forks of a warm zygote
(:mod:`dropflow.engine.zygote`: a worker starts in milliseconds), or fresh interpreters running
:mod:`dropflow.engine.worker`; never ``multiprocessing`` children, so that starting one never re-imports the
caller's ``__main__``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from ..drops.apps.base import Outcome, Task, group_ended, group_started
from .zygote import Worker, Zygote

__all__ = ["ProcessPool", "death"]

log = logging.getLogger(__name__)

Callback = Callable[[int, Outcome], None]


def death(returncode: int) -> str:
    """How a worker process ended, for an app's error message."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"worker process died of {name}"
    return f"worker process died (exit status {returncode})"


def _popen(argv: list[str], pass_fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
    """Start one worker; the seam where tests inject failures."""
    return subprocess.Popen(argv, pass_fds=pass_fds, stdin=subprocess.DEVNULL, start_new_session=True)


class _Slot:
    __slots__ = ("inbox", "killed", "outbox", "proc", "task_id", "thread")

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | Worker | None = None
        self.inbox: Connection | None = None  # outcomes from the worker
        self.outbox: Connection | None = None  # tasks to the worker
        self.task_id: int | None = None
        self.killed = False
        self.thread: threading.Thread | None = None


class ProcessPool:
    """At most ``size`` worker processes; ``submit`` never blocks, results arrive through ``callback``.

    ``callback(task_id, outcome)`` runs on a slot thread; it must not block for long.
    """

    def __init__(self, size: int, callback: Callback, zygote: Callable[[], Zygote] | None = None) -> None:
        self.size = max(1, size)
        self._callback = callback
        #: Where workers come from: forks of a warm zygote (milliseconds), else fresh interpreters.
        self._zygote = zygote
        self._tasks: queue.SimpleQueue[tuple[int, Task] | None] = queue.SimpleQueue()
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._busy = 0
        self._closed = False

    # -- public ---------------------------------------------------------------------------------------------

    def start(self) -> ProcessPool:
        """Start every worker now, in the background, rather than on first use."""
        with self._lock:
            if self._closed:
                raise RuntimeError("process pool is closed")
            while len(self._slots) < self.size:
                self._add_slot()
        return self

    def submit(self, task_id: int, task: Task) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("process pool is closed")
            self._busy += 1
            if len(self._slots) < min(self.size, self._busy):
                self._add_slot()
        self._tasks.put((task_id, task))

    def kill(self, task_id: int) -> bool:
        """SIGKILL the worker running ``task_id`` (never blocks); True if it was running."""
        with self._lock:
            for slot in self._slots:
                if slot.task_id == task_id and slot.proc is not None:
                    slot.killed = True
                    # Under the lock: the slot cannot have moved on to another task meanwhile.
                    _kill_group(slot.proc.pid)
                    return True
        return False

    def load(self) -> dict[str, int]:
        """For the monitor: the pool's size, its worker processes, how many run a task, tasks queued."""
        with self._lock:
            running = sum(1 for s in self._slots if s.task_id is not None)
            return {
                "size": self.size,
                "processes": sum(1 for s in self._slots if s.proc is not None),
                "busy": running,
                "queued": max(0, self._busy - running),
            }

    def pids(self) -> list[int]:
        """The worker processes alive or starting."""
        with self._lock:
            return [s.proc.pid for s in self._slots if s.proc is not None]

    def close(self, timeout: float = 10.0) -> bool:
        """Stop all workers (killing running tasks); True if every slot thread ended within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            for slot in self._slots:
                if slot.task_id is not None and slot.proc is not None:
                    slot.killed = True
                    _kill_group(slot.proc.pid)
            slots = list(self._slots)
        for _ in slots:
            self._tasks.put(None)
        for slot in slots:
            assert slot.thread is not None
            slot.thread.join(max(0.0, deadline - time.monotonic()))
        return not any(s.thread is not None and s.thread.is_alive() for s in slots)

    # -- slots ----------------------------------------------------------------------------------------------

    def _add_slot(self) -> None:
        """Under the lock."""
        slot = _Slot()
        slot.thread = threading.Thread(target=self._serve, args=(slot,), name="dropflow-proc", daemon=True)
        self._slots.append(slot)
        slot.thread.start()

    def _spawn(self, slot: _Slot) -> str | None:
        """Start the slot's worker (on the slot thread, see PR_SET_PDEATHSIG); the error, if it failed."""
        try:
            task_r, task_w = os.pipe()
        except OSError as exc:
            return f"cannot start a worker process: {exc}"
        try:
            out_r, out_w = os.pipe()
        except OSError as exc:
            os.close(task_r)
            os.close(task_w)
            return f"cannot start a worker process: {exc}"
        argv = [sys.executable, "-m", "dropflow.engine.worker", str(task_r), str(out_w), str(os.getpid())]
        try:
            proc: subprocess.Popen[bytes] | Worker = (
                self._zygote().fork(task_r, out_w)
                if self._zygote is not None
                else _popen(argv, (task_r, out_w))
            )
        except (OSError, subprocess.SubprocessError) as exc:
            os.close(task_w)
            os.close(out_r)
            return f"cannot start a worker process: {exc}"
        finally:
            os.close(task_r)
            os.close(out_w)
        group_started(proc.pid)
        outbox = Connection(task_w, readable=False)
        inbox = Connection(out_r, writable=False)
        with self._lock:
            slot.proc, slot.inbox, slot.outbox = proc, inbox, outbox
        with contextlib.suppress(OSError):  # died at once: the task sent next finds out and reports how
            outbox.send(list(sys.path))
        return None

    def _reap(self, slot: _Slot) -> int | None:
        """Close the slot's pipes, kill its worker's process group and reap the worker; its return code.

        The group is killed before the worker is reaped: until then the worker's pid, which is the group's
        id, cannot be reused, so the kill never reaches an unrelated process. A worker that died on its own
        keeps its status; what user code left in its group ends with it.
        """
        with self._lock:
            proc, inbox, outbox = slot.proc, slot.inbox, slot.outbox
            slot.proc = slot.inbox = slot.outbox = None
        for conn in (outbox, inbox):
            if conn is not None:
                conn.close()
        if proc is None:
            return None
        _kill_group(proc.pid)
        code = proc.wait()
        group_ended(proc.pid)
        return code

    def _run(self, slot: _Slot, task_id: int, task: Task) -> Outcome:
        assert slot.inbox is not None and slot.outbox is not None and slot.proc is not None
        with self._lock:
            slot.task_id, slot.killed = task_id, False
        outcome: Outcome | None
        try:
            slot.outbox.send(task)
            outcome = slot.inbox.recv()
        except (EOFError, OSError):
            outcome = None  # the worker died, or was killed
        except Exception as exc:  # the task could not be pickled, or the outcome not unpickled
            outcome = Outcome.failed(f"cannot exchange the task with a worker process: {exc}")
        with self._lock:
            slot.task_id = None  # from here on, kill() leaves this worker alone
            killed = slot.killed
        if outcome is not None and not killed:
            return outcome
        # Dead, killed, or killed just as it answered (then it is dying: do not hand it the next task).
        # EOF normally means the worker is dead already; one alive without its pipe is of no use either.
        code = self._reap(slot)
        if killed:
            return Outcome.failed("cancelled")
        return Outcome.failed(death(code) if code is not None else "worker process lost")

    def _handle(self, slot: _Slot, task_id: int, task: Task, error: str | None) -> Outcome:
        if self._closed:
            return Outcome.failed("cancelled: the process pool closed")
        if slot.proc is not None and slot.proc.poll() is not None:
            self._reap(slot)  # died while idle
        if slot.proc is None:
            error = self._spawn(slot)
        return Outcome.failed(error) if error is not None else self._run(slot, task_id, task)

    def _serve(self, slot: _Slot) -> None:
        try:
            while True:
                error = None
                if slot.proc is None and not self._closed:
                    error = self._spawn(slot)  # warm up before waiting for work
                item = self._tasks.get()
                if item is None:
                    return
                task_id, task = item
                try:
                    outcome = self._handle(slot, task_id, task, error)
                except Exception as exc:  # a bug here must fail the task, not silence the slot
                    log.exception("process pool: task %d", task_id)
                    outcome = Outcome.failed(f"process pool failed: {type(exc).__name__}: {exc}")
                    self._reap(slot)
                with self._lock:
                    slot.task_id = None
                    self._busy -= 1
                try:
                    self._callback(task_id, outcome)
                except Exception:  # the pool's user failed; the slot must keep serving
                    log.exception("process pool callback failed for task %d", task_id)
        finally:
            self._reap(slot)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
