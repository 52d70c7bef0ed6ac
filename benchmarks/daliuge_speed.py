"""DALiuGE inputs at native speed (issue 12, items 4 and 5): each figure beside its native-format floor.

- ``run``: ``dropflow run --json`` of a 1M-drop graph of no-op apps (a chain of 500,000 apps, 2 drops each,
  plus the root) in DALiuGE 6.6's physical-graph format (``NullBarrierApp`` between ``InMemoryDROP``s, as
  ``harness/convert.py`` writes it for DALiuGE itself) against the same graph in dropflow's format.
  Reported: drops/s over the command's own load + deploy + run times, and over its wall time; peak RSS
  per drop, over the peak RSS of the same command running an empty graph.
- ``translate``: ``dropflow translate --algorithm metis --parts 64`` of the EAGLE scatter of 10^6 copies
  (``harness/eagle_graphs.py``: ``make -> array -> Scatter{part -> work -> done}``, 3,000,003 drops)
  against the same graph in dropflow's native logical format. Reported: the command's wall time and peak
  RSS (total and per drop) and anything METIS printed (stdout, and stderr beyond the one summary line).

Every command runs in a fresh process, generated graphs are written by another process (Linux's peak-RSS
counter carries over fork and exec, so this one stays small), the two formats are interleaved, and the row
kept is the median of ``--repeat`` runs, with the 1-minute load average read before each run (the machine
may be shared: the figures are wall-clock times). Prints one JSON object; ``--output`` also writes it.

    python benchmarks/daliuge_speed.py                      # both, median of 3
    python benchmarks/daliuge_speed.py --only run --tasks 50000
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

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(HERE, "harness")
PARTS = 64


def _run_rss(argv: list[str]) -> tuple[float, int, str, str]:
    """Wall seconds, peak RSS in bytes (the child's own, from ``wait4``), stdout, stderr; raise on failure."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        proc = subprocess.Popen(argv, stdout=out_f, stderr=err_f)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read().decode(), err_f.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_maxrss * 1024, out, err


def _load() -> float:
    return round(os.getloadavg()[0], 2)


# -- graph files, written in a child process ------------------------------------------------------------


def _make(what: str, size: int, path: str) -> None:
    """Write one graph file (runs in a child: ``--make``)."""
    sys.path.insert(0, HARNESS)
    if what in ("dlg-pg", "native-pg"):
        import convert
        import workloads

        dag = workloads.make_dag("chain", size)
        doc: Any = convert.daliuge_pg(dag, "noop") if what == "dlg-pg" else convert.dropflow_pg(dag, "noop")
    elif what == "eagle":
        import eagle_graphs

        doc = eagle_graphs.scatter_graph(size)
    elif what == "native-lg":
        doc = _native_scatter(size)
    else:
        raise ValueError(what)
    with open(path, "w") as f:
        json.dump(doc, f)


def _native_scatter(copies: int) -> dict[str, Any]:
    """The EAGLE scatter graph in dropflow's logical format: the same drops, edges, weights and volumes."""
    nodes = [
        {"id": "make", "app": "noop", "outputs": ["o"], "time": 1},
        {"id": "array", "data": "memory", "volume": 5},
        {"id": "split", "app": "noop", "inputs": ["i"], "outputs": ["o"], "time": 1},
        {"id": "s", "construct": "scatter", "copies": copies},
        {"id": "part", "data": "memory", "parent": "s", "volume": 1},
        {"id": "work", "app": "noop", "parent": "s", "inputs": ["i"], "outputs": ["o"], "time": 2},
        {"id": "done", "data": "memory", "parent": "s", "volume": 1},
    ]
    links = [
        {"from": "make", "from_port": "o", "to": "array"},
        {"from": "array", "to": "split", "to_port": "i"},
        {"from": "split", "from_port": "o", "to": "part"},
        {"from": "part", "to": "work", "to_port": "i"},
        {"from": "work", "from_port": "o", "to": "done"},
    ]
    return {"format": "dropflow/logical-graph", "version": 1, "nodes": nodes, "links": links}


def _write(what: str, size: int, path: str) -> None:
    subprocess.run([sys.executable, __file__, "--make", what, str(size), path], check=True)


# -- dropflow run -----------------------------------------------------------------------------------------


def _dropflow_run(path: str, workdir: str) -> tuple[float, int, dict[str, Any]]:
    argv = [sys.executable, "-m", "dropflow", "run", path, "--json", "--progress", "never", "--no-journal"]
    wall, rss, out, _ = _run_rss([*argv, "--workspace", os.path.join(workdir, "ws")])
    return wall, rss, json.loads(out)


def _run_row(fmt: str, path: str, workdir: str, baseline: int) -> dict[str, Any]:
    load = _load()
    wall, rss, s = _dropflow_run(path, workdir)
    drops = s["drops"]
    engine = s["load_seconds"] + s["deploy_seconds"] + s["run_seconds"]
    return {
        "format": fmt,
        "drops": drops,
        "state": s["state"],
        "load_s": round(s["load_seconds"], 3),
        "deploy_s": round(s["deploy_seconds"], 3),
        "run_s": round(s["run_seconds"], 3),
        "engine_s": round(engine, 3),
        "command_wall_s": round(wall, 3),
        "drops_per_s_engine": round(drops / engine),
        "drops_per_s_command": round(drops / wall),
        "peak_rss_mb": round(rss / 2**20, 1),
        "rss_bytes_per_drop": round((rss - baseline) / drops),
        "load_avg_1m": load,
    }


def bench_run(tasks: int, repeat: int, workdir: str) -> dict[str, Any]:
    empty = os.path.join(workdir, "empty.json")
    with open(empty, "w") as f:
        f.write('{"format": "dropflow/physical-graph", "version": 1, "drops": []}')
    baseline = _dropflow_run(empty, workdir)[1]
    files = {"daliuge": os.path.join(workdir, "dlg.json"), "native": os.path.join(workdir, "native.json")}
    _write("dlg-pg", tasks, files["daliuge"])
    _write("native-pg", tasks, files["native"])
    rows: dict[str, list[dict[str, Any]]] = {"daliuge": [], "native": []}
    for _ in range(repeat):
        for fmt, path in files.items():
            rows[fmt].append(_run_row(fmt, path, workdir, baseline))
    for path in files.values():
        os.unlink(path)
    med = {fmt: _median(cell, "engine_s") for fmt, cell in rows.items()}
    return {
        "graph": f"chain of {tasks} no-op apps (NullBarrierApp / noop) between memory drops",
        "baseline_peak_rss_mb": round(baseline / 2**20, 1),
        "daliuge_format": med["daliuge"],
        "native_format": med["native"],
        "ratio_drops_per_s_native_over_daliuge": round(
            med["native"]["drops_per_s_engine"] / med["daliuge"]["drops_per_s_engine"], 2
        ),
        "target": {"drops_per_s": 150_000, "rss_bytes_per_drop": 1024},
        "met": med["daliuge"]["drops_per_s_engine"] >= 150_000
        and med["daliuge"]["rss_bytes_per_drop"] <= 1024,
    }


# -- dropflow translate -----------------------------------------------------------------------------------


def _translate(path: str, out: str) -> tuple[float, int, str, str]:
    argv = [
        sys.executable,
        "-m",
        "dropflow",
        "translate",
        path,
        "--algorithm",
        "metis",
        "--parts",
        str(PARTS),
    ]
    return _run_rss([*argv, "-o", out])


def _translate_row(fmt: str, path: str, workdir: str, baseline: int) -> dict[str, Any]:
    load = _load()
    out = os.path.join(workdir, "translated.json")
    wall, rss, stdout, stderr = _translate(path, out)
    os.unlink(out)
    summary = [line for line in stderr.splitlines() if line.startswith("dropflow: ")]
    drops = int(summary[-1].split(": ")[2].split(" drops")[0]) if summary else 0
    other = [line for line in stderr.splitlines() if not line.startswith("dropflow: ") and line.strip()]
    printed = [line for line in stdout.splitlines() if line.strip()] + other
    return {
        "format": fmt,
        "drops": drops,
        "wall_s": round(wall, 3),
        "peak_rss_mb": round(rss / 2**20, 1),
        "rss_bytes_per_drop": round((rss - baseline) / drops) if drops else None,
        "summary": summary[-1] if summary else None,
        "metis_printed": printed[:10],
        "load_avg_1m": load,
    }


def bench_translate(copies: int, repeat: int, workdir: str) -> dict[str, Any]:
    tiny = os.path.join(workdir, "tiny.graph")
    _write("eagle", 1, tiny)
    out = os.path.join(workdir, "tiny-out.json")
    baseline = _translate(tiny, out)[1]
    files = {"eagle": os.path.join(workdir, "scatter.graph"), "native": os.path.join(workdir, "scatter.json")}
    _write("eagle", copies, files["eagle"])
    _write("native-lg", copies, files["native"])
    rows: dict[str, list[dict[str, Any]]] = {"eagle": [], "native": []}
    for _ in range(repeat):
        for fmt, path in files.items():
            rows[fmt].append(_translate_row(fmt, path, workdir, baseline))
    for path in [*files.values(), tiny, out]:
        os.unlink(path)
    med = {fmt: _median(cell, "wall_s") for fmt, cell in rows.items()}
    warned = any(r["metis_printed"] for cell in rows.values() for r in cell)
    e = med["eagle"]
    return {
        "graph": f"EAGLE scatter of {copies} copies (make -> array -> Scatter{{part -> work -> done}})",
        "command": f"dropflow translate GRAPH --algorithm metis --parts {PARTS} -o FILE",
        "baseline_peak_rss_mb": round(baseline / 2**20, 1),
        "eagle": e,
        "native_logical": med["native"],
        "ratio_wall_eagle_over_native": round(e["wall_s"] / med["native"]["wall_s"], 2),
        "metis_printed_anything": warned,
        "target": {"wall_s": 10, "rss_bytes_per_drop": 1024, "metis_warnings": False},
        "met": e["wall_s"] <= 10 and (e["rss_bytes_per_drop"] or 0) <= 1024 and not warned,
    }


def _median(cell: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the median ``key``, plus the spread over all runs and every run's load average."""
    ordered = sorted(cell, key=lambda r: r[key])
    row = dict(ordered[len(ordered) // 2])
    row["runs"] = len(cell)
    row[f"{key}_min_max"] = [ordered[0][key], ordered[-1][key]]
    row["load_avg_1m_each_run"] = [r["load_avg_1m"] for r in cell]
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["run", "translate"], help="one of the two benchmarks")
    p.add_argument("--tasks", type=int, default=500_000, help="apps in the chain (drops = 2 * tasks + 1)")
    p.add_argument("--copies", type=int, default=1_000_000, help="copies of the EAGLE scatter")
    p.add_argument("--repeat", type=int, default=3, help="runs per cell; medians are reported (default 3)")
    p.add_argument("--output", help="also write the JSON here")
    p.add_argument("--make", nargs=3, metavar=("WHAT", "SIZE", "PATH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.make:
        _make(args.make[0], int(args.make[1]), args.make[2])
        return 0
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "note": "shared machine: wall-clock figures vary with the load average recorded beside each run",
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory(prefix="dropflow-dlgspeed-") as workdir:
        if args.only in (None, "run"):
            result["run_1m_daliuge_format"] = bench_run(args.tasks, args.repeat, workdir)
        if args.only in (None, "translate"):
            result["translate_eagle_scatter"] = bench_translate(args.copies, args.repeat, workdir)
    result["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
