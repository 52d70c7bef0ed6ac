"""Structural checks of a logical graph, and the small rewrites that make it regular before unrolling.

Theory of operation
-------------------
Everything that can be wrong with a logical graph regardless of sizes is found here, before any copy is
made: parents that are not constructs (or nest in a circle), links to nodes that do not exist, links that
join two data nodes, ports used against their declared direction, loop-carried links outside a loop, and
cycles. A cycle is only legal through a loop-carried link, so the check is Kahn's algorithm over the links
that are not carried; what it cannot order is reported as the list of nodes around one cycle. (EAGLE graphs
are DALiuGE's, which translates their cycles: for them the engine refuses a cycle at deploy instead.)

Two rewrites follow. A link from an app straight to an app gets a null data node between them (an ordering
edge), so that every link joins an app port and a data node: dropflow's engine links apps through data
drops only. DALiuGE links such apps directly; the null drop is an implementation detail of the physical
graph, belongs to no logical node (its id joins the two apps' ids and port) and moves no data. Ports that
a carried link enters are marked ``loop_ports``: a link from outside the loop into such a port reaches only
the first iteration.
"""

from __future__ import annotations

from collections import defaultdict

from ..drops.errors import GraphError, Problem
from .model import Construct, Link, LogicalGraph, Node

__all__ = ["MAX_NESTING", "check_graph", "construct_chain"]

#: Constructs may nest this deep (real graphs nest a few levels; every level is a dimension of each copy's
#: index, and the work of unrolling grows with the depth times the number of nodes).
MAX_NESTING = 64


def construct_chain(graph: LogicalGraph, parent: str | None) -> list[Construct]:
    """Enclosing constructs of an item whose parent is ``parent``, outermost first."""
    chain: list[Construct] = []
    while parent is not None:
        c = graph.constructs[parent]
        chain.append(c)
        parent = c.parent
    chain.reverse()
    return chain


def _check_parents(graph: LogicalGraph, problems: list[Problem]) -> None:
    items: list[Construct | Node] = [*graph.constructs.values(), *graph.nodes.values()]
    for item in items:
        if item.parent is None or item.parent in graph.constructs:
            continue
        if item.parent in graph.nodes:
            problems.append(Problem(item.where, "parent", f"{item.parent!r} is not a construct"))
        else:
            problems.append(Problem(item.where, "parent", f"no construct {item.parent!r} in the graph"))
    if problems:
        return
    # Depth of every construct (1 at the top), each walked once: a walk stops at a construct already known.
    depth: dict[str, int] = {}
    for c in graph.constructs.values():
        path: list[str] = []
        on_path: set[str] = set()
        current: str | None = c.id
        while current is not None and current not in depth:
            if current in on_path:
                problems.append(Problem(c.where, "parent", "constructs contain each other in a circle"))
                return
            path.append(current)
            on_path.add(current)
            current = graph.constructs[current].parent
        base = 0 if current is None else depth[current]
        for i, cid in enumerate(reversed(path), start=1):
            depth[cid] = base + i
            if base + i > MAX_NESTING:
                problems.append(
                    Problem(
                        graph.constructs[cid].where,
                        "parent",
                        f"constructs nest {base + i} deep here; at most {MAX_NESTING} levels unroll",
                    )
                )
                return


def _port_problem(node: Node, port: str | None, outgoing: bool, where: str) -> Problem | None:
    if node.role == "data":
        if port is not None:
            return Problem(
                where,
                "from_port" if outgoing else "to_port",
                f"{node.id!r} is a data node; only app ends of a link name a port",
            )
        return None
    field = "from_port" if outgoing else "to_port"
    if port is None:
        return Problem(where, field, f"missing: name the port of app {node.id!r} this link uses")
    direction = node.ports.get(port)
    if direction is None:
        declared = ", ".join(sorted(node.ports)) or "none"
        return Problem(where, field, f"app {node.id!r} has no port {port!r} (its ports: {declared})")
    wanted = "out" if outgoing else "in"
    if direction not in (wanted, "inout"):
        kind = "an input" if direction == "in" else "an output"
        way = "out of" if outgoing else "into"
        return Problem(
            where, field, f"port {port!r} of app {node.id!r} is {kind} port; a link cannot go {way} it"
        )
    return None


def _innermost_loop(graph: LogicalGraph, node: Node) -> Construct | None:
    for c in reversed(construct_chain(graph, node.parent)):
        if c.kind == "loop":
            return c
    return None


