"""Mapping partitions onto machines: which node runs each partition, and which island that node is in.

Theory of operation
-------------------
As in DALiuGE, the first ``islands`` entries of the node list host the data-island managers and the rest
run drops; the workers are split into ``islands`` contiguous groups, one per island manager, and a
worker's island is its manager's node name. When the list has no node beyond the island managers (a single
machine, say), the island managers run drops too. With ``islands == 0`` there are no island managers: every
node runs drops and no island is recorded.

Partitions go to workers by longest-processing-time first: heaviest partition to the least loaded worker,
ties broken by order, so the result is deterministic and the heaviest worker carries at most the mean plus
one partition. Partitions never split, so what METIS kept together stays on one machine.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from ..drops.errors import GraphError

__all__ = ["map_partitions", "workers_and_islands"]


def workers_and_islands(nodes: Sequence[str], islands: int) -> tuple[list[str], list[str | None]]:
    """The nodes that run drops, and the island (manager node) of each."""
    if not nodes:
        raise GraphError.one("map", "nodes", "the node list is empty")
    if len(set(nodes)) != len(nodes):
        dup = next(n for n in nodes if list(nodes).count(n) > 1)
        raise GraphError.one("map", "nodes", f"{dup!r} appears twice in the node list")
    if islands < 0:
        raise GraphError.one("map", "islands", "must be 0 or more")
    if islands > len(nodes):
        raise GraphError.one(
            "map", "islands", f"{islands} islands need at least {islands} nodes; the list has {len(nodes)}"
        )
    if islands == 0:
        return list(nodes), [None] * len(nodes)
    managers = list(nodes[:islands])
    workers = list(nodes[islands:]) or managers
    if workers is managers:
        return workers, list(managers)
    per, extra = divmod(len(workers), islands)
    island_of: list[str | None] = []
    for i, manager in enumerate(managers):
        island_of += [manager] * (per + (1 if i < extra else 0))
    return workers, island_of


def map_partitions(
    loads: Sequence[float], nodes: Sequence[str], islands: int
) -> tuple[list[str], list[str | None]]:
    """Node and island of each partition, balancing the partitions' loads over the workers."""
    workers, island_of = workers_and_islands(nodes, islands)
    order = sorted(range(len(loads)), key=lambda p: (-loads[p], p))
    heap = [(0.0, w) for w in range(len(workers))]
    node_of: list[str] = [""] * len(loads)
    isl_of: list[str | None] = [None] * len(loads)
    for p in order:
        load, w = heapq.heappop(heap)
        node_of[p] = workers[w]
        isl_of[p] = island_of[w]
        heapq.heappush(heap, (load + max(float(loads[p]), 1e-9), w))
    return node_of, isl_of
