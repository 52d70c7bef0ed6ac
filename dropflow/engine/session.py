"""A session: one graph's drops on one node, from specs to the end of its workspace.

Theory of operation
-------------------
A session is the I/O shell around its :class:`~dropflow.engine.core.Core`. Specs are added while it is
BUILDING; ``deploy`` links and checks them (a bad graph raises :class:`GraphError` and leaves the session
BUILDING, nothing run), then the session is DEPLOYING while root inputs are prepared, and RUNNING once the
roots are triggered. After every stimulus the session *pumps* the core's instructions: it runs ready apps
(inline ones in the owner, the rest in the thread or process pool, each with a :class:`Task`; commands
started by the owner and driven by the node's watcher, holding a thread slot each but no thread), deletes
expired data, arms lifespan timers and kills cancelled apps. The pump is not re-entrant: an inline app that
finishes inside a pump feeds the core, whose new instructions the running pump then carries out, so a chain
of a million inline apps cascades in one pump with constant stack.

Every event that concerns the session reaches the owner loop tagged with the session (``node.post_to``),
so an exception anywhere on its path -- an engine bug, a store that cannot be created, a lying peer -- fails
exactly this session, through :meth:`internal_error`, and nothing else. Commands from other threads
(``add``, ``deploy``, ...) return refusals (:class:`GraphError`, :class:`WrongState`) to their caller; any
other exception also fails the session.

When the core has settled every drop and no app is still in flight, the session *finalises*: it deletes
every store that is not persisted (unlinking shared memory), removes the workspace except persisted paths,
and moves to FINISHED, FAILED or CANCELLED. A cancelled app that does not stop (Python code cannot be
interrupted) is abandoned after ``ABANDON_AFTER`` seconds so that a session always ends and its pool slot is
given back; what it writes afterwards is deleted when it returns. Late completions hold the session only
weakly, so a deleted session is freed even while an abandoned app never returns.

Every method except the thread-safe ones marked so runs on the node's owner thread. Other threads read the
session through snapshots: single attributes, and the core's append-only failure list taken by a slice.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..drops import kinds
from ..drops.apps.base import CancelToken, InputRef, Outcome, OutputRef, Task
from ..drops.codecs import decode, encode
from ..drops.errors import GraphError
from ..drops.kinds import StoreContext
from ..drops.spec import AppSpec, DataSpec, DropSpec
from ..drops.states import (
    SESSION_ENDED,
    SESSION_TRANSITIONS,
    AppState,
    DropState,
    SessionState,
    check_transition,
)
from ..drops.stores import MemoryStore, Store
from .bus import RemoteEvent
from .core import Core, InvariantError
from .eventlog import Event, EventLog
from .gcpause import bulk_allocation
from .graph import AppNode, DataNode, Graph, build
from .observe import OutputTails
from .report import Failure, Summary, summarize
from .threadpool import Job
from .transfers import Transfers
from .workspace import Workspace

if TYPE_CHECKING:
    from .journal import Journal
    from .node import Node
    from .walltime import Deadline

__all__ = ["Failure", "Session", "Summary", "WrongState", "live_sessions"]

log = logging.getLogger(__name__)

_S = SessionState
COMPLETED, RUNNING = DropState.COMPLETED, AppState.RUNNING

#: Every session not yet freed, for leak checks (weak: it keeps nothing alive).
_live: weakref.WeakSet[Session] = weakref.WeakSet()


#: Why a root file given by a relative path is missing, nearly always.
_RELATIVE_HINT = (
    " (a relative path is inside the session's workspace, which is new; for a file of yours, give its "
    "absolute path and allow its directory with --allow-path)"
)


def live_sessions() -> list[Session]:
    """Sessions still in memory in this process (for leak checks: a deleted session must not be here)."""
    return list(_live)


class WrongState(RuntimeError):
    """A command that the session's state does not allow (e.g. adding drops after deploy)."""


class _Running:
    """An app in flight: in a thread (its pool job and cancel token) or in a worker process (its task id),
    and the stores a late return must delete."""

    __slots__ = ("job", "stores", "task_id", "token")

    def __init__(
        self, stores: list[Store], token: CancelToken | None = None, job: Job | None = None, task_id: int = 0
    ) -> None:
        self.stores = stores
        self.token = token
        self.job = job
        self.task_id = task_id


