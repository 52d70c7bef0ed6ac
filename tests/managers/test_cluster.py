"""A whole cluster in one process: an island over three node managers, joined by the in-process bus or by
ZeroMQ over loopback (every test runs with both).

node a:  x(json) -> double -> y ----.          y and z cross to node c;
node b:  w(json) -> triple -> z --.  \\         arr is produced on b and
                                   \\  v         read on c (a numpy array)
node c:                             add(y, z) -> s(persist)
         b: make_array -> arr(shm) ---------> c: total(arr) -> t(persist)
"""

from __future__ import annotations

import json
import os
import random
import sys

import numpy as np
import pytest

from dropflow.drops import MemorySpec, NoopSpec, PythonSpec, SharedMemorySpec, SleepSpec
from dropflow.drops.shm import SHM_DIR, SHM_PREFIX, session_scope
from dropflow.engine.bus import InProcBus
from dropflow.managers.errors import BadGraph, NotFound, WrongState
from dropflow.managers.island import DataIslandManager, bus_peer
from dropflow.managers.node_manager import NodeManager
from dropflow.managers.zmqbus import ZmqBus

from conftest import LeakCheck, poll_for, validate_all


@pytest.fixture(params=["inproc", "zmq"])
def island(tmp_path, request):
    inproc = InProcBus()
    leaks = LeakCheck([str(tmp_path / name) for name in ("a", "b", "c")])
    nms, buses = [], []
    for name in ("a", "b", "c"):
        nm = NodeManager(name, workspace_root=str(tmp_path / name), threads=4, processes=1).start()
        if request.param == "inproc":
            inproc.add(nm.node)
        else:
            bus = ZmqBus(nm.node).start()
            nm.node.bus = bus
            buses.append(bus)
        nms.append(nm)
    dim = DataIslandManager("island", nms)
    try:
        yield dim, {nm.name: nm for nm in nms}
        for nm in nms:
            validate_all(nm.node)
    finally:
        dim.close()
        for nm in nms:
            nm.close()
        for bus in buses:
            bus.close()
        leaks.check()


def graph():
    return [
        MemorySpec(id="x", data=2, codec="json", node="a"),
        PythonSpec(
            id="double", func="testfuncs:add", inputs={"a": "x", "b": "x"}, outputs={"out": "y"}, node="a"
        ),
        MemorySpec(id="y", node="a"),
        MemorySpec(id="w", data=3, codec="json", node="b"),
        PythonSpec(
            id="triple",
            func="testfuncs:total",
            inputs={"xs": ["w", "w", "w"]},
            outputs={"out": "z"},
            node="b",
        ),
        MemorySpec(id="z", node="b"),
        PythonSpec(
            id="add", func="testfuncs:add", inputs={"a": "y", "b": "z"}, outputs={"out": "s"}, node="c"
        ),
        MemorySpec(id="s", persist=True, node="c"),
        MemorySpec(id="n", data=1000, codec="json", node="b"),
        PythonSpec(
            id="make", func="testfuncs:fill_array", inputs={"n": "n"}, outputs={"out": "arr"}, node="b"
        ),
        SharedMemorySpec(id="arr", node="b"),
        PythonSpec(
            id="sum", func="testfuncs:read_first", inputs={"arr": "arr"}, outputs={"out": "t"}, node="c"
        ),
        MemorySpec(id="t", persist=True, node="c"),
    ]


def test_cross_node_graph_finishes(island):
    dim, nms = island
    dim.create_session("s1")
    dim.append("s1", graph())
    dim.deploy("s1")
    assert dim.wait("s1", 30) == "FINISHED", dim.summary("s1")
    session_c = nms["c"].node.sessions["s1"]
    assert session_c.value("s") == 4 + 9
    assert session_c.value("t") == 11
    summary = dim.summary("s1")
    assert summary["nodes"] == {"a": "FINISHED", "b": "FINISHED", "c": "FINISHED"}
    assert summary["drops"] == 13 + 0 or summary["drops"] >= 13


