"""The Python examples, on every target, with the same results.

Each example (DAGonStar's dataflow demo, a Parsl-style chain, a numpy scatter/gather through shared memory)
runs as a script; its pipeline runs here (``run()``), is saved as a graph file that ``dropflow run`` runs, is
submitted to a local cluster both by the API (``submit(url)``) and by ``dropflow submit --wait``, and runs as
a 3-node Slurm job both by the API (``slurm(nodes=3)``) and by ``dropflow slurm submit``. Every target gives
the same values back.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

from dropflow.deploy import localcluster

from apitools import EXAMPLES, dropflow, free_ports
from conftest import require, slurm_idle

#: module, pipeline variable, result handles, and their values.
CASES = {
    "dagonstar_dataflow": ("demo", {"d": "from B\nfrom A\nfrom C\nfrom A\n"}),
    "parsl_chain": ("chain", {"sum_of_squares": 385, "sum_of_bumped": 15}),
    "numpy_scatter_gather": ("image_pipeline", {"stats": {"rows": 1024, "mean": 0.042647, "std": 1.996072}}),
}


def example(name: str):
    module = importlib.import_module(name)
    variable, wanted = CASES[name]
    return getattr(module, variable), {getattr(module, h).id: v for h, v in wanted.items()}, module


def results(module, name: str) -> dict:
    return {getattr(module, h).id: getattr(module, h).result() for h in CASES[name][1]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local cluster of 2 node managers that import from examples/ (dropflow cluster up --pythonpath)."""
    directory = str(tmp_path_factory.mktemp("cluster"))
    base = free_ports(3)
    up = localcluster.up(directory, 2, base, base + 1, timeout=60, pythonpath=[EXAMPLES])
    try:
        yield up
    finally:
        localcluster.down(directory, 30)
        assert not up.alive()


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_example_runs_as_a_script(name, tmp_path):
    done = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    for value in CASES[name][1].values():
        assert (value if isinstance(value, str) else str(value)) in done.stdout


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_results_here_from_a_graph_file_and_on_a_cluster(name, tmp_path, cluster):
    pipeline, wanted, module = example(name)

    run = pipeline.run(workspace=str(tmp_path / "here"))
    assert run.ok, run.failures
    assert results(module, name) == wanted

    graph = pipeline.save(str(tmp_path / f"{name}.json"))
    done = dropflow("run", graph, "--pythonpath", EXAMPLES, "--workspace", str(tmp_path / "cli"), "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)["values"]
    assert {uid: shown[uid] for uid in wanted} == {uid: repr(v) for uid, v in wanted.items()}

    run = pipeline.submit(cluster.url)
    assert run.ok and run.where == cluster.url, run.failures
    assert results(module, name) == wanted

    report = tmp_path / "report.json"
    done = dropflow("submit", graph, "--to", cluster.url, "--wait", "--report", str(report))
    assert done.returncode == 0, done.stderr
    for uid, value in wanted.items():
        assert f"{uid} = {value!r}" in done.stdout
    values = json.loads(report.read_text())["values"]
    assert {uid: v["preview"] for uid, v in values.items() if uid in wanted} == {
        uid: repr(v) for uid, v in wanted.items()
    }


@pytest.fixture(scope="module")
def slurm():
    import shutil

    require(
        "Slurm with 3 idle nodes",
        bool(shutil.which("sbatch")) and slurm_idle(3),
        ".ci/setup/20-slurm.sh",
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_results_as_a_slurm_job(name, tmp_path, slurm):
    """``pipeline.slurm(nodes=3)``: the job report keeps the small values, which come back to the handles."""
    pipeline, wanted, module = example(name)
    job = pipeline.slurm(nodes=3, results=str(tmp_path / "results"), pythonpath=[EXAMPLES], time_limit="10")
    run = job.wait()
    assert run.ok, (run.failures, run.summary.get("report"))
    assert results(module, name) == wanted


def test_a_saved_pipeline_runs_with_dropflow_slurm_submit(tmp_path, slurm):
    """The graph file of a pipeline, given to ``dropflow slurm submit``; ``slurm status`` shows the value."""
    pipeline, wanted, _ = example("parsl_chain")
    graph = pipeline.save(str(tmp_path / "chain.json"))
    results_dir = str(tmp_path / "results")
    done = dropflow(
        "slurm",
        "submit",
        graph,
        "--nodes",
        "3",
        "--pythonpath",
        EXAMPLES,
        "--results",
        results_dir,
        "--wait",
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = done.stdout.splitlines()[0]
    status = dropflow("slurm", "status", job_id, "--results", results_dir)
    for uid, value in wanted.items():
        assert f"{uid} = {value!r}" in status.stdout, status.stdout
