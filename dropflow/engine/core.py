"""The cascade: one session's drop states, changed only through the transition tables. No I/O.

Theory of operation
-------------------
:class:`Core` is a state machine in the style of a sans-I/O protocol. Its inputs are *stimuli* -- ``start``,
``app_finished``, ``app_failed``, ``cancel``, ``lifespan_over``, ``deleted``, ``remote_state`` -- called by
the owner loop, the only thread that touches a core. Its outputs are *instructions*, left in deques for the
owner loop to carry out: ``ready`` (apps to run), ``to_delete`` (expired data to delete), ``to_time``
(lifespans to arm), ``to_kill`` (running apps to stop) and ``outbox`` (state changes to tell other nodes).

In a distributed session some nodes are *proxies* of drops that other nodes own. A proxy changes state only
through ``remote_state``, when its owner reports a change (or ``cancel``, which settles everything here); the
local cascade reads proxies but never drives them (it does not run another node's app, nor complete, expire
or delete another node's data), so a proxy replays exactly its owner's sequence of states. The local *copy*
of a proxy's bytes (fetched for a local app, or written here and pushed to its owner) is a store, not a
state: it is handed to ``to_delete`` once no local consumer needs it, and ``deleted`` changes no state for a
proxy. Local drops with neighbours elsewhere are *boundary* drops: each of their changes also goes to the
outbox.

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
settled: FAILED if any drop is in ERROR, CANCELLED if cancelled, else FINISHED. Every app, whatever its kind
or executor, goes through the same states, and its outputs through WRITING: nothing is settled by a shortcut.

Lifecycle: a completed data drop counts its consumers that have not settled yet (``unread``); each consumer
that settles, however it settles, releases it. With ``expire_after_use`` it expires when that count reaches
zero -- at once if no consumer is left when it completes. A lifespan that runs out expires it, or, while
consumers still read it, makes it expire when the last of them settles.

:meth:`Core.validate` checks the counters against the states (tests run it after every engine test), and a
budget of transitions stops a runaway loop with an error instead of spinning for ever.

Resume (see :mod:`.journal`): :meth:`Core.observe` wraps the effects of finishing apps, completing data and
expiring it, so that a journal hears of them (sessions without one pay nothing); :meth:`Core.restore`, before
``start``, names the apps that finished in an earlier run: when the cascade starts one, it finishes at once
(cause ``journal``) instead of going to ``ready``, so the finished part settles through the same tables.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..drops.states import (
    APP_SETTLED,
    APP_TRANSITIONS,
    DATA_SETTLED,
    DROP_TRANSITIONS,
    AppState,
    DropState,
    InvalidTransition,
    SessionState,
)
from .eventlog import EventLog
from .graph import AppNode, DataNode, Graph

__all__ = ["Core", "InvariantError", "RunawayCascade"]

# Enum members bound once: attribute access on an Enum class costs ~0.25 us in Python 3.11, and the
# cascade tests states a dozen times per drop.
INITIALIZED, WRITING, COMPLETED = DropState.INITIALIZED, DropState.WRITING, DropState.COMPLETED
D_ERROR, EXPIRED, DELETED = DropState.ERROR, DropState.EXPIRED, DropState.DELETED
D_CANCELLED, D_SKIPPED = DropState.CANCELLED, DropState.SKIPPED
NOT_RUN, RUNNING, FINISHED = AppState.NOT_RUN, AppState.RUNNING, AppState.FINISHED
A_ERROR, A_CANCELLED, A_SKIPPED = AppState.ERROR, AppState.CANCELLED, AppState.SKIPPED
Effect = Callable[[Any], None]


class InvariantError(AssertionError):
    """The core's bookkeeping disagrees with its states: an engine bug."""


class RunawayCascade(RuntimeError):
    """More transitions than any run of this graph can make: a loop in the engine, stopped."""


