"""Each system's graph, made from the one workload description (:mod:`workloads`).

Pure functions from a :class:`~workloads.Dag` and an app kind (or the numpy workload's size) to a JSON-ready
document:

- :func:`dropflow_pg`: dropflow's native physical graph. A root data drop feeds the tasks with no
  dependency; task ``i`` is an app ``a<i>`` writing the data drop ``d<i>``; a task with several dependencies
  reads them through one list-valued port (a gather). ``noop``: ``noop`` apps between ``memory`` drops.
  ``py``: ``python`` apps calling ``tasks:inc`` (``tasks:total`` for a gather) on the default executor, the
  root a memory drop holding 0, the sinks kept (``persist``) so the run reports their values. ``proc``: the
  same with ``"executor": "process"``. ``shell``: ``shell`` apps running ``true`` between ``null`` drops.
- :func:`daliuge_pg`: the same graph in DALiuGE 6.6's physical graph format, links as ``inputs`` /
  ``outputs`` lists of oids on the apps, every drop placed on the one node manager. ``noop``:
  ``NullBarrierApp`` between ``InMemoryDROP``s; ``py``: ``daliuge_apps.PyTask``, a BarrierAppDROP calling
  ``tasks.inc`` / ``tasks.total`` on its inputs' pickled values (the sinks also write their value into a file
  the harness reads back); ``shell``: ``BashShellApp`` running ``true``.
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
from tasks import SHELL_COMMAND
from workloads import Dag, expected_sinks, make_dag, split, write_dag

__all__ = [
    "DLG_APP",
    "DLG_BASH",
    "DLG_MEMORY",
    "DLG_PY_TASK",
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
DLG_PY_TASK = f"{DLG_APPS_MODULE}.PyTask"
DLG_BASH = "dlg.apps.bash_shell_app.BashShellApp"


def _sources(deps: list[int], root: str) -> str | list[str]:
    """The input of a task: the root, its one dependency's drop, or a list of them (a gather)."""
    if not deps:
        return root
    return f"d{deps[0]}" if len(deps) == 1 else [f"d{j}" for j in deps]


def dropflow_pg(dag: Dag, kind: str = "noop") -> dict[str, Any]:
    """dropflow's physical graph of a DAG run with apps of ``kind``: ``noop``, ``py``, ``proc``, ``shell``."""
    sinks = set(dag.sinks())
    drops: list[dict[str, Any]] = []
    if kind == "noop":
        drops.append({"id": "root", "kind": "memory"})
        for i, deps in enumerate(dag.deps):
            src = _sources(deps, "root")
            drops.append({"id": f"a{i}", "kind": "noop", "inputs": {"in": src}, "outputs": {"out": f"d{i}"}})
            drops.append({"id": f"d{i}", "kind": "memory"})
    elif kind in ("py", "proc"):
        drops.append({"id": "root", "kind": "memory", "codec": "json", "data": 0})
        for i, deps in enumerate(dag.deps):
            src = _sources(deps, "root")
            app: dict[str, Any] = {"id": f"a{i}", "kind": "python"}
            if isinstance(src, list):
                app.update(func="tasks:total", inputs={"xs": src})
            else:
                app.update(func="tasks:inc", inputs={"x": src})
            if kind == "proc":
                app["executor"] = "process"
            app["outputs"] = {"out": f"d{i}"}
            data: dict[str, Any] = {"id": f"d{i}", "kind": "memory"}
            if i in sinks:  # the values the run must end with, reported by `dropflow run --json`
                data.update(codec="json", persist=True)
            drops += [app, data]
    elif kind == "shell":
        drops.append({"id": "root", "kind": "null"})
        for i, deps in enumerate(dag.deps):
            src = _sources(deps, "root")
            drops.append(
                {
                    "id": f"a{i}",
                    "kind": "shell",
                    "command": SHELL_COMMAND,
                    "inputs": {"after": src},
                    "outputs": {"done": f"d{i}"},
                }
            )
            drops.append({"id": f"d{i}", "kind": "null"})
    else:
        raise ValueError(f"no dropflow graph for app kind {kind!r}")
    return {**HEADER, "name": f"{kind}-{dag.shape}-{dag.n}", "drops": drops}


