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
the pool.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import queue
import signal
import threading
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from ..drops.apps.base import CancelToken, Outcome, Task

__all__ = ["ProcessPool"]

Callback = Callable[[int, Outcome], None]


def _worker_main(conn: multiprocessing.connection.Connection) -> None:
    from ..drops.kinds import execute  # imported here: the registry loads in the worker process

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        outcome = execute(task, CancelToken())
        try:
            conn.send(outcome)
        except Exception as exc:  # an outcome that cannot be pickled is the app's failure
            conn.send(Outcome.failed(f"cannot send the app's result back: {exc}"))


class _Slot:
    __slots__ = ("conn", "killed", "proc", "task_id")

    def __init__(self) -> None:
        self.proc: BaseProcess | None = None
        self.conn: multiprocessing.connection.Connection | None = None
        self.task_id: int | None = None
        self.killed = False


class ProcessPool:
    """At most ``size`` worker processes; ``submit`` never blocks, results arrive through ``callback``."""

    def __init__(self, size: int, callback: Callback, start_method: str = "spawn") -> None:
        self.size = max(1, size)
        self._callback = callback
        self._ctx: Any = multiprocessing.get_context(start_method)
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
                    slot.proc.join(5)
                    return True
        return False

    def pids(self) -> list[int]:
        with self._lock:
            return [s.proc.pid for s in self._slots if s.proc is not None and s.proc.pid is not None]

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
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, args=(child,), name="dropflow-worker", daemon=True)
        proc.start()
        child.close()
        slot.proc, slot.conn = proc, parent

    def _stop(self, slot: _Slot) -> None:
        if slot.conn is not None:
            slot.conn.close()
        if slot.proc is not None:
            slot.proc.join(5)
            if slot.proc.is_alive():
                slot.proc.kill()
                slot.proc.join()
        slot.proc = slot.conn = None

    def _serve(self, slot: _Slot) -> None:
        while (item := self._tasks.get()) is not None:
            task_id, task = item
            if slot.proc is None or not slot.proc.is_alive():
                self._stop(slot)
                self._start(slot)
            with self._lock:
                slot.task_id, slot.killed = task_id, False
            assert slot.conn is not None and slot.proc is not None
            try:
                slot.conn.send(task)
                outcome = slot.conn.recv()
            except (EOFError, OSError):
                with self._lock:
                    killed = slot.killed
                slot.proc.join(5)
                code = slot.proc.exitcode
                outcome = Outcome.failed("cancelled" if killed else f"worker process died (exit code {code})")
                self._stop(slot)
            except Exception as exc:  # the task could not be pickled
                outcome = Outcome.failed(f"cannot send the task to a worker process: {exc}")
            with self._lock:
                slot.task_id = None
                self._busy -= 1
            self._callback(task_id, outcome)
        self._stop(slot)
