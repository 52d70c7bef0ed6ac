"""A bounded pool of daemon threads for apps, which can give up a thread whose code never returns.

Theory of operation
-------------------
``concurrent.futures.ThreadPoolExecutor`` suits code that returns: its threads are joined at interpreter exit
and on ``shutdown``, and a thread stuck in user code holds its place in the pool for ever. Apps are user
code, and a cancelled app may never return (a Python loop cannot be interrupted from outside). So:

- Workers are *daemon* threads named ``dropflow-app-N``: a stuck app never keeps the process alive.
- At most ``size`` workers count against the pool. They start on demand, when a task is queued and no
  worker is idle, and wait on one queue for work.
- :meth:`ThreadPool.abandon` gives up a running task's thread: the thread stops counting (it is renamed
  ``dropflow-app-abandoned-N``), a replacement starts at once if work is waiting, and the task's future is
  resolved at once with :class:`Abandoned`, so whoever waits on it carries on. If the code ever returns,
  its result is discarded (an optional ``on_return`` callback hears of it, e.g. to clean what it wrote)
  and the thread ends instead of taking more work. A task still queued is simply cancelled.
- :meth:`ThreadPool.close` cancels queued tasks, asks idle workers to stop and waits for the busy ones only
  until its timeout: abandoned threads are never waited for.

Counting is done under one lock; the queue hand-off itself is ``queue.SimpleQueue`` (no lock per task).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Abandoned", "ThreadPool"]

log = logging.getLogger(__name__)

_Item = tuple["concurrent.futures.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class Abandoned(concurrent.futures.CancelledError):
    """The result of a task whose thread the pool gave up (see :meth:`ThreadPool.abandon`)."""


class _Worker:
    __slots__ = ("abandoned", "future", "on_return", "thread")

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.future: concurrent.futures.Future[Any] | None = None
        self.abandoned = False
        self.on_return: Callable[[], None] | None = None


class ThreadPool:
    """At most ``size`` daemon threads running ``submit``-ted callables; see the module's docstring."""

    def __init__(self, size: int, name: str = "dropflow-app") -> None:
        self.size = max(1, size)
        self.name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()  # those that count against the size
        self._running: dict[concurrent.futures.Future[Any], _Worker] = {}
        self._idle = 0
        self._pending = 0  # queued items no worker has taken yet
        self._closed = False
        self._ids = itertools.count(1)

    # -- public ---------------------------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args)`` in a worker; never blocks."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("thread pool is closed")
            self._pending += 1
            self._queue.put((fut, fn, args))
            self._adjust()
        return fut

    def abandon(
        self, future: concurrent.futures.Future[Any], on_return: Callable[[], None] | None = None
    ) -> bool:
        """Give up ``future``'s task: its thread stops counting and its result is discarded.

        The future is resolved at once (cancelled if it was still queued, else with :class:`Abandoned`).
        If the code returns some day, ``on_return()`` is called on its thread. Returns False if the task
        had already finished (``on_return`` is then never called).
        """
        if future.cancel():
            return True  # still queued: the worker that takes it skips it
        with self._lock:
            worker = self._running.pop(future, None)
            if worker is None:
                return False  # finished meanwhile
            worker.abandoned = True
            worker.on_return = on_return
            self._workers.discard(worker)
            if worker.thread is not None:
                worker.thread.name = worker.thread.name.replace(self.name, self.name + "-abandoned", 1)
            if not self._closed:
                self._adjust()
        try:
            future.set_exception(Abandoned("the pool gave up this task's thread"))
        except concurrent.futures.InvalidStateError:
            return False  # the worker resolved it first
        return True

    def threads(self) -> int:
        """Workers that count against the size (busy or idle)."""
        with self._lock:
            return len(self._workers)

    def load(self) -> dict[str, int]:
        """For the monitor: the pool's size, its workers, how many run a task, tasks queued, threads given
        up on (abandoned) that still run."""
        with self._lock:
            return {
                "size": self.size,
                "threads": len(self._workers),
                "busy": len(self._workers) - self._idle,
                "queued": self._pending,
                "abandoned": sum(1 for w in self._running.values() if w.abandoned),
            }

    def close(self, timeout: float | None = None) -> bool:
        """Cancel queued tasks and stop the workers; True if all stopped within ``timeout`` seconds.

        Busy workers are waited for until the timeout; abandoned ones never. Workers are daemon threads,
        so one that is still busy at the timeout does not keep the process alive.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        while True:  # cancel what no worker took yet
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
                with self._lock:
                    self._pending -= 1
        for _ in workers:
            self._queue.put(None)
        stopped = True
        for w in workers:
            assert w.thread is not None
            if w.abandoned:  # given up after the snapshot: never waited for
                continue
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            w.thread.join(left)
            stopped = stopped and not w.thread.is_alive()
        return stopped

    # -- workers --------------------------------------------------------------------------------------------

    def _adjust(self) -> None:
        """Under the lock: start a worker if work is waiting, none is idle and there is room."""
        if self._pending > self._idle and len(self._workers) < self.size:
            worker = _Worker()
            worker.thread = threading.Thread(
                target=self._work, args=(worker,), name=f"{self.name}-{next(self._ids)}", daemon=True
            )
            self._workers.add(worker)
            self._idle += 1  # counts as idle until it takes its first item
            worker.thread.start()

    def _work(self, worker: _Worker) -> None:
        get = self._queue.get
        while (item := get()) is not None:
            fut, fn, args = item
            with self._lock:
                self._idle -= 1
                self._pending -= 1
                if not fut.set_running_or_notify_cancel():  # cancelled while queued
                    self._idle += 1
                    continue
                worker.future = fut
                self._running[fut] = worker
            try:
                result = fn(*args)
                error: BaseException | None = None
            except BaseException as exc:  # handed to the future's owner
                result, error = None, exc
            with self._lock:
                worker.future = None
                abandoned = worker.abandoned
                if not abandoned:
                    del self._running[fut]
                    self._idle += 1
            if abandoned:  # given up: discard the result, leave the pool
                if worker.on_return is not None:
                    try:
                        worker.on_return()
                    except Exception:
                        log.exception("on_return of an abandoned task failed")
                return
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)
        with self._lock:
            self._idle -= 1
            self._workers.discard(worker)
