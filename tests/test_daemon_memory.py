"""A long-running node manager gives back what a deleted session took.

Before, ``gc.freeze()`` after every deploy and the Session <-> Transfers cycle kept every session's graph
in the collector's permanent generation: a ``dropflow nm`` fed the same 10k-app graph 20 times, with a DELETE
after each, grew from 95 to 392 MB. Here a node manager runs and deletes the same graph several times; each
deleted session must be freed -- by reference counting alone, before any collection -- and the number of
objects the collector tracks must come back to where it was after the first session.
(benchmarks/daemon_memory.py reports the RSS curve of a real daemon over 200 sessions of 100k drops.)
"""

from __future__ import annotations

import gc
import weakref

from dropflow.drops import MemorySpec, NoopSpec, PythonSpec
from dropflow.drops.spec import DropSpec
from dropflow.managers.node_manager import NodeManager

from conftest import poll_for
from testfuncs import gate


def graph(n: int) -> list[DropSpec]:
    """A chain of no-ops with a fan of Python apps beside it: memory drops, lifespans, persisted values."""
    drops: list[DropSpec] = [MemorySpec(id="d0", data=1, codec="json")]
    for i in range(1, n):
        drops += [
            NoopSpec(id=f"a{i}", inputs={"i": f"d{i - 1}"}, outputs={"o": f"d{i}"}),
            MemorySpec(id=f"d{i}"),
        ]
    for i in range(20):
        drops += [
            PythonSpec(id=f"p{i}", func="testfuncs:inc", inputs={"x": "d0"}, outputs={"out": f"y{i}"}),
            MemorySpec(id=f"y{i}", persist=True, lifespan=3600.0),
        ]
    return drops


def test_deleted_sessions_are_freed_and_objects_do_not_accumulate(tmp_path):
    nm = NodeManager("n", workspace_root=str(tmp_path / "ws"), threads=4, processes=1).start()
    try:
        counts = []
        for round_ in range(6):
            sid = f"s{round_}"
            nm.create_session(sid)
            nm.append(sid, graph(5000))
            nm.deploy(sid)
            assert nm.wait(sid, 60) == "FINISHED"
            session = nm.node.sessions[sid]
            refs = [weakref.ref(session), weakref.ref(session.graph), weakref.ref(session.core)]
            del session
            gc.disable()  # freed by reference counting alone: no cycle is left to collect
            try:
                nm.delete_session(sid)
                alive = [r() for r in refs if r() is not None]
                assert not alive, f"round {round_}: still in memory after delete: {alive}"
            finally:
                gc.enable()
            gc.collect()
            counts.append(len(gc.get_objects()))
        # After the first round (imports, pools, caches), the tracked objects stay flat.
        assert max(counts[1:]) - counts[1] < 500, counts
    finally:
        nm.close()


def test_a_timer_that_fired_does_not_keep_its_deleted_session(node):
    """The owner loop's locals held the last timer it ran (here a lifespan's) until another fired: a deleted
    session stayed in memory for as long as the node ran no other timer."""
    session = node.create_session("timer")
    session.add(
        [
            MemorySpec(id="m", data=1, codec="json", lifespan=0.001),
            PythonSpec(id="w", func="testfuncs:wait_gate", kwargs={"name": "timer-fired"}),
        ]
    )
    session.deploy()
    poll_for(lambda: node.sessions["timer"].drop_state("m") == "DELETED", timeout=10)
    gate("timer-fired").set()
    assert session.wait(10) == "FINISHED"
    ref = weakref.ref(session)
    del session
    node.delete_session("timer")
    gc.collect()
    assert ref() is None, f"still in memory after delete: {gc.get_referrers(ref())}"
