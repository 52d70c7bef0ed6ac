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


def split_by_node(
    specs: Sequence[DropSpec],
    known: Iterable[str] | None = None,
    key: str = "node",
    foreign: bool = False,
) -> dict[str, list[DropSpec]]:
    """Each member's part of the graph (by ``key``, "node" or "island"), with proxies of remote neighbours.

    ``known`` lists the members that exist; a drop placed on any other is an error -- unless ``foreign`` is
    set (an island's part of a master's graph), when such drops are neighbours held elsewhere and are only
    included as proxies.
    """
    known_set = set(known) if known is not None else None
    by_id = {s.id: s for s in specs}
    parts: dict[str, list[DropSpec]] = {}
    problems: list[Problem] = []
    for spec in specs:
        member = getattr(spec, key)
        if member is None:
            problems.append(
                Problem(
                    spec.label(),
                    key,
                    f"is not placed on a {key}; map the graph first "
                    "(dropflow map, or submit a logical graph)",
                )
            )
        elif known_set is not None and member not in known_set:
            if not foreign:
                problems.append(
                    Problem(
                        spec.label(),
                        key,
                        f"{member!r} is not one of this manager's {key}s ({', '.join(sorted(known_set))})",
                    )
                )
        else:
            parts.setdefault(member, []).append(spec)
    if problems:
        raise GraphError(problems)
    proxies: dict[str, dict[str, DropSpec]] = {}
    for spec in specs:
        if not isinstance(spec, AppSpec):
            continue
        app_at = getattr(spec, key)
        for uid in (*_ids(spec.inputs), *_ids(spec.outputs)):
            data = by_id.get(uid)
            if data is None:
                continue  # a missing drop is reported by whoever builds the part
            data_at = getattr(data, key)
            if data_at == app_at:
                continue
            if app_at in parts:
                proxies.setdefault(app_at, {})[uid] = data
            if data_at in parts:
                proxies.setdefault(data_at, {})[spec.id] = spec
    for member, extra in proxies.items():
        parts[member].extend(extra.values())
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


def check_whole(specs: Sequence[DropSpec], elsewhere: Iterable[str] = ()) -> None:
    """What no single node can see: duplicate ids, links to drops placed nowhere, cycles across nodes.

    Drops placed on the ``elsewhere`` nodes are neighbours held by another island: their own links are not
    checked here (their island checks them).
    """
    skip = set(elsewhere)
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
                    if spec.node in skip:
                        continue
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
