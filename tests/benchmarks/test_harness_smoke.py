"""The side-by-side benchmark harness keeps working: its smoke mode, and the peers' graphs it writes.

The smoke mode runs dropflow and the two floors on tiny workloads (seconds, no peer virtualenvs); the peers'
adapters are exercised by converting every workload to their forms and checking the result's structure
without running DALiuGE or Dask. Nothing here asserts a time: speed is what the harness reports, not what a
test checks.
"""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARNESS = os.path.join(ROOT, "benchmarks", "harness")
sys.path.insert(0, HARNESS)
sys.path.insert(0, os.path.join(HARNESS, "drivers"))

import convert  # noqa: E402
import dask_driver  # noqa: E402
import report  # noqa: E402
import tasks  # noqa: E402
import workloads  # noqa: E402

from dropflow.cli import main as dropflow_main  # noqa: E402

SMOKE_WORKLOADS = [
    "py-chain", "py-fan", "proc-chain", "shell-chain", "numpy", "numpy-proc", "noop-chain", "noop-scatter2",
]  # fmt: skip


def test_smoke_mode_runs_dropflow_and_the_floors(tmp_path: Any) -> None:
    """Scenario: the CI command. A workload of every kind -- Python functions passing values, the same in
    worker processes, shell commands, both numpy pipelines, the no-op graphs -- runs twice, interleaved, on
    dropflow and the floors (the loop floor has no process variant), all intact: the sinks' values and the
    numpy checksum are the expected ones. The JSON and Markdown results are written, the page puts the real
    work before the no-op graphs and gives ratios to the floor, and nothing is left in /dev/shm (the command
    itself fails if something is)."""
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "sidebyside.py"),
            "--smoke",
            "--out",
            str(out),
            "--no-plots",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "results.json").read_text())
    assert result["mode"] == "smoke"
    assert not result["shm_leftovers"]
    cells = report.cells(result["rows"])
    expected = {(w, s) for w in SMOKE_WORKLOADS for s in ("dropflow", "floor")}
    expected |= {(w, "loop") for w in SMOKE_WORKLOADS if not w.startswith("proc") and w != "numpy-proc"}
    expected |= {("numpy", "dropflow-memory"), ("numpy-proc", "dropflow-memory")}
    seen = {(w, s) for (w, _n, s) in cells}
    assert seen == expected
    for key, cell in cells.items():
        assert cell["status"] == "ok" and cell["runs"] == 2 and cell["intact"], (key, cell["detail"])
        assert cell["e2e_s"] > 0 and cell["peak_rss_mb"] > 1 and cell["cpu_s"] > 0
    rows = result["rows"]
    assert all(r["load1"] is not None and r["leftovers"] == [] for r in rows)
    page = (out / "results.md").read_text()
    assert "load average" in page and result["machine"]["date"] in page
    headline = page[page.index("## Headline") : page.index("## Every workload")]
    assert (
        headline.index("| py-chain |")
        < headline.index("bookkeeping floor")
        < headline.index("| noop-chain |")
    )
    assert "x) |" in headline  # ratios to the floor
    assert page.index("### py-chain:") < page.index("### numpy:") < page.index("### noop-chain:")
    assert "| dropflow | floor | loop |" in page


@pytest.mark.parametrize("kind", ["py", "shell", "noop"])
@pytest.mark.parametrize("shape", sorted(workloads.SHAPES))
def test_peer_graphs_have_the_workload_shape(kind: str, shape: str, tmp_path: Any) -> None:
    """Scenario: each workload is written for every system. DALiuGE's physical graph links exactly the DAG's
    dependencies through one memory drop per task, with the app class of the kind (Python tasks carry the
    sinks' result paths and say which tasks start from 0); the DAG file that Dask, Ray, Parsl and the floors
    read round-trips; dropflow's graph validates and keeps the sinks; Dask's task graph calls the kind's
    functions on its dependencies' keys."""
    files = convert.write_workload(f"{kind}-{shape}", 30, str(tmp_path))
    dag = workloads.read_dag(files["dag"])
    assert dag == workloads.make_dag(shape, 30)
    assert files["tasks"] == dag.tasks and files["drops"] == 2 * dag.tasks + 1
    assert files["sinks"] == [f"d{i}" for i in dag.sinks()]
    assert files["expected"] == (workloads.expected_sinks(dag) if kind == "py" else None)

    pg = json.loads(Path(files["daliuge"]).read_text())
    by_oid = {d["oid"]: d for d in pg}
    assert len(by_oid) == len(pg) == files["daliuge_drops"]
    apps = [d for d in pg if d["categoryType"] == "Application"]
    data = [d for d in pg if d["categoryType"] == "Data"]
    app_class = {"py": convert.DLG_PY_TASK, "shell": convert.DLG_BASH, "noop": convert.DLG_APP}[kind]
    assert {d["dropclass"] for d in apps} == {app_class}
    assert {d["dropclass"] for d in data} == {convert.DLG_MEMORY}
    assert len(apps) == dag.tasks
    for i, deps in enumerate(dag.deps):
        app = by_oid[f"a{i}"]
        assert app["inputs"] == ([f"d{j}" for j in deps] or ["root"])
        assert app["outputs"] == [f"d{i}"]
        assert all(by_oid[o]["categoryType"] == "Data" for o in app["inputs"] + app["outputs"])
        if kind == "py":
            assert app["first"] == (0 if deps else 1)
            assert ("result_path" in app) == (f"d{i}" in files["sinks"])
        if kind == "shell":
            assert app["command"] == tasks.SHELL_COMMAND

    assert dropflow_main(["validate", files["dropflow"]]) == 0
    drops = {d["id"]: d for d in json.loads(Path(files["dropflow"]).read_text())["drops"]}
    assert {d["kind"] for d in drops.values() if d["id"].startswith("a")} == {
        {"py": "python", "shell": "shell", "noop": "noop"}[kind]
    }
    if kind == "py":
        assert all(drops[s]["persist"] and drops[s]["codec"] == "json" for s in files["sinks"])
        assert not any("executor" in d for d in drops.values())  # the default executor

    dsk, sinks = dask_driver.task_graph(dag, kind)
    assert len(dsk) == dag.tasks and sinks == [f"t{i}" for i in dag.sinks()]
    for i, deps in enumerate(dag.deps):
        func, consts = tasks.star_call(kind, deps)
        assert dsk[f"t{i}"] == (func, *consts, *[f"t{j}" for j in deps])


