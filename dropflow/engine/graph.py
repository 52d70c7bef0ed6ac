"""The runtime graph of a session: one small node per drop, linked, and checked before anything runs.

Theory of operation
-------------------
:func:`build` turns decoded specs into :class:`DataNode` and :class:`AppNode` objects -- slotted, holding
only a reference to their spec, their state, a few counters and direct references to their neighbours --
and links them from the apps' named ports. While linking it collects every problem a graph can have before
it runs: duplicate ids, links to missing drops or from app to app, a port used as both input and output,
kind-specific checks (a shell template's placeholders, a Python function's signature), paths outside the
workspace, executors a kind cannot use, and cycles (found by Kahn's algorithm, iteratively, and reported as
the list of drops around one cycle). A graph with problems raises :class:`GraphError` listing them.

Counters double as the cascade's bookkeeping: ``waiting`` is the number of unsettled producers of a data
drop, or of unsettled inputs of an app. Building costs about a microsecond per drop; memory per node is a
couple of hundred bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..drops import kinds
from ..drops.errors import GraphError, Problem
from ..drops.spec import AppSpec, DataSpec, DropSpec
from ..drops.states import AppState, DropState
from ..drops.stores import Store
from .workspace import Workspace

__all__ = ["AppNode", "DataNode", "Graph", "build"]

# Bound once: Enum class attribute access is slow in Python 3.11 and nodes are made by the million.
_INITIALIZED = DropState.INITIALIZED
_NOT_RUN = AppState.NOT_RUN


class DataNode:
    """Runtime state of a data drop."""

    __slots__ = ("consumers", "ok", "peer", "spec", "state", "store", "unread", "waiting")

    def __init__(self, spec: DataSpec) -> None:
        self.spec = spec
        self.state = _INITIALIZED
        #: Producers not yet settled.
        self.waiting = 0
        #: Producers that finished (rather than being skipped).
        self.ok = 0
        self.consumers: list[AppNode] | None = None
        self.store: Store | None = None
        #: Consumers not yet settled, once completed; -1 = expire as soon as it reaches 0 (lifespan over).
        self.unread = 0
        #: None: a purely local drop. A str: the node that owns this drop -- this is its proxy. A frozenset:
        #: the nodes to tell about this local drop's state changes (it has neighbours there).
        self.peer: str | frozenset[str] | None = None

    def __repr__(self) -> str:
        return f"<DataNode {self.spec.id} {self.state}>"


class AppNode:
    """Runtime state of an application drop."""

    __slots__ = ("attempt", "failed", "inputs", "outputs", "peer", "skipped", "spec", "state", "waiting")

    def __init__(self, spec: AppSpec, inputs: tuple[DataNode, ...], outputs: tuple[DataNode, ...]) -> None:
        self.spec = spec
        self.state = _NOT_RUN
        #: Input drops, in the order of the spec's ports (a list port contributes each of its drops).
        self.inputs = inputs
        self.outputs = outputs
        self.waiting = len(inputs)
        self.failed = 0
        self.skipped = 0
        self.attempt = 0
        #: As for DataNode: None, the owning node of a proxy, or the nodes watching a boundary drop.
        self.peer: str | frozenset[str] | None = None

    def __repr__(self) -> str:
        return f"<AppNode {self.spec.id} {self.state}>"


Node = DataNode | AppNode


class Graph:
    """The linked runtime nodes of one session."""

    __slots__ = ("__weakref__", "apps", "by_id", "data", "root_apps", "root_data")

    def __init__(self) -> None:
        self.by_id: dict[str, Node] = {}
        self.data: list[DataNode] = []
        self.apps: list[AppNode] = []
        self.root_data: list[DataNode] = []
        self.root_apps: list[AppNode] = []

    def __len__(self) -> int:
        return len(self.by_id)


def _where(spec: DropSpec) -> str:
    return spec.label()


def _link(
    app: AppSpec,
    field: str,
    ports: dict[str, str | list[str]],
    by_id: dict[str, Any],
    problems: list[Problem] | None,
) -> tuple[DataNode, ...]:
    """The data nodes named by an app's ports, in port order; bad links become problems.

    With ``problems`` None (a proxy of another node's app), drops not in this node's part are left out.
    """
    nodes: list[DataNode] = []
    for value in ports.values():
        for drop_id in (value,) if type(value) is str else value:
            node = by_id.get(drop_id)
            if type(node) is DataNode:
                nodes.append(node)
            elif problems is None:
                continue
            elif node is None:
                problems.append(Problem(_where(app), field, f"links to missing drop {drop_id!r}"))
            else:
                problems.append(
                    Problem(_where(app), field, f"links to app drop {drop_id!r}; ports link to data drops")
                )
    return tuple(nodes)


def _check_app(spec: AppSpec, problems: list[Problem]) -> None:
    executor = spec.executor
    if executor is not None and executor not in spec.EXECUTORS:
        problems.append(
            Problem(
                _where(spec),
                "executor",
                f"a {spec.kind} app cannot run on {executor!r} (choose from {', '.join(spec.EXECUTORS)})",
            )
        )
    if spec.inputs and spec.outputs and not spec.inputs.keys().isdisjoint(spec.outputs):
        both = sorted(set(spec.inputs) & set(spec.outputs))
        problems.append(
            Problem(_where(spec), "outputs", f"port(s) {', '.join(both)} used as both input and output")
        )
    for port in spec.codecs or ():
        if port not in spec.inputs and port not in spec.outputs:
            problems.append(Problem(_where(spec), "codecs", f"names no port of this app: {port!r}"))


def _count_waiting(graph: Graph) -> None:
    """Set every node's ``waiting`` to its number of predecessors."""
    for data in graph.data:
        data.waiting = 0
    for app in graph.apps:
        app.waiting = len(app.inputs)
        for d in app.outputs:
            d.waiting += 1


def _find_cycle(graph: Graph) -> list[str]:
    """Ids around one cycle among the nodes Kahn's algorithm left with predecessors.

    Walks *backwards*: a node left blocked always has a blocked predecessor (else its count would have
    reached zero), so the walk can only end by repeating a node, which closes a cycle. (A blocked node need
    not have a blocked successor: it may lie downstream of the cycle.)

    ::

        x -> a -> y -> b -> x     a cycle
                  y -> c -> z     downstream of it: z and c are blocked, with no blocked successor
    """
    producers: dict[int, list[AppNode]] = {}
    for app in graph.apps:
        if app.waiting > 0:
            for d in app.outputs:
                producers.setdefault(id(d), []).append(app)
    node: Node = next(n for n in graph.by_id.values() if n.waiting > 0)
    seen: dict[int, int] = {}
    path: list[Node] = []
    while id(node) not in seen:
        seen[id(node)] = len(path)
        path.append(node)
        before: Sequence[Node] = node.inputs if type(node) is AppNode else producers.get(id(node), ())
        node = next(p for p in before if p.waiting > 0)
    cycle = path[seen[id(node)] :]
    cycle.reverse()  # the walk went against the links; say it in their direction
    # Start at the drop listed first in the graph, so that the message does not depend on the walk.
    order = {id(n): i for i, n in enumerate(graph.by_id.values())}
    first = min(range(len(cycle)), key=lambda i: order[id(cycle[i])])
    cycle = cycle[first:] + cycle[:first]
    return [n.spec.id for n in cycle] + [cycle[0].spec.id]


def _check_acyclic(graph: Graph, problems: list[Problem], proxies: int) -> None:
    """Kahn's algorithm, consuming the ``waiting`` counters; they are recounted afterwards."""
    stack: list[Node] = [*graph.root_data, *graph.root_apps]
    if proxies:  # proxies with nothing before them here start no cascade, but Kahn must count them
        stack += [n for n in graph.by_id.values() if n.waiting == 0 and type(n.peer) is str]
    pop, push = stack.pop, stack.append
    ordered = 0
    while stack:
        node = pop()
        ordered += 1
        succ = (node.consumers or ()) if type(node) is DataNode else node.outputs  # type: ignore[union-attr]
        for s in succ:
            s.waiting -= 1
            if not s.waiting:
                push(s)
    if ordered < len(graph.by_id):
        cycle = _find_cycle(graph)
        problems.append(Problem(f"drop {cycle[0]!r}", None, "the graph has a cycle: " + " -> ".join(cycle)))
    _count_waiting(graph)


def build(
    specs: Sequence[DropSpec], workspace: Workspace, source: str | None = None, local: str | None = None
) -> Graph:
    """Link specs into a runtime graph, or raise :class:`GraphError` with every problem found.

    ``local`` is this node's name when the graph is one node's part of a distributed session: drops placed
    on other nodes (by their ``node`` field) become proxies, whose state changes arrive as events from their
    owners; they are included only as neighbours of local drops, so their other links may be absent.
    """
    graph = Graph()
    by_id: dict[str, Any] = graph.by_id
    problems: list[Problem] = []
    data_nodes, apps, root_apps = graph.data, graph.apps, graph.root_apps
    data_types = kinds.data_spec_types()
    data_checks = kinds.data_checks()
    proxies = 0
    for index, spec in enumerate(specs):
        uid = spec.id
        if uid in by_id:
            problems.append(Problem(f"drop {uid!r} (drops[{index}])", "id", "duplicate id"))
            continue
        owner = spec.node if local is not None and spec.node is not None and spec.node != local else None
        t = type(spec)
        if t in data_types:
            node = by_id[uid] = DataNode(spec)  # type: ignore[arg-type]
            node.ok = index  # scratch until linked: position in the spec list (see "ordered" below)
            data_nodes.append(node)
            if owner is not None:
                node.peer, proxies = owner, proxies + 1
                continue
            check_data = data_checks.get(t)
            if check_data is not None:
                problems += check_data(spec, workspace)  # type: ignore[arg-type]
        else:
            app = by_id[uid] = AppNode(spec, (), ())  # type: ignore[arg-type]
            app.failed = index  # scratch, as for data nodes
            apps.append(app)
            if owner is not None:
                app.peer, proxies = owner, proxies + 1
    checks = kinds.app_checks()
    # Graphs are usually listed in dependency order (generated and translated ones always are). If every link
    # points forward in the list, the list is a topological order and there is no cycle: one comparison per
    # link instead of Kahn's algorithm over the whole graph, which then runs only when needed.
    ordered = True
    for app in apps:
        spec = app.spec
        ins, outs = spec.inputs, spec.outputs
        proxy = app.peer is not None
        if proxy:  # another node's app: link what is here, check nothing (its owner does)
            inputs, outputs = _link(spec, "", ins, by_id, None), _link(spec, "", outs, by_id, None)
        else:
            # Inline fast path for the shape of most apps in big graphs: one drop on one port each way.
            inputs = outputs = ()
            if (
                len(ins) == 1
                and type(v := next(iter(ins.values()))) is str
                and type(d := by_id.get(v)) is DataNode
            ):
                inputs = (d,)
            elif ins:
                inputs = _link(spec, "inputs", ins, by_id, problems)
            if (
                len(outs) == 1
                and type(v := next(iter(outs.values()))) is str
                and type(d := by_id.get(v)) is DataNode
            ):
                outputs = (d,)
            elif outs:
                outputs = _link(spec, "outputs", outs, by_id, problems)
        app.inputs, app.outputs, app.waiting = inputs, outputs, len(inputs)
        position = app.failed
        for d in inputs:
            if d.consumers is None:
                d.consumers = [app]
            else:
                d.consumers.append(app)
            if d.ok > position:
                ordered = False
        for d in outputs:
            d.waiting += 1
            if d.ok < position:
                ordered = False
        if proxy:
            continue
        if not inputs:
            root_apps.append(app)
        if spec.executor is not None or spec.codecs or (ins and outs and not ins.keys().isdisjoint(outs)):
            _check_app(spec, problems)
        check = checks.get(type(spec))
        if check is not None:
            linked = {d.spec.id: d.spec.TRAITS for d in (*inputs, *outputs)}
            problems += check(spec, linked)
    if problems:
        raise GraphError(problems, source)
    root_data = graph.root_data
    for d in data_nodes:
        d.ok = 0  # the scratch position goes; the counter starts the run at zero
        if d.waiting == 0 and d.peer is None:
            root_data.append(d)
    for app in apps:
        app.failed = 0
    if not ordered or proxies:
        _check_acyclic(graph, problems, proxies)
    if problems:
        raise GraphError(problems, source)
    if proxies:
        _mark_boundary(graph)
    return graph


def _mark_boundary(graph: Graph) -> None:
    """Give every local drop with a neighbour on another node the set of nodes to tell its changes."""
    watchers: dict[int, set[str]] = {}
    local_of: dict[int, Node] = {}
    for app in graph.apps:
        for d in (*app.inputs, *app.outputs):
            if type(app.peer) is str and d.peer is None:
                watchers.setdefault(id(d), set()).add(app.peer)
                local_of[id(d)] = d
            elif type(d.peer) is str and app.peer is None:
                watchers.setdefault(id(app), set()).add(d.peer)
                local_of[id(app)] = app
    for key, nodes in watchers.items():
        local_of[key].peer = frozenset(nodes)
