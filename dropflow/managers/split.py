"""Splitting a placed physical graph into the parts its nodes run.

Theory of operation
-------------------
Each node receives the drops placed on it plus, for every link that crosses to another node, the spec of
the drop at the other end. The engine turns those into proxies: a remote data drop that a local app reads,
or a remote app that reads or writes a local drop. A pure function over specs, linear in the number of
links; it also refuses a graph that is not fully placed, naming the unplaced drops.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..drops.errors import GraphError, Problem
from ..drops.spec import AppSpec, DropSpec, port_drops

__all__ = ["check_whole", "cross_links", "split_by_node"]


def _ids(ports: dict[str, str | list[str]]) -> Iterable[str]:
    for value in ports.values():
        yield from port_drops(value)


def split_by_node(specs: Sequence[DropSpec], known: Iterable[str] | None = None) -> dict[str, list[DropSpec]]:
    """Each node's part of the graph, proxies of its remote neighbours included.

    ``known`` lists the nodes that exist; a drop placed on any other node is an error.
    """
    known_set = set(known) if known is not None else None
    by_id = {s.id: s for s in specs}
    parts: dict[str, list[DropSpec]] = {}
    problems: list[Problem] = []
    for spec in specs:
        node = spec.node
        if node is None:
            problems.append(
                Problem(
                    spec.label(),
                    "node",
                    "is not placed on a node; map the graph first (dropflow map, or submit a logical graph)",
                )
            )
        elif known_set is not None and node not in known_set:
            problems.append(
                Problem(
                    spec.label(),
                    "node",
                    f"{node!r} is not one of this manager's nodes ({', '.join(sorted(known_set))})",
                )
            )
        else:
            parts.setdefault(node, []).append(spec)
    if problems:
        raise GraphError(problems)
    proxies: dict[str, dict[str, DropSpec]] = {}
    for spec in specs:
        if not isinstance(spec, AppSpec):
            continue
        assert spec.node is not None
        for uid in (*_ids(spec.inputs), *_ids(spec.outputs)):
            data = by_id.get(uid)
            if data is None or data.node == spec.node:
                continue  # a missing drop is reported by the node that builds the part
            assert data.node is not None
            proxies.setdefault(spec.node, {})[uid] = data
            proxies.setdefault(data.node, {})[spec.id] = spec
    for node, extra in proxies.items():
        parts[node].extend(extra.values())
    return parts


def cross_links(specs: Sequence[DropSpec]) -> int:
    """How many app-data links cross nodes."""
    by_node = {s.id: s.node for s in specs}
    return sum(
        1
        for s in specs
        if isinstance(s, AppSpec)
        for uid in (*_ids(s.inputs), *_ids(s.outputs))
        if uid in by_node and by_node[uid] != s.node
    )


def check_whole(specs: Sequence[DropSpec]) -> None:
    """What no single node can see: duplicate ids, links to drops placed nowhere, cycles across nodes."""
    problems: list[Problem] = []
    by_id: dict[str, DropSpec] = {}
    for spec in specs:
        if spec.id in by_id:
            problems.append(Problem(spec.label(), "id", "duplicate id"))
        by_id[spec.id] = spec
    successors: dict[str, list[str]] = {}
    waiting: dict[str, int] = dict.fromkeys(by_id, 0)
    for spec in specs:
        if not isinstance(spec, AppSpec):
            continue
        for field, ports in (("inputs", spec.inputs), ("outputs", spec.outputs)):
            for uid in _ids(ports):
                if uid not in by_id:
                    problems.append(Problem(spec.label(), field, f"links to missing drop {uid!r}"))
                    continue
                src, dst = (uid, spec.id) if field == "inputs" else (spec.id, uid)
                successors.setdefault(src, []).append(dst)
                waiting[dst] += 1
    if problems:
        raise GraphError(problems)
    stack = [uid for uid, n in waiting.items() if n == 0]
    ordered = 0
    while stack:
        uid = stack.pop()
        ordered += 1
        for nxt in successors.get(uid, ()):
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                stack.append(nxt)
    if ordered < len(waiting):
        blocked = next(uid for uid, n in waiting.items() if n > 0)
        raise GraphError([Problem(f"drop {blocked!r}", None, "the graph has a cycle through this drop")])