def test_process_workloads_use_the_process_executor(tmp_path: Any) -> None:
    """Scenario: the proc workloads are dropflow's python apps with ``"executor": "process"`` (and no
    DALiuGE graph: its apps run in the node manager's threads)."""
    files = convert.write_workload("proc-fan", 10, str(tmp_path))
    assert dropflow_main(["validate", files["dropflow"]]) == 0
    apps = [d for d in json.loads(Path(files["dropflow"]).read_text())["drops"] if d["kind"] == "python"]
    assert len(apps) == 11 and {a["executor"] for a in apps} == {"process"}
    assert "daliuge" not in files and files["expected"] == [10]


@pytest.mark.parametrize("workload", ["numpy", "numpy-proc"])
def test_numpy_graphs(workload: str, tmp_path: Any) -> None:
    """Scenario: the numpy pipeline for dropflow (shm and memory) validates, in worker processes for
    numpy-proc; DALiuGE's names the harness's app classes and hands the consumer the result path the harness
    reads."""
    files = convert.write_workload(workload, 2**20, str(tmp_path))
    for kind in ("shm", "memory", "checked"):
        assert dropflow_main(["validate", files[f"dropflow_{kind}"]]) == 0  # payload is on sys.path
        apps = [d for d in json.loads(Path(files[f"dropflow_{kind}"]).read_text())["drops"] if "func" in d]
        assert [a.get("executor") for a in apps] == [None, None] if workload == "numpy" else ["process"] * 2
    checked = json.loads(Path(files["dropflow_checked"]).read_text())["drops"]
    assert checked[2]["func"] == "payload:consume_checked" and checked[2]["kwargs"]["expected"] > 0
    pg = {d["oid"]: d for d in json.loads(Path(files["daliuge"]).read_text())}
    assert pg["produce"]["dropclass"] == "daliuge_apps.Producer" and pg["produce"]["nbytes"] == 2**20
    assert pg["consume"]["dropclass"] == "daliuge_apps.Consumer"
    assert pg["consume"]["result_path"] == files["daliuge_result"]
    assert pg["produce"]["outputs"] == pg["consume"]["inputs"] == ["array"]


def test_ratios_to_the_floor_pair_repeats_and_dnf_is_shown() -> None:
    """Scenario: dropflow ran 1, 4, 2 s and the floor 2, 2, 2 s in repeats 0..2; the reported ratio is the
    median of per-repeat ratios (0.5, 2, 1 -> 1), not a ratio of medians; a peer that timed out shows DNF;
    the floor's own cell carries no ratio."""

    def row(system: str, repeat: int, e2e: float | None, status: str = "ok") -> dict[str, Any]:
        return {
            "system": system, "workload": "py-chain", "n": 10, "repeat": repeat, "status": status,
            "tasks": 10, "drops": 21, "intact": status == "ok",
            "detail": "did not finish in 5 s" if status == "dnf" else "",
            "e2e_s": e2e, "peak_rss_mb": 10.0, "cpu_s": 1.0, "load_s": 0, "deploy_s": 0, "run_s": e2e,
            "total_s": e2e, "startup_s": 0,
        }  # fmt: skip

    rows = [row("dropflow", i, t) for i, t in enumerate((1.0, 4.0, 2.0))]
    rows += [row("floor", i, 2.0) for i in range(3)]
    rows += [row("ray", 0, None, "dnf")]
    cells = report.cells(rows)
    assert report.ratio(cells[("py-chain", 10, "dropflow")], cells[("py-chain", 10, "floor")], "e2e_s") == 1.0
    page = report.markdown(rows, ["dropflow", "ray", "floor"], ["py-chain"])
    assert "| 10 | 10 | 2 (1x) | DNF (5 s) | 2 |" in page
    head = report.headline(rows, ["dropflow", "ray", "floor"], ["py-chain"])
    assert "| py-chain | 10 | 200,000 µs (1x) | DNF (5 s) | 200,000 µs |" in head


def test_doctests() -> None:
    for module in (workloads, tasks, dask_driver):
        assert doctest.testmod(module).failed == 0
