"""Partitioning an unrolled graph: which drops run together on one node.

Theory of operation
-------------------
The input is a :class:`Weighted` graph: drop numbers, producer -> consumer edges, each app's estimated
time and each data drop's volume. Three algorithms, all deterministic for a given graph and seed:

- ``none``: one partition.
- ``metis``: k-way METIS (pymetis) on the undirected graph. Vertex weight = app time (data drops weigh
  nothing: they do not compete for cores); edge weight = the volume of the data drop at its end, so the cut
  METIS minimises is the data that crosses partitions; ``imbalance`` bounds the heaviest partition's load
  over the mean (METIS' ``ufactor``). Weights are scaled to small integers, as METIS wants.
- ``min_num_parts``: the fewest partitions, each running at most ``max_dop`` apps at once, on which a list
  schedule of the graph finishes by ``deadline`` (default: the critical path, i.e. partitioning must not
  slow the graph down). Found by bisection over the number of partitions; each trial is one O(n log n)
  simulation in which an app prefers the core its producer used, so chains stay in one partition.

Data drops follow their producer (a root data drop its first consumer), in every algorithm but METIS,
which places them itself.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..drops.errors import GraphError

__all__ = ["ALGORITHMS", "Partitioning", "Weighted", "cut_volume", "partition"]

ALGORITHMS: tuple[str, ...] = ("none", "metis", "min_num_parts")
#: METIS weights are integers; this is the largest a weight is scaled to.
_SCALE = 100


@dataclass(slots=True)
class Weighted:
    """A graph to partition: ``n`` drops, edges producer -> consumer, per-drop weights."""

    n: int
    src: np.ndarray
    dst: np.ndarray
    is_app: np.ndarray
    #: App: estimated time; data: ignored.
    time: np.ndarray
    #: Data: volume; app: ignored.
    volume: np.ndarray
    #: For a graph unrolled from a logical graph: each logical node's copies, as (first drop number, sizes of
    #: its dimensions), covering every drop in order. METIS then partitions groups of copies (see _groups).
    blocks: Sequence[tuple[int, tuple[int, ...]]] = ()


@dataclass(slots=True)
class Partitioning:
    parts: np.ndarray
    count: int
    #: Sum of app time per partition.
    loads: np.ndarray
    #: Volume of the data drops whose edges cross partitions (counted once per crossing edge).
    cut: float
    algorithm: str


def _edge_volume(g: Weighted) -> np.ndarray:
    # One end of every edge is a data drop; its volume is what the edge carries.
    volume: np.ndarray = np.where(g.is_app[g.src], g.volume[g.dst], g.volume[g.src])
    return volume


def cut_volume(g: Weighted, parts: np.ndarray) -> float:
    """Data volume on edges whose ends are in different partitions."""
    crossing = parts[g.src] != parts[g.dst]
    return float(_edge_volume(g)[crossing].sum())


def _loads(g: Weighted, parts: np.ndarray, count: int) -> np.ndarray:
    return np.bincount(parts, weights=np.where(g.is_app, g.time, 0.0), minlength=count)


def _scaled(values: np.ndarray, floor: int) -> np.ndarray:
    top = float(values.max()) if len(values) else 0.0
    if top <= 0:
        return np.full(len(values), max(floor, 1), dtype=np.int64)
    return np.maximum(np.rint(values * (_SCALE / top)), floor).astype(np.int64)


#: A logical node's copies go to METIS in at most this many groups per partition asked for.
GROUPS_PER_PART = 128


def _groups(g: Weighted, nparts: int) -> tuple[np.ndarray, int] | None:
    """The group of each drop, and the number of groups; None to give METIS the drops themselves.

    A scatter of a million copies has an app linked to a million data drops. METIS coarsens a graph by
    matching each vertex with one neighbour, so such a hub shrinks by one vertex per level and the
    partitioning degenerates (minutes, and "Cannot bisect a graph with 0 vertices"). Instead each logical
    node's copies go to METIS in at most ``k = nparts * GROUPS_PER_PART`` groups: a group is then at most
    1/128 of a partition's share of that node, fine enough for METIS to balance the load.

    Copies are numbered row-major over the node's dimensions (its constructs), so a group is a run of
    consecutive copies, cut where a construct's copy ends: the outer dimensions whose product is at most k
    are kept whole (every copy of them has groups of its own), and the copies of each are cut into equal
    runs. Copy c of the same constructs therefore falls in the same group for every node under them, and a
    link inside a copy stays inside a group or between two groups of that copy. Graphs where no node has
    more than k copies (and physical graphs, which have no logical nodes) are partitioned drop by drop.
    """
    budget = nparts * GROUPS_PER_PART
    counts = [math.prod(dims) for _, dims in g.blocks]
    if sum(counts) != g.n or all(count <= budget for count in counts):
        return None
    groups = np.empty(g.n, dtype=np.int64)
    first = 0
    for (base, dims), count in zip(g.blocks, counts, strict=True):
        # Outer copies kept whole: the longest prefix of the dimensions with at most `budget` copies.
        whole, kept = 1, 0
        while kept < len(dims) and whole * dims[kept] <= budget:
            whole *= dims[kept]
            kept += 1
        inner = count // whole  # copies within each outer copy
        runs = min(inner, max(1, budget // whole))  # groups per outer copy
        c = np.arange(count, dtype=np.int64)
        groups[base : base + count] = first + (c // inner) * runs + (c % inner) * runs // inner
        first += whole * runs
    return groups, first


def _metis(g: Weighted, nparts: int, seed: int, imbalance: float) -> np.ndarray:
    vweights = np.where(g.is_app, _scaled(np.where(g.is_app, g.time, 0.0), 1), 0)
    volume = _edge_volume(g)
    grouping = _groups(g, nparts)
    if grouping is None:
        return _part_graph(_csr(g.n, g.src, g.dst, volume), vweights, nparts, seed, imbalance)
    groups, count = grouping
    src, dst = groups[g.src], groups[g.dst]
    between = src != dst  # a link inside a group is never cut
    csr = _csr(count, src[between], dst[between], volume[between])
    weights = np.bincount(groups, weights=vweights, minlength=count).astype(np.int64)
    coarse = _part_graph(csr, weights, nparts, seed, imbalance)
    parts: np.ndarray = _rebalance(coarse, weights, csr, nparts, imbalance)[groups]
    return parts


#: A graph for METIS: CSR adjacency (starts, neighbours) and the volume on each adjacency.
_Csr = tuple[np.ndarray, np.ndarray, np.ndarray]


def _csr(n: int, src: np.ndarray, dst: np.ndarray, volume: np.ndarray) -> _Csr:
    """The undirected graph of ``n`` vertices and edges ``src -> dst`` carrying ``volume``, as CSR."""
    src, dst = src.astype(np.int64), dst.astype(np.int64)
    if len(src) > 1:
        # Runs of the same edge first (consecutive copies in one group, linked to the same group): summed
        # here in one pass, they leave the sort below little to do.
        key = src * n + dst
        runs = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        src, dst, volume = src[runs], dst[runs], np.add.reduceat(volume, runs)
    a = np.concatenate([src, dst])
    b = np.concatenate([dst, src])
    w = np.concatenate([volume, volume])
    keys, inverse = np.unique(a * n + b, return_inverse=True)
    # Parallel edges (an app using a drop on two ports) become one edge carrying their summed volume.
    summed = np.bincount(inverse, weights=w)
    heads, tails = keys // n, keys % n
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(heads, minlength=n), out=starts[1:])
    return starts, tails, summed


def _part_graph(csr: _Csr, vweights: np.ndarray, nparts: int, seed: int, imbalance: float) -> np.ndarray:
    """METIS' k-way partition of a graph, minimising the volume cut."""
    import pymetis

    starts, tails, summed = csr
    options = pymetis.Options(seed=seed, ufactor=max(1, round(imbalance * 1000)))
    result = pymetis.part_graph(
        nparts,
        adjacency=pymetis.CSRAdjacency(starts, tails),
        vweights=vweights,
        eweights=_scaled(summed, 1),
        options=options,
    )
    parts: np.ndarray = np.asarray(result.vertex_part, dtype=np.int64)
    return parts


