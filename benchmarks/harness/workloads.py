"""The workloads every system runs, as one system-neutral description.

A no-op workload is a DAG of *tasks* in topological order: task ``i`` depends on the tasks listed in
``deps[i]``, all of which have smaller ids. Every system turns the same DAG into its own form -- dropflow and
DALiuGE put a memory data drop after each task (and one root data drop before the tasks with no
dependencies), Dask makes one task per entry, the floors call one function per entry -- so the dependency
shape is the same everywhere. ``N`` is the size parameter of a shape, documented per shape:

- ``chain``:    t0 -> t1 -> ... -> t(N-1)                                 N tasks
- ``fan``:      N independent tasks, then one gather of all N              N + 1 tasks
- ``scatter2``: a scatter into k = round(sqrt(N)) groups, each scattering into N // k leaves, gathered per
                group, then one final gather                              about N + 2 sqrt(N) + 2 tasks

The numpy workload is separate (:data:`NUMPY_BYTES`): one producer makes an array, one consumer checksums it.

This module uses the standard library only: the drivers that run inside the peers' virtualenvs import it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "NOOP_SHAPES",
    "NUMPY_BYTES",
    "Dag",
    "make_dag",
    "read_dag",
    "write_dag",
]

#: Size of the array of the numpy pipeline (256 MiB).
NUMPY_BYTES = 256 * 2**20


@dataclass(frozen=True, slots=True)
class Dag:
    """A workload's dependency shape: ``deps[i]`` are the tasks that task ``i`` waits for."""

    shape: str
    n: int
    deps: list[list[int]]

    @property
    def tasks(self) -> int:
        return len(self.deps)

    @property
    def edges(self) -> int:
        return sum(len(d) for d in self.deps)

    def sinks(self) -> list[int]:
        """Tasks no other task depends on (whose completion ends the workload)."""
        used = bytearray(len(self.deps))
        for d in self.deps:
            for j in d:
                used[j] = 1
        return [i for i, u in enumerate(used) if not u]


def chain(n: int) -> list[list[int]]:
    """
    >>> chain(3)
    [[], [0], [1]]
    """
    return [[]] + [[i - 1] for i in range(1, n)]


def fan(n: int) -> list[list[int]]:
    """
    >>> fan(3)
    [[], [], [], [0, 1, 2]]
    """
    return [[] for _ in range(n)] + [list(range(n))]


def scatter2(n: int) -> list[list[int]]:
    """Scatter into k groups of n // k leaves, gather each group, gather the groups.

    >>> scatter2(4)  # 0 scatters to 1, 2; 1 -> 3, 4 and 2 -> 5, 6; 7, 8 gather the groups; 9 gathers all
    [[], [0], [0], [1], [1], [2], [2], [3, 4], [5, 6], [7, 8]]
    """
    k = max(1, round(math.sqrt(n)))
    per = max(1, n // k)
    deps: list[list[int]] = [[]]
    mids = [len(deps) + i for i in range(k)]
    deps += [[0] for _ in mids]
    groups: list[list[int]] = []
    for m in mids:
        first = len(deps)
        deps += [[m] for _ in range(per)]
        groups.append(list(range(first, len(deps))))
    gathers = [len(deps) + i for i in range(k)]
    deps += groups
    deps.append(gathers)
    return deps


NOOP_SHAPES: dict[str, Callable[[int], list[list[int]]]] = {
    "chain": chain,
    "fan": fan,
    "scatter2": scatter2,
}


def make_dag(shape: str, n: int) -> Dag:
    if shape not in NOOP_SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(NOOP_SHAPES)}")
    if n < 1:
        raise ValueError(f"N must be at least 1, not {n}")
    return Dag(shape, n, NOOP_SHAPES[shape](n))


def write_dag(dag: Dag, path: str) -> None:
    """The DAG as JSON, the input of the Dask driver and the floors."""
    with open(path, "w") as f:
        json.dump({"shape": dag.shape, "n": dag.n, "deps": dag.deps}, f, separators=(",", ":"))


def read_dag(path: str) -> Dag:
    with open(path) as f:
        doc = json.load(f)
    return Dag(doc["shape"], doc["n"], doc["deps"])
