"""A pool of worker processes for apps that must not share the owner's GIL, where each task can be killed.

Theory of operation
-------------------
``concurrent.futures.ProcessPoolExecutor`` can neither stop one running task nor survive one worker dying
(the whole pool breaks), and cancelling a session must stop its apps. So each worker process here has a
pipe and a *slot thread* in the parent that feeds it one task at a time: it sends the task, blocks on the
reply (no polling), and reports the :class:`Outcome` through the callback. Slots start lazily, up to the
pool size, and take tasks from one queue. ``kill(task_id)`` SIGKILLs the process running that task; its slot
thread sees the pipe close, reports the task as killed, and starts a fresh process for the next task. A
worker that dies on its own (a segfault in user code) fails only its task. Workers ignore SIGINT so that
Ctrl-C reaches the parent, which cancels cleanly, and exit when their pipe closes, so they never outlive
the pool. Workers are fresh interpreters running :mod:`dropflow.engine.worker` rather than
``multiprocessing`` children, so that starting one never re-imports the caller's ``__main__``.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection

from ..drops.apps.base import Outcome, Task

__all__ = ["ProcessPool"]

Callback = Callable[[int, Outcome], None]


class _Slot:
    __slots__ = ("inbox", "killed", "outbox", "proc", "task_id")

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.inbox: Connection | None = None  # outcomes from the worker
        self.outbox: Connection | None = None  # tasks to the worker
        self.task_id: int | None = None
        self.killed = False


class ProcessPool:
    """At most ``size`` worker processes; ``submit`` never blocks, results arrive through ``callback``."""

    def __init__(self, size: int, callback: Callback) -> None:
        self.size = max(1, size)
        self._callback = callback
        self._tasks: queue.SimpleQueue[tuple[int, Task] | None] = queue.SimpleQueue()
        self._slots: list[_Slot] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._busy = 0
        self._closed = False

    def submit(self, task_id: int, task: Task) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("process pool is closed")
            self._busy += 1
            if len(self._threads) < min(self.size, self._busy):
                slot = _Slot()
                self._slots.append(slot)
                t = threading.Thread(target=self._serve, args=(slot,), name="dropflow-proc", daemon=True)
                self._threads.append(t)
                t.start()
        self._tasks.put((task_id, task))

    def kill(self, task_id: int) -> bool:
        """SIGKILL the worker running ``task_id``; True if it was running."""
        with self._lock:
            for slot in self._slots:
                if slot.task_id == task_id and slot.proc is not None:
                    slot.killed = True
                    slot.proc.kill()
                    slot.proc.wait(5)
                    return True
        return False

    def pids(self) -> list[int]:
        with self._lock:
            return [s.proc.pid for s in self._slots if s.proc is not None]

    def close(self) -> None:
        """Stop all workers (killing running tasks) and wait for the slot threads."""
        with self._lock:
            self._closed = True
            for slot in self._slots:
                if slot.task_id is not None and slot.proc is not None:
                    slot.killed = True
                    slot.proc.kill()
            threads = list(self._threads)
        for _ in threads:
            self._tasks.put(None)
        for t in threads:
            t.join()

    def _start(self, slot: _Slot) -> None:
        task_r, task_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            slot.proc = subprocess.Popen(
                [sys.executable, "-m", "dropflow.engine.worker", str(task_r), str(out_w)],
                pass_fds=(task_r, out_w),
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(task_r)
            os.close(out_w)
        slot.outbox = Connection(task_w, readable=False)
        slot.inbox = Connection(out_r, writable=False)
        slot.outbox.send(list(sys.path))

    def _stop(self, slot: _Slot) -> None:
        for conn in (slot.outbox, slot.inbox):
            if conn is not None:
                conn.close()
        if slot.proc is not None:
            try:
                slot.proc.wait(5)  # the worker exits when its task pipe closes
            except subprocess.TimeoutExpired:
                slot.proc.kill()
                slot.proc.wait()
        slot.proc = slot.inbox = slot.outbox = None

    def _serve(self, slot: _Slot) -> None:
        while (item := self._tasks.get()) is not None:
            task_id, task = item
            if slot.proc is None or slot.proc.poll() is not None:
                self._stop(slot)
                self._start(slot)
            with self._lock:
                slot.task_id, slot.killed = task_id, False
            assert slot.inbox is not None and slot.outbox is not None and slot.proc is not None
            try:
                slot.outbox.send(task)
                outcome = slot.inbox.recv()
            except (EOFError, OSError):
                with self._lock:
                    killed = slot.killed
                code = slot.proc.wait(5)
                outcome = Outcome.failed(
                    "cancelled" if killed else f"worker process died (exit status {code})"
                )
                self._stop(slot)
            except Exception as exc:  # the task could not be pickled
                outcome = Outcome.failed(f"cannot send the task to a worker process: {exc}")
            with self._lock:
                slot.task_id = None
                self._busy -= 1
            self._callback(task_id, outcome)
        self._stop(slot)