def _rebalance(
    parts: np.ndarray, vweights: np.ndarray, csr: _Csr, nparts: int, imbalance: float
) -> np.ndarray:
    """Move vertices out of partitions heavier than ``imbalance`` allows, each to where it cuts least.

    METIS refines a partition by moving vertices on its boundary. Groups of copies are heavy and tightly
    linked, so METIS can end with whole copies of an outer construct per partition and no boundary to move
    (a 100 x 1000 nested scatter into 16 partitions: cut 0, the heaviest 12% over the mean, for 5% asked).
    Then, heaviest partition first, the vertices whose edges stay least inside it move, each to the
    partition it has the most volume with that has room (else the lightest), until it is within the bound.
    """
    loads = np.bincount(parts, weights=vweights, minlength=nparts).astype(np.float64)
    limit = (1 + imbalance) * float(loads.sum()) / nparts
    if loads.max() <= limit:
        return parts
    starts, tails, volume = csr
    part_of = parts.tolist()
    weight = vweights.tolist()
    load = loads.tolist()
    first, neighbours, carried = starts.tolist(), tails.tolist(), volume.tolist()
    for p in sorted(range(nparts), key=lambda q: -load[q]):
        if load[p] <= limit:
            break
        moves = []
        for v in np.flatnonzero(parts == p).tolist():
            if weight[v] <= 0:
                continue
            with_part: dict[int, float] = {}
            for e in range(first[v], first[v + 1]):
                q = part_of[neighbours[e]]
                with_part[q] = with_part.get(q, 0.0) + carried[e]
            inside = with_part.pop(p, 0.0)
            q, outside = max(with_part.items(), key=lambda item: (item[1], -item[0]), default=(-1, 0.0))
            moves.append((inside - outside, v, q))
        moves.sort()
        for _cost, v, q in moves:
            if load[p] <= limit:
                break
            if q < 0 or load[q] + weight[v] > limit:
                q = min(range(nparts), key=lambda r: (load[r], r))
                if load[q] + weight[v] > limit:
                    continue
            part_of[v] = q
            load[p] -= weight[v]
            load[q] += weight[v]
    return np.asarray(part_of, dtype=np.int64)


