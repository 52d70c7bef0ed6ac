"""Dask distributed, the way its users run a graph: a LocalCluster on this machine and a Client.

A DAG workload becomes one low-level task graph (``{key: (func, *args, *dependency keys)}``, what
``dask.delayed`` builds; the functions are :mod:`tasks`'s: ``inc`` / ``total_of`` for ``py``, ``run_true``
for ``shell``, ``noop``), submitted with ``Client.get(..., sync=False)`` (deploy: the graph reaches the
scheduler) and gathered (run). The numpy pipeline is ``client.submit(make_array)`` then
``client.submit(checksum, future)``. The LocalCluster has Dask's defaults for this machine (worker
processes, so every task runs in a worker process, no dashboard) on loopback; its start-up is reported apart
and is not part of the measured window. CPU seconds of the window are read with psutil from this process
(scheduler and client) and every worker process.

Usage: ``python dask_driver.py WORKLOAD (DAG.json | numpy:NBYTES)``; prints one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import psutil
from tasks import star_call
from workloads import Dag, read_dag, split

if TYPE_CHECKING:
    from distributed import Client


def tree_cpu() -> float:
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def task_graph(dag: Dag, kind: str = "noop") -> tuple[dict[str, tuple[Any, ...]], list[str]]:
    """The DAG as a Dask task graph (key ``t<i>`` -> ``(func, *args, *dependency keys)``) and the keys to
    gather.

    >>> from workloads import make_dag
    >>> dsk, sinks = task_graph(make_dag("fan", 2), "py")
    >>> dsk["t0"][1:], dsk["t2"][0].__name__, dsk["t2"][1:], sinks
    ((0,), 'total_of', ('t0', 't1'), ['t2'])
    """
    dsk: dict[str, tuple[Any, ...]] = {}
    for i, d in enumerate(dag.deps):
        func, consts = star_call(kind, d)
        dsk[f"t{i}"] = (func, *consts, *[f"t{j}" for j in d])
    return dsk, [f"t{i}" for i in dag.sinks()]


def run(client: Client, workload: str, arg: str) -> dict[str, Any]:
    kind, _shape = split(workload)
    if kind == "numpy":
        from payload import checksum, make_array  # numpy imported before the clock starts
    t0 = time.perf_counter()
    if kind == "numpy":
        nbytes = int(arg.split(":", 1)[1])
        t1 = time.perf_counter()
        made = client.submit(make_array, nbytes, pure=False)
        crc = client.submit(checksum, made, pure=False)
        t2 = time.perf_counter()
        value = crc.result()
        t3 = time.perf_counter()
        return {"load_s": t1 - t0, "deploy_s": t2 - t1, "run_s": t3 - t2, "tasks": 2, "checksum": value}
    dsk, sinks = task_graph(read_dag(arg), kind)
    t1 = time.perf_counter()
    futures = client.get(dsk, sinks, sync=False)
    t2 = time.perf_counter()
    results = client.gather(futures)
    t3 = time.perf_counter()
    return {
        "load_s": t1 - t0,
        "deploy_s": t2 - t1,
        "run_s": t3 - t2,
        "tasks": len(dsk),
        "sinks": list(results),
    }


def main(argv: list[str]) -> int:
    from distributed import Client, LocalCluster

    workload, arg = argv
    t0 = time.perf_counter()
    with LocalCluster(host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
        info = client.scheduler_info()
        startup = time.perf_counter() - t0
        cpu0 = tree_cpu()
        out = run(client, workload, arg)
        out["cpu_window_s"] = tree_cpu() - cpu0
        out["startup_s"] = startup
        out["workers"] = len(info["workers"])
        out["threads"] = sum(w["nthreads"] for w in info["workers"].values())
    out["pid"] = os.getpid()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
