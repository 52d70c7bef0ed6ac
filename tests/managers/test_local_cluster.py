"""`dropflow cluster up|down` and `dropflow submit --wait`: a local cluster of daemons; nothing is left."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
from daemons import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def dropflow(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dropflow", *args], capture_output=True, text=True, timeout=180, **kw
    )


def test_cluster_up_submit_and_down(tmp_path):
    state = tmp_path / "cluster"
    port, node_port = free_port(), free_port()
    up = dropflow(
        "cluster",
        "up",
        "--nodes",
        "3",
        "--dir",
        str(state),
        "--port",
        str(port),
        "--node-port",
        str(node_port),
    )
    pids = (
        json.loads((state / "cluster.json").read_text())["pids"] if (state / "cluster.json").exists() else []
    )
    try:
        assert up.returncode == 0, up.stderr
        assert len(pids) == 4 and all(psutil.pid_exists(p) for p in pids)
        url = f"http://127.0.0.1:{port}"
        report = tmp_path / "report.json"
        sub = dropflow(
            "submit",
            os.path.join(ROOT, "examples", "scatter_gather.lg.json"),
            "--to",
            url,
            "--wait",
            "--report",
            str(report),
            "--param",
            "copies=6",
        )
        assert sub.returncode == 0, sub.stdout + sub.stderr
        outcome = json.loads(report.read_text())
        assert outcome["state"] == "FINISHED" and len(outcome["placement"]) >= 2
        listing = dropflow("sessions", "--to", url)
        assert outcome["session_id"] in listing.stdout and "FINISHED" in listing.stdout
        drops = dropflow("sessions", outcome["session_id"], "--to", url, "--state", "FINISHED")
        assert "FINISHED:" in drops.stdout
        bad = dropflow("status", "no-such-session", "--to", url)
        assert bad.returncode == 2 and "no session" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        down = dropflow("cluster", "down", "--dir", str(state))
    assert down.returncode == 0, down.stderr
    _gone, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=30)
    assert not alive
    assert not (state / "cluster.json").exists()


def test_client_commands_refuse_bad_input_clearly(tmp_path):
    unreachable = f"http://127.0.0.1:{free_port()}"
    r = dropflow("status", "s", "--to", unreachable)
    assert r.returncode == 1 and "cannot reach" in r.stderr and "Traceback" not in r.stderr
    r = dropflow("submit", "nope.json", "--to", "ftp://x")
    assert r.returncode == 2 and "not an http:// URL" in r.stderr
    r = dropflow("nm", "--host", "0.0.0.0", "--port", "0", "--insecure-no-token")
    assert r.returncode == 2 and "loopback only" in r.stderr and "--token-file" in r.stderr
    r = dropflow("dim", "--port", "70000")
    assert r.returncode == 2 and "not a port number" in r.stderr
    r = dropflow("cluster", "down", "--dir", str(tmp_path / "none"))
    assert r.returncode == 2 and "no cluster" in r.stderr


def test_the_readme_example_finishes_five_times_on_a_three_node_cluster(tmp_path):
    """``examples/numpy_shm_pipeline.json`` submitted five times to a 3-node ``dropflow cluster up``: each
    run FINISHES with its drops spread over the nodes (a cross-node expiry race used to hang it)."""
    state = tmp_path / "cluster"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "examples")}
    up = dropflow("cluster", "up", "--nodes", "3", "--dir", str(state), "--port", str(port), env=env)
    pids = (
        json.loads((state / "cluster.json").read_text())["pids"] if (state / "cluster.json").exists() else []
    )
    try:
        assert up.returncode == 0, up.stderr
        for attempt in range(5):
            report = tmp_path / f"report{attempt}.json"
            sub = dropflow(
                "submit",
                os.path.join(ROOT, "examples", "numpy_shm_pipeline.json"),
                "--to",
                f"http://127.0.0.1:{port}",
                "--wait",
                "--report",
                str(report),
            )
            assert sub.returncode == 0, f"attempt {attempt}: " + sub.stdout + sub.stderr
            outcome = json.loads(report.read_text())
            assert outcome["state"] == "FINISHED" and len(outcome["placement"]) == 3, outcome
    finally:
        down = dropflow("cluster", "down", "--dir", str(state))
    assert down.returncode == 0, down.stderr
    _gone, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=30)
    assert not alive
