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
import workloads  # noqa: E402

from dropflow.cli import main as dropflow_main  # noqa: E402


def test_smoke_mode_runs_dropflow_and_the_floors(tmp_path: Any) -> None:
    """Scenario: the CI command. Every workload runs three interleaved times on dropflow and both floors, all
    intact (the numpy checksum matches), and the JSON and Markdown results are written; nothing is left in
    /dev/shm (the command itself fails if something is)."""
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
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "results.json").read_text())
    assert result["mode"] == "smoke"
    assert not result["shm_leftovers"]
    cells = report.cells(result["rows"])
    expected = {
        (w, s) for w in ("chain", "fan", "scatter2", "numpy") for s in ("dropflow", "loop", "threadpool")
    }
    expected.add(("numpy", "dropflow-memory"))
    seen = {(w, s) for (w, _n, s) in cells}
    assert seen == expected
    for key, cell in cells.items():
        assert cell["status"] == "ok" and cell["runs"] == 3 and cell["intact"], (key, cell["detail"])
        assert cell["e2e_s"] > 0 and cell["peak_rss_mb"] > 1 and cell["cpu_s"] > 0
    page = (out / "results.md").read_text()
    assert "### chain: end-to-end time" in page and "### numpy: peak RSS, MB" in page
    assert "| dropflow | loop | threadpool |" in page


@pytest.mark.parametrize("shape", sorted(workloads.NOOP_SHAPES))
def test_peer_graphs_have_the_workload_shape(shape: str, tmp_path: Any) -> None:
    """Scenario: each workload is written for every system. DALiuGE's physical graph links exactly the DAG's
    dependencies through one memory drop per task, with known drop classes; the DAG file that Dask and the
    floors read round-trips; dropflow's graph validates."""
    files = convert.write_workload(shape, 30, str(tmp_path))
    dag = workloads.read_dag(files["dag"])
    assert dag == workloads.make_dag(shape, 30)
    assert files["tasks"] == dag.tasks and files["drops"] == 2 * dag.tasks + 1

    pg = json.loads(Path(files["daliuge"]).read_text())
    by_oid = {d["oid"]: d for d in pg}
    assert len(by_oid) == len(pg) == files["daliuge_drops"]
    apps = [d for d in pg if d["categoryType"] == "Application"]
    data = [d for d in pg if d["categoryType"] == "Data"]
    assert {d["dropclass"] for d in apps} == {convert.DLG_APP}
    assert {d["dropclass"] for d in data} == {convert.DLG_MEMORY}
    assert len(apps) == dag.tasks
    for i, deps in enumerate(dag.deps):
        app = by_oid[f"a{i}"]
        assert app["inputs"] == ([f"d{j}" for j in deps] or ["root"])
        assert app["outputs"] == [f"d{i}"]
        assert all(by_oid[o]["categoryType"] == "Data" for o in app["inputs"] + app["outputs"])

    assert dropflow_main(["validate", files["dropflow"]]) == 0

    dsk, sinks = dask_driver.task_graph(dag)
    assert len(dsk) == dag.tasks and sinks == [f"t{i}" for i in dag.sinks()]
    for i, deps in enumerate(dag.deps):
        assert dsk[f"t{i}"][1:] == tuple(f"t{j}" for j in deps)


def test_numpy_graphs(tmp_path: Any) -> None:
    """Scenario: the numpy pipeline for dropflow (shm and memory) validates; DALiuGE's names the harness's app
    classes and hands the consumer the result path the harness reads."""
    files = convert.write_workload("numpy", 2**20, str(tmp_path))
    for kind in ("shm", "memory", "checked"):
        assert dropflow_main(["validate", files[f"dropflow_{kind}"]]) == 0  # payload is on sys.path
    checked = json.loads(Path(files["dropflow_checked"]).read_text())["drops"]
    assert checked[2]["func"] == "payload:consume_checked" and checked[2]["kwargs"]["expected"] > 0
    pg = {d["oid"]: d for d in json.loads(Path(files["daliuge"]).read_text())}
    assert pg["produce"]["dropclass"] == "daliuge_apps.Producer" and pg["produce"]["nbytes"] == 2**20
    assert pg["consume"]["dropclass"] == "daliuge_apps.Consumer"
    assert pg["consume"]["result_path"] == files["daliuge_result"]
    assert pg["produce"]["outputs"] == pg["consume"]["inputs"] == ["array"]


def test_ratios_pair_repeats_and_dnf_is_shown() -> None:
    """Scenario: dropflow ran 1, 2, 4 s and a peer 2, 2, 2 s in repeats 0..2; the reported ratio is the median
    of per-repeat ratios (0.5, 1, 2 -> 1), not a ratio of medians; a peer that timed out shows DNF."""

    def row(system: str, repeat: int, e2e: float | None, status: str = "ok") -> dict[str, Any]:
        return {
            "system": system, "workload": "chain", "n": 10, "repeat": repeat, "status": status, "tasks": 10,
            "drops": 21, "intact": status == "ok",
            "detail": "did not finish in 5 s" if status == "dnf" else "",
            "e2e_s": e2e, "peak_rss_mb": 10.0, "cpu_s": 1.0, "load_s": 0, "deploy_s": 0, "run_s": e2e,
            "total_s": e2e, "startup_s": 0,
        }  # fmt: skip

    rows = [row("dropflow", i, t) for i, t in enumerate((1.0, 4.0, 2.0))]
    rows += [row("dask", i, 2.0) for i in range(3)]
    rows += [row("daliuge", 0, None, "dnf")]
    cells = report.cells(rows)
    assert report.ratio(cells[("chain", 10, "dropflow")], cells[("chain", 10, "dask")], "e2e_s") == 1.0
    page = report.markdown(rows, ["dropflow", "daliuge", "dask"], ["chain"])
    assert "| 10 | 10 | 2 | DNF (5 s) | 2 (1) |" in page


def test_doctests() -> None:
    assert doctest.testmod(workloads).failed == 0
    assert doctest.testmod(dask_driver).failed == 0
