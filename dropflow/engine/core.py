"""The cascade: one session's drop states, changed only through the transition tables. No I/O.

Theory of operation
-------------------
:class:`Core` is a state machine in the style of a sans-I/O protocol. Its inputs are *stimuli* -- ``start``,
``app_finished``, ``app_failed``, ``cancel``, ``lifespan_over``, ``deleted``, ``remote_state`` -- called by
the owner loop, the only thread that touches a core. Its outputs are *instructions*, left in deques for the
owner loop to carry out: ``ready`` (apps to run), ``to_delete`` (expired data to delete), ``to_time``
(lifespans to arm), ``to_kill`` (running apps to stop) and ``outbox`` (state changes to tell other nodes).

In a distributed session some nodes are *proxies* of drops that other nodes own. A proxy changes state only
through ``remote_state``, when its owner reports a change; the local cascade reads proxies but never drives
them (it does not run another node's app, nor complete another node's data). Local drops with neighbours
elsewhere are *boundary* drops: each of their changes also goes to the outbox.

Every state change goes through :meth:`_to`, which looks the ``(start, end)`` pair up in the transition
table of the node's type (``dropflow.drops.states``), records the change in the event log with its cause, and
schedules the pair's *effect* (bound once from the table's effect names to methods). Effects run from a work
queue, never recursively: completing a drop that wakes a consumer that completes its outputs ... is a loop,
so a chain of a million drops uses constant stack. Because the state is set when the change is decided and
only its effects are deferred, decisions always see current states.

Rules of the cascade: a data drop completes when all its producers finished (SKIPPED if all were skipped),
and is in ERROR as soon as one producer fails. An app runs when all its inputs settled, if no more than its
``error_tolerance`` fraction failed and not all were skipped; too many failed inputs put it in ERROR at once
(failures surface immediately, not when the slowest input arrives). A session ends when every drop is
settled: FAILED if any drop is in ERROR, CANCELLED if cancelled, else FINISHED.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..drops import kinds
from ..drops.states import (
    APP_TRANSITIONS,
    DROP_TRANSITIONS,
    AppState,
    DropState,
    InvalidTransition,
    SessionState,
)
from .eventlog import EventLog
from .graph import AppNode, DataNode, Graph

__all__ = ["Core"]

# Enum members bound once: attribute access on an Enum class costs ~0.25 us in Python 3.11, and the
# cascade tests states a dozen times per drop.
INITIALIZED, WRITING, COMPLETED = DropState.INITIALIZED, DropState.WRITING, DropState.COMPLETED
D_ERROR, EXPIRED, DELETED = DropState.ERROR, DropState.EXPIRED, DropState.DELETED
D_CANCELLED, D_SKIPPED = DropState.CANCELLED, DropState.SKIPPED
NOT_RUN, RUNNING, FINISHED = AppState.NOT_RUN, AppState.RUNNING, AppState.FINISHED
A_ERROR, A_CANCELLED, A_SKIPPED = AppState.ERROR, AppState.CANCELLED, AppState.SKIPPED
Effect = Callable[[Any], None]


class Core:
    """Drop states of one session and the rules that change them."""

    #: Effects with nothing to do beyond recording the change.
    RECORD_ONLY = frozenset({"writing", "deleted", "reset", "retry"})

    def __init__(self, graph: Graph, log: EventLog) -> None:
        self.graph = graph
        self.log = log
        #: App kinds that do nothing and write nothing: the core settles them itself.
        self._trivial = kinds.trivial_app_types()
        #: Instructions for the owner loop.
        self.ready: deque[AppNode] = deque()
        self.to_delete: deque[DataNode] = deque()
        self.to_time: deque[DataNode] = deque()
        self.to_kill: deque[AppNode] = deque()
        #: State changes of boundary drops for other nodes: (their names, drop id, new state, skipped ports).
        self.outbox: deque[tuple[frozenset[str], str, str, tuple[str, ...]]] = deque()
        #: Drops not yet settled; the session ends when this reaches zero.
        self.unsettled = len(graph.by_id)
        self.errors = 0
        #: Why each failed app failed (drop id -> message).
        self.failures: dict[str, str] = {}
        self.cancelled = False
        self.outcome: SessionState | None = None
        self._work: deque[tuple[Effect, Any]] = deque()
        #: Output nodes a finishing branch skips, until its ``finished`` effect runs.
        self._skips: dict[str, set[int]] = {}
        #: Ports a finishing boundary branch skips, for the event that tells the other nodes.
        self._remote_skips: dict[str, tuple[str, ...]] = {}
        self._clock = log.clock
        self._record = log.append
        self._data_effects = self._bind(DROP_TRANSITIONS, "_data_")
        self._app_effects = self._bind(APP_TRANSITIONS, "_app_")

    def _bind(
        self, table: Mapping[tuple[Any, Any], str], prefix: str
    ) -> dict[tuple[Any, Any], Effect | None]:
        """Effect name -> bound method, or None (not even queued) for effects that only record."""
        return {
            pair: None if name in self.RECORD_ONLY else getattr(self, prefix + name)
            for pair, name in table.items()
        }

    # -- transitions ---------------------------------------------------------------------------------------

    def _to(self, node: DataNode | AppNode, end: Any, cause: str) -> None:
        """Change a node's state through its type's table; record it; schedule the effect."""
        if type(node) is DataNode:
            self._to_data(node, end, cause)
        else:
            self._to_app(node, end, cause)  # type: ignore[arg-type]

    # _to_data and _to_app are the same steps over two tables, written out twice on purpose: they run several
    # times per drop, and choosing the table by the caller's knowledge saves a branch and a call each time.

    def _to_data(self, node: DataNode, end: DropState, cause: str) -> None:
        start = node.state
        try:
            effect = self._data_effects[start, end]
        except KeyError:
            raise InvalidTransition(f"drop {node.spec.id!r}", start, end) from None
        node.state = end
        self._record((self._clock(), node.spec.id, start, end, cause))
        if effect is not None:
            self._work.append((effect, node))
        peer = node.peer
        if peer is not None and type(peer) is not str:
            self.outbox.append((peer, node.spec.id, end, ()))  # type: ignore[arg-type]

    def _to_app(self, node: AppNode, end: AppState, cause: str) -> None:
        start = node.state
        try:
            effect = self._app_effects[start, end]
        except KeyError:
            raise InvalidTransition(f"drop {node.spec.id!r}", start, end) from None
        node.state = end
        self._record((self._clock(), node.spec.id, start, end, cause))
        if effect is not None:
            self._work.append((effect, node))
        peer = node.peer
        if peer is not None and type(peer) is not str:
            skips = self._remote_skips.pop(node.spec.id, ()) if end is FINISHED else ()
            self.outbox.append((peer, node.spec.id, end, skips))  # type: ignore[arg-type]

    def _drain(self) -> None:
        work = self._work
        while work:
            effect, node = work.popleft()
            effect(node)
        if self.unsettled == 0 and self.outcome is None:
            if self.cancelled:
                self.outcome = SessionState.CANCELLED
            else:
                self.outcome = SessionState.FAILED if self.errors else SessionState.FINISHED

    # -- stimuli --------------------------------------------------------------------------------------------

    def start(self, failed_roots: Mapping[str, str] = {}) -> None:
        """Complete the root data drops (or fail those in ``failed_roots``) and start the root apps."""
        for data in self.graph.root_data:
            reason = failed_roots.get(data.spec.id)
            if reason is None:
                self._to_data(data, COMPLETED, "trigger")
            else:
                self.failures[data.spec.id] = reason
                self._to_data(data, D_ERROR, "trigger")
        for app in self.graph.root_apps:
            self._to_app(app, RUNNING, "trigger")
        self._drain()

    def app_finished(self, app: AppNode, skip_ports: Iterable[str] = ()) -> None:
        if app.state is not RUNNING:
            return  # cancelled while it ran: the result is dropped
        if skip_ports:
            self._skips[app.spec.id] = self._outputs_on(app, set(skip_ports))
            if app.peer is not None:
                self._remote_skips[app.spec.id] = tuple(skip_ports)
        self._to_app(app, FINISHED, app.spec.id)
        self._drain()

    def app_failed(self, app: AppNode, error: str) -> None:
        if app.state is not RUNNING:
            return
        if app.attempt < app.spec.retries:
            app.attempt += 1
            self._to_app(app, NOT_RUN, f"retry {app.attempt}: {error.splitlines()[0] if error else ''}")
            self._to_app(app, RUNNING, "retry")
        else:
            self.failures[app.spec.id] = error
            self._to_app(app, A_ERROR, app.spec.id)
        self._drain()

    def cancel(self) -> None:
        """Cancel every drop not yet settled; running apps are handed to ``to_kill``."""
        if self.outcome is not None:
            return
        self.cancelled = True
        for app in self.graph.apps:
            if app.state is RUNNING:
                if app.peer is None or type(app.peer) is not str:
                    self.to_kill.append(app)
                self._to_app(app, A_CANCELLED, "cancel")
            elif app.state is NOT_RUN:
                self._to_app(app, A_CANCELLED, "cancel")
        for data in self.graph.data:
            if data.state is INITIALIZED or data.state is WRITING:
                self._to_data(data, D_CANCELLED, "cancel")
        self._drain()

    def lifespan_over(self, data: DataNode) -> None:
        if data.state is not COMPLETED:
            return
        if data.unread > 0:
            data.unread = -data.unread  # expire when the consumers still reading have settled
        else:
            self._to_data(data, EXPIRED, "lifespan")
        self._drain()

    def remote_state(self, node: DataNode | AppNode, end: str, skip_ports: Iterable[str] = ()) -> None:
        """The owner of a proxy drop reports a state change; it goes through the same table and effects."""
        if node.state == end or node.state is D_CANCELLED or node.state is A_CANCELLED:
            return  # already there, or cancelled here meanwhile: nothing to do
        if type(node) is DataNode:
            self._to_data(node, DropState(end), f"node {node.peer}")
        else:
            if end == FINISHED and skip_ports:
                self._skips[node.spec.id] = self._outputs_on(node, set(skip_ports))  # type: ignore[arg-type]
            self._to_app(node, AppState(end), f"node {node.peer}")  # type: ignore[arg-type]
        self._drain()

    def deleted(self, data: DataNode) -> None:
        """The owner loop deleted the data of an expired drop."""
        self._to_data(data, DELETED, "collector")
        self._drain()

    # -- data effects ---------------------------------------------------------------------------------------

    def _data_completed(self, data: DataNode) -> None:
        self.unsettled -= 1
        consumers = data.consumers
        spec = data.spec
        if consumers:
            data.unread = len(consumers)
            for app in consumers:
                if app.state is NOT_RUN:
                    app.waiting -= 1
                    if app.waiting == 0:
                        self._decide(app, spec.id)
        elif spec.expire_after_use:
            self._to_data(data, EXPIRED, "unused")
        if spec.lifespan is not None and type(data.peer) is not str:
            self.to_time.append(data)

    def _data_failed(self, data: DataNode) -> None:
        self.unsettled -= 1
        self.errors += 1
        for app in data.consumers or ():
            if app.state is NOT_RUN:
                app.failed += 1
                app.waiting -= 1
                if type(app.peer) is str:
                    continue  # another node's app: its owner decides
                if app.failed > app.spec.error_tolerance * len(app.inputs):
                    self._to_app(app, A_ERROR, data.spec.id)
                elif app.waiting == 0:
                    self._decide(app, data.spec.id)

    def _data_skipped(self, data: DataNode) -> None:
        self.unsettled -= 1
        for app in data.consumers or ():
            if app.state is NOT_RUN:
                app.skipped += 1
                app.waiting -= 1
                if app.waiting == 0:
                    self._decide(app, data.spec.id)

    def _data_cancelled(self, data: DataNode) -> None:
        self.unsettled -= 1

    def _data_expired(self, data: DataNode) -> None:
        self.to_delete.append(data)

    # -- app effects ----------------------------------------------------------------------------------------

    def _decide(self, app: AppNode, cause: str) -> None:
        """All inputs of a not-yet-run app have settled: run it, or skip it if every input was skipped."""
        if type(app.peer) is str:
            return  # another node's app: its owner decides
        if app.skipped == len(app.inputs):
            self._to_app(app, A_SKIPPED, cause)
        else:
            self._to_app(app, RUNNING, cause)

    def _app_started(self, app: AppNode) -> None:
        spec = app.spec
        local = type(app.peer) is not str
        if local and type(spec) in self._trivial and (spec.executor is None or spec.executor == "inline"):
            # Nothing to run and nothing written (a no-op): settled here, with no round trip to the shell, and
            # its outputs never enter WRITING -- they go from INITIALIZED to COMPLETED when it finishes.
            self._to_app(app, FINISHED, spec.id)
            return
        for data in app.outputs:
            if data.state is INITIALIZED and type(data.peer) is not str:
                self._to_data(data, WRITING, spec.id)
        if local:
            self.ready.append(app)

    def _app_finished(self, app: AppNode) -> None:
        self.unsettled -= 1
        uid = app.spec.id
        skipped = self._skips.pop(uid, None) if self._skips else None
        for data in app.outputs:
            state = data.state
            if state is not WRITING and (state is not INITIALIZED or type(data.peer) is str):
                continue  # settled already (e.g. in ERROR), or another node's drop
            data.waiting -= 1
            if skipped is None or id(data) not in skipped:
                data.ok += 1
            if data.waiting == 0:
                self._to_data(data, COMPLETED if data.ok else D_SKIPPED, uid)
        self._release_inputs(app)

    def _outputs_on(self, app: AppNode, ports: set[str]) -> set[int]:
        """Identities of the output nodes linked to ``ports`` (outputs follow the spec's port order)."""
        found = set()
        it = iter(app.outputs)
        for port, value in app.spec.outputs.items():
            for _ in [value] if isinstance(value, str) else value:
                data = next(it)
                if port in ports:
                    found.add(id(data))
        return found

    def _app_failed(self, app: AppNode) -> None:
        self.unsettled -= 1
        self.errors += 1
        uid = app.spec.id
        for data in app.outputs:
            if (data.state is INITIALIZED or data.state is WRITING) and type(data.peer) is not str:
                self._to_data(data, D_ERROR, uid)
        self._release_inputs(app)

    def _app_skipped(self, app: AppNode) -> None:
        self.unsettled -= 1
        uid = app.spec.id
        for data in app.outputs:
            if (data.state is INITIALIZED or data.state is WRITING) and type(data.peer) is not str:
                data.waiting -= 1
                if data.waiting == 0:
                    self._to_data(data, COMPLETED if data.ok else D_SKIPPED, uid)
        self._release_inputs(app)

    def _app_cancelled(self, app: AppNode) -> None:
        self.unsettled -= 1

    def _release_inputs(self, app: AppNode) -> None:
        """An app settled: inputs that expire after use, or whose lifespan ran out, may now go."""
        for data in app.inputs:
            if data.state is not COMPLETED or type(data.peer) is str:
                continue
            if data.unread > 0:
                data.unread -= 1
                if data.unread == 0 and data.spec.expire_after_use:
                    self._to_data(data, EXPIRED, app.spec.id)
            elif data.unread < 0:
                data.unread += 1
                if data.unread == 0:
                    self._to_data(data, EXPIRED, "lifespan")