def _check_links(graph: LogicalGraph, problems: list[Problem]) -> None:
    for link in graph.links:
        missing = [end for end in (link.src, link.dst) if end not in graph.nodes]
        if missing:
            for end in missing:
                what = "construct" if end in graph.constructs else "node"
                if what == "construct":
                    problems.append(
                        Problem(
                            link.where,
                            "from" if end == link.src else "to",
                            f"{end!r} is a construct; link the nodes inside it",
                        )
                    )
                else:
                    problems.append(
                        Problem(
                            link.where,
                            "from" if end == link.src else "to",
                            f"dangling link: there is no node {end!r}",
                        )
                    )
            continue
        src, dst = graph.nodes[link.src], graph.nodes[link.dst]
        if src.role == "data" and dst.role == "data":
            problems.append(
                Problem(
                    link.where,
                    None,
                    f"links data node {src.id!r} to data node {dst.id!r}; put an app between them",
                )
            )
            continue
        for node, port, outgoing in ((src, link.src_port, True), (dst, link.dst_port, False)):
            p = _port_problem(node, port, outgoing, link.where)
            if p is not None:
                problems.append(p)
        if link.carried:
            loop_s, loop_d = _innermost_loop(graph, src), _innermost_loop(graph, dst)
            if loop_s is None or loop_s is not loop_d or src.parent != dst.parent:
                problems.append(
                    Problem(
                        link.where,
                        "loop",
                        "a loop-carried link joins two nodes directly inside the same loop construct",
                    )
                )


def _check_acyclic(graph: LogicalGraph, problems: list[Problem]) -> None:
    succ: dict[str, list[str]] = defaultdict(list)
    indeg = dict.fromkeys(graph.nodes, 0)
    for link in graph.links:
        if not link.carried:
            succ[link.src].append(link.dst)
            indeg[link.dst] += 1
    ready = [n for n, d in indeg.items() if d == 0]
    ordered = 0
    while ready:
        n = ready.pop()
        ordered += 1
        for s in succ[n]:
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
    if ordered == len(graph.nodes):
        return
    # Walk backwards through nodes left unordered until one repeats: that closes a cycle. (Every unordered
    # node has an unordered predecessor; walking forwards could end at an unordered sink.) Only unordered
    # predecessors are kept, so that each step of the walk is one look-up.
    pred: dict[str, list[str]] = defaultdict(list)
    for src, targets in succ.items():
        if indeg[src] > 0:
            for t in targets:
                pred[t].append(src)
    node = next(n for n, d in indeg.items() if d > 0)
    seen: dict[str, int] = {}
    path: list[str] = []
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = pred[node][0]
    cycle = path[seen[node] :][::-1]
    # The same cycle is reported whichever node the walk started from: from its node listed first.
    order = {n: i for i, n in enumerate(graph.nodes)}
    first = min(range(len(cycle)), key=lambda i: order[cycle[i]])
    cycle = cycle[first:] + cycle[:first]
    cycle.append(cycle[0])
    problems.append(
        Problem(
            graph.nodes[cycle[0]].where,
            None,
            "the graph has a cycle that is not declared "
            "as a loop: "
            + " -> ".join(repr(c) for c in cycle)
            + ' (put it in a loop construct and mark the closing link "loop": true)',
        )
    )


def _insert_events(graph: LogicalGraph) -> None:
    """Put a null data node on every app -> app link."""
    links: list[Link] = []
    #: Suffixes tried per name, so that many duplicate links cost one step each, not one per earlier twin.
    tried: dict[str, int] = {}
    for link in graph.links:
        src, dst = graph.nodes[link.src], graph.nodes[link.dst]
        if src.role == "data" or dst.role == "data":
            links.append(link)
            continue
        base = event_id = f"{src.id}-{link.src_port}-{dst.id}"
        k = tried.get(base, 0)
        if k:
            event_id = base + ("_" if k == 1 else f"_{k}")
        while event_id in graph.nodes or event_id in graph.constructs:
            k += 1
            event_id = base + ("_" if k == 1 else f"_{k}")
        tried[base] = k
        graph.nodes[event_id] = Node(
            event_id, "data", "null", f"node {event_id!r} (null, between apps)", src.parent, weight=0.0
        )
        links.append(Link(src.id, event_id, link.src_port, None, link.where))
        links.append(Link(event_id, dst.id, None, link.dst_port, link.where, link.carried))
    graph.links = links


def check_graph(graph: LogicalGraph) -> None:
    """Raise GraphError with every structural problem; then normalise the graph in place."""
    if not graph.nodes:
        raise GraphError.one("graph", "nodes", "the graph is empty: it has no app or data node")
    problems: list[Problem] = []
    _check_parents(graph, problems)
    if problems:
        raise GraphError(problems)
    _check_links(graph, problems)
    if problems:
        raise GraphError(problems)
    if not graph.cycles_at_deploy:
        _check_acyclic(graph, problems)
    if problems:
        raise GraphError(problems)
    _insert_events(graph)
    for link in graph.links:
        if link.carried and link.dst_port is not None:
            graph.nodes[link.dst].loop_ports.add(link.dst_port)