def test_remote_output_is_pushed_to_its_owner(island):
    """An app on a writes a drop owned by c; c's consumer reads it."""
    dim, nms = island
    dim.create_session("push")
    dim.append(
        "push",
        [
            MemorySpec(id="x", data=20, codec="json", node="a"),
            PythonSpec(
                id="inc",
                func="testfuncs:add",
                inputs={"a": "x"},
                kwargs={"b": 1},
                outputs={"out": "y"},
                node="a",
            ),
            MemorySpec(id="y", node="c"),
            PythonSpec(
                id="add",
                func="testfuncs:add",
                inputs={"a": "y"},
                kwargs={"b": 100},
                outputs={"out": "r"},
                node="c",
            ),
            MemorySpec(id="r", persist=True, node="c"),
        ],
    )
    dim.deploy("push")
    assert dim.wait("push", 30) == "FINISHED", dim.summary("push")
    assert nms["c"].node.sessions["push"].value("r") == 121


def test_failure_on_one_node_fails_the_island_session(island):
    dim, _ = island
    dim.create_session("f")
    dim.append(
        "f",
        [
            MemorySpec(id="x", data=1, codec="json", node="a"),
            PythonSpec(id="boom", func="testfuncs:boom", inputs={"x": "x"}, outputs={"out": "y"}, node="a"),
            MemorySpec(id="y", node="a"),
            NoopSpec(id="after", inputs={"i": "y"}, outputs={"o": "z"}, node="b"),
            MemorySpec(id="z", node="b"),
        ],
    )
    dim.deploy("f")
    assert dim.wait("f", 30) == "FAILED"
    summary = dim.summary("f")
    assert [(f["node"], f["uid"]) for f in summary["failures"]] == [("a", "boom")]
    assert dim.graph_status("f")["after"] == {"status": "ERROR", "execStatus": "ERROR"}


def test_cancel_reaches_every_node(island):
    dim, nms = island
    dim.create_session("c")
    dim.append(
        "c",
        [
            SleepSpec(id="nap-a", seconds=60, outputs={"o": "da"}, node="a"),
            MemorySpec(id="da", node="a"),
            SleepSpec(id="nap-b", seconds=60, inputs={"i": "da"}, node="b"),
        ],
    )
    dim.deploy("c")
    poll_for(
        lambda: nms["a"].status("c") == "RUNNING" and dim.graph_status("c")["nap-a"]["status"] == "RUNNING",
        timeout=10,
    )
    dim.cancel("c")
    assert dim.wait("c", 10) == "CANCELLED"
    assert nms["b"].status("c") == "CANCELLED"


def test_a_cancelled_apps_late_output_is_not_pushed_to_its_owner(island):
    """An app on b writes a shared-memory drop owned by a. It is cancelled, then returns before it is given
    up on: its bytes are not pushed to a, whose part has ended (a push there left a segment behind)."""
    from testfuncs import gate

    dim, nms = island
    name = f"late-push-{id(dim)}"
    dim.create_session("late")
    dim.append(
        "late",
        [
            PythonSpec(
                id="w", func="testfuncs:gated_bytes", kwargs={"name": name}, outputs={"o": "d"}, node="b"
            ),
            SharedMemorySpec(id="d", codec="bytes", node="a"),
        ],
    )
    dim.deploy("late")
    poll_for(lambda: dim.graph_status("late")["w"]["execStatus"] == "RUNNING", timeout=10)
    dim.cancel("late")
    poll_for(lambda: nms["a"].status("late") == "CANCELLED", timeout=10)
    gate(name).set()
    assert dim.wait("late", 10) == "CANCELLED"
    scope = SHM_PREFIX + session_scope(nms["a"].node.workspace_root, "late")
    assert not [n for n in os.listdir(SHM_DIR) if n.startswith(scope)]
    assert nms["b"].node.sessions["late"].error is None  # it returned before being given up on


def test_bad_graph_is_refused_before_anything_runs(island):
    dim, nms = island
    dim.create_session("bad")
    dim.append("bad", [NoopSpec(id="a", inputs={"i": "ghost"}, node="a")])
    with pytest.raises(BadGraph) as info:
        dim.deploy("bad")
    assert "links to missing drop 'ghost'" in str(info.value)
    dim.create_session("unplaced")
    dim.append("unplaced", [NoopSpec(id="a")])
    with pytest.raises(BadGraph, match="not placed on a node"):
        dim.deploy("unplaced")
    dim.create_session("cycle")
    dim.append(
        "cycle",
        [
            NoopSpec(id="p", inputs={"i": "d2"}, outputs={"o": "d1"}, node="a"),
            MemorySpec(id="d1", node="a"),
            NoopSpec(id="q", inputs={"i": "d1"}, outputs={"o": "d2"}, node="b"),
            MemorySpec(id="d2", node="b"),
        ],
    )
    with pytest.raises(BadGraph, match="cycle"):
        dim.deploy("cycle")
    assert all(not nm.node.sessions for nm in nms.values())