def _follow_producers(g: Weighted, parts: np.ndarray) -> None:
    """Put each data drop with its first producer, or a root data drop with its first consumer."""
    data = ~g.is_app
    producer = np.full(g.n, -1, dtype=np.int64)
    into_data = g.is_app[g.src]
    # Reversed so the first edge wins when several write the same slot.
    producer[g.dst[into_data][::-1]] = g.src[into_data][::-1]
    consumer = np.full(g.n, -1, dtype=np.int64)
    from_data = ~into_data
    consumer[g.src[from_data][::-1]] = g.dst[from_data][::-1]
    owner = np.where(producer >= 0, producer, consumer)
    placed = data & (owner >= 0)
    parts[placed] = parts[owner[placed]]
    parts[data & (owner < 0)] = 0


def _app_graph(g: Weighted) -> tuple[np.ndarray, list[list[int]], np.ndarray]:
    """Apps (as drop numbers), successors per app (app indices), and predecessor counts."""
    apps = np.flatnonzero(g.is_app)
    index = np.full(g.n, -1, dtype=np.int64)
    index[apps] = np.arange(len(apps))
    into_data = g.is_app[g.src]
    # app -> data -> app pairs by joining producer edges with consumer edges on the data drop.
    prod_data, prod_app = g.dst[into_data], g.src[into_data]
    cons_data, cons_app = g.src[~into_data], g.dst[~into_data]
    order = np.argsort(cons_data, kind="stable")
    cons_data, cons_app = cons_data[order], cons_app[order]
    lo = np.searchsorted(cons_data, prod_data, side="left")
    hi = np.searchsorted(cons_data, prod_data, side="right")
    succ: list[list[int]] = [[] for _ in range(len(apps))]
    npred = np.zeros(len(apps), dtype=np.int64)
    cons_list = index[cons_app].tolist()
    for p, a, b in zip(index[prod_app].tolist(), lo.tolist(), hi.tolist(), strict=True):
        for c in cons_list[a:b]:
            succ[p].append(c)
            npred[c] += 1
    return apps, succ, npred


