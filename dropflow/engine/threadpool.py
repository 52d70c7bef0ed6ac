"""A bounded pool of daemon threads for apps, which can give up a thread whose code never returns.

Theory of operation
-------------------
``concurrent.futures.ThreadPoolExecutor`` suits code that returns: its threads are joined at interpreter exit
and on ``shutdown``, and a thread stuck in user code holds its place in the pool for ever. Apps are user
code, and a cancelled app may never return (a Python loop cannot be interrupted from outside). So:

- Workers are *daemon* threads named ``dropflow-app-N``: a stuck app never keeps the process alive.
- At most ``size`` workers count against the pool. They start on demand, when a job is queued while fewer
  than ``size`` exist, and wait on one queue for work.
- :meth:`ThreadPool.run` queues a :class:`Job`: ``fn(*args)``, then ``then(result, error)`` on the worker's
  thread. No ``Future`` (and its condition variable) is made per job, and the submitting thread takes no lock:
  queueing is one ``SimpleQueue.put``. :meth:`submit` wraps a job in a ``concurrent.futures.Future`` for
  callers that want one.
- :meth:`ThreadPool.abandon` gives up a job's thread: the thread stops counting (it is renamed
  ``dropflow-app-abandoned-N``), a replacement starts at once, and the job's ``then`` is never called -- the
  caller has moved on. If the code ever returns, its result is discarded (an optional ``on_return`` callback
  hears of it, e.g. to clean what it wrote) and the thread ends instead of taking more work. A job still
  queued is simply dropped.
- :meth:`ThreadPool.close` drops queued jobs, asks idle workers to stop and waits for the busy ones only until
  its timeout: abandoned threads are never waited for.

A job's state (queued, running, done, abandoned) changes under the pool's lock, taken by the worker when it
picks a job and when it finishes one, and by ``abandon``; the submitting thread never takes it.
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

__all__ = ["Abandoned", "Job", "Then", "ThreadPool"]

log = logging.getLogger(__name__)

Then = Callable[[Any, BaseException | None], None]

_QUEUED, _RUNNING, _DONE, _ABANDONED = 0, 1, 2, 3


class Abandoned(concurrent.futures.CancelledError):
    """The result of a task whose thread the pool gave up (see :meth:`ThreadPool.abandon`)."""


class Job:
    """One call queued on the pool."""

    __slots__ = ("args", "fn", "future", "on_return", "state", "then", "worker")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], then: Then) -> None:
        self.fn = fn
        self.args = args
        self.then = then
        self.state = _QUEUED
        self.worker: _Worker | None = None
        self.on_return: Callable[[], None] | None = None
        #: Set by :meth:`ThreadPool.submit`: marked running when a worker takes the job.
        self.future: concurrent.futures.Future[Any] | None = None


class _Worker:
    __slots__ = ("abandoned", "thread")

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.abandoned = False


class ThreadPool:
    """At most ``size`` daemon threads running queued jobs; see the module's docstring."""

    def __init__(self, size: int, name: str = "dropflow-app") -> None:
        self.size = max(1, size)
        self.name = name
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()  # those that count against the size
        self._count = 0  # len(self._workers), readable without the lock
        self._busy = 0  # workers running a job (counted under the lock)
        self._stuck = 0  # abandoned threads whose code has not returned
        self._closed = False
        self._ids = itertools.count(1)
        self._futures: dict[concurrent.futures.Future[Any], Job] = {}

    # -- public ---------------------------------------------------------------------------------------------

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...], then: Then) -> Job:
        """Queue ``fn(*args)``; ``then(result, error)`` is called on the worker's thread when it returns."""
        if self._closed:
            raise RuntimeError("thread pool is closed")
        job = Job(fn, args, then)
        self._queue.put(job)
        if self._count < self.size:
            self._grow()
        return job

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args)`` in a worker and return a future of its result."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def then(result: Any, error: BaseException | None) -> None:
            with self._lock:
                self._futures.pop(fut, None)
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)

        job = Job(fn, args, then)
        job.future = fut
        with self._lock:
            self._futures[fut] = job
        if self._closed:
            raise RuntimeError("thread pool is closed")
        self._queue.put(job)
        if self._count < self.size:
            self._grow()
        return fut

    def abandon(
        self, job: Job | concurrent.futures.Future[Any], on_return: Callable[[], None] | None = None
    ) -> bool:
        """Give up a job (or a future from :meth:`submit`): its thread stops counting, its ``then`` is never
        called, its result is discarded.

        A future is resolved at once (cancelled if it was still queued, else with :class:`Abandoned`). If the
        code returns some day, ``on_return()`` is called on its thread. Returns False if the job had already
        finished (``on_return`` is then never called).
        """
        fut = job if isinstance(job, concurrent.futures.Future) else None
        if fut is not None:
            with self._lock:
                found = self._futures.pop(fut, None)
            if found is None:
                return False
            job = found
        assert isinstance(job, Job)
        with self._lock:
            state = job.state
            if state in (_DONE, _ABANDONED):
                return False
            job.state = _ABANDONED
            worker = job.worker
            if state == _RUNNING and worker is not None:
                self._busy -= 1
                self._stuck += 1
                worker.abandoned = True
                job.on_return = on_return
                self._workers.discard(worker)
                self._count = len(self._workers)
                if worker.thread is not None:
                    worker.thread.name = worker.thread.name.replace(self.name, self.name + "-abandoned", 1)
        if state == _RUNNING and not self._closed:
            self._grow()
        if fut is not None:
            if state == _QUEUED:
                fut.cancel()
            else:
                try:
                    fut.set_exception(Abandoned("the pool gave up this task's thread"))
                except concurrent.futures.InvalidStateError:
                    return False
        return True

    def threads(self) -> int:
        """Workers that count against the size (busy or idle)."""
        return self._count

    def load(self) -> dict[str, int]:
        """For the monitor: the pool's size, its workers, how many run a task, tasks queued, threads given
        up on (abandoned) that still run."""
        return {
            "size": self.size,
            "threads": self._count,
            "busy": self._busy,
            "queued": self._queue.qsize(),
            "abandoned": self._stuck,
        }

    def close(self, timeout: float | None = None) -> bool:
        """Drop queued jobs and stop the workers; True if all stopped within ``timeout`` seconds.

        Busy workers are waited for until the timeout; abandoned ones never. Workers are daemon threads,
        so one that is still busy at the timeout does not keep the process alive.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._closed = True
            workers = list(self._workers)
            futures, self._futures = self._futures, {}
        while True:  # drop what no worker took yet
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item.state = _ABANDONED
        for fut, job in futures.items():
            if job.state == _ABANDONED:
                fut.cancel()
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

    def _grow(self) -> None:
        """Start a worker if there is room (workers then wait for work; an idle one costs nothing)."""
        with self._lock:
            if self._closed or len(self._workers) >= self.size:
                return
            worker = _Worker()
            worker.thread = threading.Thread(
                target=self._work, args=(worker,), name=f"{self.name}-{next(self._ids)}", daemon=True
            )
            self._workers.add(worker)
            self._count = len(self._workers)
        worker.thread.start()

    def _work(self, worker: _Worker) -> None:
        get, lock = self._queue.get, self._lock
        while (job := get()) is not None:
            with lock:
                if job.state != _QUEUED:  # abandoned while queued
                    continue
                job.state = _RUNNING
                job.worker = worker
                self._busy += 1
            if job.future is not None and not job.future.set_running_or_notify_cancel():
                with lock:
                    job.state = _DONE
                    self._busy -= 1
                continue
            try:
                result = job.fn(*job.args)
                error: BaseException | None = None
            except BaseException as exc:  # handed to the job's owner
                result, error = None, exc
            with lock:
                abandoned = job.state == _ABANDONED
                job.state = _DONE
                if abandoned:
                    self._stuck -= 1
                else:
                    self._busy -= 1
            if abandoned:  # given up: discard the result, leave the pool
                if job.on_return is not None:
                    try:
                        job.on_return()
                    except Exception:
                        log.exception("on_return of an abandoned task failed")
                return
            try:
                job.then(result, error)
            except Exception:  # a broken callback must not kill the worker
                log.exception("the completion callback of a pool job failed")
        with lock:
            self._workers.discard(worker)
            self._count = len(self._workers)
