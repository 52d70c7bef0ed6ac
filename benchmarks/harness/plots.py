"""Plots of a results.json, one panel per workload, the real work first and the no-op graphs last.

Run by the harness with the ``tools`` environment's Python (matplotlib is not a dependency of dropflow):
``python plots.py RESULTS_DIR`` writes next to ``results.json``:

- ``time.png``: end-to-end time against N, log-log, one line per system;
- ``ratio.png``: each system's time over the floor's (the same functions on a pool of two workers), paired by
  repeat as in the tables; the floor is the line at 1;
- ``memory.png``: peak RSS against N;
- ``translator.png`` when there are translator rows.

Every figure's title carries the date, the machine and the load average of the run. The numpy pipelines have
one size each and are in the tables only.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import FLOOR, cells, ratio
from workloads import describe, is_real

STYLE = {
    "dropflow": ("tab:blue", "o", "-"),
    "dropflow-cluster": ("tab:cyan", "o", "--"),
    "daliuge": ("tab:red", "s", "-"),
    "dask": ("tab:orange", "^", "-"),
    "ray": ("tab:green", "v", "-"),
    "parsl-threads": ("tab:purple", "D", "-"),
    "parsl-htex": ("tab:pink", "D", "--"),
    "floor": ("black", "+", "--"),
    "loop": ("tab:gray", "x", ":"),
}


def _panels(result: dict[str, Any]) -> list[str]:
    shown = [w for w in result["settings"]["workloads"] if not w.startswith("numpy")]
    return [w for w in shown if is_real(w)] + [w for w in shown if not is_real(w)]


def _title(result: dict[str, Any], what: str) -> str:
    m = result["machine"]
    return (
        f"{what} — {m['date'][:16]}, {m['nproc']} CPUs ({m['cpu_model']}), "
        f"load average {m['load_average_start'][0]:g} → {m['load_average_end'][0]:g}"
    )


def _grid(count: int) -> tuple[Any, list[Any]]:
    cols = min(3, max(1, count))
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def _series(table: dict[Any, Any], workload: str, system: str, value: Any) -> tuple[list[int], list[float]]:
    points = []
    for (w, n, s), cell in table.items():
        if w == workload and s == system and cell["runs"]:
            v = value(cell, table.get((w, n, FLOOR)))
            if v is not None:
                points.append((n, v))
    points.sort()
    return [p[0] for p in points], [p[1] for p in points]


def plot(
    result: dict[str, Any], value: Any, ylabel: str, what: str, path: str, floor_line: bool = False
) -> None:
    table = cells(result["rows"])
    panels = _panels(result)
    if not panels:
        return
    fig, axes = _grid(len(panels))
    for ax, workload in zip(axes, panels, strict=True):
        for system in result["systems"]:
            color, marker, line = STYLE.get(system, ("tab:olive", ".", "-"))
            ns, ys = _series(table, workload, system, value)
            if ns:
                ax.plot(ns, ys, color=color, marker=marker, linestyle=line, label=system)
            for (w, n, s), cell in table.items():
                if w == workload and s == system and cell["status"] == "dnf" and not cell["runs"]:
                    ax.axvline(n, color=color, alpha=0.25, linestyle=":")
        if floor_line:
            ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{workload}\n{describe(workload)}", fontsize=8)
        ax.set_xlabel("N")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.legend(
        list(handles.values()), list(handles), loc="lower center", ncol=min(9, len(handles)), fontsize=8
    )
    fig.suptitle(_title(result, what), fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_translator(result: dict[str, Any], path: str) -> None:
    rows = [r for r in result["translator_rows"] if r["status"] == "ok"]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for system, color in (("dropflow", "tab:blue"), ("daliuge", "tab:red")):
        by: dict[int, list[float]] = {}
        for r in rows:
            if r["system"] == system:
                by.setdefault(r["drops"], []).append(r["total_s"])
        xs = sorted(by)
        if xs:
            ax.plot(xs, [statistics.median(by[x]) for x in xs], marker="o", color=color, label=system)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("drops")
    ax.set_ylabel("unroll + partition + map, s")
    ax.set_title(_title(result, "translator, EAGLE scatter graphs"), fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    out_dir = argv[0]
    with open(os.path.join(out_dir, "results.json")) as f:
        result = json.load(f)
    plot(
        result,
        lambda cell, floor: cell["e2e_s"],
        "end-to-end time, s",
        "end-to-end time",
        os.path.join(out_dir, "time.png"),
    )
    plot(
        result,
        lambda cell, floor: ratio(cell, floor, "e2e_s") if floor and floor["runs"] else None,
        "time / the floor's",
        "end-to-end time over the floor's (pool of two workers, same functions)",
        os.path.join(out_dir, "ratio.png"),
        floor_line=True,
    )
    plot(
        result,
        lambda cell, floor: cell["peak_rss_mb"],
        "peak RSS, MB",
        "peak RSS",
        os.path.join(out_dir, "memory.png"),
    )
    plot_translator(result, os.path.join(out_dir, "translator.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
