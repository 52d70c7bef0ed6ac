"""Counting one node's drops of a session by logical-graph node and state, cheaply at a million drops.

Theory of operation
-------------------
A million drops cannot be drawn, but the logical graph they came from can: the translator names every copy
of a logical node after it (``part#3.1`` is copy 3.1 of node ``part``), so a session's drops fall into a few
*groups* -- one per logical node, or per name, or per kind when neither says more -- and a group's counts
by state are the readable picture. :class:`Census` computes, for one session on one node, each group's
counts by state.

The group of each drop is found once per session, into a numpy array aligned with the graph's lists of
data and app nodes (no reference to any drop is kept: the census holds the graph weakly and a deleted
session is freed at once). Each count then reads every local drop's state, maps it to a small integer and
lets ``numpy.bincount`` do the rest: a few tens of nanoseconds per drop, in C. The work is done in chunks
with a ``sleep(0)`` between them, which lets the owner loop take the GIL back every few milliseconds, and a
count is reused until it is ``AGE_FACTOR`` times as old as it took to make (and at least ``MIN_AGE``
seconds): however many browsers poll, counting costs the engine at most a few percent of one core. A
session that has ended is counted once more and never again.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..engine.graph import AppNode, DataNode, Graph
    from ..engine.session import Session

__all__ = ["MAX_GROUPS", "STATES", "Census", "group_key"]

#: Every drop and app state, in the order the monitor shows them (left to right: the life of a drop).
STATES: tuple[str, ...] = (
    "INITIALIZED",
    "NOT_RUN",
    "WRITING",
    "RUNNING",
    "COMPLETED",
    "FINISHED",
    "SKIPPED",
    "ERROR",
    "CANCELLED",
    "EXPIRED",
    "DELETED",
)
_CODE = {s: i for i, s in enumerate(STATES)}  # StrEnum members hash and compare as their strings
_STATE = attrgetter("state")
#: Above this many groups a graph is grouped by kind instead (names that are unique per drop say nothing).
MAX_GROUPS = 1000
#: Drops handled between two releases of the GIL.
CHUNK = 32_768
MIN_AGE = 0.5
AGE_FACTOR = 25.0


def group_key(spec: Any) -> str:
    """The logical-graph node a drop was made from: its id up to ``#`` (the translator's copies), else its
    name, else its kind.

    >>> from dropflow.drops.spec import MemorySpec
    >>> group_key(MemorySpec(id="part#3.1")), group_key(MemorySpec(id="x", name="lines")), group_key(MemorySpec(id="y"))
    ('part', 'lines', 'memory')
    """  # noqa: E501
    uid: str = spec.id
    cut = uid.find("#")
    if cut > 0:
        return uid[:cut]
    return spec.name or spec.kind  # type: ignore[no-any-return]


def _yield() -> None:
    time.sleep(0)  # releases the GIL: the owner loop runs between two chunks


class _Groups:
    """Which group each drop of a graph is in: index arrays aligned with ``graph.data`` and ``graph.apps``."""

    def __init__(self, graph: Graph) -> None:
        self.keys: list[str] = []
        self.kinds: list[str] = []
        self.categories: list[str] = []
        self.labels: list[str] = []
        self.firsts: list[str] = []
        self.data, self.data_local = self._index(graph.data, by_kind=False)
        self.apps, self.apps_local = self._index(graph.apps, by_kind=False)
        if len(self.keys) > MAX_GROUPS:
            self.keys, self.kinds, self.categories, self.labels, self.firsts = [], [], [], [], []
            self.data, self.data_local = self._index(graph.data, by_kind=True)
            self.apps, self.apps_local = self._index(graph.apps, by_kind=True)
        self._in_graph_order(graph)

    def _in_graph_order(self, graph: Graph) -> None:
        """Groups in the order of their first drop in the graph (the translator's order: the logical graph's
        reading order), rather than data groups first and app groups after."""
        firsts = set(self.firsts)
        where = {uid: pos for pos, uid in enumerate(graph.by_id) if uid in firsts}
        order = sorted(range(len(self.keys)), key=lambda g: where.get(self.firsts[g], 0))
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        for name in ("keys", "kinds", "categories", "labels", "firsts"):
            values = getattr(self, name)
            setattr(self, name, [values[g] for g in order])
        if len(order):
            self.data = rank[self.data]
            self.apps = rank[self.apps]

    def _index(
        self, nodes: Sequence[DataNode | AppNode], by_kind: bool
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        table = {k: i for i, k in enumerate(self.keys)}
        index = np.empty(len(nodes), dtype=np.int32)
        local = np.empty(len(nodes), dtype=bool)
        for start in range(0, len(nodes), CHUNK):
            chunk = nodes[start : start + CHUNK]
            specs = [n.spec for n in chunk]
            # group_key, inlined: this is the one pass per drop that is done in Python.
            if by_kind:
                keys = [s.kind for s in specs]
            else:
                keys = [
                    uid[:cut] if (cut := uid.find("#")) > 0 else (s.name or s.kind)
                    for s in specs
                    for uid in (s.id,)
                ]
            known = len(table)
            index[start : start + len(chunk)] = [table.setdefault(k, len(table)) for k in keys]
            if len(table) > known:  # new groups: describe each by its first drop
                first = {}
                for k, s in zip(keys, specs, strict=True):
                    if table[k] >= known and k not in first:
                        first[k] = s
                for k in sorted(first, key=table.__getitem__):
                    spec = first[k]
                    self.keys.append(k)
                    self.kinds.append(spec.kind)
                    self.categories.append(spec.CATEGORY)
                    self.labels.append(spec.name or k)
                    self.firsts.append(spec.id)
            local[start : start + len(chunk)] = [
                type(n.peer) is not str for n in chunk
            ]  # proxies: owners count
            _yield()
        return index, local


def _codes(nodes: Sequence[DataNode | AppNode]) -> np.ndarray[Any, Any]:
    """The state code of every node, computed in chunks (the owner runs in between)."""
    out = np.empty(len(nodes), dtype=np.int64)
    get = _CODE.__getitem__
    for start in range(0, len(nodes), CHUNK):
        chunk = nodes[start : start + CHUNK]
        out[start : start + len(chunk)] = np.fromiter(map(get, map(_STATE, chunk)), np.int64, len(chunk))
        _yield()
    return out


class Census:
    """Counts of one session's local drops by group and state, cached (see the module's docstring)."""

    def __init__(self, session: Session) -> None:
        self._session = weakref.ref(session)
        self._graph: weakref.ref[Graph] | None = None
        self._groups: _Groups | None = None
        self._lock = threading.Lock()
        self._result: dict[str, Any] | None = None
        self._at = 0.0
        self._cost = 0.0
        self._final = False

    def _prepare(self, session: Session) -> _Groups | None:
        graph = session.graph
        if graph is None:
            return None
        if self._groups is None or self._graph is None or self._graph() is not graph:
            self._groups = _Groups(graph)
            self._graph = weakref.ref(graph)
        return self._groups

    def counts(self, max_age: float | None = None) -> dict[str, Any]:
        """``{"groups": [...], "totals": {state: n}, "drops": n, "age": s, "cost": s}``; each group is
        ``{"key", "label", "kind", "category", "counts": {state: n}}`` (states with no drop left out)."""
        with self._lock:
            session = self._session()
            now = time.monotonic()
            if self._result is not None and session is not None:
                limit = max(MIN_AGE, AGE_FACTOR * self._cost) if max_age is None else max_age
                if self._final or (now - self._at < limit and not (session.ended and not self._final)):
                    return {**self._result, "age": round(now - self._at, 3)}
            if session is None:
                return self._result or _empty()
            ended = session.ended
            self._prepare(session)  # once per session: not part of what each count costs
            started = time.perf_counter()
            result = self._count(session)
            self._cost = time.perf_counter() - started
            result["cost"] = round(self._cost, 4)
            self._result, self._at, self._final = result, time.monotonic(), ended
            return {**result, "age": 0.0}

    def _count(self, session: Session) -> dict[str, Any]:
        groups = self._prepare(session)
        graph = session.graph
        if groups is None or graph is None:
            size = session.progress()[1]
            return {**_empty(), "drops": size}
        width = len(STATES)
        table = np.zeros(len(groups.keys) * width, dtype=np.int64)
        for nodes, index, local in (
            (graph.data, groups.data, groups.data_local),
            (graph.apps, groups.apps, groups.apps_local),
        ):
            if not len(nodes):
                continue
            cells = index * width + _codes(nodes)
            table += np.bincount(cells[local], minlength=len(table))
        grid = table.reshape(len(groups.keys), width)
        out = []
        for g, key in enumerate(groups.keys):
            row = grid[g]
            counts = {STATES[s]: int(n) for s, n in enumerate(row.tolist()) if n}
            if counts:
                out.append(
                    {
                        "key": key,
                        "label": groups.labels[g],
                        "kind": groups.kinds[g],
                        "category": groups.categories[g],
                        "counts": counts,
                    }
                )
        totals = {STATES[s]: int(n) for s, n in enumerate(grid.sum(axis=0).tolist()) if n}
        return {"groups": out, "totals": totals, "drops": sum(totals.values()), "cost": 0.0}

    def drops(
        self, group: str | None, state: str | None, offset: int, limit: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """The local drops of a group (all groups if None) in a state (any if None): how many, and the
        ``limit`` of them from ``offset`` on, as ``{"uid", "name", "kind", "category", "state"}``."""
        session = self._session()
        if session is None:
            return 0, []
        with self._lock:
            groups = self._prepare(session)
        graph = session.graph
        if groups is None or graph is None:
            return 0, []
        g = groups.keys.index(group) if group is not None and group in groups.keys else None
        if group is not None and g is None:
            return 0, []
        picked: list[DataNode | AppNode] = []
        total = 0
        for nodes, index, local in (
            (graph.data, groups.data, groups.data_local),
            (graph.apps, groups.apps, groups.apps_local),
        ):
            mask = local if g is None else local & (index == g)
            where = np.flatnonzero(mask)
            if state is not None:
                code = _CODE.get(state)
                if code is None:
                    continue
                kept = []
                for start in range(0, len(where), CHUNK):
                    chunk = where[start : start + CHUNK].tolist()
                    kept += [i for i in chunk if _CODE[nodes[i].state] == code]
                    _yield()
                where = np.asarray(kept, dtype=np.int64)
            first = max(0, offset - total)
            take = max(0, min(limit - len(picked), len(where) - first))
            picked += [nodes[i] for i in where[first : first + take].tolist()]
            total += len(where)
        return total, [
            {
                "uid": n.spec.id,
                "name": n.spec.name,
                "kind": n.spec.kind,
                "category": n.spec.CATEGORY,
                "state": str(n.state),
            }
            for n in picked
        ]


def _empty() -> dict[str, Any]:
    return {"groups": [], "totals": {}, "drops": 0, "cost": 0.0, "age": 0.0}