def daliuge_pg(
    dag: Dag, kind: str = "noop", results: str | None = None, node: str = "127.0.0.1"
) -> list[dict[str, Any]]:
    """DALiuGE's physical graph of a DAG run with apps of ``kind`` (``noop``, ``py``, ``shell``).

    ``py``: the sinks write their values into ``<results>/<oid>.txt``.
    """
    sinks = set(dag.sinks())
    pg: list[dict[str, Any]] = [
        {"oid": "root", "categoryType": "Data", "dropclass": DLG_MEMORY, "node": node}
    ]
    for i, deps in enumerate(dag.deps):
        app: dict[str, Any] = {"oid": f"a{i}", "categoryType": "Application", "node": node}
        if kind == "noop":
            app["dropclass"] = DLG_APP
        elif kind == "py":
            app.update(dropclass=DLG_PY_TASK, first=0 if deps else 1)
            if i in sinks:
                assert results is not None, "the py workloads need a directory for the sinks' values"
                app["result_path"] = os.path.join(results, f"a{i}.txt")
        elif kind == "shell":
            app.update(dropclass=DLG_BASH, command=SHELL_COMMAND)
        else:
            raise ValueError(f"no DALiuGE graph for app kind {kind!r}")
        app.update(inputs=[f"d{j}" for j in deps] if deps else ["root"], outputs=[f"d{i}"])
        pg.append(app)
        pg.append({"oid": f"d{i}", "categoryType": "Data", "dropclass": DLG_MEMORY, "node": node})
    return pg


def dropflow_numpy_pg(
    nbytes: int, kind: str = "shm", expected: int | None = None, executor: str | None = None
) -> dict[str, Any]:
    """Producer -> ``array`` (``shm``: filled in place; ``memory``: the returned array, npy) -> checksum.

    With ``expected``, the consumer fails unless the checksum matches (``payload:consume_checked``);
    ``executor="process"`` runs both apps in worker processes.
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
    where = {"executor": executor} if executor else {}
    consumer.update(where)
    return {
        **HEADER,
        "name": f"numpy-{kind}" + (f"-{executor}" if executor else ""),
        "drops": [
            {
                "id": "produce",
                "kind": "python",
                **producer,
                "kwargs": {"nbytes": nbytes},
                **where,
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

    ``peers=False`` leaves out DALiuGE's graph (sizes that only dropflow and the floors run). ``expected`` is
    the list of values the sinks must end with (``py`` and ``proc``), or the numpy checksum's size.
    """
    os.makedirs(directory, exist_ok=True)
    files: dict[str, Any] = {"workload": workload}
    kind, shape = split(workload)
    if kind == "numpy":
        executor = "process" if shape == "proc" else None
        for store in ("shm", "memory"):
            files[f"dropflow_{store}"] = os.path.join(directory, f"dropflow-{store}.json")
            _dump(dropflow_numpy_pg(n, store, executor=executor), files[f"dropflow_{store}"])
        from payload import expected  # numpy: only this branch needs it

        files["dropflow_checked"] = os.path.join(directory, "dropflow-checked.json")
        _dump(dropflow_numpy_pg(n, "shm", expected(n), executor), files["dropflow_checked"])
        files["daliuge"] = os.path.join(directory, "daliuge.json")
        files["daliuge_result"] = os.path.join(directory, "daliuge-result.txt")
        _dump(daliuge_numpy_pg(n, files["daliuge_result"]), files["daliuge"])
        files.update(tasks=2, drops=4, daliuge_drops=5)
        return files
    dag = make_dag(shape, n)
    files["dag"] = os.path.join(directory, "dag.json")
    write_dag(dag, files["dag"])
    files["dropflow"] = os.path.join(directory, "dropflow.json")
    _dump(dropflow_pg(dag, kind), files["dropflow"])
    sinks = dag.sinks()
    files["sinks"] = [f"d{i}" for i in sinks]
    files["expected"] = expected_sinks(dag) if kind in ("py", "proc") else None
    if peers and kind != "proc":  # DALiuGE runs its apps in the node manager's threads: no proc variant
        files["daliuge"] = os.path.join(directory, "daliuge.json")
        files["daliuge_results"] = os.path.join(directory, "daliuge-results")
        os.makedirs(files["daliuge_results"], exist_ok=True)
        _dump(daliuge_pg(dag, kind, files["daliuge_results"]), files["daliuge"])
    files.update(tasks=dag.tasks, drops=2 * dag.tasks + 1, daliuge_drops=2 * dag.tasks + 1, edges=dag.edges)
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload", help="a workload: KIND-SHAPE (py-chain, noop-fan, ...), numpy or numpy-proc")
    p.add_argument("n", type=int, help="the shape's N, or the numpy array's bytes")
    p.add_argument("directory")
    p.add_argument("--no-peers", action="store_true", help="dropflow's graph and the DAG only")
    args = p.parse_args(argv)
    print(json.dumps(write_workload(args.workload, args.n, args.directory, peers=not args.no_peers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
