"""The engine as a real Slurm job on 3 (emulated) nodes: a graph that runs, one that fails, a cancelled job.

Needs a running Slurm with at least 3 idle nodes (.ci/setup/20-slurm.sh) and the manager daemons
(``dropflow nm``, ``dim``, ``submit``). Each test submits with the real ``dropflow slurm submit``, follows the
job with ``dropflow slurm status --wait`` or the scheduler, and checks the report the job wrote -- and that
nothing of the job is left running.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import psutil
import pytest

from dropflow.deploy.slurm import JobState, SlurmProvider
from dropflow.drops import FileSpec, ShellSpec

from conftest import poll_for, require, slurm_idle, write_graph

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "examples", "scatter_gather.lg.json")
CLI = [sys.executable, "-c", "import sys; from dropflow.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def slurm():
    require(
        "Slurm with 3 idle nodes",
        bool(shutil.which("sbatch")) and slurm_idle(3),
        ".ci/setup/20-slurm.sh",
    )
    return SlurmProvider()


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def dropflow(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def job_processes(results: str) -> list[psutil.Process]:
    """Live processes whose command line names the job's results directory (daemons, srun, bootstrap)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and any(results in a for a in p.info["cmdline"] or ()):
            found.append(p)
    return found


def test_a_graph_runs_on_three_nodes_and_reports(slurm, tmp_path):
    """
    The same logical graph ``dropflow run`` takes runs as a 3-node job: node managers on node1..3, the
    island on node1, the graph mapped onto them; the report says FINISHED, names the job and shows drops on
    every node.
    """
    results = str(tmp_path / "results")
    done = dropflow(
        "slurm", "submit", EXAMPLE, "--nodes", "3", "--param", "copies=6", "--results", results, "--wait"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = done.stdout.splitlines()[0]
    assert job_id.isdigit()
    assert done.stdout.splitlines()[1] == f"job {job_id}: COMPLETED, exit status 0"

    job_dir = os.path.join(results, job_id)
    report = json.loads(_read(os.path.join(job_dir, "report.json")))
    assert report["job_id"] == job_id and report["nodes"] == ["node1", "node2", "node3"]
    assert report["state"] == "FINISHED" and report["error"] is None and report["exit_status"] == 0
    assert set(report["placement"]) == {"node1", "node2", "node3"}
    assert all(n > 0 for n in report["placement"].values()), report["placement"]
    assert report["failures"] == [] and sum(report["by_state"].values()) == report["drops"]
    for key in ("queued_seconds", "startup_seconds", "run_seconds", "teardown_seconds", "total_seconds"):
        assert report["timings"][key] is not None and report["timings"][key] >= 0
    for node in ("node1", "node2", "node3"):
        log = os.path.join(job_dir, "logs", f"nm-{node}.log")
        assert os.path.getsize(log) > 0, f"no log for {node}"
    summary = _read(os.path.join(job_dir, "summary.txt"))
    assert summary.startswith(
        f"job {job_id} (dropflow-scatter_gather) on 3 node(s) node1,node2,node3: session "
    )
    assert "FINISHED" in summary.splitlines()[0]

    status = dropflow("slurm", "status", job_id, "--results", results, "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["scheduler"]["state"] == "COMPLETED" and shown["report"]["state"] == "FINISHED"
    poll_for(lambda: not job_processes(job_dir), timeout=30)


def test_a_failing_graph_fails_the_job_with_the_cause_in_the_report(slurm, tmp_path):
    graph = write_graph(
        tmp_path / "fails.json",
        [
            ShellSpec(id="prepare", command="echo data > {out}", outputs={"out": "data"}),
            FileSpec(id="data"),
            ShellSpec(
                id="calibrate",
                command="cat {inp} > /dev/null; echo 'calibration table missing' >&2; exit 4",
                inputs={"inp": "data"},
                outputs={"out": "calibrated"},
            ),
            FileSpec(id="calibrated"),
        ],
        name="fails",
    )
    results = str(tmp_path / "results")
    done = dropflow("slurm", "submit", graph, "--nodes", "2", "--results", results, "--wait")
    assert done.returncode == 1, done.stdout + done.stderr
    job_id = done.stdout.splitlines()[0]
    info = slurm.status(job_id)
    assert info.state is JobState.FAILED and info.exit_code == 1
    report = json.loads(_read(os.path.join(results, job_id, "report.json")))
    assert report["state"] == "FAILED" and report["exit_status"] == 1 and report["job_id"] == job_id
    [failure] = report["failures"]
    assert failure["uid"] == "calibrate"
    assert "exit status 4" in failure["message"] and "calibration table missing" in failure["message"]
    assert "drop 'calibrate' (shell): command failed (exit status 4)" in done.stdout
    status = dropflow("slurm", "status", job_id, "--results", results)
    assert status.returncode == 1
    poll_for(lambda: not job_processes(os.path.join(results, job_id)), timeout=30)


def test_a_cancelled_job_reports_it_and_leaves_nothing_running(slurm, tmp_path):
    graph = write_graph(
        tmp_path / "long.json",
        [ShellSpec(id="wait", command="sleep 601", outputs={"out": "o"}), FileSpec(id="o")],
        name="long",
    )
    results = str(tmp_path / "results")
    done = dropflow("slurm", "submit", graph, "--nodes", "2", "--results", results)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    job_dir = os.path.join(results, job_id)
    # Cancel once the graph runs: the submit log says so when the session was deployed.
    submit_log = os.path.join(job_dir, "logs", "submit.log")
    poll_for(lambda: os.path.exists(submit_log) and "submitted" in _read(submit_log), timeout=120)
    assert dropflow("slurm", "cancel", job_id).returncode == 0
    final = poll_for(lambda: (i := slurm.status(job_id)).state.ended and i, timeout=60)
    assert final.state is JobState.CANCELLED
    report = poll_for(lambda: _report(job_dir), timeout=30)
    assert (
        report["error"] == "the job was terminated by a cancel (scancel, preemption) before the session ended"
    )
    assert report["ended_by"] == "CANCELLED"
    assert report["exit_status"] == 1 and report["job_id"] == job_id
    # The managers were gone by then: drops by state and placement come from the nodes' journals.
    # (Slurm signals every process of the job, the app's too: it may end in ERROR before it is cancelled.)
    assert sum(report["by_state"].values()) == 2 and sum(report["placement"].values()) == 2, report
    assert report["resume_with"] == f"dropflow slurm submit --resume {job_id} --results {results}"
    poll_for(lambda: not job_processes(job_dir), timeout=30)
    assert not [
        p for p in psutil.process_iter(["cmdline"]) if "sleep 601" in " ".join(p.info["cmdline"] or ())
    ]


def _report(job_dir: str) -> dict | None:
    path = os.path.join(job_dir, "report.json")
    if not os.path.exists(path):
        return None
    report = json.loads(_read(path))
    return report if report["timings"].get("teardown_seconds") is not None else None


def test_two_islands_under_a_master_manager(slurm, tmp_path):
    """--islands 2: an island manager on node1 (for node1, node2) and one on node3 (started through srun),
    a master manager over both on node1; the graph still runs on all three nodes."""
    results = str(tmp_path / "results")
    done = dropflow(
        "slurm", "submit", EXAMPLE, "--nodes", "3", "--islands", "2", "--param", "copies=6",
        "--results", results, "--wait",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = done.stdout.splitlines()[0]
    report = json.loads(_read(os.path.join(results, job_id, "report.json")))
    assert report["state"] == "FINISHED"
    assert {"island 0", "island 1", "master"} <= set(report["logs"])
    plan = json.loads(_read(os.path.join(results, job_id, "nodes.json")))
    assert [i["manager"]["node"] for i in plan["islands"]] == ["node1", "node3"]
    assert set(report["placement"]) == {"node1", "node2", "node3"}
    poll_for(lambda: not job_processes(os.path.join(results, job_id)), timeout=30)


def test_the_readme_example_finishes_five_times_as_a_three_node_job(slurm, tmp_path):
    """The README's first example (numpy bands through shared memory, calibrated in worker processes) as
    a 3-node job, five times in a row. It used to hang until its walltime: a node's proxy expired on its
    own, the owner's COMPLETED then hit DELETED, and the error was swallowed."""
    results = str(tmp_path / "results")
    example = os.path.join(REPO, "examples", "numpy_shm_pipeline.json")
    # (Kept in front of any PYTHONPATH given: the dropflow under test may be found only through it.)
    pythonpath = [os.path.join(REPO, "examples"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    for attempt in range(5):
        done = subprocess.run(
            [*CLI, "slurm", "submit", example, "--nodes", "3", "--results", results, "--time", "5", "--wait"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert done.returncode == 0, f"attempt {attempt}: " + done.stdout + done.stderr
        job_id = done.stdout.splitlines()[0]
        report = json.loads(_read(os.path.join(results, job_id, "report.json")))
        assert report["state"] == "FINISHED", report
        assert len([n for n, count in report["placement"].items() if count]) >= 2, report["placement"]
        poll_for(lambda job_id=job_id: not job_processes(os.path.join(results, job_id)), timeout=30)
