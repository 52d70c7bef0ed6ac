"""Lost and hung nodes: heartbeats from the island, leases on the nodes.

System tests run real daemons (gunicorn, loopback): a node manager is SIGSTOPped mid-session, or the island
is killed. In-process tests drive the same logic with a node whose heartbeat answers can be held back.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from daemons import Cluster, Daemon, start

from dropflow.drops import FileSpec, MemorySpec, NoopSpec, PythonSpec, SharedMemorySpec, ShellSpec, SleepSpec
from dropflow.drops.shm import SHM_PREFIX, session_scope
from dropflow.engine.bus import InProcBus
from dropflow.managers.client import RestClient
from dropflow.managers.errors import NodeFailure
from dropflow.managers.heartbeat import HeartbeatPolicy
from dropflow.managers.island import DataIslandManager
from dropflow.managers.node_manager import NodeManager

from conftest import LeakCheck, poll_for, shm_segments, validate_all

APPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps")


def segments(root: str, session_id: str) -> set[str]:
    prefix = f"{SHM_PREFIX}{session_scope(root, session_id)}."
    return {n for n in shm_segments() if n.startswith(prefix)}


def spread_graph() -> list[Any]:
    """
    n0: a (sleeps) -> da --------------------------.
    n1: n -> fill -> seg (shm) --.                  +--> join (n2)
        write -> f (file) -------+--> hold (sleeps) -> dh
    """
    return [
        SleepSpec(id="a", seconds=600, outputs={"o": "da"}, node="n0"),
        MemorySpec(id="da", node="n0"),
        MemorySpec(id="n", data=4096, codec="json", node="n1"),
        PythonSpec(
            id="fill", func="testfuncs:fill_array", inputs={"n": "n"}, outputs={"out": "seg"}, node="n1"
        ),
        SharedMemorySpec(id="seg", node="n1"),
        ShellSpec(id="write", command="echo scratch > {out}", outputs={"out": "f"}, node="n1"),
        FileSpec(id="f", node="n1"),
        SleepSpec(id="hold", seconds=600, inputs={"s": "seg", "f": "f"}, outputs={"o": "dh"}, node="n1"),
        MemorySpec(id="dh", node="n1"),
        NoopSpec(id="join", inputs={"a": "da", "h": "dh"}, node="n2"),
    ]


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {"PYTHONPATH": APPS}
    roots = [str(tmp_path / f"ws{i}") for i in range(3)]
    shm_before = set().union(*(shm_segments(r) for r in roots))
    nodes: list[Daemon] = []
    c = Cluster(None, nodes)  # type: ignore[arg-type]
    try:
        for i in range(3):
            nodes.append(
                start("nm", "--workspace", str(tmp_path / f"ws{i}"), logdir=str(logs), name=f"n{i}", env=env)
            )
        c.dim = start(
            "dim", "--nodes", ",".join(n.url for n in nodes), logdir=str(logs), name="island", env=env
        )
        yield c
    finally:
        for d in [c.dim, *nodes]:
            if d is not None and d.proc.poll() is None:
                os.killpg(d.proc.pid, signal.SIGCONT)  # a test that failed while a daemon was stopped
                d.stop()
        assert set().union(*(shm_segments(r) for r in roots)) <= shm_before
        for i in range(len(nodes)):
            ws = tmp_path / f"ws{i}"
            assert not ws.exists() or not any(ws.iterdir()), f"workspace {ws} not cleaned"


def part_cleaned(root: str, session_id: str) -> bool:
    return not os.path.exists(os.path.join(root, session_id)) and not segments(root, session_id)


def test_stopped_node_fails_the_session_and_cancels_its_part_when_it_wakes(cluster, tmp_path):
    """SIGSTOP n1 mid-session: within 10 s the island fails the session naming n1 and the other nodes
    cancel and clean their parts; n1, stopped, cannot. After SIGCONT, n1 cancels and cleans its part (its
    workspace directory and its shared-memory segment) within 10 s: the island told it, or its lease ran
    out."""
    with RestClient(cluster.dim.url) as island:
        island.create_session("s")
        island.append("s", spread_graph())
        island.deploy("s")
        ws1 = str(tmp_path / "ws1")
        poll_for(lambda: island.graph_status("s").get("hold", {}).get("status") == "RUNNING", timeout=30)
        assert segments(ws1, "s") and os.path.exists(os.path.join(ws1, "s"))

        n1 = cluster.nodes[1]
        os.killpg(n1.proc.pid, signal.SIGSTOP)
        try:
            summary = poll_for(lambda: (s := island.summary("s"))["status"] == "FAILED" and s, timeout=10)
            assert "node n1" in summary["error"] and "stopped answering" in summary["error"], summary
            assert summary["lost_nodes"].keys() == {"n1"}
            for i in (0, 2):
                with RestClient(cluster.nodes[i].url) as nm:
                    poll_for(lambda nm=nm: nm.status("s") == "CANCELLED", timeout=10)
                poll_for(lambda i=i: part_cleaned(str(tmp_path / f"ws{i}"), "s"), timeout=10)
            # n1 is stopped: nothing of its part has been cleaned.
            assert segments(ws1, "s") and os.path.exists(os.path.join(ws1, "s"))
        finally:
            os.killpg(n1.proc.pid, signal.SIGCONT)
        with RestClient(n1.url) as nm:
            poll_for(lambda: nm.status("s") == "CANCELLED", timeout=10)
            poll_for(lambda: part_cleaned(ws1, "s"), timeout=10)
            assert nm.summary("s")["error"], "the node says why it stopped"


def test_nodes_stop_their_parts_when_the_island_dies_but_not_direct_sessions(cluster, tmp_path):
    """Kill the island mid-session: every node's lease runs out and each cancels and cleans its part by
    itself. A session given directly to a node manager holds no lease: it is still running after that."""
    with RestClient(cluster.dim.url) as island:
        island.create_session("s")
        island.append("s", spread_graph())
        island.deploy("s")
        poll_for(lambda: island.graph_status("s").get("hold", {}).get("status") == "RUNNING", timeout=30)
    direct = RestClient(cluster.nodes[0].url)
    try:
        direct.create_session("direct")
        direct.append("direct", [SleepSpec(id="z", seconds=600)])
        direct.deploy("direct")
        cluster.dim.kill_hard()
        for i in range(3):
            with RestClient(cluster.nodes[i].url) as nm:
                poll_for(lambda nm=nm: nm.status("s") == "CANCELLED", timeout=30)
                assert "lease" in nm.summary("s")["error"]
            poll_for(lambda i=i: part_cleaned(str(tmp_path / f"ws{i}"), "s"), timeout=10)
        assert direct.status("direct") == "RUNNING"
        direct.cancel("direct")
        poll_for(lambda: direct.status("direct") == "CANCELLED", timeout=10)
    finally:
        direct.close()


# -- in process ---------------------------------------------------------------------------------------------

# Quick to notice, but not so quick that a loaded machine fakes a silence; leases far beyond any test.
FAST = HeartbeatPolicy(interval=0.1, timeout=0.5, lost_after=1.5, lease=60.0)


class Stoppable:
    """A node manager whose heartbeat answers can be held back, as if its daemon were SIGSTOPped, or can
    forget sessions, as if it had restarted."""

    def __init__(self, nm: NodeManager) -> None:
        self.nm = nm
        self.running = threading.Event()
        self.running.set()
        self.beats = 0
        self.forgotten: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.nm, name)

    def heartbeat(self, *args: Any, timeout: float | None = None, **kw: Any) -> dict[str, Any]:
        if not self.running.wait(timeout):
            raise NodeFailure(f"cannot reach {self.nm.name}: timed out")
        self.beats += 1
        answer = self.nm.heartbeat(*args, **kw)
        for sid in self.forgotten & answer["sessions"].keys():
            answer["sessions"][sid] = None
        return answer


@pytest.fixture
def in_process(tmp_path) -> Iterator[tuple[DataIslandManager, list[Stoppable]]]:
    leaks = LeakCheck([str(tmp_path / f"n{i}") for i in range(3)])
    nms = [
        NodeManager(f"n{i}", workspace_root=str(tmp_path / f"n{i}"), threads=4, processes=1) for i in range(3)
    ]
    bus = InProcBus()
    for nm in nms:
        nm.start()
        bus.add(nm.node)
    nodes = [Stoppable(nm) for nm in nms]
    island = DataIslandManager("island", nodes, heartbeat=FAST)  # type: ignore[arg-type]
    try:
        yield island, nodes
        for n in nodes:
            n.running.set()
        for nm in nms:
            validate_all(nm.node)
    finally:
        for n in nodes:
            n.running.set()
        island.close()
        for nm in nms:
            nm.close()
        leaks.check()


def test_a_silent_node_is_lost_and_told_to_cancel_when_it_answers_again(in_process):
    """
    n0: a (sleeps) -> da -> n1: b (sleeps)        n2: c (sleeps)

    n1 stops answering heartbeats: the island fails the session naming it and cancels n0 and n2; n1's part
    runs on (nothing reaches it) until it answers again, and is then cancelled by the island's order.
    """
    island, nodes = in_process
    island.create_session("s")
    island.append(
        "s",
        [
            SleepSpec(id="a", seconds=600, outputs={"o": "da"}, node="n0"),
            MemorySpec(id="da", node="n0"),
            SleepSpec(id="b", seconds=600, inputs={"i": "da"}, node="n1"),
            SleepSpec(id="c", seconds=600, node="n2"),
        ],
    )
    island.deploy("s")
    poll_for(lambda: nodes[1].beats >= 2, timeout=10)  # heartbeats flow while all is well...
    assert island.status("s") == "RUNNING"
    nodes[1].running.clear()
    assert island.wait("s", 10) == "FAILED"
    assert island.summary("s")["error"].startswith("node n1 lost: stopped answering heartbeats")
    assert nodes[0].nm.wait("s", 10) == "CANCELLED" and nodes[2].nm.wait("s", 10) == "CANCELLED"
    # n1 has not been told yet (and its lease is long): the island keeps trying.
    assert nodes[1].nm.status("s") == "RUNNING"
    poll_for(lambda: island._monitor.pending_cancels() == {"n1": ["s"]}, timeout=10)
    nodes[1].running.set()
    assert nodes[1].nm.wait("s", 10) == "CANCELLED"
    assert "cancelled by island" in nodes[1].nm.summary("s")["error"]
    poll_for(lambda: not island._monitor.pending_cancels(), timeout=10)
    island.delete_session("s")
    assert all(n.nm.sessions() == [] for n in nodes)  # the part of the node that came back too


def test_a_node_that_forgot_a_running_session_is_lost_at_once(in_process):
    """A node manager that restarted answers heartbeats but no longer knows the session: lost at once."""
    island, nodes = in_process
    island.create_session("s")
    island.append("s", [SleepSpec(id="a", seconds=600, node="n0"), SleepSpec(id="b", seconds=600, node="n1")])
    island.deploy("s")
    nodes[1].forgotten.add("s")  # as if its daemon had restarted
    assert island.wait("s", 10) == "FAILED"
    assert "no longer has session s" in island.summary("s")["error"]
    assert nodes[0].nm.wait("s", 10) == "CANCELLED"
    assert nodes[1].nm.wait("s", 10) == "CANCELLED"  # told to, in case it is the same process after all
    island.delete_session("s")


def test_heartbeats_need_the_token(tmp_path):
    import falcon.testing

    from dropflow.managers.rest import make_app

    nm = NodeManager("n", workspace_root=str(tmp_path), threads=1, processes=1).start()
    try:
        client = falcon.testing.TestClient(make_app(nm, token="secret"))
        body = {"from": "island", "renew": ["x"], "lease": 5}
        assert client.simulate_post("/api/heartbeat", json=body).status_code == 401
        ok = client.simulate_post("/api/heartbeat", json=body, headers={"Authorization": "Bearer secret"})
        assert ok.status_code == 200 and ok.json == {"name": "n", "sessions": {"x": None}}
        bad = client.simulate_post(
            "/api/heartbeat", json={**body, "lease": -1}, headers={"Authorization": "Bearer secret"}
        )
        assert bad.status_code == 400
    finally:
        nm.close()


def test_a_master_loses_a_silent_island_and_stops_its_part_when_it_answers(tmp_path):
    """
    island A: n0: a (sleeps) -> da ---> island B: n1: b (sleeps)

    The master heartbeats its islands as an island does its nodes: island B falls silent, the session fails
    naming it, island A is cancelled, and B cancels its part once it answers again.
    """
    from dropflow.managers.master import MasterManager

    leaks = LeakCheck([str(tmp_path / f"n{i}") for i in (0, 1)])
    bus = InProcBus()
    nms = [
        NodeManager(f"n{i}", workspace_root=str(tmp_path / f"n{i}"), threads=2, processes=1) for i in (0, 1)
    ]
    for nm in nms:
        nm.start()
        bus.add(nm.node)
    islands = [DataIslandManager("A", [nms[0]]), DataIslandManager("B", [nms[1]])]
    b = Stoppable(islands[1])  # type: ignore[arg-type]
    mm = MasterManager("master", [islands[0], b], heartbeat=FAST)  # type: ignore[list-item]
    try:
        mm.create_session("m")
        mm.append(
            "m",
            [
                SleepSpec(id="a", seconds=600, outputs={"o": "da"}, node="n0", island="A"),
                MemorySpec(id="da", node="n0", island="A"),
                SleepSpec(id="b", seconds=600, inputs={"i": "da"}, node="n1", island="B"),
            ],
        )
        mm.deploy("m")
        poll_for(lambda: b.beats >= 2, timeout=10)
        b.running.clear()
        assert mm.wait("m", 10) == "FAILED"
        assert mm.summary("m")["error"].startswith("node B lost: stopped answering heartbeats")
        assert islands[0].wait("m", 10) == "CANCELLED" and nms[0].wait("m", 10) == "CANCELLED"
        assert islands[1].status("m") == "RUNNING"
        b.running.set()
        assert islands[1].wait("m", 10) == "CANCELLED" and nms[1].wait("m", 10) == "CANCELLED"
        for nm in nms:
            validate_all(nm.node)
    finally:
        b.running.set()
        mm.close()
        for island in islands:
            island.close()
        for nm in nms:
            nm.close()
    leaks.check()
