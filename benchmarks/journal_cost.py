"""What the session journal costs on the real-app benchmarks: ``dropflow run`` with and without it.

The workloads and the measured time are those of ``benchmarks/real_apps.py`` (the engine's deploy + run, in
a fresh ``dropflow run --json`` per measure); the only difference between the two columns is
``--no-journal``. Every repeat runs both, alternating which goes first; medians and their ratio are printed
as JSON (and written to ``--output``), with the CPU seconds of each whole process beside them (steadier than
wall time on a shared machine). The issue's budget: the journal moves these by at most 10%.

    python benchmarks/journal_cost.py                                # real_apps' sizes, 3 repeats
    python benchmarks/journal_cost.py --workloads thread-chain:100000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from real_apps import DEFAULT, env, graph  # noqa: E402


def run(path: str, workspace: str, journal: bool) -> tuple[float, float]:
    """(engine seconds as real_apps measures them, CPU seconds of the whole process)."""
    cmd = [sys.executable, "-m", "dropflow", "run", path, "--json", "--workspace", workspace]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        cmd + ([] if journal else ["--no-journal"]), capture_output=True, text=True, env=env()
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.stdout)
    if result["state"] != "FINISHED":
        raise SystemExit(f"dropflow run {path}: {result['state']}: {result['failures'][:2]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(result["deploy_seconds"] + result["run_seconds"]), cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", nargs="+", default=DEFAULT, metavar="KIND:N")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dropflow-journal-") as tmp:
        for name in args.workloads:
            kind, n = name.split(":")[0], int(name.split(":")[1])
            path = os.path.join(tmp, f"{kind}-{n}.json")
            with open(path, "w") as f:
                json.dump(graph(kind, n), f)
            times: dict[str, list[float]] = {"journal": [], "none": []}
            cpus: dict[str, list[float]] = {"journal": [], "none": []}
            for r in range(args.repeats):
                for who in ["journal", "none"] if r % 2 == 0 else ["none", "journal"]:
                    t, cpu = run(path, os.path.join(tmp, "ws"), who == "journal")
                    times[who].append(t)
                    cpus[who].append(cpu)
                    print(f"repeat {r + 1}: {name} {who}: {t:.3f} s, cpu {cpu:.3f} s", file=sys.stderr)
            j, none = statistics.median(times["journal"]), statistics.median(times["none"])
            cj, cnone = statistics.median(cpus["journal"]), statistics.median(cpus["none"])
            rows.append(
                {
                    "workload": name,
                    "journal_s": round(j, 4),
                    "no_journal_s": round(none, 4),
                    "ratio": round(j / none, 3),
                    "journal_cpu_s": round(cj, 4),
                    "no_journal_cpu_s": round(cnone, 4),
                    "cpu_ratio": round(cj / cnone, 3),
                    "journal_runs": [round(t, 4) for t in times["journal"]],
                    "no_journal_runs": [round(t, 4) for t in times["none"]],
                }
            )
    result = {
        "benchmark": "journal_cost",
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