def _schedule(
    time: list[float], succ: list[list[int]], npred: np.ndarray, slots: int
) -> tuple[float, list[int]]:
    """List-schedule apps on ``slots`` cores: makespan and the core of each app."""
    n = len(time)
    waiting = npred.tolist()
    ready_at = [0.0] * n
    hint = [-1] * n
    core = [0] * n
    ready = [(0.0, i) for i in range(n) if waiting[i] == 0]
    heapq.heapify(ready)
    free_at = [0.0] * slots
    cores = [(0.0, s) for s in range(slots)]
    makespan = 0.0
    while ready:
        t, i = heapq.heappop(ready)
        s = hint[i]
        if s < 0 or free_at[s] > t:
            while True:
                f, s = heapq.heappop(cores)
                if f == free_at[s]:
                    break
        start = max(t, free_at[s])
        end = start + time[i]
        free_at[s] = end
        heapq.heappush(cores, (end, s))
        core[i] = s
        makespan = max(makespan, end)
        for c in succ[i]:
            if end > ready_at[c]:
                ready_at[c] = end
            if hint[c] < 0:
                hint[c] = s
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, (ready_at[c], c))
    return makespan, core


def _critical_path(time: list[float], succ: list[list[int]], npred: np.ndarray) -> float:
    waiting = npred.tolist()
    finish = [0.0] * len(time)
    start = [0.0] * len(time)
    stack = [i for i, w in enumerate(waiting) if w == 0]
    longest = 0.0
    while stack:
        i = stack.pop()
        finish[i] = start[i] + time[i]
        longest = max(longest, finish[i])
        for c in succ[i]:
            start[c] = max(start[c], finish[i])
            waiting[c] -= 1
            if waiting[c] == 0:
                stack.append(c)
    return longest


def _min_num_parts(g: Weighted, max_dop: int, deadline: float | None) -> tuple[np.ndarray, int]:
    apps, succ, npred = _app_graph(g)
    parts = np.zeros(g.n, dtype=np.int64)
    if len(apps) == 0:
        return parts, 1
    time = g.time[apps].astype(float).tolist()
    critical = _critical_path(time, succ, npred)
    target = critical if deadline is None else deadline
    if target < critical * (1 - 1e-9):
        raise GraphError.one(
            "partition",
            "deadline",
            f"{deadline:g} s is shorter than the graph's critical "
            f"path ({critical:g} s): no number of partitions can meet it",
        )
    lo, hi = 1, max(1, math.ceil(len(apps) / max_dop))
    best = _schedule(time, succ, npred, hi * max_dop)
    if best[0] > target * (1 + 1e-9):
        raise GraphError.one(
            "partition",
            "deadline",
            f"{target:g} s cannot be met with {max_dop} apps at a "
            f"time per partition (best found: {best[0]:g} s)",
        )
    best_p = hi
    while lo < hi:
        mid = (lo + hi) // 2
        makespan, core = _schedule(time, succ, npred, mid * max_dop)
        if makespan <= target * (1 + 1e-9):
            hi, best, best_p = mid, (makespan, core), mid
        else:
            lo = mid + 1
    used = sorted({c // max_dop for c in best[1]})
    renumber = {p: i for i, p in enumerate(used)}
    parts[apps] = [renumber[c // max_dop] for c in best[1]]
    _follow_producers(g, parts)
    return parts, len(used) if used else best_p


def partition(
    g: Weighted,
    algorithm: str = "metis",
    parts: int | None = None,
    *,
    seed: int = 0,
    imbalance: float = 0.05,
    max_dop: int = 8,
    deadline: float | None = None,
) -> Partitioning:
    """Partition ``g``; raise GraphError (naming the option) for impossible requests."""
    if algorithm not in ALGORITHMS:
        raise GraphError.one(
            "partition", "algorithm", f"unknown algorithm {algorithm!r} (choose from {', '.join(ALGORITHMS)})"
        )
    if algorithm == "none" or g.n == 0:
        result = np.zeros(g.n, dtype=np.int64)
        count = 1
    elif algorithm == "metis":
        if parts is None or parts < 1:
            raise GraphError.one("partition", "parts", "metis needs the number of partitions (--parts N)")
        count = parts
        if parts == 1 or g.n <= 1:
            result = np.zeros(g.n, dtype=np.int64)
        else:
            result = _metis(g, parts, seed, imbalance)
    else:
        if max_dop < 1:
            raise GraphError.one("partition", "max_dop", "must be at least 1")
        result, count = _min_num_parts(g, max_dop, deadline)
    return Partitioning(result, count, _loads(g, result, count), cut_volume(g, result), algorithm)
