"""System test: a real `dropflow nm` is SIGKILLed mid-session; none of its app processes outlive it."""

from __future__ import annotations

import os
import shutil
import signal
import sys

import psutil
import pytest

from dropflow.drops import PythonSpec, ShellSpec
from dropflow.drops.apps.mpi import MpiSpec
from dropflow.managers.client import RestClient

from conftest import HERE, poll_for, require

sys.path.insert(0, os.path.join(HERE, "managers"))
from daemons import start

APPS = os.path.join(HERE, "apps")


def gone(pid: int) -> bool:
    """Dead; an orphan killed in a container may linger as a zombie nobody reaps, which counts as dead."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


@pytest.mark.timeout(180)
def test_sigkilled_node_manager_leaves_no_app_process(tmp_path):
    """
    A node manager runs a shell app (`sleep 1000`, in a process group of its own), a Python app that never
    returns, in a worker process (forked by the node's zygote), and an Open MPI app of 2 `sleep 1000` ranks
    (Open MPI puts each rank in a process group of its own). The manager -- gunicorn's master and its worker,
    which hosts the node -- is SIGKILLed: within 5 s the shell command, the worker process, the zygote,
    mpirun, its ranks and the reaper are gone.
    """
    mpirun = "mpirun.openmpi"
    require("Open MPI", shutil.which(mpirun) is not None, f"{mpirun} on PATH")
    logs = tmp_path / "logs"
    logs.mkdir()
    daemon = start(
        "nm",
        "--workspace",
        str(tmp_path / "ws"),
        "--processes",
        "1",
        logdir=str(logs),
        name="n0",
        env={"PYTHONPATH": APPS},
    )
    client = RestClient(daemon.url)
    apps: list[int] = []
    try:
        client.create_session("x")
        client.append(
            "x",
            [
                ShellSpec(id="sh", command="sleep 1000"),
                PythonSpec(id="py", func="poolfuncs:forever", executor="process"),
                MpiSpec(id="mpi", command="sleep 1000", ranks=2, launcher="mpirun", mpirun=mpirun),
            ],
        )
        client.deploy("x")

        def running() -> bool:
            states = client.graph_status("x")
            return all(states.get(uid, {}).get("status") == "RUNNING" for uid in ("sh", "py", "mpi"))

        poll_for(running, timeout=30)
        master = psutil.Process(daemon.proc.pid)

        def started() -> list[psutil.Process]:  # RUNNING is said just before the processes start
            descendants = master.children(recursive=True)
            lines = [cmdline(p) for p in descendants]
            # The python app's worker is a fork of the node's zygote: two processes with the zygote's line.
            workers = sum(
                "dropflow.engine.zygote" in line or "dropflow.engine.worker" in line for line in lines
            )
            ready = lines.count("sleep 1000") == 3 and workers >= 2
            return descendants if ready else []

        descendants = poll_for(started, timeout=30)
        assert any("reaper.py" in cmdline(p) for p in descendants)
        hosts = master.children()  # gunicorn's worker: the process that holds the node
        apps = [p.pid for p in descendants if p not in hosts]

        # Stop the master first, so that it neither respawns the worker nor shuts it down gracefully.
        os.kill(master.pid, signal.SIGSTOP)
        for host in hosts:
            os.kill(host.pid, signal.SIGKILL)
        os.kill(master.pid, signal.SIGKILL)
        daemon.killed = True
        daemon.proc.wait(10)
        poll_for(lambda: all(gone(pid) for pid in apps), timeout=5)
    finally:
        client.close()
        daemon.stop()
        for pid in apps:  # whatever this test started must not outlive it, even when it fails
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
