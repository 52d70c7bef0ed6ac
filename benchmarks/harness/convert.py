"""Each system's graph, made from the one workload description (:mod:`workloads`).

Pure functions from a :class:`~workloads.Dag` (or the numpy workload's size) to a JSON-ready document:

- :func:`dropflow_pg`: dropflow's native physical graph. A root memory drop feeds the tasks with no
  dependency; task ``i`` is a ``noop`` app ``a<i>`` writing the memory drop ``d<i>``; a task with several
  dependencies reads them through one list-valued port (a gather).
- :func:`daliuge_pg`: the same graph in DALiuGE 6.6's physical graph format: ``InMemoryDROP`` data drops,
  ``NullBarrierApp`` apps, links as ``inputs`` / ``outputs`` lists of oids on the apps, every drop placed on
  the one node manager.
- :func:`dropflow_numpy_pg` / :func:`daliuge_numpy_pg`: producer -> array -> consumer -> checksum.

Standard library only (the numpy workload's checked variant computes its checksum with :mod:`payload`).
:func:`main` writes a workload's files for every system, so that the harness process
(whose peak RSS is inherited by the processes it starts) never holds a large graph.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workloads import Dag, make_dag, write_dag

__all__ = [
    "DLG_APP",
    "DLG_MEMORY",
    "daliuge_numpy_pg",
    "daliuge_pg",
    "dropflow_numpy_pg",
    "dropflow_pg",
    "write_workload",
]

HEADER = {"format": "dropflow/physical-graph", "version": 1}
DLG_MEMORY = "dlg.data.drops.memory.InMemoryDROP"
DLG_APP = "dlg.apps.simple.NullBarrierApp"
DLG_APPS_MODULE = "daliuge_apps"  # benchmarks/harness/drivers/daliuge_apps.py, on the node manager's path


def dropflow_pg(dag: Dag) -> dict[str, Any]:
    drops: list[dict[str, Any]] = [{"id": "root", "kind": "memory"}]
    for i, deps in enumerate(dag.deps):
        if not deps:
            src: str | list[str] = "root"
        elif len(deps) == 1:
            src = f"d{deps[0]}"
        else:
            src = [f"d{j}" for j in deps]
        drops.append({"id": f"a{i}", "kind": "noop", "inputs": {"in": src}, "outputs": {"out": f"d{i}"}})
        drops.append({"id": f"d{i}", "kind": "memory"})
    return {**HEADER, "name": f"{dag.shape}-{dag.n}", "drops": drops}


def daliuge_pg(dag: Dag, node: str = "127.0.0.1") -> list[dict[str, Any]]:
    pg: list[dict[str, Any]] = [
        {"oid": "root", "categoryType": "Data", "dropclass": DLG_MEMORY, "node": node}
    ]
    for i, deps in enumerate(dag.deps):
        pg.append(
            {
                "oid": f"a{i}",
                "categoryType": "Application",
                "dropclass": DLG_APP,
                "node": node,
                "inputs": [f"d{j}" for j in deps] if deps else ["root"],
                "outputs": [f"d{i}"],
            }
        )
        pg.append({"oid": f"d{i}", "categoryType": "Data", "dropclass": DLG_MEMORY, "node": node})
    return pg


def dropflow_numpy_pg(nbytes: int, kind: str = "shm", expected: int | None = None) -> dict[str, Any]:
    """Producer -> ``array`` (``shm``: filled in place; ``memory``: the returned array, npy) -> checksum.

    With ``expected``, the consumer fails unless the checksum matches (``payload:consume_checked``).
    """
    if kind == "shm":
        producer = {"func": "payload:produce"}
        array: dict[str, Any] = {"id": "array", "kind": "shm"}
    elif kind == "memory":
        producer = {"func": "payload:produce_value"}
        array = {"id": "array", "kind": "memory", "codec": "npy"}
    else:
        raise ValueError(f"numpy pipeline through {kind!r} drops is not defined")
    consumer: dict[str, Any] = {"id": "consume", "kind": "python", "func": "payload:consume"}
    if expected is not None:
        consumer.update(func="payload:consume_checked", kwargs={"expected": expected})
    consumer.update(inputs={"a": "array"}, outputs={"crc": "crc"})
    return {
        **HEADER,
        "name": f"numpy-{kind}",
        "drops": [
            {
                "id": "produce",
                "kind": "python",
                **producer,
                "kwargs": {"nbytes": nbytes},
                "outputs": {"out": "array"},
            },
            array,
            consumer,
            {"id": "crc", "kind": "memory", "codec": "json", "persist": True},
        ],
    }


def daliuge_numpy_pg(nbytes: int, result_path: str, node: str = "127.0.0.1") -> list[dict[str, Any]]:
    """start -> Producer -> array (InMemoryDROP) -> Consumer, which writes the checksum to ``result_path``."""
    return [
        {"oid": "start", "categoryType": "Data", "dropclass": DLG_MEMORY, "node": node},
        {
            "oid": "produce",
            "categoryType": "Application",
            "dropclass": f"{DLG_APPS_MODULE}.Producer",
            "node": node,
            "nbytes": nbytes,
            "inputs": ["start"],
            "outputs": ["array"],
        },
        {"oid": "array", "categoryType": "Data", "dropclass": DLG_MEMORY, "node": node},
        {
            "oid": "consume",
            "categoryType": "Application",
            "dropclass": f"{DLG_APPS_MODULE}.Consumer",
            "node": node,
            "result_path": result_path,
            "inputs": ["array"],
            "outputs": ["done"],
        },
        {"oid": "done", "categoryType": "Data", "dropclass": DLG_MEMORY, "node": node},
    ]


def _dump(doc: Any, path: str) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))


def write_workload(workload: str, n: int, directory: str, peers: bool = True) -> dict[str, Any]:
    """Write every system's graph of one workload into ``directory``; return their paths and sizes.

    ``peers=False`` leaves out DALiuGE's graph (sizes that only dropflow and the floors run).
    """
    os.makedirs(directory, exist_ok=True)
    files: dict[str, Any] = {}
    if workload == "numpy":
        for kind in ("shm", "memory"):
            files[f"dropflow_{kind}"] = os.path.join(directory, f"dropflow-{kind}.json")
            _dump(dropflow_numpy_pg(n, kind), files[f"dropflow_{kind}"])
        from payload import expected  # numpy: only this branch needs it

        files["dropflow_checked"] = os.path.join(directory, "dropflow-checked.json")
        _dump(dropflow_numpy_pg(n, "shm", expected(n)), files["dropflow_checked"])
        files["daliuge"] = os.path.join(directory, "daliuge.json")
        files["daliuge_result"] = os.path.join(directory, "daliuge-result.txt")
        _dump(daliuge_numpy_pg(n, files["daliuge_result"]), files["daliuge"])
        files.update(tasks=2, drops=4, daliuge_drops=5)
        return files
    dag = make_dag(workload, n)
    files["dag"] = os.path.join(directory, "dag.json")
    write_dag(dag, files["dag"])
    files["dropflow"] = os.path.join(directory, "dropflow.json")
    _dump(dropflow_pg(dag), files["dropflow"])
    if peers:
        files["daliuge"] = os.path.join(directory, "daliuge.json")
        _dump(daliuge_pg(dag), files["daliuge"])
    files.update(tasks=dag.tasks, drops=2 * dag.tasks + 1, daliuge_drops=2 * dag.tasks + 1, edges=dag.edges)
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload", help="a no-op shape (chain, fan, scatter2) or numpy")
    p.add_argument("n", type=int, help="the shape's N, or the numpy array's bytes")
    p.add_argument("directory")
    p.add_argument("--no-peers", action="store_true", help="dropflow's graph and the DAG only")
    args = p.parse_args(argv)
    print(json.dumps(write_workload(args.workload, args.n, args.directory, peers=not args.no_peers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
