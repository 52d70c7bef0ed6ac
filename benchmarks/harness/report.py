"""From runs to results: medians, ratios to the floor, and the Markdown page.

Cells are (workload, N, system). A cell's value is the median over its successful runs. Every system is
compared with the **floor** (the system ``floor``: the same functions on a ``concurrent.futures`` pool of two
workers, dependencies counted in done-callbacks; see ``drivers/floors.py``) measured in the same run: the
ratio is taken *pair by pair*, as the systems ran interleaved (repeat 1 of every system, then repeat 2, ...),
so repeat ``i`` of a system and repeat ``i`` of the floor saw the same moment of a shared machine; the
reported ratio is the median of those per-repeat ratios (above 1: slower or larger than the floor).

The page opens with the date, the machine and its load average, then a headline table -- time per task of
every system on the real workloads, then on the no-op graphs, each with its ratio to the floor -- and then one
table per workload and metric. The real work comes first everywhere; the no-op graphs are labelled as what
they are, the engine's bookkeeping floor.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from workloads import describe, is_real

__all__ = ["FLOOR", "cells", "headline", "markdown", "page", "ratio", "translator_markdown"]

FLOOR = "floor"
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


def ratio(mine: dict[str, Any], floor: dict[str, Any], metric: str) -> float | None:
    """Median over repeats of mine/floor, paired by repeat (ratio of medians if no repeat pairs up)."""
    pairs = [
        mine["by_repeat"][i][metric] / floor["by_repeat"][i][metric]
        for i in mine["by_repeat"]
        if i in floor["by_repeat"]
        and mine["by_repeat"][i][metric] is not None
        and floor["by_repeat"][i][metric]
    ]
    if pairs:
        return statistics.median(pairs)
    if mine.get(metric) is not None and floor.get(metric):
        return float(mine[metric] / floor[metric])
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


def _not_run(cell: dict[str, Any]) -> str:
    if cell["status"] == "dnf":
        return f"DNF ({cell['detail'].removeprefix('did not finish in ')})"
    return str(cell["status"]).upper()


def _cell_text(cell: dict[str, Any] | None, metric: str, floor: dict[str, Any] | None, system: str) -> str:
    if cell is None:
        return ""
    if cell["runs"] == 0:
        return _not_run(cell)
    text = _fmt(cell[metric], metric)
    if cell["intact"] is False:
        text += " WRONG"
    if floor is not None and system != FLOOR and floor["runs"]:
        r = ratio(cell, floor, metric)
        if r is not None:
            text += f" ({_fmt_ratio(r)}x)"
    if cell["runs"] < 3:
        text += f" [n={cell['runs']}]"
    return text


def _ordered(workloads: list[str]) -> list[str]:
    """Real work first, the no-op graphs last, each group in the given order."""
    return [w for w in workloads if is_real(w)] + [w for w in workloads if not is_real(w)]


def _title(workload: str) -> str:
    return f"{workload}: {describe(workload)}"


def headline(rows: list[dict[str, Any]], systems: list[str], workloads: list[str]) -> str:
    """Time per task (µs; seconds for the numpy pipelines) of every system, with its ratio to the floor."""
    table = cells(rows)
    lines = [
        "| workload | N | " + " | ".join(systems) + " |",
        "|---|---:|" + "---:|" * len(systems),
    ]
    noop_started = False
    for workload in _ordered(workloads):
        numpy = workload.startswith("numpy")
        if not is_real(workload) and not noop_started:
            noop_started = True
            lines.append(
                "| *no-op graphs: the engine's bookkeeping floor, no work* |" + " |" * (len(systems) + 1)
            )
        for n in sorted({n for (w, n, _s) in table if w == workload}):
            floor = table.get((workload, n, FLOOR))
            cols = []
            for s in systems:
                cell = table.get((workload, n, s))
                if cell is None:
                    cols.append("")
                    continue
                if cell["runs"] == 0:
                    cols.append(_not_run(cell))
                    continue
                e2e = cell["e2e_s"]
                text = (
                    f"{_fmt(e2e, 'e2e_s')} s" if numpy else f"{_fmt(1e6 * e2e / cell['tasks'], 'e2e_s')} µs"
                )
                if cell["intact"] is False:
                    text += " WRONG"
                if floor is not None and s != FLOOR and floor["runs"]:
                    text += f" ({_fmt_ratio(ratio(cell, floor, 'e2e_s'))}x)"
                cols.append(text)
            if any(cols):
                label = f"{n / 2**20:g} MiB" if numpy else f"{n:,}"
                lines.append(f"| {workload} | {label} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]], systems: list[str], workloads: list[str]) -> str:
    """One table per workload and metric: N down, systems across, the ratio to the floor in brackets."""
    table = cells(rows)
    lines: list[str] = []
    for workload in _ordered(workloads):
        sizes = sorted({n for (w, n, _s) in table if w == workload})
        present = [s for s in systems if any((workload, n, s) in table for n in sizes)]
        if not sizes or not present:
            continue
        for metric, title in METRICS.items():
            lines.append(f"### {_title(workload)}: {title}")
            lines.append("")
            lines.append("| N | tasks | " + " | ".join(present) + " |")
            lines.append("|---:|---:|" + "---:|" * len(present))
            for n in sizes:
                floor = table.get((workload, n, FLOOR))
                tasks = next(table[(workload, n, s)]["tasks"] for s in present if (workload, n, s) in table)
                label = f"{n / 2**20:g} MiB" if workload.startswith("numpy") else f"{n:,}"
                cols = [_cell_text(table.get((workload, n, s)), metric, floor, s) for s in present]
                lines.append(f"| {label} | {tasks:,} | " + " | ".join(cols) + " |")
            lines.append("")
    return "\n".join(lines)


def _loads(rows: list[dict[str, Any]]) -> str:
    loads = [r["load1"] for r in rows if r.get("load1") is not None]
    if not loads:
        return ""
    return (
        f" The 1-minute load average when a run started ranged {min(loads):g}-{max(loads):g} "
        f"(median {statistics.median(loads):g})."
    )


def page(result: dict[str, Any], order: list[str]) -> str:
    """The whole results page: when, where, what, the headline table, then the tables per workload."""
    m = result["machine"]
    v = result["versions"]
    s = result["settings"]
    git = m.get("git") or {"commit": "?", "modified": []}
    systems = [n for n in order if n in result["systems"]]
    head = [
        "# dropflow side by side",
        "",
        f"Measured {m['date']} on {m['nproc']} CPUs ({m['cpu_model']}, {m['hypervisor'] or 'bare metal'}), "
        f"{m['mem_total_gib']} GiB, Linux {m['kernel']}, Python {m['python']}; "
        f"load average {m['load_average_start']} at the start, {m['load_average_end']} at the end "
        f"(the machine is shared); {m['duration_s']:.0f} s in all." + _loads(result["rows"]),
        "",
        "Versions: "
        + ", ".join(f"{k} {val}" for k, val in v.items())
        + f"; dropflow at {git['commit'][:10]}"
        + (f" with {len(git['modified'])} modified files" if git["modified"] else "")
        + ".",
        f"Median of {s['repeats']} interleaved runs; a run past {s['timeout_s']:g} s is DNF; "
        f"a cell whose first run took over {s['slow_s']:g} s ran once ([n=1]). "
        "In brackets: the system / the floor (a pool of two workers running the same functions, dependencies "
        "counted in done-callbacks), the median of per-repeat ratios. "
        "See benchmarks/README.md for what each number covers.",
        "",
    ]
    for name, why in result["missing"].items():
        head.append(f"- **{name}** not run: {why}")
    if result["shm_leftovers"]:
        head.append(f"- left in /dev/shm: {result['shm_leftovers']}")
    left = sorted({(r["system"], x) for r in result["rows"] for x in r.get("leftovers") or []})
    if left:
        head.append(f"- left in a run's TMPDIR (removed): {left[:20]}")
    head += [
        "",
        "## Headline: end-to-end time per task (numpy: per pipeline), ratio to the floor",
        "",
        headline(result["rows"], systems, s["workloads"]),
        "",
        "## Every workload",
        "",
    ]
    body = markdown(result["rows"], systems, s["workloads"])
    tail = []
    if result["translator_rows"]:
        tail = [
            "### translator: unroll + partition (METIS, 8 parts) + map, scaled EAGLE scatter graphs",
            "",
            translator_markdown(result["translator_rows"]),
            "",
        ]
    return "\n".join(head) + "\n" + body + "\n" + "\n".join(tail)


def translator_markdown(rows: list[dict[str, Any]]) -> str:
    by_size: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        by_size.setdefault(r["target_drops"], {}).setdefault(r["system"], []).append(r)
    systems = ["dropflow", "daliuge"]
    lines = [
        "| drops | "
        + " | ".join(f"{s} unroll / partition+map / total, s" for s in systems)
        + " | dropflow / daliuge (total) |",
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