def _late(stores: Sequence[Store], top: str) -> None:
    """An app given up on came back: delete what it may have written, and the folders it made for that under
    the session's workspace ``top`` if they are empty (the workspace itself may be gone already)."""
    for store in stores:
        with contextlib.suppress(Exception):
            store.delete()
        path = store.fspath() if store.owned else None
        while path and (path := os.path.dirname(path)).startswith(top):
            try:
                os.rmdir(path)
            except OSError:
                break


def _thread_returned(
    me: weakref.ref[Session], app: AppNode, stores: list[Store], result: Any, error: BaseException | None
) -> None:
    """Pool thread: hand a finished thread app back to its session's owner (if the session still exists)."""
    session = me()
    if session is None:
        _late(stores, "")
    else:
        session.post(session._thread_done, app, result, error, stores)


def _process_returned(me: weakref.ref[Session], app: AppNode, stores: list[Store], outcome: Outcome) -> None:
    """Owner thread: a worker process answered for an app."""
    session = me()
    if session is None:
        _late(stores, "")
    else:
        session._done(app, outcome, stores)


class _ProxyContext:
    """Store context for local copies of other nodes' drops: same workspace, a session name of their own."""

    def __init__(self, session_id: str, workspace: Workspace) -> None:
        self.session_id = session_id
        self.resolve = functools.partial(workspace.resolve, links=False)
        self.shm_scope = workspace.shm_scope


