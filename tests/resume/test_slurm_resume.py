"""On the CI's Slurm: a job that its time limit (``--time 1``) ends, then resumed -- by hand with
``--resume JOBID``, or by itself with ``--chain``.

The graph is a chain of shell apps that take 6 s each inside a job (none outside), 90 s in all; each counts
its executions in a file under an allowed directory (``--allow-path``), and the result is written there
too, outside the job's workspace. The first job's report must say TIMEOUT and list what finished; the job
that resumes it must end FINISHED with a result byte-identical to an uninterrupted ``dropflow run``'s, and
no app that the first job recorded as finished may have run twice.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from dropflow.deploy.slurm import SlurmProvider
from dropflow.drops import FileSpec, MemorySpec, ShellSpec

from conftest import require, slurm_idle, write_graph

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from resumefuncs import runs  # noqa: E402

CLI = [sys.executable, "-m", "dropflow"]
# Of 6 s each: 90 s, more than a minute's job can do. Slurm looks for jobs past their time limit every 30 s,
# so a one-minute job ends between 60 and 90 s after it started: a shorter chain could finish first (it did,
# at 72 s). The job that resumes it has at most 6 steps left, well within its minute.
STEPS = 15


@pytest.fixture(scope="module")
def slurm():
    require(
        "Slurm with 2 idle nodes",
        bool(shutil.which("sbatch")) and slurm_idle(2),
        ".ci/setup/20-slurm.sh",
    )
    return SlurmProvider()


def chain(counts: str, products: str) -> list[Any]:
    """seed -> step0 -> f0 -> step1 -> ... -> step11 -> f11 -> publish -> PRODUCTS/result.txt (persisted)"""
    count = f"echo run >> {counts}/{{name}}"
    specs: list[Any] = [MemorySpec(id="seed", data="a night's work\n", codec="utf-8")]
    previous = ("stdin", "seed")
    for i in range(STEPS):
        read = "cat" if previous[0] == "stdin" else "cat {inp}"
        specs += [
            ShellSpec(
                id=f"step{i}",
                command=count.format(name=f"step{i}") + '; [ -z "$SLURM_JOB_ID" ] || sleep 6; '
                f"{read} > {{out}}; echo step {i} >> {{out}}",
                inputs={previous[0]: previous[1]},
                outputs={"out": f"f{i}"},
            ),
            FileSpec(id=f"f{i}"),
        ]
        previous = ("inp", f"f{i}")
    specs += [
        ShellSpec(id="publish", command=count.format(name="publish") + "; cp {inp} {out}",
                  inputs={"inp": previous[1]}, outputs={"out": "result"}),
        FileSpec(id="result", path=os.path.join(products, "result.txt"), persist=True),
    ]  # fmt: skip
    return specs


def dropflow(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def _report(results: str, job_id: str) -> dict[str, Any]:
    with open(os.path.join(results, job_id, "report.json"), encoding="utf-8") as f:
        return json.load(f)


def _uninterrupted(tmp_path: Any) -> bytes:
    """The same graph, run straight through by `dropflow run` (no job: no sleeps)."""
    counts, products = tmp_path / "clean-counts", tmp_path / "clean-products"
    counts.mkdir()
    products.mkdir()
    graph = write_graph(tmp_path / "clean.json", chain(str(counts), str(products)), name="clean")
    done = dropflow("run", graph, "--workspace", str(tmp_path / "clean-ws"), "--allow-path", str(counts),
                    "--allow-path", str(products))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return (products / "result.txt").read_bytes()


@pytest.fixture
def dirs(tmp_path):
    counts, products = tmp_path / "counts", tmp_path / "products"
    counts.mkdir()
    products.mkdir()
    graph = write_graph(tmp_path / "night.json", chain(str(counts), str(products)), name="night")
    return graph, counts, products, str(tmp_path / "results")


def _check_first_job(report: dict[str, Any], counts: Any) -> set[str]:
    assert report["ended_by"] == "TIMEOUT", report
    assert report["state"] == "CANCELLED" and report["exit_status"] == 1
    finished = set(report["finished_sample"])
    assert report["finished"] == len(finished) and "step0" in finished and "publish" not in finished
    assert sum(report["by_state"].values()) == report["drops"] == 2 * STEPS + 3
    with open(os.path.join(os.path.dirname(report["output_file"]), "summary.txt"), encoding="utf-8") as f:
        assert "  ended by: TIMEOUT" in f.read().splitlines()
    counted = runs(str(counts))
    assert all(counted[app] == 1 for app in finished)
    return finished


def _check_resumed(
    report: dict[str, Any], first: set[str], counts: Any, products: Any, tmp_path: Any
) -> None:
    assert report["state"] == "FINISHED" and report["exit_status"] == 0, report
    assert report["resumed"]["kept"] >= len(first)
    counted = runs(str(counts))
    for app in first:
        assert counted[app] == 1, f"{app} finished in the first job but ran {counted[app]} times"
    assert counted["publish"] == 1 and set(counted) == {f"step{i}" for i in range(STEPS)} | {"publish"}
    assert (products / "result.txt").read_bytes() == _uninterrupted(tmp_path)


def test_a_job_killed_by_its_time_limit_resumes(slurm, dirs, tmp_path):
    """--checkpoint-margin 0: the job does not stop itself; Slurm's SIGTERM at the time limit ends it."""
    graph, counts, products, results = dirs
    done = dropflow(
        "slurm", "submit", graph, "--nodes", "2", "--time", "1", "--checkpoint-margin", "0",
        "--allow-path", str(counts), "--allow-path", str(products), "--results", results, "--wait",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    job_id = done.stdout.splitlines()[0]
    assert slurm.status(job_id).slurm_state == "TIMEOUT"
    first = _check_first_job(_report(results, job_id), counts)

    again = dropflow("slurm", "submit", "--resume", job_id, "--results", results, "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    resumed = _report(results, again.stdout.splitlines()[0])
    _check_resumed(resumed, first, counts, products, tmp_path)
    assert resumed["resumed"]["job"] == job_id


def test_a_chained_job_continues_itself(slurm, dirs, tmp_path):
    """--chain: before its time limit the job stops starting apps that cannot finish, checkpoints, reports
    and submits the job that resumes it."""
    graph, counts, products, results = dirs
    done = dropflow(
        "slurm", "submit", graph, "--nodes", "2", "--time", "1", "--chain",
        "--allow-path", str(counts), "--allow-path", str(products), "--results", results, "--wait",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    job_id = done.stdout.splitlines()[0]
    report = _report(results, job_id)
    first = _check_first_job(report, counts)
    # Each job of the chain has a minute: it takes a few to get through the graph. Follow it to its end.
    jobs = [job_id]
    while report.get("continuation"):
        assert report["ended_by"] == "TIMEOUT" and report["continuation"] not in jobs
        jobs.append(report["continuation"])
        status = dropflow("slurm", "status", jobs[-1], "--results", results, "--wait", "--json")
        report = json.loads(status.stdout)["report"]
        assert report["resumed"]["job"] == jobs[-2]
        assert len(jobs) <= 5, "the chain does not end"
    assert len(jobs) >= 2
    _check_resumed(report, first, counts, products, tmp_path)
