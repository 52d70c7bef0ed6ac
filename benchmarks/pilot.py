"""20 small graphs on Slurm: one pilot job that takes them all, against 20 separate jobs.

Each graph is tiny (a Python app and a shell app): what is measured is what a job costs around it -- queue
wait, daemons starting, the graph submitted, teardown. The pilot's time runs from ``dropflow slurm pilot
--up`` to the last graph's end (its own start-up included); the separate jobs' from the first ``dropflow
slurm submit --wait`` to the last one's end. Printed as JSON (and written to ``--output``).

    python benchmarks/pilot.py --nodes 2 --graphs 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

CLI = [sys.executable, "-m", "dropflow"]


def graph(i: int) -> dict[str, object]:
    return {
        "format": "dropflow/physical-graph",
        "version": 1,
        "name": f"small{i}",
        "drops": [
            {"id": "x", "kind": "memory", "data": i, "codec": "json"},
            {
                "id": "dump",
                "kind": "python",
                "func": "json:dumps",
                "inputs": {"obj": "x"},
                "outputs": {"out": "y"},
            },
            {"id": "y", "kind": "memory", "codec": "json", "persist": True},
            {"id": "echo", "kind": "shell", "command": f"echo {i} > {{out}}", "outputs": {"out": "f"}},
            {"id": "f", "kind": "file"},
        ],
    }


def run(*args: str) -> str:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"dropflow {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--graphs", type=int, default=20)
    ap.add_argument("--output")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dropflow-pilot-") as tmp:
        paths = []
        for i in range(args.graphs):
            paths.append(os.path.join(tmp, f"g{i}.json"))
            with open(paths[-1], "w") as f:
                json.dump(graph(i), f)
        results = os.path.join(tmp, "results")
        t0 = time.perf_counter()
        job = run("slurm", "pilot", "--nodes", str(args.nodes), "--time", "30", "--results", results, "--up")
        job_id = job.strip()
        up = time.perf_counter() - t0
        each = []
        try:
            for path in paths:
                t = time.perf_counter()
                run(
                    "submit",
                    path,
                    "--to",
                    f"slurm:{job_id}",
                    "--results",
                    results,
                    "--wait",
                    "--progress",
                    "never",
                )
                each.append(time.perf_counter() - t)
        finally:
            run("slurm", "stop", job_id, "--results", results, "--wait")
        pilot = up + sum(each)
        t0 = time.perf_counter()
        jobs = []
        for path in paths:
            t = time.perf_counter()
            run("slurm", "submit", path, "--nodes", str(args.nodes), "--results", results, "--wait")
            jobs.append(time.perf_counter() - t)
        separate = time.perf_counter() - t0
    result = {
        "benchmark": "pilot",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_at_end": os.getloadavg(),
        "nodes": args.nodes,
        "graphs": args.graphs,
        "pilot_seconds": round(pilot, 2),
        "pilot_startup_seconds": round(up, 2),
        "pilot_per_graph_seconds": [round(t, 3) for t in each],
        "separate_jobs_seconds": round(separate, 2),
        "separate_per_job_seconds": [round(t, 2) for t in jobs],
        "speedup": round(separate / pilot, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
