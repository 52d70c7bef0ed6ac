"""Jobs that share nodes, and a stuck job's teardown, on the CI's Slurm (3 emulated nodes on one host: every
job's daemons share 127.0.0.1, the worst case for ports).

- Two jobs at once on the same nodes: ports are chosen per daemon when it starts, so neither job's health
  checks or graph reach the other's daemons; both finish.
- A client that reaches a manager holding another token says so (it is not the one meant), instead of
  blaming the token.
- ``scancel`` of a job whose session hangs (a shell command that ignores SIGTERM, a Python app that never
  returns) ends within Slurm's KillWait, and leaves no process, no shared-memory segment and no session
  directory behind.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time

import psutil
import pytest

from dropflow.deploy.slurm import JobState, SlurmProvider
from dropflow.drops import FileSpec, MemorySpec, NullSpec, PythonSpec, SharedMemorySpec, ShellSpec

from conftest import poll_for, require, shm_segments, slurm_idle, write_graph

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "managers"))
from daemons import start  # noqa: E402  (real daemons, as the cluster system tests start them)

CLI = [sys.executable, "-m", "dropflow"]


@pytest.fixture(scope="module")
def slurm():
    require(
        "Slurm with 2 idle nodes",
        bool(shutil.which("sbatch")) and slurm_idle(2),
        ".ci/setup/20-slurm.sh",
    )
    return SlurmProvider()


def dropflow(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def gated(gate: str, i: int) -> list[object]:
    return [
        ShellSpec(id="a", command=f"while [ ! -e {gate} ]; do sleep 0.05; done; echo {i} > {{out}}",
                  outputs={"out": "f"}),
        FileSpec(id="f"),
        ShellSpec(id="b", command="cat {inp} > {out}", inputs={"inp": "f"}, outputs={"out": "g"}),
        FileSpec(id="g"),
    ]  # fmt: skip


def test_two_jobs_on_the_same_nodes_do_not_reach_each_others_daemons(slurm, tmp_path):
    gate = str(tmp_path / "gate")
    results = str(tmp_path / "results")
    jobs = []
    for i in range(2):
        graph = write_graph(tmp_path / f"g{i}.json", gated(gate, i), name=f"shared{i}")
        done = dropflow("slurm", "submit", graph, "--nodes", "2", "--results", results)
        assert done.returncode == 0, done.stderr
        jobs.append(done.stdout.strip())
    try:
        # Both running at once, each with its graph deployed on its own daemons.
        logs = [os.path.join(results, j, "logs", "submit.log") for j in jobs]
        poll_for(lambda: all(os.path.exists(p) and "submitted" in _read(p) for p in logs), timeout=120)
        plans = [json.loads(_read(os.path.join(results, j, "nodes.json"))) for j in jobs]
        endpoints = [
            {(d["address"], d["port"]) for d in p["node_managers"] + [i["manager"] for i in p["islands"]]}
            for p in plans
        ]
        assert not endpoints[0] & endpoints[1], endpoints
        assert all(port != 0 for e in endpoints for _, port in e)
        nodes = [{d["node"] for d in p["node_managers"]} for p in plans]
        assert nodes[0] & nodes[1], "the two jobs did not share a node: nothing was tested"
    finally:
        open(gate, "w").close()
    for j in jobs:
        final = poll_for(lambda j=j: (i := slurm.status(j)).state.ended and i, timeout=120)
        assert final.state is JobState.COMPLETED, _read(os.path.join(results, j, "summary.txt"))
        report = json.loads(_read(os.path.join(results, j, "report.json")))
        assert report["state"] == "FINISHED" and report["error"] is None


def test_a_client_that_reaches_another_tokens_manager_says_so(tmp_path):
    nm = start("nm", "--workspace", str(tmp_path / "ws"), logdir=str(tmp_path), name="theirs",
               env={"DROPFLOW_TOKEN": "their-token-of-a-decent-length"})  # fmt: skip
    try:
        graph = write_graph(tmp_path / "g.json", [MemorySpec(id="x", data=1)], name="g")
        env = {**os.environ, "DROPFLOW_TOKEN": "our-token-of-a-decent-length!"}
        done = dropflow("submit", graph, "--to", nm.url, env=env, timeout=60)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"the manager at {nm.url} (theirs) does not hold your token: it is not the one you meant" in (
            done.stderr
        )
    finally:
        nm.stop()


def stuck(apps: str) -> list[object]:
    """
    n -> fill -> seg (shm) --> deaf (ignores SIGTERM, sleeps)
    forever (a Python function in a thread that never returns)
    """
    return [
        MemorySpec(id="n", data=1 << 20, codec="json", node="node1"),
        PythonSpec(id="fill", func="testfuncs:fill_array", inputs={"n": "n"}, outputs={"out": "seg"},
                   node="node1"),
        SharedMemorySpec(id="seg", node="node1"),
        ShellSpec(id="deaf", command="trap '' TERM; sleep 602 & wait; sleep 602", inputs={"s": "seg"},
                  outputs={"out": "d"}, node="node1"),
        NullSpec(id="d", node="node1"),
        PythonSpec(id="forever", func="time:sleep", kwargs={"secs": 603}, executor="thread",
                   outputs={"out": "e"}, node="node2"),
        MemorySpec(id="e", node="node2"),
    ]  # fmt: skip


def test_a_stuck_job_is_torn_down_within_kill_wait(slurm, tmp_path):
    from dropflow.deploy.slurm import run_command
    from dropflow.deploy.walltime import kill_wait

    wait = kill_wait(run_command)
    results = str(tmp_path / "results")
    graph = write_graph(tmp_path / "stuck.json", stuck(os.path.join(TESTS, "apps")), name="stuck")
    done = dropflow("slurm", "submit", graph, "--nodes", "2", "--pythonpath", os.path.join(TESTS, "apps"),
                    "--results", results)  # fmt: skip
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    job_dir = os.path.realpath(os.path.join(results, job_id))
    workspaces = [os.path.join(job_dir, "workspace", n) for n in ("node1", "node2")]
    session = f"dropflow-stuck-{job_id}"
    poll_for(lambda: shm_segments(workspaces[0]) and _procs("sleep 602") and _procs("dropflow"), timeout=120)
    t0 = time.monotonic()
    assert dropflow("slurm", "cancel", job_id).returncode == 0
    poll_for(lambda: slurm.status(job_id).state.ended, timeout=60)
    poll_for(lambda: not _job_processes(job_dir) and not _procs("sleep 602"), timeout=wait + 10)
    gone = time.monotonic() - t0
    assert not shm_segments(workspaces[0]) and not shm_segments(workspaces[1])

    def files_left() -> list[str]:
        return [
            p
            for ws in workspaces
            for p in glob.glob(os.path.join(ws, session, "**"), recursive=True)
            if os.path.lexists(p) and not os.path.isdir(p)
        ]

    assert not files_left(), f"files of the session left on the node: {files_left()}"
    report = json.loads(_read(os.path.join(job_dir, "report.json")))
    assert report["ended_by"] == "CANCELLED" and report["timings"]["teardown_seconds"] < wait, report
    # Everything was gone before Slurm's SIGKILL would have come (plus the scheduler's own latency).
    assert gone < wait + 10


def _procs(text: str) -> list[int]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(p.info["cmdline"] or ()):
            found.append(p.pid)
    return found


def _job_processes(marker: str) -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["cmdline", "status"])
        if p.info["status"] != psutil.STATUS_ZOMBIE and any(marker in a for a in p.info["cmdline"] or ())
    ]
