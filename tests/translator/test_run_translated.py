"""Graphs made only of built-in kinds run after translation and FINISH: ``dropflow translate`` writes a
physical graph, ``dropflow run`` runs that file (and runs the logical graph directly, too)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from lgtools import EXAMPLES, LG_DIR

from dropflow.cli import main

#: EAGLE test graphs whose components all map onto built-in kinds (and sleep no more than a moment).
BUILTIN_EAGLE = [
    "HelloWorld_simple",
    "HelloWorld_Global",
    "ExampleSubgraphNoInput",
    "SharedMemoryTest_update",
    "SuperBasicScatterGather",
    "branchTest",
    "ArrayLoop",
    "ArrayLoop_Global",
    "test-20190830-110556",
]
EXAMPLE_GRAPHS = ["scatter_gather.lg.json", "loop.lg.json", "eagle_scatter_gather.graph"]


def run_json(path: str, workspace: str, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    code = main(["run", path, "--workspace", workspace, "--json", "--progress", "never", *extra])
    captured = capsys.readouterr()
    summary: dict[str, Any] = json.loads(captured.out)
    assert code == 0, (summary.get("failures"), captured.err)
    return summary


@pytest.mark.parametrize("name", BUILTIN_EAGLE)
def test_translated_eagle_graph_runs(name: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    pg = str(tmp_path / f"{name}.json")
    assert main(["translate", os.path.join(LG_DIR, f"{name}.graph"), "-o", pg, "--nodes", "localhost"]) == 0
    capsys.readouterr()
    summary = run_json(pg, str(tmp_path / "ws"), capsys)
    assert summary["state"] == "FINISHED"
    assert not summary["failures"]


@pytest.mark.parametrize("name", EXAMPLE_GRAPHS)
def test_example_logical_graph_runs_directly(
    name: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_json(os.path.join(EXAMPLES, name), str(tmp_path / "ws"), capsys)
    assert summary["state"] == "FINISHED"


def test_param_override_reaches_the_run(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """--param copies=6 makes six copies of each scattered node: 6 + 6 + 1 + 1 drops."""
    path = os.path.join(EXAMPLES, "scatter_gather.lg.json")
    summary = run_json(path, str(tmp_path / "ws"), capsys, "--param", "copies=6")
    assert summary["state"] == "FINISHED" and summary["drops"] == 14


def test_loop_example_takes_one_element_per_iteration(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The loop example's three iterations each pick one element: 3 values, 3 rests, 1 skipped branch side."""
    summary = run_json(os.path.join(EXAMPLES, "loop.lg.json"), str(tmp_path / "ws"), capsys)
    assert summary["by_state"].get("SKIPPED") == 1
    assert summary["drops"] == 14
