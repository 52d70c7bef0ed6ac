"""The owner loop of one node: the single thread that holds and changes every drop state of its sessions.

Theory of operation
-------------------
A :class:`Node` runs one *owner* thread that takes events from one queue: completions posted by app
threads and worker processes, timer expiries, transfers, other nodes' news, and commands from other threads
(the CLI, the REST API). An event is the session it concerns (or None), a callable and its arguments; the
owner runs it, and the session then carries out whatever its cascade asked for. Nothing but the owner thread
changes drop state, so there are no per-drop locks. Other threads read states (for status and progress)
without locking: every read is of a single attribute or an immutable snapshot.

Every event and every timer runs under one guard: whatever it raises (an engine bug, a failing store, a
lying peer) fails the session it belongs to -- through ``Session.internal_error``, which stops its apps and
cleans up -- and the loop goes on with the next event. The owner thread never dies of an exception, and no
session is left RUNNING because of one.

Apps run in a :class:`~dropflow.engine.threadpool.ThreadPool` (the default), in the owner itself
(``inline``, for trivial apps), or in a :class:`~dropflow.engine.procpool.ProcessPool` whose workers start on
first use -- or with the node, when ``process`` is its default executor. Commands (shell apps) are started
by the owner and driven by one watcher thread (:mod:`~dropflow.engine.children`) until they end. While the
node runs, a :mod:`~dropflow.engine.reaper` process kills its apps' process groups should the node die.
Lifespan timers live in a heap; the owner sleeps on the queue until the next deadline, so nothing polls.
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
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..drops.apps.base import Outcome
from ..drops.apps.command import Command
from ..drops.stores import Store
from . import reaper, zygote
from .bus import Bus, RemoteEvent, copy_store
from .children import Children
from .observe import AppStats
from .procpool import ProcessPool
from .session import Session
from .sweep import sweep
from .threadpool import Job, Then, ThreadPool
from .timings import Timings
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
        #: Executor for user code (Python functions) whose spec names none ("thread" or "process").
        self.default_executor = executor
        self.sessions: dict[str, Session] = {}
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, Session | None, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._threads = ThreadPool(threads, "dropflow-app")
        #: Drives the running commands of shell apps (started lazily, with the first).
        self._children: Children | None = None
        self._children_lock = threading.Lock()
        #: Measured run times of apps' code, which let trivially short thread apps run inline.
        self.timings = Timings()
        self._procs = ProcessPool(processes or os.cpu_count() or 1, self._proc_done, self._zygote)
        self._zygote_ref: zygote.Zygote | None = None
        self._zygote_lock = threading.Lock()
        self._reaper: reaper.Reaper | None = None
        self._proc_callbacks: dict[int, tuple[Session, Callable[[Outcome], None]]] = {}
        self._task_ids = itertools.count(1)
        #: How this node reaches the others of distributed sessions (None: it runs sessions alone).
        self.bus: Bus | None = None
        #: Durations of the apps that returned here, for the monitor's metrics (owner thread writes).
        self.stats = AppStats()
        #: Events whose handler raised (each failed its session, or was logged): engine errors, for metrics.
        self.event_errors = 0

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> Node:
        """Start the owner thread; returns once it is taking events."""
        if self._thread is None:
            sweep(self.workspace_root)  # what dead processes left on this root
            self._reaper = reaper.acquire()
            if self.default_executor == "process":
                self._zygote()
                self._procs.start()  # warm workers: no run waits for an interpreter to start
            running = threading.Event()
            self._thread = threading.Thread(
                target=self._loop, args=(running,), name=f"dropflow-owner-{self.name}"
            )
            self._thread.start()
            running.wait()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Cancel every running session, wait for them to end, and stop all threads and processes.

        Returns within about ``timeout`` seconds whatever the apps do: sessions still running by then are
        ended by force (their apps abandoned, their workspaces cleaned)."""
        if self._thread is None:
            return
        sessions = list(self.sessions.values())
        for s in sessions:
            if not s.ended:
                s.error = s.error or f"node {self.name} shut down while the session ran"
            s.cancel()
        deadline = time.monotonic() + timeout
        for s in sessions:
            s.wait(max(0.0, deadline - time.monotonic() - 0.5))
        for s in sessions:
            if not s.ended:
                self.post_to(s, s.internal_error, RuntimeError(f"node {self.name} shut down"))
        for s in sessions:
            s.wait(max(0.1, deadline - time.monotonic()))
        # Ended sessions are forgotten and their graphs' cycles broken: a closed node holds no session.
        self.call(self._release_all)
        self._queue.put(_STOP)
        self._thread.join()
        self._thread = None
        # Code that never returns is not waited for beyond the timeout: pool threads are daemons.
        self._threads.close(max(0.0, deadline - time.monotonic()))
        with self._children_lock:
            children, self._children = self._children, None
        if children is not None:
            children.close(max(1.0, deadline - time.monotonic()))
        self._procs.close(max(1.0, deadline - time.monotonic()))
        with self._zygote_lock:
            held, self._zygote_ref = self._zygote_ref, None
        if held is not None:
            zygote.release(held)
        if self._reaper is not None:
            reaper.release()  # kills any app process group still running
            self._reaper = None

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

    def _release_all(self) -> None:
        for session_id in [sid for sid, s in self.sessions.items() if s.ended]:
            self._delete_session(session_id)

    # -- other nodes (called by the bus, from any thread) ---------------------------------------------------

    def _session(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise LookupError(f"node {self.name!r} has no session {session_id!r}")
        return session

    def deliver_events(self, session_id: str, events: list[RemoteEvent], sender: str | None = None) -> None:
        """State changes of proxied drops, from their owners (``sender``: the authenticated node they came
        from, checked against each drop's owner; None on a trusted in-process bus)."""
        session = self.sessions.get(session_id)
        if session is None:
            log.warning("events for unknown session %r dropped", session_id)
            return
        self.post_to(session, session.remote_events, events, sender)

    def data_for(self, session_id: str, uid: str, sender: str | None = None) -> Store:
        """The store of a completed local data drop, for a node that fetches it."""
        return self._session(session_id).data_for(uid, sender)

    def incoming_store(self, session_id: str, uid: str, sender: str | None = None) -> Store:
        """A fresh store for bytes that another node's app wrote for local drop ``uid``."""
        return self._session(session_id).fresh_store(uid, sender)

    def adopt(self, session_id: str, uid: str, store: Store) -> None:
        """Install pushed bytes; the producer's FINISHED event, sent after this returns, comes later."""
        session = self._session(session_id)
        self.post_to(session, session.adopt, uid, store)

    def receive_data(self, session_id: str, uid: str, source: Store) -> None:
        store = self.incoming_store(session_id, uid)
        try:
            copy_store(source, store)
            self.adopt(session_id, uid, store)
        except BaseException:  # the session went meanwhile: nothing else would delete these bytes
            store.delete()
            raise

    # -- events ---------------------------------------------------------------------------------------------

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the owner thread (thread-safe, never blocks)."""
        self._queue.put((None, fn, args))

    def post_to(self, session: Session, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the owner thread as an event of ``session``: if it raises, that fails."""
        self._queue.put((session, fn, args))

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
            except BaseException as exc:
                fut.set_exception(exc)

        self.post(run)
        return fut.result(timeout)

    def add_timer(
        self, delay: float, fn: Callable[..., None], *args: Any, session: Session | None = None
    ) -> None:
        """Owner thread only: run ``fn(*args)`` on the owner thread after ``delay`` seconds, as an event of
        ``session`` (whose end drops the timer: see :meth:`drop_timers`)."""
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), session, fn, args))

    def drop_timers(self, session: Session) -> None:
        """Owner thread only: forget a session's timers (they would keep it in memory until they fire)."""
        kept = [t for t in self._timers if t[2] is not session]
        if len(kept) != len(self._timers):
            self._timers[:] = kept
            heapq.heapify(self._timers)

    def _loop(self, running: threading.Event) -> None:
        running.set()
        get, run = self._queue.get, self._run
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
                run(*item)
                item = None  # while the loop waits, its locals must not keep a deleted session alive
            if timers:
                now = time.monotonic()
                while timers and timers[0][0] <= now:
                    _, _, session, fn, args = heapq.heappop(timers)
                    run(session, fn, args)
                session = fn = args = None  # type: ignore[assignment]

    def _run(self, session: Session | None, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        """Run one event; whatever it raises fails its session (if any) and never the loop."""
        try:
            fn(*args)
        except BaseException as exc:
            self._event_failed(session, fn, exc)

    def _event_failed(self, session: Session | None, fn: Callable[..., None], exc: BaseException) -> None:
        self.event_errors += 1
        if session is None:
            owner = getattr(fn, "__self__", None)
            session = owner if isinstance(owner, Session) else None
        where = getattr(fn, "__qualname__", repr(fn))
        # Logged as text: a record holding the traceback would hold its frames, and through them the session
        # and its graph, for as long as a handler keeps the record.
        trace = "".join(traceback.format_exception(exc)).rstrip()
        if session is None:
            log.error("owner loop of node %s: %s failed\n%s", self.name, where, trace)
            return
        log.error("session %s: %s failed; the session fails\n%s", session.id, where, trace)
        try:
            session.internal_error(exc)
        except BaseException as again:  # the loop must survive even this
            log.error("session %s: could not fail the session cleanly: %r", session.id, again)

    # -- pools ----------------------------------------------------------------------------------------------

    def submit_thread(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        return self._threads.submit(fn, *args)

    def run_thread(self, fn: Callable[..., Any], args: tuple[Any, ...], then: Then) -> Job:
        """Run ``fn(*args)`` in the app thread pool; ``then(result, error)`` is called on that thread."""
        return self._threads.run(fn, args, then)

    def watch(self, command: Command, then: Callable[[Outcome], None]) -> None:
        """Drive a started command until it ends; ``then(outcome)`` is called on the watcher's thread."""
        with self._children_lock:
            if self._children is None:
                self._children = Children(f"dropflow-children-{self.name}")
            children = self._children
        children.watch(command, then)

    @property
    def thread_slots(self) -> int:
        """How many thread apps a session keeps in flight at once (the pool's size)."""
        return self._threads.size

    def abandon_thread(
        self, job: Job | concurrent.futures.Future[Any], on_return: Callable[[], None] | None = None
    ) -> bool:
        """Give up the pool thread of a job or submitted task (its code may never return): the thread no
        longer counts against the pool, its result is discarded (a future resolves at once with
        ``threadpool.Abandoned``, or is cancelled if it had not started); ``on_return()`` is called on that
        thread if the code ever returns. False if the task had finished."""
        return self._threads.abandon(job, on_return)

    def _zygote(self) -> zygote.Zygote:
        """The zygote that forks this node's workers (the process's, acquired on first use; the pool's slot
        threads may ask at the same time, hence the lock)."""
        with self._zygote_lock:
            if self._zygote_ref is not None and self._zygote_ref.failed:
                zygote.release(self._zygote_ref)  # it died: the next fork comes from a new one
                self._zygote_ref = None
            if self._zygote_ref is None:
                self._zygote_ref = zygote.acquire()
            return self._zygote_ref

    def submit_process(self, task: Any, done: Callable[[Outcome], None], session: Session) -> int:
        """Run a task in a worker process; ``done(outcome)`` is called on the owner thread, as an event of
        ``session``."""
        task_id = next(self._task_ids)
        self._proc_callbacks[task_id] = (session, done)
        self._procs.submit(task_id, task)
        return task_id

    def kill_process(self, task_id: int) -> None:
        """Kill the worker running the task (never blocks); ``done`` then gets a "cancelled" outcome."""
        self._procs.kill(task_id)

    def load(self) -> dict[str, Any]:
        """For the monitor (any thread): events waiting for the owner, timers armed, and the pools' load."""
        return {
            "queue": self._queue.qsize(),
            "timers": len(self._timers),
            "threads": self._threads.load(),
            "processes": self._procs.load(),
        }

    def worker_pids(self) -> list[int]:
        return self._procs.pids()

    def _proc_done(self, task_id: int, outcome: Outcome) -> None:
        self.post(self._deliver, task_id, outcome)

    def _deliver(self, task_id: int, outcome: Outcome) -> None:
        entry = self._proc_callbacks.pop(task_id, None)
        if entry is None:
            log.error("node %s: an outcome for unknown process task %d was dropped", self.name, task_id)
            return
        session, done = entry
        self._run(session, done, (outcome,))