def test_session_api_errors(island):
    dim, _ = island
    with pytest.raises(NotFound):
        dim.status("nope")
    dim.create_session("x")
    dim.append("x", [NoopSpec(id="a", node="a")])
    dim.deploy("x")
    dim.wait("x", 10)
    with pytest.raises(WrongState):
        dim.append("x", [NoopSpec(id="b", node="a")])
    dim.delete_session("x")
    with pytest.raises(NotFound):
        dim.status("x")


def test_numpy_array_crosses_nodes_intact(island):
    dim, nms = island
    dim.create_session("np")
    dim.append(
        "np",
        [
            MemorySpec(id="n", data=3_000_000, codec="json", node="a"),
            PythonSpec(
                id="make", func="testfuncs:fill_array", inputs={"n": "n"}, outputs={"out": "arr"}, node="a"
            ),
            SharedMemorySpec(id="arr", node="a"),
            PythonSpec(
                id="use", func="testfuncs:touch_first", inputs={"arr": "arr"}, outputs={"out": "r"}, node="b"
            ),
            MemorySpec(id="r", persist=True, node="b"),
        ],
    )
    dim.deploy("np")
    assert dim.wait("np", 30) == "FINISHED", dim.summary("np")
    r = nms["b"].node.sessions["np"].value("r")
    assert r["seen"] == 11 and r["size"] == 3_000_000 and r["sum_head"] == 11 + 999
    assert np.int64(r["size"]) == 3_000_000


def test_events_before_a_node_starts_wait_for_its_start(island):
    """Node b is deployed but not yet started when node a's events arrive: they must not run b's cascade
    (b would end before it began, and stay RUNNING once started); b applies them when it starts."""
    _dim, nms = island
    drops = [
        MemorySpec(id="x", data=1, codec="json", node="a"),
        NoopSpec(id="n1", inputs={"i": "x"}, outputs={"o": "d1"}, node="a"),
        MemorySpec(id="d1", node="a"),
        NoopSpec(id="n2", inputs={"i": "d1"}, outputs={"o": "d2"}, node="b"),
        MemorySpec(id="d2", node="b"),
    ]
    from dropflow.managers.split import split_by_node

    parts = split_by_node(drops)
    peers = {name: bus_peer(nm.info()) for name, nm in nms.items()}
    for name in ("a", "b"):
        nms[name].create_session("early")
        nms[name].append("early", parts[name])
        nms[name].set_peers("early", peers)
        nms[name].deploy("early", start=False)
    nms["a"].start_session("early")
    session_b = nms["b"].node.sessions["early"]
    poll_for(lambda: session_b._early_events, timeout=10)  # a's news has reached b, which holds it
    assert session_b.state == "DEPLOYING" and session_b.graph_status()["n2"] == "NOT_RUN"
    assert nms["a"].status("early") == "RUNNING"  # a keeps d1 until b's consumer has read it
    nms["b"].start_session("early")
    assert nms["b"].wait("early", 10) == "FINISHED"
    assert nms["a"].wait("early", 10) == "FINISHED"


def test_the_readme_example_under_random_placements(island):
    """``examples/numpy_shm_pipeline.json`` with every drop placed at random on the three nodes, 20 times
    (seeded): boundary drops that expire after use, pushed outputs, fetched inputs and proxies of every
    kind. Proxies must replay their owners' states only -- a proxy that expired on its own used to meet
    its owner's COMPLETED in DELETED and hang the session."""
    from dropflow.drops.graph import decode_physical

    examples = os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples"
    )
    sys.path.insert(0, examples)
    try:
        with open(os.path.join(examples, "numpy_shm_pipeline.json"), "rb") as f:
            doc = json.load(f)
        dim, nms = island
        rng = random.Random(9)
        for attempt in range(20):
            for d in doc["drops"]:
                d["node"] = rng.choice(sorted(nms))
            sid = f"readme-{attempt}"
            dim.create_session(sid)
            dim.append(sid, list(decode_physical(json.dumps(doc).encode()).drops))
            dim.deploy(sid)
            state = dim.wait(sid, 60)
            assert state == "FINISHED", (attempt, dim.summary(sid))
            for nm in nms.values():
                if sid in nm.node.sessions:
                    nm.node.call(nm.node.sessions[sid].validate)
            dim.delete_session(sid)
    finally:
        sys.path.remove(examples)
