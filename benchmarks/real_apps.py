"""dropflow on real apps, side by side with the plain-Python floor of each, measured in the same run.

Workloads (the same function ``inc(x) = x + 1`` everywhere, from ``benchmarks/realapps/funcs.py``):

- thread-chain N, thread-fan N: ``python`` apps between memory drops, on the default executor (threads, and
  inline for code measured trivially short); floor: ThreadPoolExecutor(2) with dependencies counted in
  done-callbacks.
- process-chain N, process-fan N: the same with ``"executor": "process"``; floor: ProcessPoolExecutor(2).
- shell-chain N: ``shell`` apps running ``true``, ordered by null drops; floor: ``subprocess.run("true",
  shell=True)`` one after another.
- numpy BYTES: a producer fills an array in shared memory in a worker process, a consumer takes its CRC-32;
  floor: the same with warm workers and ``multiprocessing.shared_memory``.

dropflow runs as users run it, ``dropflow run GRAPH --json`` in a fresh process; its time is the engine's
(deploy + run: building the graph, starting what it needs -- pools included -- and running), not the
interpreter's start or the JSON load. A floor's time runs from creating its pool to its last result. Every
repeat runs every workload on both, alternating which goes first; the medians and their ratio are printed
as JSON (and written to ``--output``).

    python benchmarks/real_apps.py                              # the issue's sizes, 3 repeats
    python benchmarks/real_apps.py --workloads thread-chain:10000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
FUNCS = os.path.join(HERE, "realapps")
DEFAULT = [
    "thread-chain:100000",
    "thread-fan:100000",
    "process-chain:1000",
    "process-chain:10000",
    "process-fan:10000",
    "shell-chain:5000",
    "numpy:67108864",
]


def graph(kind: str, n: int) -> dict[str, Any]:
    drops: list[dict[str, Any]] = []
    if kind == "numpy":
        drops = [
            {
                "id": "make",
                "kind": "python",
                "func": "funcs:fill",
                "kwargs": {"nbytes": n},
                "executor": "process",
                "outputs": {"out": "arr"},
            },
            {"id": "arr", "kind": "shm"},
            {
                "id": "check",
                "kind": "python",
                "func": "funcs:crc",
                "executor": "process",
                "inputs": {"arr": "arr"},
                "outputs": {"out": "crc"},
            },
            {"id": "crc", "kind": "memory", "persist": True},
        ]
    elif kind == "shell-chain":
        for i in range(n):
            app: dict[str, Any] = {
                "id": f"a{i}",
                "kind": "shell",
                "command": "true",
                "outputs": {"done": f"d{i}"},
            }
            if i:
                app["inputs"] = {"after": f"d{i - 1}"}
            drops += [app, {"id": f"d{i}", "kind": "null"}]
    else:
        executor = kind.split("-")[0]
        chain = kind.endswith("chain")
        drops.append({"id": "x", "kind": "memory", "data": 0, "codec": "json"})
        for i in range(n):
            source = (f"y{i - 1}" if i else "x") if chain else "x"
            drops += [
                {
                    "id": f"a{i}",
                    "kind": "python",
                    "func": "funcs:inc",
                    **({"executor": "process"} if executor == "process" else {}),
                    "inputs": {"x": source},
                    "outputs": {"out": f"y{i}"},
                },
                {"id": f"y{i}", "kind": "memory", "expire_after_use": True},
            ]
    return {"format": "dropflow/physical-graph", "version": 1, "name": f"{kind}-{n}", "drops": drops}


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": FUNCS + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run_dropflow(path: str, workspace: str) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "dropflow", "run", path, "--json", "--workspace", workspace],
        capture_output=True,
        text=True,
        env=env(),
        check=False,
    )
    result = json.loads(out.stdout)
    if result["state"] != "FINISHED":
        raise SystemExit(f"dropflow run {path}: {result['state']}: {result['failures'][:2]}")
    return float(result["deploy_seconds"] + result["run_seconds"])


def run_floor(kind: str, n: int) -> float:
    out = subprocess.run(
        [sys.executable, os.path.join(FUNCS, "floors.py"), kind, str(n)],
        capture_output=True,
        text=True,
        env=env(),
        check=True,
        cwd=FUNCS,
    )
    return float(json.loads(out.stdout)["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", nargs="+", default=DEFAULT, metavar="KIND:N")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output")
    args = ap.parse_args()
    work = [(w.split(":")[0], int(w.split(":")[1])) for w in args.workloads]
    times: dict[str, dict[str, list[float]]] = {w: {"dropflow": [], "floor": []} for w in args.workloads}
    with tempfile.TemporaryDirectory(prefix="dropflow-realapps-") as tmp:
        paths = {}
        for (kind, n), name in zip(work, args.workloads, strict=True):
            paths[name] = os.path.join(tmp, f"{kind}-{n}.json")
            with open(paths[name], "w") as f:
                json.dump(graph(kind, n), f)
        for r in range(args.repeats):
            for (kind, n), name in zip(work, args.workloads, strict=True):
                order = ["dropflow", "floor"] if r % 2 == 0 else ["floor", "dropflow"]
                for who in order:
                    t = (
                        run_dropflow(paths[name], os.path.join(tmp, "ws"))
                        if who == "dropflow"
                        else run_floor(kind, n)
                    )
                    times[name][who].append(t)
                    print(f"repeat {r + 1}: {name} {who}: {t:.3f} s", file=sys.stderr)
    rows = []
    for (kind, n), name in zip(work, args.workloads, strict=True):
        d, f = statistics.median(times[name]["dropflow"]), statistics.median(times[name]["floor"])
        apps = 2 if kind == "numpy" else n
        rows.append(
            {
                "workload": kind,
                "n": n,
                "apps": apps,
                "dropflow_s": round(d, 4),
                "floor_s": round(f, 4),
                "dropflow_us_per_app": round(1e6 * d / apps, 1),
                "floor_us_per_app": round(1e6 * f / apps, 1),
                "ratio": round(d / f, 2),
                "dropflow_runs": [round(t, 4) for t in times[name]["dropflow"]],
                "floor_runs": [round(t, 4) for t in times[name]["floor"]],
            }
        )
    result = {
        "benchmark": "real_apps",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_at_end": os.getloadavg(),
        "repeats": args.repeats,
        "rows": rows,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
