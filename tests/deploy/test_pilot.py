"""A pilot on the CI's Slurm: one allocation whose managers take 20 small graphs in a row, submitted to it
like to any island (``dropflow submit --to slurm:JOBID``); cancelled, it reports what it ran and leaves
nothing running. ``benchmarks/pilot.py`` compares the same 20 graphs with 20 separate jobs.
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
from dropflow.drops import FileSpec, MemorySpec, PythonSpec, ShellSpec

from conftest import poll_for, require, slurm_idle, write_graph

CLI = [sys.executable, "-m", "dropflow"]
GRAPHS = 20


@pytest.fixture(scope="module")
def slurm():
    require(
        "Slurm with 2 idle nodes",
        bool(shutil.which("sbatch")) and slurm_idle(2),
        ".ci/setup/20-slurm.sh",
    )
    return SlurmProvider()


def dropflow(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def small_graph(path, i: int) -> str:
    return write_graph(
        path,
        [
            MemorySpec(id="x", data=i, codec="json"),
            PythonSpec(id="dump", func="json:dumps", inputs={"obj": "x"}, outputs={"out": "y"}),
            MemorySpec(id="y", codec="json", persist=True),
            ShellSpec(id="echo", command=f"echo graph {i} > {{out}}", outputs={"out": "f"}),
            FileSpec(id="f"),
        ],
        name=f"small{i}",
    )


def test_a_pilot_takes_twenty_graphs_in_a_row(slurm, tmp_path):
    results = str(tmp_path / "results")
    up = dropflow("slurm", "pilot", "--nodes", "2", "--time", "10", "--results", results, "--up", timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    job_id = up.stdout.strip()
    job_dir = os.path.join(results, job_id)
    try:
        status = dropflow("slurm", "status", job_id, "--results", results)
        assert "pilot up at http://" in status.stdout and f"--to slurm:{job_id}" in status.stdout
        for i in range(GRAPHS):
            done = dropflow(
                "submit", small_graph(tmp_path / f"g{i}.json", i), "--to", f"slurm:{job_id}", "--results",
                results, "--wait", "--progress", "never", "--report", str(tmp_path / f"r{i}.json"),
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            report = json.loads((tmp_path / f"r{i}.json").read_text())
            assert report["state"] == "FINISHED" and report["values"]["y"]["preview"] == repr(str(i))
        # The managers stayed up all along: one allocation, one island, 20 sessions.
        assert slurm.status(job_id).state is JobState.RUNNING
        stopped = dropflow("slurm", "stop", job_id, "--results", results, "--wait")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    finally:
        if not slurm.status(job_id).state.ended:
            dropflow("slurm", "cancel", job_id)
    assert slurm.status(job_id).state is JobState.COMPLETED
    report = poll_for(lambda: _report(job_dir), timeout=30)
    assert report["state"] == "FINISHED" and report["exit_status"] == 0 and report["ended_by"] is None
    assert report["by_state"] == {"FINISHED": GRAPHS}, report
    # A pilot that ended takes no more graphs, and says so.
    late = dropflow("submit", str(tmp_path / "g0.json"), "--to", f"slurm:{job_id}", "--results", results)
    assert late.returncode == 2 and f"pilot job {job_id} has ended" in late.stderr
    poll_for(lambda: not _job_processes(job_dir), timeout=30)


def _report(job_dir: str) -> dict | None:
    path = os.path.join(job_dir, "report.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    return report if report["timings"].get("teardown_seconds") is not None else None


def _job_processes(marker: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and any(marker in a for a in p.info["cmdline"] or ()):
            found.append(p)
    return found
