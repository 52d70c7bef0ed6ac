"""Resume after a lost node: a 3-node ``dropflow cluster up``, one node manager killed mid-run, the session
resumed with ``dropflow submit --resume`` on the two nodes left.

The killed node had finished work: a file (left in its workspace, which nobody swept) and a small in-memory
value (in its journal). The resume runs the graph re-placed on two nodes; what the dead node made moves to
its drops' new owners and is not made again; the result equals a clean run's, byte for byte.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
from typing import Any

from dropflow.deploy import localcluster
from dropflow.drops import FileSpec, MemorySpec, PythonSpec, ShellSpec
from dropflow.engine.journal import read

from conftest import poll_for, write_graph

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "managers"))
from daemons import free_port, token  # noqa: E402  (the daemons' token, in this test run's config)
from resumefuncs import runs  # noqa: E402

CLI = [sys.executable, "-m", "dropflow"]
SID = "lost"


def graph(counts: str, gate: str) -> list[Any]:
    """
    node-2:  p2 -> f2 (file) ----------.
             x -> s -> m (memory) -----+-> wait (node-1, until GATE) -> w -> cat -> result.txt (persisted)
    node-0:  p0 -> f0 (file) ----------'
    """
    count = f"echo run >> {counts}/{{name}}"
    return [
        ShellSpec(id="p0", node="node-0", command=count.format(name="p0") + "; seq 1 300 > {out}",
                  outputs={"out": "f0"}),
        FileSpec(id="f0", node="node-0"),
        ShellSpec(id="p2", node="node-2", command=count.format(name="p2") + "; seq 2 600 > {out}",
                  outputs={"out": "f2"}),
        FileSpec(id="f2", node="node-2"),
        MemorySpec(id="x", node="node-2", data=41, codec="json"),
        PythonSpec(id="s", node="node-2", func="resumefuncs:step", kwargs={"name": "s", "counts": counts},
                   inputs={"x": "x"}, outputs={"out": "m"}),
        MemorySpec(id="m", node="node-2", codec="json"),
        ShellSpec(
            id="wait", node="node-1",
            command=count.format(name="wait") + f"; while [ ! -e {gate} ]; do sleep 0.05; done; "
            "cat {a} {b} > {out}; cat >> {out}",
            inputs={"a": "f0", "b": "f2", "stdin": "m"}, outputs={"out": "w"},
        ),
        FileSpec(id="w", node="node-1"),
        ShellSpec(id="cat", node="node-1", command=count.format(name="cat") + "; cp {w} {out}",
                  inputs={"w": "w"}, outputs={"out": "result"}),
        FileSpec(id="result", node="node-1", path="result.txt", persist=True),
    ]  # fmt: skip


def submit(url: str, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "submit", path, "--to", url, "--progress", "never", *args],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_resume_after_a_lost_node_on_the_nodes_left(tmp_path):
    directory = str(tmp_path / "cluster")
    counts = tmp_path / "counts"
    counts.mkdir()
    gate = str(tmp_path / "gate")
    path = write_graph(tmp_path / "lost.json", graph(str(counts), gate), name="lost")
    node_port = poll_for(
        lambda: (p := free_port()) < 65000 and not any(map(localcluster.port_taken, range(p, p + 3))) and p,
        10,
    )
    port = poll_for(lambda: (p := free_port()) not in range(node_port, node_port + 3) and p, 10)
    cluster = localcluster.up(
        directory, nodes=3, port=port, node_port=node_port, timeout=60,
        allow_paths=[str(counts)], pythonpath=[HERE],
    )  # fmt: skip
    try:
        first = subprocess.Popen(
            [*CLI, "submit", path, "--to", cluster.url, "--session-id", SID, "--progress", "never"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert first.wait(120) == 0, first.stderr.read() if first.stderr else ""
        journals = os.path.join(directory, "workspace", ".journal", SID)
        poll_for(
            lambda: (
                os.path.isdir(journals)
                and {"p0", "p2", "s"} <= set(read(journals).finished)
                and (counts / "wait").exists()
            ),
            timeout=60,
        )
        os.killpg(cluster.pids[2], signal.SIGKILL)  # node-2's daemon dies with its finished work
        status = [*CLI, "status", SID, "--to", cluster.url, "--json"]
        ended = poll_for(
            lambda: (
                (r := json.loads(subprocess.run(status, capture_output=True, text=True).stdout))["status"]
                in ("FAILED", "CANCELLED")
                and r
            ),
            timeout=60,
        )
        assert ended["status"] == "FAILED" and "node-2" in ended["lost_nodes"]
        assert (tmp_path / "cluster" / "workspace" / "node-2" / SID / "f2").exists()

        open(gate, "w").close()
        resumed = submit(cluster.url, path, "--resume", SID, "--wait", "--report", str(tmp_path / "r.json"))
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert f"resuming session {SID}: " in resumed.stderr
        report = json.loads((tmp_path / "r.json").read_text())
        assert report["state"] == "FINISHED" and set(report["placement"]) <= {"node-0", "node-1"}
        counted = runs(str(counts))
        assert counted == {"p0": 1, "p2": 1, "s": 1, "wait": 2, "cat": 1}, counted

        [result] = glob.glob(os.path.join(directory, "workspace", "node-*", SID, "result.txt"))
        with open(result, "rb") as f:
            got = f.read()
        clean_counts = tmp_path / "clean"
        clean_counts.mkdir()
        clean_path = write_graph(tmp_path / "clean.json", graph(str(clean_counts), gate), name="clean")
        clean = submit(cluster.url, clean_path, "--session-id", "clean", "--wait")
        assert clean.returncode == 0, clean.stdout + clean.stderr
        [expected] = glob.glob(os.path.join(directory, "workspace", "node-*", "clean", "result.txt"))
        with open(expected, "rb") as f:
            assert got == f.read()
        # The session FINISHED: the island had its nodes forget the journal, and what the dead node left for
        # the resume is gone too.
        poll_for(lambda: not os.path.exists(journals), timeout=30)
        assert not (tmp_path / "cluster" / "workspace" / "node-2" / SID).exists()
    finally:
        localcluster.down(directory, timeout=30)
    assert token()  # (the daemons used this test run's token)
