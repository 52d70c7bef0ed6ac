"""Plots of a results.json: time and memory against N, log-log, one line per system, one panel per shape.

Run by the harness with the ``tools`` environment's Python (matplotlib is not a dependency of dropflow):
``python plots.py RESULTS_DIR`` writes ``time.png``, ``memory.png`` and, with translator rows,
``translator.png`` next to ``results.json``.
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

SHAPES = ["chain", "fan", "scatter2"]
STYLE = {
    "dropflow": ("tab:blue", "o", "-"),
    "dropflow-cluster": ("tab:cyan", "o", "--"),
    "daliuge": ("tab:red", "s", "-"),
    "dask": ("tab:orange", "^", "-"),
    "loop": ("tab:gray", "x", ":"),
    "threadpool": ("black", "+", "--"),
}


def _series(
    rows: list[dict[str, Any]], shape: str, system: str, metric: str
) -> tuple[list[int], list[float]]:
    by_n: dict[int, list[float]] = {}
    for r in rows:
        if r["workload"] == shape and r["system"] == system and r["status"] == "ok" and r[metric] is not None:
            by_n.setdefault(r["n"], []).append(r[metric])
    ns = sorted(by_n)
    return ns, [statistics.median(by_n[n]) for n in ns]


def _dnf(rows: list[dict[str, Any]], shape: str, system: str) -> list[int]:
    return sorted(
        {r["n"] for r in rows if r["workload"] == shape and r["system"] == system and r["status"] == "dnf"}
    )


def plot_metric(result: dict[str, Any], metric: str, ylabel: str, path: str) -> None:
    rows = result["rows"]
    fig, axes = plt.subplots(1, len(SHAPES), figsize=(5 * len(SHAPES), 4.2), sharey=True)
    for ax, shape in zip(axes, SHAPES, strict=True):
        for system in result["systems"]:
            if system not in STYLE:
                continue
            color, marker, line = STYLE[system]
            ns, ys = _series(rows, shape, system, metric)
            if ns:
                ax.plot(ns, ys, color=color, marker=marker, linestyle=line, label=system)
            for n in _dnf(rows, shape, system):
                ax.axvline(n, color=color, alpha=0.25, linestyle=":")
                ax.annotate("DNF", (n, 1), xycoords=("data", "axes fraction"), color=color, fontsize=8,
                            ha="center", va="bottom", rotation=90)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(shape)
        ax.set_xlabel("N")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(loc="upper left", fontsize=8)
    m = result["machine"]
    fig.suptitle(f"{ylabel} — {m['date'][:10]}, {m['nproc']} CPUs, {m['cpu_model']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
    ax.set_title("translator, EAGLE scatter graphs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    out_dir = argv[0]
    with open(os.path.join(out_dir, "results.json")) as f:
        result = json.load(f)
    plot_metric(result, "e2e_s", "end-to-end time, s", os.path.join(out_dir, "time.png"))
    plot_metric(result, "peak_rss_mb", "peak RSS, MB", os.path.join(out_dir, "memory.png"))
    plot_translator(result, os.path.join(out_dir, "translator.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