class Session:
    """One graph executing on one node."""

    #: Seconds a cancelled app gets to stop before it is given up on (its slot freed, the session ended).
    ABANDON_AFTER = 1.0
    #: How many apps' printed output a session keeps (each is bounded by its runner).

    def __init__(self, node: Node, session_id: str, workspace: Workspace, distributed: bool = False) -> None:
        self.node = node
        self.id = session_id
        self.workspace = workspace
        self.shm_scope = workspace.shm_scope  # StoreContext: the scope of its segment names
        #: This node's name in a distributed session (drops placed elsewhere are proxies); None when alone.
        self.local: str | None = node.name if distributed else None
        # Local copies of other nodes' drops get names of their own: two nodes may share a host.
        self._proxy_context = _ProxyContext(f"{session_id}@{node.name}", workspace)
        self.transfers = Transfers(self)
        self._failed_roots: dict[str, str] = {}
        self._early_events: list[RemoteEvent] = []
        self._remote_producers: dict[str, frozenset[str]] | None = None
        self._started = False
        self.state = _S.PRISTINE
        self.log = EventLog(node.log_size)
        self.graph: Graph | None = None
        self.core: Core | None = None
        self._specs: list[DropSpec] = []
        self._inflight: dict[AppNode, _Running] = {}
        #: Thread apps in flight, and ready ones waiting for a slot (at most the pool's size in flight, so
        #: that a fan of 100,000 apps is not queued at once, and measured timings can still change the
        #: executor of those that wait).
        self._in_threads = 0
        self._held: deque[AppNode] = deque()
        self._pumping = False
        self._finalized = False
        #: Ended by an internal error: its drop states stopped mid-cascade and are not checked.
        self.broken = False
        self._ended = threading.Event()
        self._on_end: list[Callable[[Session], None]] = []
        self.times: dict[str, float] = {"created": time.time()}
        self.error: str | None = None
        #: Paths kept at the end because their drops persist.
        self.persisted: list[str] = []
        #: The end of each app's standard output and error, where its runner captured them (bounded).
        self.outputs = OutputTails()
        #: What a resume needs is recorded here, if set before deploy (see engine/journal.py).
        self.journal: Journal | None = None
        #: Apps that cannot finish before this are not started (see engine/walltime.py); they wait here.
        self.deadline: Deadline | None = None
        self._deferred: list[AppNode] = []
        _live.add(self)

    # -- StoreContext ---------------------------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return self.id

    def resolve(self, spec: DataSpec, path: str | None) -> tuple[str, bool, str]:
        # Links were checked when the graph was; one made since is refused when a store opens the path.
        return self.workspace.resolve(spec, path, links=False)

    # -- state ----------------------------------------------------------------------------------------------

    def _set_state(self, end: SessionState) -> None:
        start = self.state
        check_transition(SESSION_TRANSITIONS, f"session {self.id!r}", start, end)
        self.state = end
        self.log.append((self.log.clock(), f"session:{self.id}", start, end, "session"))

    # -- commands (thread-safe wrappers run on the owner) ----------------------------------------------------

    def _command(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a command on the owner. Refusals go back to the caller; anything else fails the session too."""
        return self.node.call(self._guarded, fn, args)

    def _guarded(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        try:
            return fn(*args)
        except (GraphError, WrongState):
            raise
        except BaseException as exc:
            self.internal_error(exc)
            raise

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the owner as an event of this session (thread-safe)."""
        self.node.post_to(self, fn, *args)

    def add(self, specs: Iterable[DropSpec]) -> None:
        """Append drop specs to a session that has not been deployed (thread-safe)."""
        self._command(self._add, list(specs))

    def _add(self, specs: list[DropSpec]) -> None:
        if self.state is _S.PRISTINE:
            self._set_state(_S.BUILDING)
        elif self.state is not _S.BUILDING:
            raise WrongState(f"session {self.id!r} is {self.state}; graphs can only be added before deploy")
        self._specs.extend(specs)

    def deploy(self, source: str | None = None, start: bool = True) -> None:
        """Link and check the graph, prepare root inputs and (unless ``start`` is False) start it.

        Thread-safe; raises GraphError and leaves the session BUILDING when the graph is bad. A distributed
        session is deployed on every node first and started after, so that no event finds a node unready.
        """
        self._command(self._deploy, source, start)

    def start(self) -> None:
        """Trigger the roots of a session deployed with ``start=False`` (thread-safe)."""
        self._command(self._begin)

    def _deploy(self, source: str | None, start: bool) -> None:
        if self.state is _S.PRISTINE:
            self._set_state(_S.BUILDING)
        if self.state is not _S.BUILDING:
            raise WrongState(f"session {self.id!r} is {self.state}; it can be deployed once, while BUILDING")
        self.times["deploy"] = time.time()
        with bulk_allocation():
            # A GraphError leaves the session BUILDING.
            self.graph = build(self._specs, self.workspace, source, local=self.local)
        self._specs = []
        self.core = Core(self.graph, self.log)
        if self.journal is not None:
            self.journal.attach(self)  # observes the core; restores a resume plan
        self._set_state(_S.DEPLOYING)
        self.workspace.create()
        self._failed_roots = self._prepare_roots(self.graph.root_data)
        if start:
            self._begin()

    def _begin(self) -> None:
        if self.state is not _S.DEPLOYING:
            raise WrongState(f"session {self.id!r} is {self.state}; only a deployed session can start")
        self._set_state(_S.RUNNING)
        self.times["running"] = time.time()
        # The cascade starts as an event of its own, so deploy returns as soon as the graph is in place.
        self.post(self._start)

    def _start(self) -> None:
        assert self.core is not None
        if self.state is not _S.RUNNING:
            return  # cancelled between deploy and start
        self.times["run"] = time.time()
        self._started = True
        self.core.start(self._failed_roots)
        if self._early_events:  # other nodes started first: their news waited for this node's start
            events, self._early_events = self._early_events, []
            self.remote_events(events)
        self.pump()

    def internal_error(self, exc: BaseException) -> None:
        """Owner thread: something failed while handling this session's event. Fail the session with the
        cause, stop its apps and clean up, rather than leave it running forever. Never raises."""
        if self._ended.is_set():
            return
        self.broken = True
        self.error = self.error or f"internal error: {type(exc).__name__}: {exc}"
        self._pumping = False  # the failed pump is over
        for running in list(self._inflight.values()):
            with contextlib.suppress(Exception):
                self._kill(running)
            with contextlib.suppress(Exception):
                self._give_up(running)
        self._inflight.clear()
        self._held.clear()
        with contextlib.suppress(Exception):
            self.transfers.abandon()
        self._finalized = True
        try:
            self.persisted = self._cleanup()
        except Exception:  # cleanup is best effort here; the session must still end
            log.exception("session %s: cleanup after an internal error failed", self.id)
        self.times["end"] = time.time()
        end = _S.FAILED if (self.state, _S.FAILED) in SESSION_TRANSITIONS else _S.CANCELLED
        if (self.state, end) in SESSION_TRANSITIONS:
            self._set_state(end)
        else:  # PRISTINE or BUILDING (a command failed): the table allows only CANCELLED there
            self.state = _S.FAILED
        self._finish()

    def cancel(self) -> None:
        """Cancel the session: settle every drop as CANCELLED and kill running apps (thread-safe)."""
        self.post(self._cancel)

    def _cancel(self) -> None:
        if self.state in SESSION_ENDED:
            return
        if self.core is None:
            self._set_state(_S.CANCELLED)
            self.times["end"] = time.time()
            self._finish()
            return
        self.core.cancel()
        self.pump()
        if not self._finalized and (self._inflight or self.transfers.pending):
            self.node.add_timer(self.ABANDON_AFTER, self._abandon, session=self)

    # -- roots ----------------------------------------------------------------------------------------------

    def _prepare_roots(self, roots: Sequence[DataNode]) -> dict[str, str]:
        """Give root data drops their content; returns the ids of roots that cannot complete, and why."""
        failed: dict[str, str] = {}
        for data in roots:
            spec = data.spec
            value = spec.initial()
            if value is not None:
                store = data.store = self._store(data)
                try:
                    store.put(encode(spec.effective_codec(), value))
                except ValueError as exc:
                    failed[spec.id] = f"cannot encode 'data' with codec {spec.effective_codec()}: {exc}"
            elif spec.TRAITS.must_exist:
                store = self._store(data)
                if not store.exists():
                    failed[spec.id] = (
                        f"input {spec.kind} {store.fspath()} does not exist and nothing produces it"
                        + _RELATIVE_HINT * (not os.path.isabs(getattr(spec, "path", None) or "/"))
                    )
        return failed

    # -- the pump -------------------------------------------------------------------------------------------

    def pump(self) -> None:
        """Carry out the core's instructions until there are none (owner thread).

        Re-entry (an inline app finishing inside ``dispatch``) returns at once: the running pump sees the new
        instructions in the core's queues, so the stack stays flat however long a chain of inline apps is.
        """
        if self._pumping or self._finalized:
            return
        core = self.core
        assert core is not None
        self._pumping = True
        try:
            ready, to_delete, to_time, to_kill = core.ready, core.to_delete, core.to_time, core.to_kill
            held, slots = self._held, self.node.thread_slots
            while (
                ready or to_delete or to_time or to_kill or core.outbox or (held and self._in_threads < slots)
            ):
                # Kills and deletions first: what expired is gone before anything that became ready with
                # it starts (and frees its memory first).
                while to_kill:
                    running = self._inflight.get(to_kill.popleft())
                    if running is not None:
                        self._kill(running)
                while to_delete:
                    data = to_delete.popleft()
                    store = data.store
                    if store is not None:
                        store.delete()
                        if type(data.peer) is str:
                            data.store = None  # a proxy's local copy; fetched again if ever needed
                    core.deleted(data)
                for _ in range(len(ready)):  # what is ready now; inline apps make more, taken next round
                    self.dispatch(ready.popleft())
                while held and self._in_threads < slots:
                    app = held.popleft()
                    if app.state is RUNNING:  # (not cancelled while it waited)
                        self.dispatch(app)
                while to_time:
                    data = to_time.popleft()
                    assert data.spec.lifespan is not None
                    self.node.add_timer(data.spec.lifespan, self._lifespan_over, data, session=self)
                if core.outbox:
                    self._send_events(core)
        finally:
            self._pumping = False
        if core.outcome is not None and not self._inflight and not self.transfers.pending:
            self._finalize()

    def _send_events(self, core: Core) -> None:
        batches: dict[str, list[RemoteEvent]] = {}
        outbox = core.outbox
        while outbox:
            peers, uid, state, skips = outbox.popleft()
            event = RemoteEvent(uid, str(state), skips)
            for peer in peers:
                batches.setdefault(peer, []).append(event)
        bus = self.node.bus
        if bus is None:
            raise RuntimeError(
                f"session {self.id!r} has drops on other nodes but node {self.node.name!r} has no bus"
            )
        for peer, events in batches.items():
            bus.send_events(peer, self.id, events)

    def _lifespan_over(self, data: DataNode) -> None:
        if self.core is not None and not self._finalized:
            self.core.lifespan_over(data)
            self.pump()

    def dispatch(self, app: AppNode) -> None:
        """Run a ready app on its executor (owner thread); its outcome comes back through :meth:`_done`."""
        spec = app.spec
        if self.deadline is not None and not self.deadline.fits(spec):
            self._deferred.append(app)  # it could not finish in time: the checkpoint cancels it
            return
        if self.local is not None and not self.transfers.inputs_here(app):
            return  # dispatched again when the last remote input has arrived
        executor = spec.executor or self._default_executor(spec)
        adaptive = False
        node = self.node
        if executor == "thread":
            if spec.executor is None and node.timings.short(spec):
                executor, adaptive = "inline", True  # measured trivially short: cheaper than a round trip
            elif self._in_threads >= node.thread_slots:
                self._held.append(app)  # the pool is busy with this session's apps: wait for a slot
                return
        task = self._task(app)
        if executor == "inline":
            outcome = kinds.execute(task, CancelToken())
            if adaptive:
                node.timings.record(spec, outcome.seconds, inline=True)
            self._done(app, outcome)
            return
        stores = [ref.store for ref in task.outputs]
        me = weakref.ref(self)
        if executor == "thread" and kinds.app_kind(spec).start is not None:
            self._start_command(app, task, stores, me)
        elif executor == "thread":
            token = CancelToken()
            job = node.run_thread(
                kinds.execute, (task, token), lambda r, e: _thread_returned(me, app, stores, r, e)
            )
            self._inflight[app] = _Running(stores, token=token, job=job)
            self._in_threads += 1
        else:
            task_id = node.submit_process(
                task, lambda outcome: _process_returned(me, app, stores, outcome), self
            )
            self._inflight[app] = _Running(stores, task_id=task_id)

    def _start_command(self, app: AppNode, task: Task, stores: list[Store], me: weakref.ref[Session]) -> None:
        """Start an app's command here, on the owner, and hand it to the node's watcher (no thread waits for
        it); its outcome comes back like a thread app's, through :meth:`_thread_done`."""
        token = CancelToken()
        started = kinds.start(task, token)
        if isinstance(started, Outcome):  # it could not start
            self._done(app, started)
            return
        self._inflight[app] = _Running(stores, token=token)
        self._in_threads += 1  # a command holds one of the session's slots, as it did a thread
        try:
            self.node.watch(started, lambda outcome: _thread_returned(me, app, stores, outcome, None))
        except RuntimeError as exc:  # the node is closing
            self._inflight.pop(app, None)
            self._in_threads -= 1
            self._done(app, Outcome.failed(str(exc)))

    def _kill(self, running: _Running) -> None:
        """Stop an app in flight: cancel its token (its processes are signalled), or kill its worker."""
        if running.token is not None:
            running.token.cancel()
        else:
            self.node.kill_process(running.task_id)

    def _give_up(self, running: _Running) -> None:
        """Stop waiting for an app: its pool thread is abandoned (what it writes if it ever returns is
        deleted then), or its worker killed."""
        if running.job is not None:
            stores, top = running.stores, self.workspace.dir
            self.node.abandon_thread(running.job, lambda: _late(stores, top))
            self._in_threads -= 1
        elif running.task_id:
            self.node.kill_process(running.task_id)
        else:  # a command: its group was killed; if it ever ends, what it wrote is deleted (see _done)
            self._in_threads -= 1

    def _default_executor(self, spec: AppSpec) -> str:
        """For user code, the node's default where the kind allows it; else the kind's own."""
        chosen = self.node.default_executor
        if chosen is None or not spec.USER_CODE or chosen not in spec.EXECUTORS:
            return spec.DEFAULT_EXECUTOR
        return chosen

    def _thread_done(
        self, app: AppNode, result: Any, error: BaseException | None, stores: list[Store]
    ) -> None:
        if isinstance(result, Outcome):
            outcome = result
            if self._inflight.get(app) is not None:
                self.node.timings.record(app.spec, outcome.seconds)
        else:  # execute() never raises; this would be a bug in the pool
            outcome = Outcome.failed(f"could not run in a thread: {type(error).__name__}: {error}")
        if app in self._inflight:
            self._in_threads -= 1
        self._done(app, outcome, stores)

    def _done(self, app: AppNode, outcome: Outcome, stores: Sequence[Store] | None = None) -> None:
        """An app's outcome (owner thread). ``stores`` is None for inline apps, else what it was given."""
        running = self._inflight.pop(app, None)
        core = self.core
        assert core is not None
        if running is None and stores is not None:
            # Given up on (abandoned after a cancel, or its session failed): delete what it may have written.
            _late(stores, self.workspace.dir)
            return
        if self._finalized:
            return
        self.node.stats.record(outcome.seconds, outcome.ok)
        if self.deadline is not None:
            self.deadline.ran(app.spec, outcome.seconds)
        if outcome.stdout or outcome.stderr:
            self.outputs.keep(app.spec.id, outcome.stdout, outcome.stderr)
        if outcome.ok:
            by_id = core.graph.by_id
            for uid, store in outcome.stores.items():
                node = by_id[uid]
                if isinstance(node, DataNode) and node.store is not store:
                    node.store = store  # a worker process sent the bytes of a memory drop back
            # (A cancelled app's late result is not pushed: its outputs' owners have settled them.)
            if self.local is not None and app.state is RUNNING and self.transfers.push_outputs(app, outcome):
                return  # finished when the bytes are at their owners
            core.app_finished(app, outcome.skip_ports)
        else:
            core.app_failed(app, outcome.error or "failed")
        self.pump()

    def _abandon(self) -> None:
        """Give up on cancelled apps and transfers that did not stop, so that the session ends and their
        pool slots are free again."""
        if self._finalized:
            return
        apps, transfers = len(self._inflight), self.transfers.abandon()
        if apps or transfers:
            self.error = self.error or (
                f"abandoned {apps} cancelled app(s) and {transfers} transfer(s) that did not stop"
            )
            for running in list(self._inflight.values()):
                self._give_up(running)
            self._inflight.clear()
            self.pump()

    # -- other nodes ----------------------------------------------------------------------------------------

    def remote_events(self, events: list[RemoteEvent], sender: str | None = None) -> None:
        """Owner thread: state changes of proxied drops, reported by their owners.

        ``sender`` is the authenticated node the events came from (None: a trusted in-process bus). A node
        speaks only for the drops it owns: news about any other drop, or before this part is deployed (no
        owner sends any then), is dropped and logged.
        """
        core, graph = self.core, self.graph
        if self._finalized:
            return
        if sender is not None:
            owned = [
                e
                for e in events
                if graph is not None and getattr(graph.by_id.get(e.uid), "peer", None) == sender
            ]
            if len(owned) < len(events):
                log.warning(
                    "session %s: node %s sent news of %d drops it does not own; dropped",
                    self.id,
                    sender,
                    len(events) - len(owned),
                )
            events = owned
        if not self._started or core is None or graph is None:
            # Another node started first. Running this node's cascade before its own start would end the
            # session before it began: keep the news until _start.
            self._early_events.extend(events)
            return
        for event in events:
            node = graph.by_id.get(event.uid)
            if node is not None and type(node.peer) is str:
                core.remote_state(node, event.state, event.skip_ports)
        self.pump()

    def data_for(self, uid: str, sender: str | None = None) -> Store:
        """Any thread: the store of a completed local data drop, for another node (``sender``: the
        authenticated one asking; None, a trusted in-process bus) that holds a consumer of it."""
        graph = self.graph
        node = graph.by_id.get(uid) if graph is not None else None
        if not isinstance(node, DataNode) or type(node.peer) is str:
            raise LookupError(f"session {self.id!r} on node {self.node.name!r} holds no data drop {uid!r}")
        if sender is not None and (node.peer is None or sender not in node.peer):
            raise LookupError(f"node {sender!r} has no neighbour of drop {uid!r} in session {self.id!r}")
        if node.state is not COMPLETED:
            raise LookupError(f"data drop {uid!r} is {node.state}, not COMPLETED")
        return node.store if node.store is not None else MemoryStore()

    def fresh_store(self, uid: str, sender: str | None = None) -> Store:
        """Any thread: a new store for local data drop ``uid`` (bytes pushed by another node). ``sender``, the
        authenticated node pushing (None: a trusted in-process bus), must hold a producer of the drop."""
        graph = self.graph
        node = graph.by_id.get(uid) if graph is not None else None
        if not isinstance(node, DataNode) or type(node.peer) is str:
            raise LookupError(f"session {self.id!r} on node {self.node.name!r} holds no data drop {uid!r}")
        if sender is not None and sender not in self._producers(graph).get(uid, ()):  # type: ignore[arg-type]
            raise LookupError(f"node {sender!r} runs no producer of drop {uid!r} in session {self.id!r}")
        if self._finalized:  # its cleanup is over: nothing would delete these bytes
            raise LookupError(f"session {self.id!r} on node {self.node.name!r} has ended")
        return kinds.data_kind(node.spec).store(node.spec, self)

    def _producers(self, graph: Graph) -> dict[str, frozenset[str]]:
        """Local data drop -> the other nodes that run a producer of it (found once, on the first push)."""
        found = self._remote_producers
        if found is None:
            pairs: dict[str, set[str]] = {}
            for app in graph.apps:
                if type(app.peer) is str:
                    for d in app.outputs:
                        pairs.setdefault(d.spec.id, set()).add(app.peer)
            found = self._remote_producers = {uid: frozenset(nodes) for uid, nodes in pairs.items()}
        return found

    def adopt(self, uid: str, store: Store) -> None:
        """Owner thread: install bytes another node pushed for a local data drop."""
        graph = self.graph
        node = graph.by_id.get(uid) if graph is not None else None
        if isinstance(node, DataNode) and not self._finalized:
            if node.store is not None and node.store is not store:
                node.store.delete()
            node.store = store
        else:
            store.delete()

    # -- tasks ----------------------------------------------------------------------------------------------

    def new_store(self, data: DataNode) -> Store:
        """A new store object for a drop (a proxy's local copy gets a name of its own)."""
        context: StoreContext = self._proxy_context if type(data.peer) is str else self
        return kinds.data_kind(data.spec).store(data.spec, context)

    def _store(self, data: DataNode) -> Store:
        if data.store is None:
            data.store = self.new_store(data)
        return data.store

    def _task(self, app: AppNode) -> Task:
        """The task of a ready app: its spec and a ref per linked drop, in port order (hot: once per app)."""
        spec = app.spec
        codecs = spec.codecs
        inputs: list[InputRef] = []
        it = iter(app.inputs)
        for port, value in spec.inputs.items():
            many = type(value) is not str
            for _ in value if many else (value,):
                data = next(it)
                dspec = data.spec
                store = (data.store or self._store(data)) if data.state is COMPLETED else None
                codec = (codecs and codecs.get(port)) or dspec.codec or dspec.DEFAULT_CODEC
                inputs.append(InputRef(port, dspec.id, dspec.TRAITS, codec, store, many))
        outputs: list[OutputRef] = []
        it = iter(app.outputs)
        retry = app.attempt
        for port, value in spec.outputs.items():
            many = type(value) is not str
            for _ in value if many else (value,):
                data = next(it)
                dspec = data.spec
                if retry and data.store is not None:
                    data.store.delete()  # a retry starts from empty outputs
                codec = (codecs and codecs.get(port)) or dspec.codec or dspec.DEFAULT_CODEC
                outputs.append(
                    OutputRef(port, dspec.id, dspec.TRAITS, codec, data.store or self._store(data), many)
                )
        return Task(self.id, self.workspace.dir, spec, inputs, outputs, retry)

    # -- the end --------------------------------------------------------------------------------------------

    def _cleanup(self) -> list[str]:
        """Delete every store not persisted, remove the workspace but persisted paths; return those paths."""
        keep: list[str] = []
        graph = self.graph
        for data in graph.data if graph is not None else ():
            # (A store never made leaves nothing: files are under the workspace, which goes below, and
            # segments a dying producer made carry the session's scope, which the workspace's cleanup
            # unlinks.)
            store = data.store
            if store is None:
                continue
            if data.spec.persist and type(data.peer) is not str:
                path = store.fspath()
                if path is not None:
                    keep.append(path)
                continue
            store.delete()
        self.workspace.cleanup(keep)
        return keep

    def _finalize(self) -> None:
        core = self.core
        assert core is not None and core.outcome is not None
        if os.environ.get("DROPFLOW_VALIDATE") == "1":
            # The test suite sets it (for the daemons it starts too): every session checks its core's
            # invariants as it ends; an InvariantError fails it (the owner loop's guard) naming the rule.
            core.validate()
        self._finalized = True
        self._held.clear()
        if self.journal is not None:
            self.journal.checkpoint(self)  # what a resume needs leaves the workspace before it goes
        self.persisted = self._cleanup()
        self.times["end"] = time.time()
        self._set_state(core.outcome)
        self._finish()

    def _finish(self) -> None:
        if self.journal is not None:
            self.journal.end(self)
        self._ended.set()
        for cb in self._on_end:
            cb(self)

    def on_end(self, callback: Callable[[Session], None]) -> None:
        """Owner thread: call ``callback(session)`` when the session ends."""
        if self._ended.is_set():
            callback(self)
        else:
            self._on_end.append(callback)

    def release(self) -> None:
        """Owner thread, once the session has ended: break every reference cycle of the session and its
        graph, so that reference counting alone frees them as soon as the last outside reference goes."""
        if self.graph is not None:
            for data in self.graph.data:
                data.consumers = None
                data.store = None if not data.spec.persist else data.store
            for app in self.graph.apps:
                app.inputs = app.outputs = ()
        self._on_end.clear()
        self._inflight.clear()
        self._deferred.clear()
        self._early_events.clear()
        if self.core is not None:
            self.core.release()
        self.node.drop_timers(self)

    def validate(self) -> None:
        """Owner thread: the core's invariants, and no app RUNNING here without something that will end it.

        A session that an internal error ended only has to be ended: its cascade stopped half way."""
        core = self.core
        if self.broken:
            if not self._ended.is_set():
                raise InvariantError("an internal error failed the session but it has not ended")
            return
        if core is None:
            return
        core.validate()
        if self._pumping:
            return
        waiting = self.transfers.waiting_apps()
        queued = set(map(id, core.ready)) | set(map(id, self._held)) | set(map(id, self._deferred))
        for app in core.graph.apps:
            if (
                app.state is RUNNING
                and type(app.peer) is not str
                and app not in self._inflight
                and id(app) not in waiting
                and id(app) not in queued
            ):
                raise InvariantError(f"app {app.spec.id!r} is RUNNING with no task in flight")
        if (
            core.outcome is not None
            and not self._inflight
            and not self.transfers.pending
            and not self._finalized
        ):
            raise InvariantError("the session's outcome is decided but it has not ended")

    # -- queries (thread-safe snapshots) ---------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> SessionState:
        """Wait until the session ends (or the timeout passes); return its state."""
        self._ended.wait(timeout)
        return self.state

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def progress(self) -> tuple[int, int]:
        """(settled drops, all drops)."""
        core = self.core
        if core is None:
            return 0, len(self._specs)
        total = len(core.graph.by_id)
        return total - core.unsettled, total

    def drop_state(self, uid: str) -> str:
        graph = self.graph
        if graph is None or uid not in graph.by_id:
            raise KeyError(f"session {self.id!r} has no drop {uid!r}")
        return str(graph.by_id[uid].state)

    def graph_status(self) -> dict[str, str]:
        graph = self.graph
        return {} if graph is None else {uid: str(n.state) for uid, n in graph.by_id.items()}

    def story(self, uid: str) -> list[Event]:
        """What happened to a drop, oldest first (as far back as the bounded log reaches)."""
        return self.log.story(uid)

    def failures(self, limit: int | None = None) -> list[Failure]:
        """Root-cause failures in order (the first ``limit`` of them if given)."""
        core, graph = self.core, self.graph
        if core is None or graph is None:
            return []
        # The list is append-only: a slice is a consistent snapshot while the owner appends.
        return [Failure(uid, graph.by_id[uid].spec.kind, msg) for uid, msg in core.failures[:limit]]

    def failure_count(self) -> int:
        """How many drops failed by themselves (any thread)."""
        return len(self.core.failures) if self.core is not None else 0

    def value(self, uid: str) -> Any:
        """The decoded content of a (persisted, or not yet deleted) data drop."""
        graph = self.graph
        node = graph.by_id.get(uid) if graph is not None else None
        if not isinstance(node, DataNode):
            raise KeyError(f"session {self.id!r} has no data drop {uid!r}")
        store = node.store
        if store is None:
            return None
        return decode(node.spec.effective_codec(), store.buffer())

    def summary(self) -> Summary:
        """Drops by state, root-cause failures, timings, kept paths and small results (thread-safe)."""
        return summarize(self)
