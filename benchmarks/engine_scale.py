"""How the embedded engine scales: `dropflow run` on chains and fan-out/fan-in graphs of no-op apps.

For each shape and size, a graph is generated to a file by a separate process (Linux's peak-RSS counter is
inherited across fork and exec, so the measuring parent must stay small) and run by the real command,
``python -m dropflow.cli run GRAPH --json``, in a fresh process. The command reports its load, deploy and
run times; this script adds the wall time of the whole command (interpreter start included) and the
command's peak RSS, read from ``wait4``. RSS per drop is (peak RSS - peak RSS of the same command running an
empty graph) / drops. Everything is printed as JSON (and written to ``--output`` if given).

    python benchmarks/engine_scale.py                 # 10k, 100k, 1M drops, chain and fan
    python benchmarks/engine_scale.py --sizes 10000   # a quick look
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
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate


def _run(argv: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in bytes, and stdout of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = b"", b""
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return wall, usage.ru_maxrss * 1024, out.decode()


def baseline_rss(workdir: str) -> int:
    """Peak RSS of the same command running an empty graph: everything but the drops."""
    path = os.path.join(workdir, "empty.json")
    with open(path, "w") as f:
        f.write('{"format": "dropflow/physical-graph", "version": 1, "drops": []}')
    _, rss, _ = _run(
        [
            sys.executable,
            "-m",
            "dropflow",
            "run",
            path,
            "--json",
            "--progress",
            "never",
            "--workspace",
            os.path.join(workdir, "ws"),
        ]
    )
    return rss


def measure(shape: str, size: int, workdir: str, baseline: int) -> dict[str, Any]:
    path = os.path.join(workdir, f"{shape}-{size}.json")
    subprocess.run([sys.executable, generate.__file__, shape, str(size), "-o", path], check=True)
    wall, rss, out = _run(
        [
            sys.executable,
            "-m",
            "dropflow.cli",
            "run",
            path,
            "--json",
            "--progress",
            "never",
            "--workspace",
            os.path.join(workdir, "ws"),
        ]
    )
    os.unlink(path)
    summary = json.loads(out)
    drops = summary["drops"]
    engine = summary["load_seconds"] + summary["deploy_seconds"] + summary["run_seconds"]
    return {
        "shape": shape,
        "drops": drops,
        "state": summary["state"],
        "load_s": round(summary["load_seconds"], 3),
        "deploy_s": round(summary["deploy_seconds"], 3),
        "run_s": round(summary["run_seconds"], 3),
        "engine_s": round(engine, 3),
        "command_wall_s": round(wall, 3),
        "drops_per_s_engine": round(drops / engine),
        "drops_per_s_command": round(drops / wall),
        "us_per_drop": round(engine / drops * 1e6, 2),
        "peak_rss_mb": round(rss / 2**20, 1),
        "rss_bytes_per_drop": round((rss - baseline) / drops),
    }


def _median_row(cell: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median engine time, plus the spread of engine times over all runs."""
    ordered = sorted(cell, key=lambda r: r["engine_s"])
    row = dict(ordered[len(ordered) // 2])
    row["runs"] = len(cell)
    row["engine_s_min_max"] = [ordered[0]["engine_s"], ordered[-1]["engine_s"]]
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--shapes", nargs="+", default=["chain", "fan"], choices=sorted(generate.SHAPES))
    p.add_argument("--repeat", type=int, default=3, help="runs per cell; medians are reported (default 3)")
    p.add_argument("--output", help="also write the JSON here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dropflow-bench-") as workdir:
        baseline = baseline_rss(workdir)
        # Cells are run round-robin, so a slow spell of a shared machine hits every cell, not one.
        runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for _ in range(args.repeat):
            for shape in args.shapes:
                for size in args.sizes:
                    runs.setdefault((shape, size), []).append(measure(shape, size, workdir, baseline))
        rows = [_median_row(cell) for cell in runs.values()]
    result: dict[str, Any] = {
        "benchmark": "engine_scale",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "baseline_rss_mb": round(baseline / 2**20, 1),
        "rows": rows,
    }
    for shape in args.shapes:
        mine = [r for r in rows if r["shape"] == shape]
        if len(mine) > 1:
            small, large = min(mine, key=lambda r: r["drops"]), max(mine, key=lambda r: r["drops"])
            result.setdefault("scaling", {})[shape] = round(large["us_per_drop"] / small["us_per_drop"], 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
