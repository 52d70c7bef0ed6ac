"""The owner loop of one node: the single thread that holds and changes every drop state of its sessions.

Theory of operation
-------------------
A :class:`Node` runs one *owner* thread that takes events from one queue: completions posted by app
threads and worker processes, timer expiries, and commands from other threads (the CLI, later the REST
API and the network). An event is a callable and its arguments; the owner runs it, and the session
concerned then carries out whatever its cascade asked for. Nothing but the owner thread changes drop state,
so there are no per-drop locks. Other threads read states (for status and progress) without locking: every
read is of a single attribute, and a slightly stale snapshot is all a reader needs.

Apps run in a thread pool (the default), in the owner itself (``inline``, for trivial apps), or in a
:class:`~dropflow.engine.procpool.ProcessPool` whose workers start on first use. Lifespan timers live in a
heap; the owner sleeps on the queue until the next deadline, so nothing polls.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..drops.apps.base import Outcome
from ..drops.stores import Store
from .bus import Bus, RemoteEvent, copy_store
from .procpool import ProcessPool
from .session import Session
from .sweep import sweep
from .workspace import Workspace, default_root

__all__ = ["Node"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_STOP = object()


class Node:
    """One node's engine: an owner thread, its sessions, and the pools that run their apps."""

    def __init__(
        self,
        name: str = "localhost",
        *,
        workspace_root: str | None = None,
        allowed_paths: Sequence[str] = (),
        threads: int = 32,
        processes: int | None = None,
        log_size: int = 100_000,
        executor: str | None = None,
    ) -> None:
        self.name = name
        self.workspace_root = workspace_root or default_root()
        self.allowed_paths = tuple(allowed_paths)
        self.log_size = log_size
        #: Executor for apps whose spec names none and whose kind can use it ("thread" or "process").
        self.default_executor = executor
        self.sessions: dict[str, Session] = {}
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._threads = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="dropflow-app")
        self._nprocs = processes or os.cpu_count() or 1
        self._procs: ProcessPool | None = None
        self._proc_callbacks: dict[int, Callable[[Outcome], None]] = {}
        self._task_ids = itertools.count(1)
        #: How this node reaches the others of distributed sessions (None: it runs sessions alone).
        self.bus: Bus | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> Node:
        """Start the owner thread; returns once it is taking events."""
        if self._thread is None:
            sweep(self.workspace_root)  # what dead processes left on this root
            running = threading.Event()
            self._thread = threading.Thread(
                target=self._loop, args=(running,), name=f"dropflow-owner-{self.name}"
            )
            self._thread.start()
            running.wait()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Cancel every running session, wait for them to end, and stop all threads and processes."""
        if self._thread is None:
            return
        sessions = list(self.sessions.values())
        for s in sessions:
            if not s.ended:
                s.error = s.error or f"node {self.name} shut down while the session ran"
            s.cancel()
        deadline = time.monotonic() + timeout
        for s in sessions:
            s.wait(max(0.0, deadline - time.monotonic()))
        self._queue.put(_STOP)
        self._thread.join()
        self._thread = None
        self._threads.shutdown(wait=True, cancel_futures=True)
        if self._procs is not None:
            self._procs.close()
            self._procs = None

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sessions -------------------------------------------------------------------------------------------

    def create_session(self, session_id: str, distributed: bool = False) -> Session:
        """A new, empty session (thread-safe). A distributed one treats drops placed elsewhere as proxies."""
        return self.call(self._create_session, session_id, distributed)

    def _create_session(self, session_id: str, distributed: bool) -> Session:
        if session_id in self.sessions:
            raise KeyError(f"session {session_id!r} already exists")
        ws = Workspace(self.workspace_root, session_id, self.allowed_paths)
        session = Session(self, session_id, ws, distributed=distributed)
        self.sessions[session_id] = session
        return session

    def delete_session(self, session_id: str) -> None:
        """Forget an ended session (thread-safe); cancel it first if it is still running."""
        session = self.sessions.get(session_id)
        if session is None:
            raise KeyError(f"no session {session_id!r}")
        session.cancel()
        session.wait()
        self.call(self._delete_session, session_id)

    def _delete_session(self, session_id: str) -> None:
        session = self.sessions.pop(session_id)
        session.release()

    # -- other nodes (called by the bus, from any thread) ---------------------------------------------------

    def _session(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise LookupError(f"node {self.name!r} has no session {session_id!r}")
        return session

    def deliver_events(self, session_id: str, events: list[RemoteEvent]) -> None:
        """State changes of proxied drops, from their owners."""
        session = self.sessions.get(session_id)
        if session is None:
            log.warning("events for unknown session %r dropped", session_id)
            return
        self.post(session.remote_events, events)

    def data_for(self, session_id: str, uid: str) -> Store:
        """The store of a completed local data drop, for a node that fetches it."""
        return self._session(session_id).data_for(uid)

    def incoming_store(self, session_id: str, uid: str) -> Store:
        """A fresh store for bytes that another node's app wrote for local drop ``uid``."""
        return self._session(session_id).fresh_store(uid)

    def adopt(self, session_id: str, uid: str, store: Store) -> None:
        """Install pushed bytes; the producer's FINISHED event, sent after this returns, comes later."""
        self.post(self._session(session_id).adopt, uid, store)

    def receive_data(self, session_id: str, uid: str, source: Store) -> None:
        store = self.incoming_store(session_id, uid)
        copy_store(source, store)
        self.adopt(session_id, uid, store)

    # -- events ---------------------------------------------------------------------------------------------

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the owner thread (thread-safe, never blocks)."""
        self._queue.put((fn, args))

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn(*args)`` on the owner thread and return its result or raise its exception."""
        if threading.current_thread() is self._thread:
            return fn(*args)
        if self._thread is None:
            raise RuntimeError("node is not running; call start() first")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller's thread
                fut.set_exception(exc)

        self.post(run)
        return fut.result(timeout)

    def add_timer(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        """Owner thread only: run ``fn(*args)`` on the owner thread after ``delay`` seconds."""
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), fn, args))

    def _loop(self, running: threading.Event) -> None:
        running.set()
        get = self._queue.get
        timers = self._timers
        while True:
            timeout = max(0.0, timers[0][0] - time.monotonic()) if timers else None
            try:
                item = get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if item is not None:
                fn, args = item
                try:
                    fn(*args)
                except (
                    Exception
                ) as exc:  # an engine bug: keep the loop alive, fail only the session concerned
                    log.exception("owner loop: %s failed", getattr(fn, "__qualname__", fn))
                    owner = getattr(fn, "__self__", None)
                    if isinstance(owner, Session):
                        owner.internal_error(exc)
            now = time.monotonic()
            while timers and timers[0][0] <= now:
                _, _, fn, args = heapq.heappop(timers)
                fn(*args)

    # -- pools ----------------------------------------------------------------------------------------------

    def submit_thread(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        return self._threads.submit(fn, *args)

    def submit_process(self, task: Any, done: Callable[[Outcome], None]) -> int:
        """Run a task in a worker process; ``done(outcome)`` is called on the owner thread."""
        if self._procs is None:
            self._procs = ProcessPool(self._nprocs, self._proc_done)
        task_id = next(self._task_ids)
        self._proc_callbacks[task_id] = done
        self._procs.submit(task_id, task)
        return task_id

    def kill_process(self, task_id: int) -> None:
        if self._procs is not None:
            self._procs.kill(task_id)

    def worker_pids(self) -> list[int]:
        return self._procs.pids() if self._procs is not None else []

    def _proc_done(self, task_id: int, outcome: Outcome) -> None:
        self.post(self._deliver, task_id, outcome)

    def _deliver(self, task_id: int, outcome: Outcome) -> None:
        self._proc_callbacks.pop(task_id)(outcome)
