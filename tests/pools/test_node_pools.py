"""A node's pools: warm workers across sessions, giving up stuck threads, a bounded close, one reaper."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

import poolfuncs
import psutil
import pytest

from dropflow.drops import MemorySpec, PythonSpec
from dropflow.engine import Node, reaper
from dropflow.engine.threadpool import Abandoned

from conftest import children, ours, poll_for, run, shm_segments


@pytest.fixture
def nodes(workspace_root: str) -> Iterator[Any]:
    """Nodes made by the test, closed at teardown; nothing they started may remain."""
    made: list[Node] = []
    kids = children()

    def make(**kwargs: Any) -> Node:
        made.append(Node(workspace_root=workspace_root, **kwargs).start())
        return made[-1]

    try:
        yield make
    finally:
        poolfuncs.RELEASE.set()  # stuck apps of the test may return now
        for n in made:
            n.close()
        poolfuncs.RELEASE.clear()
        # The engine's threads (a manager-level thread another test left is that test's leak, not this one's).
        poll_for(lambda: not ours(), timeout=10, what=lambda: f"engine threads left: {ours()}")
        poll_for(lambda: children() <= kids, timeout=10)
        assert not shm_segments(workspace_root)
        assert reaper.current() is None


def test_process_executor_node_runs_every_session_on_warm_workers(nodes):
    """With "process" as its default executor, a node starts its workers with itself; sessions reuse them."""
    node = nodes(processes=2, executor="process")
    warm = set(poll_for(lambda: len(node.worker_pids()) == 2 and node.worker_pids(), timeout=10))
    for i in range(3):
        s = run(
            node,
            [
                PythonSpec(id="p", func="testfuncs:pid", outputs={"out": "v"}),
                MemorySpec(id="v", persist=True),
            ],
            session_id=f"s{i}",
        )
        assert s.state == "FINISHED", s.failures()
        assert s.value("v") in warm
        node.delete_session(f"s{i}")
    assert set(node.worker_pids()) == warm


def test_a_long_sys_path_reaches_the_workers(nodes, monkeypatch, tmp_path):
    """The zygote gets the engine's sys.path in one message: 64 KiB of it (a long PYTHONPATH) arrives whole
    (a read shorter than the message truncated it, and every process app failed)."""
    monkeypatch.setattr(sys, "path", [*sys.path, *(str(tmp_path / ("x" * 200) / str(i)) for i in range(300))])
    node = nodes(processes=1, executor="process")
    s = run(
        node,
        [
            PythonSpec(id="p", func="testfuncs:pid", outputs={"out": "v"}),
            MemorySpec(id="v", persist=True),
        ],
    )
    assert s.state == "FINISHED", s.failures()
    node.delete_session("s")


def test_a_dead_zygote_is_replaced_and_the_next_sessions_run(nodes):
    """The zygote is killed (the OOM killer, an operator): its workers die with it, the node forks the next
    ones from a new zygote, and no run fails for it (no fork is ever sent on the dead one's closed socket)."""
    node = nodes(processes=2, executor="process")
    poll_for(lambda: len(node.worker_pids()) == 2, timeout=10)
    first = node._zygote()
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    poll_for(lambda: first.failed, timeout=10, what=lambda: "the node to see its zygote die")
    for i in range(4):  # more runs than workers: every slot meets its dead worker
        s = run(
            node,
            [
                PythonSpec(id="p", func="testfuncs:pid", outputs={"out": "v"}),
                MemorySpec(id="v", persist=True),
            ],
            session_id=f"s{i}",
        )
        assert s.state == "FINISHED", s.failures()
        node.delete_session(f"s{i}")
    second = node._zygote()
    assert second is not first and not second.failed
    assert second.pid is not None and psutil.pid_exists(second.pid)


def test_a_thread_without_a_node_default_starts_no_workers(nodes):
    node = nodes(processes=2)
    assert node.worker_pids() == []


def test_abandoned_app_thread_frees_the_nodes_only_thread(nodes):
    node = nodes(threads=1)
    stuck = node.submit_thread(poolfuncs.stuck)
    poll_for(lambda: stuck.running(), timeout=10)
    assert node.abandon_thread(stuck)
    with pytest.raises(Abandoned):
        stuck.result(0)
    assert node.submit_thread(lambda: "next").result(10) == "next"


@pytest.mark.timeout(60)
def test_close_is_bounded_by_its_timeout_despite_a_stuck_app(nodes, tmp_path):
    """Node.close(timeout=1) with a Python app that never returns: close returns, it does not wait on it."""
    node = nodes(threads=2)
    session = node.create_session("stuck")
    session.add([PythonSpec(id="p", func="poolfuncs:stuck", executor="thread")])
    session.deploy()
    poll_for(lambda: session.drop_state("p") == "RUNNING", timeout=10)
    node.close(timeout=1)


def test_nodes_of_a_process_share_one_reaper(nodes):
    first = nodes()
    r = reaper.current()
    assert r is not None and r.proc.poll() is None
    second = nodes()
    assert reaper.current() is r
    first.close()
    assert r.proc.poll() is None  # still guards the second node
    second.close()
    assert r.proc.returncode == 0 and reaper.current() is None