class Core:
    """Drop states of one session and the rules that change them."""

    #: Effects with nothing to do beyond recording the change.
    RECORD_ONLY = frozenset({"writing", "deleted", "reset", "retry"})

    def __init__(self, graph: Graph, log: EventLog) -> None:
        self.graph = graph
        self.log = log
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
        #: Why drops failed by themselves, in order: (drop id, message). Append-only, so that another thread
        #: may take a consistent snapshot with a slice while the owner appends.
        self.failures: list[tuple[str, str]] = []
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
        #: Transitions left before the cascade is declared runaway. A drop changes state a bounded number
        #: of times (an app at most 2 per attempt plus one, a data drop a few per producer attempt), so any
        #: real run stays far below this budget; only an engine loop can exhaust it.
        attempts = sum(app.spec.retries + 1 for app in graph.apps)
        self._budget = 8 * len(graph.by_id) + 8 * attempts + 64

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
        self._budget -= 1
        if self._budget < 0:
            raise RunawayCascade(f"runaway cascade: drop {node.spec.id!r} {start} -> {end} (cause {cause})")
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
        self._budget -= 1
        if self._budget < 0:
            raise RunawayCascade(f"runaway cascade: drop {node.spec.id!r} {start} -> {end} (cause {cause})")
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
            # A failure is never hidden, not even by a cancel that came after it.
            if self.errors:
                self.outcome = SessionState.FAILED
            else:
                self.outcome = SessionState.CANCELLED if self.cancelled else SessionState.FINISHED

    # -- stimuli --------------------------------------------------------------------------------------------

    def start(self, failed_roots: Mapping[str, str] = {}) -> None:
        """Complete the root data drops (or fail those in ``failed_roots``) and start the root apps."""
        for data in self.graph.root_data:
            reason = failed_roots.get(data.spec.id)
            if reason is None:
                self._to_data(data, COMPLETED, "trigger")
            else:
                self.failures.append((data.spec.id, reason))
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
            self.failures.append((app.spec.id, error))
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
        """The owner of a proxy drop reports a state change; it goes through the same table and effects.

        Proxies replay their owner's sequence, so any pair the table refuses is a bug or a lying peer and
        raises InvalidTransition (failing this session) -- except after a local cancel, which settles proxies
        here on its own; news about them is then moot.
        """
        if node.state is D_CANCELLED or node.state is A_CANCELLED:
            return
        if type(node) is DataNode:
            self._to_data(node, DropState(end), f"node {node.peer}")
        else:
            if end == FINISHED and skip_ports:
                self._skips[node.spec.id] = self._outputs_on(node, set(skip_ports))  # type: ignore[arg-type]
            self._to_app(node, AppState(end), f"node {node.peer}")  # type: ignore[arg-type]
        self._drain()

    def deleted(self, data: DataNode) -> None:
        """The owner loop deleted the data of an expired drop (or the local copy of a proxy's data)."""
        if type(data.peer) is str:
            return  # a proxy's copy: its state follows its owner, whose DELETED will come
        self._to_data(data, DELETED, "collector")
        self._drain()

    # -- data effects ---------------------------------------------------------------------------------------

    def _data_completed(self, data: DataNode) -> None:
        self.unsettled -= 1
        spec = data.spec
        unread = 0
        for app in data.consumers or ():
            state = app.state
            if state is NOT_RUN:
                unread += 1
                app.waiting -= 1
                if app.waiting == 0:
                    self._decide(app, spec.id)
        data.unread = unread
        if unread == 0:
            self._unneeded(data, "unused")
        if spec.lifespan is not None and type(data.peer) is not str:
            self.to_time.append(data)

    def _unneeded(self, data: DataNode, cause: str) -> None:
        """No consumer here needs a completed drop any more: expire it (if it expires after use), or free the
        local copy of a proxy's bytes."""
        if type(data.peer) is str:
            if data.store is not None:
                self.to_delete.append(data)
        elif data.spec.expire_after_use:
            self._to_data(data, EXPIRED, cause)

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
        if type(data.peer) is not str or data.store is not None:
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
        uid = app.spec.id
        for data in app.outputs:
            if data.state is INITIALIZED and type(data.peer) is not str:
                self._to_data(data, WRITING, uid)
        if type(app.peer) is not str:
            self.ready.append(app)

    def _app_finished(self, app: AppNode) -> None:
        self.unsettled -= 1
        uid = app.spec.id
        skipped = self._skips.pop(uid, None) if self._skips else None
        for data in app.outputs:
            state = data.state
            if (state is not WRITING and state is not INITIALIZED) or type(data.peer) is str:
                continue  # settled already (e.g. in ERROR), or another node's drop
            data.waiting -= 1
            if skipped is None or id(data) not in skipped:
                data.ok += 1
            if data.waiting == 0:
                self._to_data(data, COMPLETED if data.ok else D_SKIPPED, uid)
        self._release_inputs(app)

    def _outputs_on(self, app: AppNode, ports: set[str]) -> set[int]:
        """Identities of the output nodes linked to ``ports``. Matched by drop id, not by position: a proxy of
        another node's app links only the outputs present on this node."""
        ids: set[str] = set()
        for port in ports:
            value = app.spec.outputs.get(port)
            if value is not None:
                ids.update((value,) if isinstance(value, str) else value)
        return {id(data) for data in app.outputs if data.spec.id in ids}

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
        self._release_inputs(app)

    def _release_inputs(self, app: AppNode) -> None:
        """An app settled: inputs that expire after use, or whose lifespan ran out, may now go."""
        for data in app.inputs:
            if data.state is not COMPLETED:
                continue
            if data.unread > 0:
                data.unread -= 1
                if data.unread == 0:
                    self._unneeded(data, app.spec.id)
            elif data.unread < 0:
                data.unread += 1
                if data.unread == 0:
                    self._to_data(data, EXPIRED, "lifespan")

    # -- resume (see engine/journal.py) ---------------------------------------------------------------------

    def observe(
        self,
        finished: Callable[[AppNode, tuple[str, ...]], None],
        completed: Callable[[DataNode], None],
        keep: Callable[[DataNode], bool],
    ) -> None:
        """Report every local app that finishes (with the output ports it skipped) to ``finished`` and every
        data drop that completes to ``completed``; a drop that expires while ``keep(drop)`` is true stays
        EXPIRED with its bytes (not handed to ``to_delete``): a resume needs them. The effects are wrapped
        here, once, so the cascade of a session without a journal tests nothing more."""
        apps, data = self._app_effects, self._data_effects
        app_finished = apps[RUNNING, FINISHED]
        assert app_finished is not None

        def on_finished(app: AppNode) -> None:
            skips = self._skipped_ports(app) if self._skips else ()
            app_finished(app)
            if type(app.peer) is not str:
                finished(app, skips)

        apps[RUNNING, FINISHED] = on_finished
        data_completed = data[WRITING, COMPLETED]
        assert data_completed is not None

        def on_completed(node: DataNode) -> None:
            data_completed(node)
            if type(node.peer) is not str:
                completed(node)

        data[WRITING, COMPLETED] = data[INITIALIZED, COMPLETED] = on_completed
        data_expired = data[COMPLETED, EXPIRED]
        assert data_expired is not None

        def on_expired(node: DataNode) -> None:
            if type(node.peer) is str or not keep(node):
                data_expired(node)

        data[COMPLETED, EXPIRED] = on_expired

    def _skipped_ports(self, app: AppNode) -> tuple[str, ...]:
        """The output ports of a finishing app whose drops it skips (a branch's untaken side)."""
        skipped = self._skips.get(app.spec.id)
        if not skipped:
            return ()
        ports: list[str] = []
        it = iter(app.outputs)
        for port, value in app.spec.outputs.items():
            for _ in [value] if isinstance(value, str) else value:
                if id(next(it)) in skipped and port not in ports:
                    ports.append(port)
        return tuple(ports)

    def restore(self, finished: Mapping[str, Iterable[str]]) -> None:
        """Before ``start``: the apps of ``finished`` (id -> the output ports they skipped) finished in an
        earlier run. When the cascade starts one of them here, it finishes at once, cause ``journal``, instead
        of going to ``ready``: its outputs go through WRITING to COMPLETED (or SKIPPED) and its inputs are
        released as if it had run. Proxies are not restored here: their owners replay them."""
        restored = {uid: tuple(ports) for uid, ports in finished.items()}
        if not restored:
            return
        started = self._app_effects[NOT_RUN, RUNNING]
        assert started is not None

        def start_or_restore(app: AppNode) -> None:
            skips = restored.pop(app.spec.id, None) if type(app.peer) is not str else None
            if skips is None:
                started(app)
                return
            uid = app.spec.id
            for data in app.outputs:
                if data.state is INITIALIZED and type(data.peer) is not str:
                    self._to_data(data, WRITING, uid)
            if skips:
                self._skips[uid] = self._outputs_on(app, set(skips))
                if app.peer is not None:
                    self._remote_skips[uid] = skips
            self._to_app(app, FINISHED, "journal")

        self._app_effects[NOT_RUN, RUNNING] = start_or_restore

    def release(self) -> None:
        """Drop the bound effects (a reference cycle through this core) and pending instructions."""
        self._data_effects.clear()
        self._app_effects.clear()
        for q in (self._work, self.ready, self.to_delete, self.to_time, self.to_kill, self.outbox):
            q.clear()

    # -- invariants -----------------------------------------------------------------------------------------

    def validate(self) -> None:
        """Check every counter against the states it summarises; raise :class:`InvariantError` if one is off.

        O(drops + links): for tests and debugging, never on the hot path.
        """
        problems: list[str] = []
        graph = self.graph
        producers: dict[int, list[AppNode]] = {}
        for app in graph.apps:
            for d in app.outputs:
                producers.setdefault(id(d), []).append(app)
        unsettled = errors = 0
        for data in graph.data:
            state, uid = data.state, data.spec.id
            if state not in DATA_SETTLED:
                unsettled += 1
            if state is D_ERROR:
                errors += 1
            proxy = type(data.peer) is str
            consumers = data.consumers or ()
            open_consumers = sum(1 for c in consumers if c.state is NOT_RUN or c.state is RUNNING)
            if (state is INITIALIZED or state is WRITING) and not proxy:
                open_producers = sum(
                    1 for p in producers.get(id(data), ()) if p.state is NOT_RUN or p.state is RUNNING
                )
                if data.waiting != open_producers:
                    problems.append(f"data {uid!r} waits for {data.waiting} producers, {open_producers} open")
            elif state is COMPLETED:
                if abs(data.unread) != open_consumers:
                    problems.append(f"data {uid!r} unread {data.unread}, {open_consumers} consumers open")
                if data.unread == 0 and data.spec.expire_after_use and not proxy:
                    problems.append(f"data {uid!r} expires after use, has no reader left, is not expired")
            elif (state is EXPIRED or state is DELETED) and open_consumers and not self.cancelled:
                problems.append(f"data {uid!r} is {state} while {open_consumers} consumers are open")
        for app in graph.apps:
            astate, uid = app.state, app.spec.id
            if astate not in APP_SETTLED:
                unsettled += 1
            if astate is A_ERROR:
                errors += 1
            if astate is NOT_RUN:
                waiting = sum(1 for d in app.inputs if d.state not in DATA_SETTLED)
                failed = sum(1 for d in app.inputs if d.state is D_ERROR)
                skipped = sum(1 for d in app.inputs if d.state is D_SKIPPED)
                if (app.waiting, app.failed, app.skipped) != (waiting, failed, skipped):
                    problems.append(
                        f"app {uid!r} counts (waiting, failed, skipped) = "
                        f"{(app.waiting, app.failed, app.skipped)}, inputs say {(waiting, failed, skipped)}"
                    )
                if waiting == 0 and type(app.peer) is not str and not self._work:
                    problems.append(f"app {uid!r} has every input settled but is still NOT_RUN")
        if unsettled != self.unsettled:
            problems.append(f"unsettled count {self.unsettled}, states say {unsettled}")
        if errors != self.errors:
            problems.append(f"error count {self.errors}, states say {errors}")
        if self.unsettled == 0 and self.outcome is None and not self._work:
            problems.append("every drop settled but the session has no outcome")
        proxies = {n.spec.id for n in graph.by_id.values() if type(n.peer) is str}
        if proxies:
            for event in self.log.events():
                if event.uid in proxies and not (event.cause.startswith("node ") or event.cause == "cancel"):
                    problems.append(f"proxy {event.uid!r} driven locally: {event}")
        if problems:
            raise InvariantError(
                "; ".join(problems[:20]) + (f" (and {len(problems) - 20} more)" if len(problems) > 20 else "")
            )
