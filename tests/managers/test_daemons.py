"""System tests: an island manager and three node managers as real daemons under gunicorn, on loopback."""

from __future__ import annotations

import os
import time

import psutil
import pytest
from daemons import Cluster, start

from dropflow.drops import FileSpec, MemorySpec, PythonSpec, SharedMemorySpec, ShellSpec, SleepSpec
from dropflow.managers.client import RestClient

from conftest import poll_for, shm_segments

APPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps")
SIZE = 256 * 1024 * 1024


@pytest.fixture
def cluster(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {"PYTHONPATH": APPS}
    roots = [str(tmp_path / f"ws{i}") for i in range(3)]
    shm_before = set().union(*(shm_segments(r) for r in roots))
    nodes = [
        start("nm", "--workspace", str(tmp_path / f"ws{i}"), logdir=str(logs), name=f"n{i}", env=env)
        for i in range(3)
    ]
    dim = start("dim", "--nodes", ",".join(n.url for n in nodes), logdir=str(logs), name="island", env=env)
    c = Cluster(dim, nodes)
    client = RestClient(dim.url)
    try:
        yield c, client
    finally:
        client.close()
        pids = [d.proc.pid for d in (dim, *nodes)]
        c.stop()
        assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        assert set().union(*(shm_segments(r) for r in roots)) <= shm_before
        for i, node in enumerate(nodes):
            ws = tmp_path / f"ws{i}"
            if not node.killed:  # a node killed with SIGKILL cannot clean up after itself
                assert not ws.exists() or not any(ws.iterdir()), f"workspace {ws} not cleaned"


def test_cross_node_graph_finishes(cluster):
    """
    n0: gen -> f (file) ---fetch---> n1: count -> n (memory) ---fetch---> n2: echo -> m (persist)
    """
    _, client = cluster
    client.create_session("x")
    client.append(
        "x",
        [
            ShellSpec(id="gen", command="seq 1 100 > {out}", outputs={"out": "f"}, node="n0"),
            FileSpec(id="f", node="n0"),
            ShellSpec(
                id="count", command="wc -l < {i}", inputs={"i": "f"}, outputs={"stdout": "n"}, node="n1"
            ),
            MemorySpec(id="n", codec="utf-8", node="n1"),
            ShellSpec(id="echo", command="cat", inputs={"stdin": "n"}, outputs={"stdout": "m"}, node="n2"),
            MemorySpec(id="m", codec="utf-8", persist=True, node="n2"),
        ],
    )
    client.deploy("x")
    answer = client.wait("x", 30)
    assert answer["ended"] and answer["status"] == "FINISHED", answer
    assert answer["summary"]["nodes"] == {"n0": "FINISHED", "n1": "FINISHED", "n2": "FINISHED"}
    assert answer["summary"]["drops"] == 6


def test_256_mib_array_crosses_nodes_intact(cluster):
    """A 256 MiB array made in shared memory on n0 is fetched by n1 over ZeroMQ; checksums agree."""
    _, client = cluster
    client.create_session("big")
    client.append(
        "big",
        [
            MemorySpec(id="size", data=SIZE, codec="json", node="n0"),
            PythonSpec(
                id="make",
                func="testfuncs:random_bytes",
                inputs={"n": "size"},
                outputs={"out": "arr"},
                node="n0",
            ),
            SharedMemorySpec(id="arr", node="n0"),
            PythonSpec(
                id="crc_here", func="testfuncs:crc", inputs={"arr": "arr"}, outputs={"out": "c0"}, node="n0"
            ),
            MemorySpec(id="c0", persist=True, node="n2"),
            PythonSpec(
                id="crc_there", func="testfuncs:crc", inputs={"arr": "arr"}, outputs={"out": "c1"}, node="n1"
            ),
            MemorySpec(id="c1", persist=True, node="n2"),
            PythonSpec(
                id="compare",
                func="testfuncs:same",
                inputs={"a": "c0", "b": "c1"},
                outputs={"out": "ok"},
                node="n2",
            ),
            MemorySpec(id="ok", persist=True, node="n2", codec="json"),
        ],
    )
    client.deploy("big")
    answer = client.wait("big", 60)
    assert answer["status"] == "FINISHED", answer
    log = client.drop_log("big", "compare")
    assert log["status"] == "FINISHED"
    ok = client.drop_log("big", "ok")
    assert ok["status"] == "COMPLETED"
    # The comparison ran on n2 with both checksums; it returns True only if they are equal and non-trivial.
    assert not answer["summary"]["failures"]


def test_killed_node_fails_the_session_and_others_clean_up(cluster, tmp_path):
    """SIGKILL a node manager mid-session: the island fails the session naming it within 10 s; the others
    cancel their parts and clean their workspaces."""
    c, client = cluster
    client.create_session("k")
    client.append(
        "k",
        [
            SleepSpec(id="a", seconds=100, outputs={"o": "da"}, node="n0"),
            MemorySpec(id="da", node="n0"),
            SleepSpec(id="b", seconds=100, inputs={"i": "da"}, outputs={"o": "db"}, node="n1"),
            MemorySpec(id="db", node="n1"),
            ShellSpec(id="c", command="sleep 100", outputs={"stdout": "dc"}, node="n2"),
            MemorySpec(id="dc", node="n2"),
        ],
    )
    client.deploy("k")
    poll_for(lambda: client.graph_status("k").get("a", {}).get("status") == "RUNNING", timeout=20)
    killed = time.monotonic()
    c.nodes[1].kill_hard()
    summary = poll_for(lambda: (s := client.summary("k"))["status"] in ("FAILED",) and s, timeout=10)
    assert time.monotonic() - killed < 10
    assert "n1" in summary["error"] and "lost" in summary["error"]
    assert summary["lost_nodes"].keys() == {"n1"}
    for node in ("n0", "n2"):
        nm = RestClient(c.nodes[int(node[1])].url)
        poll_for(lambda nm=nm: nm.status("k") == "CANCELLED", timeout=10)
        nm.close()
    assert not (tmp_path / "ws0" / "k").exists() and not (tmp_path / "ws2" / "k").exists()
    assert not [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "sleep" and p.info["cmdline"] == ["sleep", "100"]
    ]


def test_bad_requests_get_json_errors_from_a_daemon(cluster):
    _, client = cluster
    client.create_session("bad")
    from dropflow.managers.errors import BadGraph, NotFound

    with pytest.raises(BadGraph) as info:
        client.append_bytes(
            "bad",
            b'{"format": "dropflow/physical-graph", "version": 1, "drops": [{"id": 3, "kind": "memory"}]}',
        )
    assert info.value.extra["problems"][0]["field"] == "id"
    with pytest.raises(NotFound):
        client.status("nope")


def test_sigterm_stops_a_node_cleanly_mid_session(tmp_path):
    """SIGTERM to a node manager running `sleep 100`: it cancels, kills the command, cleans, and exits."""
    nm = start("nm", "--workspace", str(tmp_path / "ws"), logdir=str(tmp_path), name="term")
    client = RestClient(nm.url)
    try:
        client.create_session("t")
        client.append(
            "t", [ShellSpec(id="long", command="sleep 100", outputs={"stdout": "m"}), MemorySpec(id="m")]
        )
        client.deploy("t")
        poll_for(lambda: client.graph_status("t")["long"]["status"] == "RUNNING", timeout=20)
        sleeper = poll_for(
            lambda: [p for p in psutil.Process(nm.proc.pid).children(recursive=True) if p.name() == "sleep"],
            timeout=10,
        )[0]
        nm.proc.terminate()
        assert nm.proc.wait(30) == 0
        assert not psutil.pid_exists(sleeper.pid) or sleeper.status() == psutil.STATUS_ZOMBIE
        assert not (tmp_path / "ws" / "t").exists()
    finally:
        client.close()
        nm.stop()


@pytest.mark.parametrize("allocator", ["malloc", "pymalloc"])
def test_a_node_manager_runs_on_the_allocator_that_gives_memory_back(tmp_path, allocator):
    """By default the daemon re-executes itself (same pid) on the C allocator, which gives each deleted
    session's memory back (dropflow.engine.heap); its users' commands get the environment it was given,
    and it keeps the token it was given in $DROPFLOW_TOKEN (as a Slurm job's daemons are)."""
    token = "t-" + os.urandom(12).hex()
    nm = start(
        "nm",
        "--workspace",
        str(tmp_path / "ws"),
        "--allocator",
        allocator,
        logdir=str(tmp_path),
        name="alloc",
        env={"DROPFLOW_TOKEN": token},
    )
    client = RestClient(nm.url, token=token)
    try:
        with open(f"/proc/{nm.proc.pid}/environ", "rb") as f:  # what the running program was executed with
            environ = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        assert environ.get(b"PYTHONMALLOC") == (b"malloc" if allocator == "malloc" else None)
        client.create_session("e")
        client.append(
            "e",
            [
                # Fails (exit 1) if the variable reached the command.
                ShellSpec(id="env", command='test -z "$PYTHONMALLOC"', outputs={"stdout": "m"}),
                MemorySpec(id="m", codec="utf-8"),
            ],
        )
        client.deploy("e")
        answer = client.wait("e", 30)
        assert answer["status"] == "FINISHED", answer
    finally:
        client.close()
        nm.stop()
