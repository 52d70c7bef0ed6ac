"""A session: one graph's drops on one node, from specs to the end of its workspace.

Theory of operation
-------------------
A session is the I/O shell around its :class:`~dropflow.engine.core.Core`. Specs are added while it is
BUILDING; ``deploy`` links and checks them (a bad graph raises :class:`GraphError` and leaves the session
BUILDING, nothing run), then the session is DEPLOYING while root inputs are prepared, and RUNNING once the
roots are triggered. After every stimulus the session *pumps* the core's instructions: it runs ready apps
(trivial ones are settled on the spot, inline ones run in the owner, the rest go to the thread or process
pool with a :class:`Task`), deletes expired data, arms lifespan timers and kills cancelled apps. Apps that
settle inline feed the loop again, so a whole chain of inline apps cascades in one pump, iteratively.

When the core has settled every drop and no app is still in flight, the session *finalises*: it deletes
every store that is not persisted (unlinking shared memory), removes the workspace except persisted paths,
and moves to FINISHED, FAILED or CANCELLED. A cancelled app that will not die is abandoned after
``ABANDON_AFTER`` seconds so that a session always ends; what it writes afterwards is cleaned when it
returns.

Every method except the thread-safe ones marked so runs on the node's owner thread.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..drops import kinds
from ..drops.apps.base import CancelToken, InputRef, Outcome, OutputRef, Task
from ..drops.codecs import decode, encode
from ..drops.kinds import StoreContext
from ..drops.spec import DataSpec, DropSpec, FileSpec, MemorySpec
from ..drops.states import (
    SESSION_ENDED,
    SESSION_TRANSITIONS,
    AppState,
    DropState,
    SessionState,
    check_transition,
)
from ..drops.stores import MemoryStore, Store
from .bus import Bus, RemoteEvent
from .core import Core
from .eventlog import Event, EventLog
from .gcpause import bulk_allocation
from .graph import AppNode, DataNode, Graph, build
from .workspace import Workspace

if TYPE_CHECKING:
    from .node import Node

__all__ = ["Failure", "Session", "Summary"]

_S = SessionState
COMPLETED, RUNNING = DropState.COMPLETED, AppState.RUNNING


class _ProxyContext:
    """Store context for local copies of other nodes' drops: same workspace, a session name of their own."""

    def __init__(self, session_id: str, workspace: Workspace) -> None:
        self.session_id = session_id
        self.resolve = workspace.resolve


@dataclass(frozen=True, slots=True)
class Failure:
    uid: str
    kind: str
    message: str


@dataclass(slots=True)
class Summary:
    session_id: str
    state: str
    drops: int
    by_state: dict[str, int]
    #: Root causes: drops that failed by themselves (not because an input failed).
    failures: list[Failure]
    #: Seconds spent deploying (link, check, prepare roots) and running.
    deploy_seconds: float | None
    run_seconds: float | None
    persisted: list[str] = field(default_factory=list)
    #: Short previews of persisted in-memory results (drop id -> repr).
    values: dict[str, str] = field(default_factory=dict)


