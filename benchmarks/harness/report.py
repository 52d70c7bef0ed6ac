"""From runs to results: medians, paired ratios, the Markdown page and the JSON document.

Cells are (workload, N, system). A cell's value is the median over its successful runs. The ratio of dropflow
to a peer is taken *pair by pair*: the systems ran interleaved (repeat 1 of every system, then repeat 2, ...),
so repeat ``i`` of dropflow and repeat ``i`` of the peer saw the same moment of a shared machine; the reported
ratio is the median of those per-repeat ratios (below 1: dropflow is faster or smaller).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

__all__ = ["cells", "markdown", "ratio", "translator_markdown"]

REFERENCE = "dropflow"
METRICS = {
    "e2e_s": "end-to-end time (load + deploy + run), s",
    "peak_rss_mb": "peak RSS, MB",
    "cpu_s": "CPU, s",
}


def _median(values: Iterable[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return statistics.median(vs) if vs else None


def cells(rows: list[dict[str, Any]]) -> dict[tuple[str, int, str], dict[str, Any]]:
    """(workload, N, system) -> the cell's medians, status and runs."""
    grouped: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in rows:
        grouped.setdefault((r["workload"], r["n"], r["system"]), []).append(r)
    out: dict[tuple[str, int, str], dict[str, Any]] = {}
    for key, runs in grouped.items():
        ok = [r for r in runs if r["status"] == "ok"]
        bad = [r for r in runs if r["status"] != "ok"]
        cell: dict[str, Any] = {
            "runs": len(ok),
            "status": "ok" if ok and not bad else (bad[0]["status"] if bad else "ok"),
            "detail": bad[0]["detail"] if bad else "",
            "tasks": runs[0]["tasks"],
            "drops": runs[0]["drops"],
            "intact": all(r["intact"] for r in ok) if ok else None,
            "by_repeat": {r["repeat"]: r for r in ok},
        }
        for metric in (*METRICS, "load_s", "deploy_s", "run_s", "total_s", "startup_s"):
            cell[metric] = _median(r[metric] for r in ok)
        out[key] = cell
    return out


def ratio(mine: dict[str, Any], peer: dict[str, Any], metric: str) -> float | None:
    """Median over repeats of mine/peer, paired by repeat (ratio of medians if no repeat pairs up)."""
    pairs = [
        mine["by_repeat"][i][metric] / peer["by_repeat"][i][metric]
        for i in mine["by_repeat"]
        if i in peer["by_repeat"]
        and mine["by_repeat"][i][metric] is not None
        and peer["by_repeat"][i][metric]
    ]
    if pairs:
        return statistics.median(pairs)
    if mine.get(metric) is not None and peer.get(metric):
        return float(mine[metric] / peer[metric])
    return None


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    if metric == "peak_rss_mb":
        return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def _fmt_ratio(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2g}" if value < 10 else f"{value:,.0f}"


def _cell_text(cell: dict[str, Any] | None, metric: str, ref: dict[str, Any] | None, system: str) -> str:
    if cell is None:
        return ""
    if cell["runs"] == 0:
        if cell["status"] == "dnf":
            return f"DNF ({cell['detail'].removeprefix('did not finish in ')})"
        return cell["status"].upper()
    text = _fmt(cell[metric], metric)
    if cell["intact"] is False:
        text += " WRONG"
    if ref is not None and system != REFERENCE and ref["runs"]:
        r = ratio(ref, cell, metric)
        if r is not None:
            text += f" ({_fmt_ratio(r)})"
    if cell["runs"] < 3:
        text += f" [n={cell['runs']}]"
    return text


def markdown(rows: list[dict[str, Any]], systems: list[str], workloads: list[str]) -> str:
    """One table per workload and metric: N down, systems across, ratios dropflow/system in brackets."""
    table = cells(rows)
    lines: list[str] = []
    for workload in workloads:
        sizes = sorted({n for (w, n, _s) in table if w == workload})
        present = [s for s in systems if any((workload, n, s) in table for n in sizes)]
        if not sizes or not present:
            continue
        for metric, title in METRICS.items():
            lines.append(f"### {workload}: {title}")
            lines.append("")
            lines.append("| N | tasks | " + " | ".join(present) + " |")
            lines.append("|---:|---:|" + "---:|" * len(present))
            for n in sizes:
                ref = table.get((workload, n, REFERENCE))
                tasks = next(table[(workload, n, s)]["tasks"] for s in present if (workload, n, s) in table)
                label = f"{n / 2**20:g} MiB" if workload == "numpy" else f"{n:,}"
                cols = [_cell_text(table.get((workload, n, s)), metric, ref, s) for s in present]
                lines.append(f"| {label} | {tasks:,} | " + " | ".join(cols) + " |")
            lines.append("")
    return "\n".join(lines)


def translator_markdown(rows: list[dict[str, Any]]) -> str:
    by_size: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        by_size.setdefault(r["target_drops"], {}).setdefault(r["system"], []).append(r)
    systems = ["dropflow", "daliuge"]
    lines = [
        "| drops | "
        + " | ".join(f"{s} unroll / partition+map / total, s" for s in systems)
        + " | ratio (total) |",
        "|---:|" + "---:|" * (len(systems) + 1),
    ]
    for size in sorted(by_size):
        cols = []
        totals: dict[str, float | None] = {}
        drops = None
        for s in systems:
            runs = by_size[size].get(s, [])
            ok = [r for r in runs if r["status"] == "ok"]
            if not ok:
                detail = runs[0]["detail"] if runs else "not run"
                cols.append("DNF" if runs and runs[0]["status"] == "dnf" else detail[:60])
                totals[s] = None
                continue
            drops = ok[0]["drops"]
            u = statistics.median(r["unroll_s"] for r in ok)
            pm = statistics.median(r["partition_s"] + r["map_s"] for r in ok)
            t = statistics.median(r["total_s"] for r in ok)
            totals[s] = t
            cols.append(f"{u:.3g} / {pm:.3g} / {t:.3g}" + (f" [n={len(ok)}]" if len(ok) < 3 else ""))
        mine, theirs = totals.get("dropflow"), totals.get("daliuge")
        rt = _fmt_ratio(mine / theirs) if mine is not None and theirs else ""
        lines.append(f"| {drops or size:,} | " + " | ".join(cols) + f" | {rt} |")
    return "\n".join(lines)
