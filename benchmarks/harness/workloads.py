"""The workloads every system runs, as one system-neutral description.

A workload is an *app kind* run on a *shape*, named ``KIND-SHAPE`` (``py-chain``), or one of the two numpy
pipelines. The shape is a DAG of *tasks* in topological order: task ``i`` depends on the tasks listed in
``deps[i]``, all of which have smaller ids. Every system turns the same DAG into its own form -- dropflow and
DALiuGE put a memory (or, for shell apps, null) data drop after each task and one root data drop before the
tasks with no dependencies; Dask, Ray and Parsl make one task per entry; the floors call one function per
entry -- so the dependency shape is the same everywhere. ``N`` is the size parameter of a shape:

- ``chain``:    t0 -> t1 -> ... -> t(N-1)                                 N tasks
- ``fan``:      N independent tasks, then one gather of all N              N + 1 tasks
- ``scatter2``: a scatter into k = round(sqrt(N)) groups, each scattering into N // k leaves, gathered per
                group, then one final gather                              about N + 2 sqrt(N) + 2 tasks

The app kinds (:data:`KINDS`), the real work first:

- ``py``:    a Python function per task (``tasks.inc``: ``x + 1`` on the value of its dependency, 0 for the
             first; a gather sums its inputs), values passed from task to task; each system's usual way of
             running Python functions (dropflow: ``python`` apps on the default executor).
- ``proc``:  the same functions in worker processes (dropflow: ``"executor": "process"``).
- ``shell``: the command ``true`` through ``/bin/sh -c`` per task, ordered by the dependencies.
- ``noop``:  nothing: what the engine's own bookkeeping costs per task (dropflow's ``noop`` apps, which the
             core settles without running anything). A floor under the engine, not a workload of a user.

The numpy pipelines (N is the array's bytes): a producer makes a ``uint64`` array, a consumer takes its
CRC-32; ``numpy`` in the engine's process (threads), ``numpy-proc`` across worker processes.

This module uses the standard library only: the drivers that run inside the peers' virtualenvs import it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "KINDS",
    "NOOP_SHAPES",
    "NUMPY_BYTES",
    "NUMPY_WORKLOADS",
    "WORKLOADS",
    "Dag",
    "describe",
    "expected_sinks",
    "is_real",
    "make_dag",
    "read_dag",
    "split",
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


SHAPES: dict[str, Callable[[int], list[list[int]]]] = {
    "chain": chain,
    "fan": fan,
    "scatter2": scatter2,
}
#: kept for the drivers written before app kinds: the shapes are the same for every kind
NOOP_SHAPES = SHAPES

#: app kind -> what a task does (the report's words)
KINDS: dict[str, str] = {
    "py": "a Python function per task (inc: x + 1), values passed",
    "proc": "the same Python functions in worker processes",
    "shell": "the shell command `true` per task",
    "noop": "no-op tasks: the engine's bookkeeping floor, no work",
}
NUMPY_WORKLOADS: dict[str, str] = {
    "numpy": "numpy pipeline, producer -> consumer in the engine's process",
    "numpy-proc": "numpy pipeline, producer -> consumer in worker processes",
}
#: every workload, in the order of the report: the real work first, the no-op floor last
WORKLOADS: list[str] = [
    *(f"{k}-{s}" for k in ("py", "proc", "shell") for s in ("chain", "fan", "scatter2")),
    *NUMPY_WORKLOADS,
    *(f"noop-{s}" for s in SHAPES),
]


def split(workload: str) -> tuple[str, str]:
    """``(kind, shape)`` of a workload; the numpy pipelines are ``("numpy", "numpy")``, ``("numpy", "proc")``.

    >>> split("py-chain"), split("numpy"), split("numpy-proc")
    (('py', 'chain'), ('numpy', 'numpy'), ('numpy', 'proc'))
    """
    if workload in NUMPY_WORKLOADS:
        return "numpy", workload.removeprefix("numpy-") if "-" in workload else "numpy"
    kind, _, shape = workload.partition("-")
    if kind not in KINDS or shape not in SHAPES:
        raise ValueError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    return kind, shape


def is_real(workload: str) -> bool:
    """Whether a workload does real work (everything but the no-op graphs)."""
    return split(workload)[0] != "noop"


def describe(workload: str) -> str:
    if workload in NUMPY_WORKLOADS:
        return NUMPY_WORKLOADS[workload]
    kind, shape = split(workload)
    return f"{shape} of {KINDS[kind]}"


def make_dag(shape: str, n: int) -> Dag:
    """The DAG of a shape (``chain``) or of a workload on it (``py-chain``)."""
    if shape not in SHAPES:
        shape = split(shape)[1]
    if n < 1:
        raise ValueError(f"N must be at least 1, not {n}")
    return Dag(shape, n, SHAPES[shape](n))


def expected_sinks(dag: Dag) -> list[int]:
    """The values the ``py`` and ``proc`` workloads must end with, one per sink, computed by a plain loop.

    A task with no dependency is ``inc(0)``, with one ``inc`` of it, with several their sum.

    >>> expected_sinks(make_dag("chain", 5)), expected_sinks(make_dag("fan", 4))
    ([5], [4])
    >>> expected_sinks(make_dag("scatter2", 4))  # 1 -> 2, 2 -> 3, 3 + 3 per group, 6 + 6
    [12]
    """
    values = [0] * len(dag.deps)
    for i, d in enumerate(dag.deps):
        values[i] = values[d[0]] + 1 if len(d) == 1 else (sum(values[j] for j in d) if d else 1)
    return [values[i] for i in dag.sinks()]


def write_dag(dag: Dag, path: str) -> None:
    """The DAG as JSON, the input of the Dask driver and the floors."""
    with open(path, "w") as f:
        json.dump({"shape": dag.shape, "n": dag.n, "deps": dag.deps}, f, separators=(",", ":"))


def read_dag(path: str) -> Dag:
    with open(path) as f:
        doc = json.load(f)
    return Dag(doc["shape"], doc["n"], doc["deps"])
