"""Bytes that cross nodes in a distributed session: fetching remote inputs, pushing remote outputs.

Theory of operation
-------------------
A local app may read drops that live on other nodes, and write drops that do. Before such an app runs, its
session asks :class:`Transfers` to bring every remote input into a local store -- one fetch per drop however
many local apps read it -- and dispatches the app when the last one has arrived. After the app has run,
its bytes for remote drops are pushed to their owners, and only then does the app count as FINISHED, so the
event that says "this drop is complete" never overtakes the data. Transfers run on the bus's threads; their
completions come back to the owner loop as events. A failed transfer fails the app that needed it, with
the node and the reason. Files outside the workspace are on a shared filesystem by assumption, so they are
read in place rather than fetched. A transfer's callback holds the session weakly: a deleted session is
freed at once, and a fetch that returns after it deletes the bytes it brought.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..drops.apps.base import Outcome
from ..drops.states import AppState, DropState
from ..drops.stores import Store
from .bus import Bus
from .graph import AppNode, DataNode

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Transfers"]

COMPLETED, RUNNING = DropState.COMPLETED, AppState.RUNNING


class Transfers:
    """The cross-node transfers of one session (owner thread only)."""

    def __init__(self, session: Session) -> None:
        self._session = weakref.ref(session)
        #: Remote data being fetched: its future local store and the apps waiting for it.
        self._fetching: dict[DataNode, tuple[Store, list[AppNode]]] = {}
        #: Apps waiting for fetches: how many of their inputs are still on the way.
        self._blocked: dict[AppNode, int] = {}
        #: Apps whose outputs for other nodes are being pushed: [pushes left, outcome, first error].
        self._pushing: dict[AppNode, list[Any]] = {}
        #: Stores of transfers given up on (see :meth:`abandon`), deleted if their transfer ever returns.
        self._orphans: dict[DataNode, Store] = {}
        #: Transfers under way: the session ends only when none is.
        self.pending = 0

    @property
    def session(self) -> Session:
        session = self._session()
        if session is None:
            raise RuntimeError("the session of these transfers has been freed")
        return session

    def _bus(self) -> Bus:
        bus = self.session.node.bus
        if bus is None:
            raise RuntimeError(f"node {self.session.node.name!r} has no bus to reach other nodes")
        return bus

    def _poster(
        self, method: Callable[..., None], *args: Any, store: Store | None = None
    ) -> Callable[[str | None], None]:
        """A transfer callback (any thread): runs ``method(*args, error)`` on the owner thread as an event of
        the session; if the session is gone by then, ``store`` (bytes fetched for it) is deleted."""
        me = self._session

        def done(error: str | None) -> None:
            session = me()
            if session is not None:
                session.post(method, *args, error)
            elif store is not None:
                store.delete()

        return done

    def waiting_apps(self) -> set[int]:
        """Identities of the apps held back by transfers: inputs on the way, or outputs being pushed."""
        return {id(app) for app in self._blocked} | {id(app) for app in self._pushing}

    def in_flight(self) -> list[tuple[str, str, str, list[str]]]:
        """Any thread: the transfers under way, as (``fetch`` or ``push``, drop id, the other node, ids of
        the apps waiting for it). Snapshots taken with one C call each, so the owner may change them."""
        out: list[tuple[str, str, str, list[str]]] = []
        for data, (_store, apps) in list(self._fetching.items()):
            out.append(("fetch", data.spec.id, str(data.peer), [a.spec.id for a in list(apps)]))
        for app, _entry in list(self._pushing.items()):
            for data in app.outputs:
                if type(data.peer) is str:
                    out.append(("push", data.spec.id, data.peer, [app.spec.id]))
        return out

    def inputs_here(self, app: AppNode) -> bool:
        """Start fetching the remote inputs an app still lacks; True if it has them all."""
        session = self.session
        pending = 0
        for data in app.inputs:
            if type(data.peer) is not str or data.state is not COMPLETED or data.store is not None:
                continue
            pending += 1
            fetching = self._fetching.get(data)
            if fetching is not None:
                fetching[1].append(app)
                continue
            store = session.new_store(data)
            if not store.owned:  # an external path: on the shared filesystem, read in place
                data.store = store
                pending -= 1
                continue
            self._fetching[data] = (store, [app])
            self.pending += 1
            assert isinstance(data.peer, str)
            self._bus().fetch(
                data.peer, session.id, data.spec.id, store, self._poster(self._fetched, data, store=store)
            )
        if pending:
            self._blocked[app] = pending
        return pending == 0

    def _fetched(self, data: DataNode, error: str | None) -> None:
        entry = self._fetching.pop(data, None)
        if entry is None:  # given up on when the session was cancelled
            orphan = self._orphans.pop(data, None)
            if orphan is not None:
                orphan.delete()
            return
        self.pending -= 1
        store, waiting = entry
        session, core = self.session, self.session.core
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
                session.dispatch(app)
        session.pump()

    def push_outputs(self, app: AppNode, outcome: Outcome) -> bool:
        """Send what an app wrote for other nodes' drops; True if the app must wait for the pushes."""
        remote = [d for d in app.outputs if type(d.peer) is str and d.store is not None]
        if not remote:
            return False
        self._pushing[app] = [len(remote), outcome, None]
        for data in remote:
            assert isinstance(data.peer, str) and data.store is not None
            self.pending += 1
            self._bus().push(
                data.peer, self.session.id, data.spec.id, data.store, self._poster(self._pushed, app, data)
            )
        return True

    def _pushed(self, app: AppNode, data: DataNode, error: str | None) -> None:
        entry = self._pushing.get(app)
        if entry is None:
            return  # given up on when the session was cancelled
        self.pending -= 1
        entry[0] -= 1
        if error is not None and entry[2] is None:
            entry[2] = f"cannot deliver output {data.spec.id!r} to node {data.peer}: {error}"
        if entry[0] == 0:
            del self._pushing[app]
            core = self.session.core
            assert core is not None
            if entry[2] is not None:
                core.app_failed(app, entry[2])
            else:
                core.app_finished(app, entry[1].skip_ports)
        self.session.pump()

    def abandon(self) -> int:
        """Stop waiting for the transfers of a cancelled session (a peer that never answers); their number."""
        count = self.pending
        for data, (store, _apps) in self._fetching.items():
            self._orphans[data] = store
            store.delete()
        self._fetching.clear()
        self._blocked.clear()
        self._pushing.clear()
        self.pending = 0
        return count