class Session:
    """One graph executing on one node."""

    ABANDON_AFTER = 10.0

    def __init__(self, node: Node, session_id: str, workspace: Workspace, distributed: bool = False) -> None:
        self.node = node
        self.id = session_id
        self.workspace = workspace
        #: This node's name in a distributed session (drops placed elsewhere are proxies); None when alone.
        self.local: str | None = node.name if distributed else None
        # Local copies of other nodes' drops get names of their own: two nodes may share a host.
        self._proxy_context = _ProxyContext(f"{session_id}@{node.name}", workspace)
        #: Proxy data being fetched: its future store and the apps waiting for it.
        self._fetching: dict[DataNode, tuple[Store, list[AppNode]]] = {}
        #: Apps waiting for fetches: how many of their inputs are still on the way.
        self._blocked: dict[AppNode, int] = {}
        #: Apps whose outputs for other nodes are being pushed: (pushes left, outcome, first error).
        self._pushing: dict[AppNode, list[Any]] = {}
        #: Fetches and pushes under way; the session ends only when none is.
        self._transfers = 0
        self._failed_roots: dict[str, str] = {}
        self._early_events: list[RemoteEvent] = []
        self.state = _S.PRISTINE
        self.log = EventLog(node.log_size)
        self.graph: Graph | None = None
        self.core: Core | None = None
        self._specs: list[DropSpec] = []
        self._trivial = kinds.trivial_app_types()
        self._inflight: dict[AppNode, Callable[[], None]] = {}
        self._finalized = False
        self._ended = threading.Event()
        self._on_end: list[Callable[[Session], None]] = []
        self.times: dict[str, float] = {"created": time.time()}
        self.error: str | None = None
        #: Paths kept at the end because their drops persist.
        self.persisted: list[str] = []

    # -- StoreContext ---------------------------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return self.id

    def resolve(self, spec: DataSpec, path: str | None) -> tuple[str, bool]:
        return self.workspace.resolve(spec, path)

    # -- state ----------------------------------------------------------------------------------------------

    def _set_state(self, end: SessionState) -> None:
        start = self.state
        check_transition(SESSION_TRANSITIONS, f"session {self.id!r}", start, end)
        self.state = end
        self.log.append((self.log.clock(), f"session:{self.id}", start, end, "session"))

    # -- commands (thread-safe wrappers run on the owner) ----------------------------------------------------

    def add(self, specs: Iterable[DropSpec]) -> None:
        """Append drop specs to a session that has not been deployed (thread-safe)."""
        self.node.call(self._add, list(specs))

    def _add(self, specs: list[DropSpec]) -> None:
        if self.state is _S.PRISTINE:
            self._set_state(_S.BUILDING)
        elif self.state is not _S.BUILDING:
            raise RuntimeError(f"session {self.id!r} is {self.state}; graphs can only be added before deploy")
        self._specs.extend(specs)

    def deploy(self, source: str | None = None, start: bool = True) -> None:
        """Link and check the graph, prepare root inputs and (unless ``start`` is False) start it.

        Thread-safe; raises GraphError and leaves the session BUILDING when the graph is bad. A distributed
        session is deployed on every node first and started after, so that no event finds a node unready.
        """
        self.node.call(self._deploy, source, start)

    def start(self) -> None:
        """Trigger the roots of a session deployed with ``start=False`` (thread-safe)."""
        self.node.call(self._begin)

    def _deploy(self, source: str | None, start: bool) -> None:
        if self.state is _S.PRISTINE:
            self._set_state(_S.BUILDING)
        if self.state is not _S.BUILDING:
            raise RuntimeError(
                f"session {self.id!r} is {self.state}; it can be deployed once, while BUILDING"
            )
        self.times["deploy"] = time.time()
        with bulk_allocation():
            # A GraphError leaves the session BUILDING.
            self.graph = build(self._specs, self.workspace, source, local=self.local)
        self._specs = []
        self.core = Core(self.graph, self.log)
        self._set_state(_S.DEPLOYING)
        self.workspace.create()
        self._failed_roots = self._prepare_roots(self.graph.root_data)
        if self._early_events:
            events, self._early_events = self._early_events, []
            self.remote_events(events)
        if start:
            self._begin()

    def _begin(self) -> None:
        if self.state is not _S.DEPLOYING:
            raise RuntimeError(f"session {self.id!r} is {self.state}; only a deployed session can start")
        self._set_state(_S.RUNNING)
        self.times["running"] = time.time()
        # The cascade starts as an event of its own, so deploy returns as soon as the graph is in place.
        self.node.post(self._start)

    def _start(self) -> None:
        assert self.core is not None
        if self.state is not _S.RUNNING:
            return  # cancelled between deploy and start
        self.times["run"] = time.time()
        self.core.start(self._failed_roots)
        self._pump()

    def cancel(self) -> None:
        """Cancel the session: settle every drop as CANCELLED and kill running apps (thread-safe)."""
        self.node.post(self._cancel)

    def _cancel(self) -> None:
        if self.state in SESSION_ENDED:
            return
        if self.core is None:
            self._set_state(_S.CANCELLED)
            self._finish()
            return
        self.core.cancel()
        self._pump()
        if self._inflight:
            self.node.add_timer(self.ABANDON_AFTER, self._abandon)

    # -- roots ----------------------------------------------------------------------------------------------

    def _prepare_roots(self, roots: Sequence[DataNode]) -> dict[str, str]:
        """Give root data drops their content; returns the ids of roots that cannot complete, and why."""
        failed: dict[str, str] = {}
        for data in roots:
            spec = data.spec
            if isinstance(spec, MemorySpec):
                if spec.data is not None:
                    memory = data.store = MemoryStore()
                    w = memory.writer()
                    try:
                        for chunk in encode(spec.effective_codec(), spec.data):
                            w.write(chunk)
                    except ValueError as exc:
                        failed[spec.id] = f"cannot encode 'data' with codec {spec.effective_codec()}: {exc}"
                    w.close()
            elif isinstance(spec, FileSpec) or spec.kind == "directory":
                store = data.store = kinds.data_kind(spec).store(spec, self)
                if not store.exists():
                    failed[spec.id] = (
                        f"input {spec.kind} {store.fspath()} does not exist and nothing produces it"
                    )
        return failed

    # -- the pump -------------------------------------------------------------------------------------------

    def _pump(self) -> None:
        core = self.core
        assert core is not None
        ready, to_delete, to_time, to_kill = core.ready, core.to_delete, core.to_time, core.to_kill
        while ready or to_delete or to_time or to_kill:
            while ready:
                self._dispatch(ready.popleft())
            while to_kill:
                kill = self._inflight.get(to_kill.popleft())
                if kill is not None:
                    kill()
            while to_delete:
                data = to_delete.popleft()
                if data.store is not None:
                    data.store.delete()
                core.deleted(data)
            while to_time:
                data = to_time.popleft()
                assert data.spec.lifespan is not None
                self.node.add_timer(data.spec.lifespan, self._lifespan_over, data)
        if core.outbox:
            self._send_events(core)
        if core.outcome is not None and not self._inflight and not self._transfers and not self._finalized:
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
            self._pump()

    def _dispatch(self, app: AppNode) -> None:
        spec = app.spec
        core = self.core
        assert core is not None
        executor = spec.executor or spec.DEFAULT_EXECUTOR
        if executor == "inline" and type(spec) in self._trivial:
            core.app_finished(app)  # nothing to run, nothing written: settle it here
            return
        if self.local is not None and not self._inputs_here(app):
            return  # dispatched again when the last remote input has arrived
        task = self._task(app)
        if executor == "inline":
            self._done(app, kinds.execute(task, CancelToken()))
        elif executor == "thread":
            token = CancelToken()
            fut = self.node.submit_thread(kinds.execute, task, token)
            self._inflight[app] = token.cancel
            fut.add_done_callback(lambda f: self.node.post(self._thread_done, app, f))
        else:
            task_id = self.node.submit_process(task, lambda outcome: self._done(app, outcome))
            self._inflight[app] = lambda: self.node.kill_process(task_id)

    def _thread_done(self, app: AppNode, fut: Any) -> None:
        try:
            outcome = fut.result()
        except BaseException as exc:  # execute() never raises; this is the pool refusing the task
            outcome = Outcome.failed(f"could not run in a thread: {exc}")
        self._done(app, outcome)

    def _done(self, app: AppNode, outcome: Outcome) -> None:
        self._inflight.pop(app, None)
        core = self.core
        assert core is not None
        if self._finalized:
            # An abandoned app came back after the session ended: clean what it may have written.
            self._cleanup()
            return
        if outcome.ok:
            by_id = core.graph.by_id
            for uid, store in outcome.stores.items():
                node = by_id[uid]
                if isinstance(node, DataNode) and node.store is not store:
                    node.store = store  # a worker process sent the bytes of a memory drop back
            if self.local is not None and self._push_outputs(app, outcome):
                return  # finished when the bytes are at their owners
            core.app_finished(app, outcome.skip_ports)
        else:
            core.app_failed(app, outcome.error or "failed")
        self._pump()

    def _abandon(self) -> None:
        if self._inflight and not self._finalized:
            self.error = f"{len(self._inflight)} cancelled app(s) did not stop and were abandoned"
            self._inflight.clear()
            self._pump()

    # -- other nodes ----------------------------------------------------------------------------------------

    def _bus(self) -> Bus:
        if self.node.bus is None:
            raise RuntimeError(f"node {self.node.name!r} has no bus to reach other nodes")
        return self.node.bus

    def _poster(self, method: Callable[..., None], *args: Any) -> Callable[[str | None], None]:
        """A transfer callback (any thread) that runs ``method(*args, error)`` on the owner thread."""
        return lambda error: self.node.post(method, *args, error)

    def _inputs_here(self, app: AppNode) -> bool:
        """Start fetching the remote inputs an app still lacks; True if it has them all."""
        pending = 0
        for data in app.inputs:
            if type(data.peer) is not str or data.state is not COMPLETED or data.store is not None:
                continue
            pending += 1
            fetching = self._fetching.get(data)
            if fetching is not None:
                fetching[1].append(app)
                continue
            store = self._store_for(data)
            if not store.owned:  # an external path: on the shared filesystem, read in place
                data.store = store
                pending -= 1
                continue
            self._fetching[data] = (store, [app])
            self._transfers += 1
            assert isinstance(data.peer, str)
            self._bus().fetch(data.peer, self.id, data.spec.id, store, self._poster(self._fetched, data))
        if pending:
            self._blocked[app] = pending
        return pending == 0

    def _fetched(self, data: DataNode, error: str | None) -> None:
        self._transfers -= 1
        store, waiting = self._fetching.pop(data)
        core = self.core
        assert core is not None
        if error is None:
            data.store = store
        else:
            store.delete()
        for app in waiting:
            left = self._blocked.pop(app, 0) - 1
            if app.state is not RUNNING:
                continue  # cancelled meanwhile
            if error is not None:
                core.app_failed(app, f"cannot fetch input {data.spec.id!r} from node {data.peer}: {error}")
            elif left > 0:
                self._blocked[app] = left
            else:
                self._dispatch(app)
        self._pump()

    def _push_outputs(self, app: AppNode, outcome: Outcome) -> bool:
        """Send what an app wrote for other nodes' drops; True if the app must wait for the pushes."""
        remote = [d for d in app.outputs if type(d.peer) is str and d.store is not None]
        if not remote:
            return False
        self._pushing[app] = [len(remote), outcome, None]
        for data in remote:
            assert isinstance(data.peer, str) and data.store is not None
            self._transfers += 1
            self._bus().push(
                data.peer, self.id, data.spec.id, data.store, self._poster(self._pushed, app, data)
            )
        return True

    def _pushed(self, app: AppNode, data: DataNode, error: str | None) -> None:
        self._transfers -= 1
        entry = self._pushing[app]
        entry[0] -= 1
        if error is not None and entry[2] is None:
            entry[2] = f"cannot deliver output {data.spec.id!r} to node {data.peer}: {error}"
        if entry[0] == 0:
            del self._pushing[app]
            core = self.core
            assert core is not None
            if entry[2] is not None:
                core.app_failed(app, entry[2])
            else:
                core.app_finished(app, entry[1].skip_ports)
        self._pump()

    def remote_events(self, events: list[RemoteEvent]) -> None:
        """Owner thread: state changes of proxied drops, reported by their owners."""
        core, graph = self.core, self.graph
        if core is None or graph is None:
            self._early_events.extend(events)  # the graph is not deployed yet: apply them at deploy
            return
        if self._finalized:
            return
        for event in events:
            node = graph.by_id.get(event.uid)
            if node is not None and type(node.peer) is str:
                core.remote_state(node, event.state, event.skip_ports)
        self._pump()

    def data_for(self, uid: str) -> Store:
        """Any thread: the store of a completed local data drop, for another node to read."""
        graph = self.graph
        node = graph.by_id.get(uid) if graph is not None else None
        if not isinstance(node, DataNode) or type(node.peer) is str:
            raise LookupError(f"session {self.id!r} on node {self.node.name!r} holds no data drop {uid!r}")
        if node.state is not COMPLETED:
            raise LookupError(f"data drop {uid!r} is {node.state}, not COMPLETED")
        return node.store if node.store is not None else MemoryStore()

    def fresh_store(self, uid: str) -> Store:
        """Any thread: a new store for local data drop ``uid`` (bytes pushed by another node)."""
        graph = self.graph
        node = graph.by_id.get(uid) if graph is not None else None
        if not isinstance(node, DataNode) or type(node.peer) is str:
            raise LookupError(f"session {self.id!r} on node {self.node.name!r} holds no data drop {uid!r}")
        return kinds.data_kind(node.spec).store(node.spec, self)

    def adopt(self, uid: str, store: Store) -> None:
        """Owner thread: install bytes another node pushed for a local data drop."""
        graph = self.graph
        node = graph.by_id.get(uid) if graph is not None else None
        if isinstance(node, DataNode):
            if node.store is not None and node.store is not store:
                node.store.delete()
            node.store = store
        else:
            store.delete()

    # -- tasks ----------------------------------------------------------------------------------------------

    def _store_for(self, data: DataNode) -> Store:
        """A new store object for a drop (a proxy's local copy gets a name of its own)."""
        context: StoreContext = self._proxy_context if type(data.peer) is str else self
        return kinds.data_kind(data.spec).store(data.spec, context)

    def _store(self, data: DataNode) -> Store:
        if data.store is None:
            data.store = self._store_for(data)
        return data.store

    def _task(self, app: AppNode) -> Task:
        spec = app.spec
        codecs = spec.codecs or {}
        inputs: list[InputRef] = []
        it = iter(app.inputs)
        for port, value in spec.inputs.items():
            many = not isinstance(value, str)
            for _ in value if many else (value,):
                data = next(it)
                store = self._store(data) if data.state is COMPLETED else None
                codec = codecs.get(port) or data.spec.effective_codec()
                inputs.append(InputRef(port, data.spec.id, data.spec.kind, codec, store, many))
        outputs: list[OutputRef] = []
        it = iter(app.outputs)
        for port, value in spec.outputs.items():
            many = not isinstance(value, str)
            for _ in value if many else (value,):
                data = next(it)
                if app.attempt and data.store is not None:
                    data.store.delete()  # a retry starts from empty outputs
                codec = codecs.get(port) or data.spec.effective_codec()
                outputs.append(OutputRef(port, data.spec.id, data.spec.kind, codec, self._store(data), many))
        return Task(self.id, self.workspace.dir, spec, inputs, outputs, app.attempt)

    # -- the end --------------------------------------------------------------------------------------------

    def _cleanup(self) -> list[str]:
        """Delete every store not persisted, remove the workspace but persisted paths; return those paths."""
        keep: list[str] = []
        graph = self.graph
        for data in graph.data if graph is not None else ():
            store = data.store
            if data.spec.persist and type(data.peer) is not str:
                path = store.fspath() if store is not None else None
                if path is not None:
                    keep.append(path)
                continue
            if store is None and data.spec.kind == "shm":
                store = self._store(data)  # its producer may have created the segment before dying
            if store is not None:
                store.delete()
        self.workspace.cleanup(keep)
        return keep

    def _finalize(self) -> None:
        core = self.core
        assert core is not None and core.outcome is not None
        self._finalized = True
        self.persisted = self._cleanup()
        self.times["end"] = time.time()
        self._set_state(core.outcome)
        self._finish()

    def _finish(self) -> None:
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
        """Break the graph's reference cycles so that its memory is freed at once."""
        if self.graph is not None:
            for data in self.graph.data:
                data.consumers = None
                data.store = None if not data.spec.persist else data.store
            for app in self.graph.apps:
                app.inputs = app.outputs = ()

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

    def failures(self) -> list[Failure]:
        core, graph = self.core, self.graph
        if core is None or graph is None:
            return []
        return [Failure(uid, graph.by_id[uid].spec.kind, msg) for uid, msg in core.failures.items()]

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
        graph = self.graph
        nodes: Iterable[Any] = graph.by_id.values() if graph is not None else ()
        # Proxies are other nodes' drops: their owners count them.
        by_state = Counter(str(n.state) for n in nodes if type(n.peer) is not str)
        t = self.times
        return Summary(
            session_id=self.id,
            state=str(self.state),
            drops=sum(by_state.values()) if graph is not None else len(self._specs),
            by_state=dict(sorted(by_state.items())),
            failures=self.failures(),
            deploy_seconds=t["running"] - t["deploy"] if "running" in t else None,
            run_seconds=(t.get("end", time.time()) - t["run"]) if "run" in t else None,
            persisted=list(self.persisted),
            values=self._previews(),
        )

    def _previews(self, limit: int = 10, width: int = 200) -> dict[str, str]:
        graph = self.graph
        if graph is None or not self.ended:
            return {}
        out: dict[str, str] = {}
        for data in graph.data:
            if data.spec.persist and data.store is not None and data.spec.kind == "memory":
                try:
                    text = repr(self.value(data.spec.id))
                except Exception as exc:  # a preview must never break a summary
                    text = f"<cannot decode: {exc}>"
                out[data.spec.id] = text if len(text) <= width else text[: width - 3] + "..."
                if len(out) >= limit:
                    break
        return out
