"""A master manager over two islands of two node managers each, in one process, joined by ZeroMQ.

island A: a0, a1          island B: b0, b1
a0: x -> inc -> y ---------------------> b1: add(y, z) -> s (persist)
b0: w -> inc -> z ----------------------^
"""

from __future__ import annotations

import pytest

from dropflow.drops import MemorySpec, NoopSpec, PythonSpec
from dropflow.managers.errors import BadGraph
from dropflow.managers.island import DataIslandManager
from dropflow.managers.master import MasterManager
from dropflow.managers.node_manager import NodeManager
from dropflow.managers.zmqbus import ZmqBus

from conftest import LeakCheck, validate_all


@pytest.fixture
def master(tmp_path):
    leaks = LeakCheck([str(tmp_path / name) for name in ("a0", "a1", "b0", "b1")])
    nms, buses = {}, []
    for name in ("a0", "a1", "b0", "b1"):
        nm = NodeManager(name, workspace_root=str(tmp_path / name), threads=4, processes=1).start()
        bus = ZmqBus(nm.node).start()
        nm.node.bus = bus
        nms[name], _ = nm, buses.append(bus)
    islands = [DataIslandManager("A", [nms["a0"], nms["a1"]]), DataIslandManager("B", [nms["b0"], nms["b1"]])]
    mm = MasterManager("master", islands)
    yield mm, nms
    for nm in nms.values():
        validate_all(nm.node)
    mm.close()
    for island in islands:
        island.close()
    for nm in nms.values():
        nm.close()
    for bus in buses:
        bus.close()
    leaks.check()


def test_graph_across_islands_finishes(master):
    mm, nms = master
    mm.create_session("m")
    mm.append(
        "m",
        [
            MemorySpec(id="x", data=1, codec="json", node="a0", island="A"),
            PythonSpec(
                id="incx",
                func="testfuncs:add",
                inputs={"a": "x"},
                kwargs={"b": 1},
                outputs={"out": "y"},
                node="a0",
                island="A",
            ),
            MemorySpec(id="y", node="a0", island="A"),
            MemorySpec(id="w", data=10, codec="json", node="b0", island="B"),
            PythonSpec(
                id="incw",
                func="testfuncs:add",
                inputs={"a": "w"},
                kwargs={"b": 1},
                outputs={"out": "z"},
                node="b0",
                island="B",
            ),
            MemorySpec(id="z", node="b0", island="B"),
            PythonSpec(
                id="add",
                func="testfuncs:add",
                inputs={"a": "y", "b": "z"},
                outputs={"out": "s"},
                node="b1",
                island="B",
            ),
            MemorySpec(id="s", persist=True, node="b1", island="B"),
        ],
    )
    mm.deploy("m")
    assert mm.wait("m", 30) == "FINISHED", mm.summary("m")
    assert nms["b1"].node.sessions["m"].value("s") == 2 + 11
    summary = mm.summary("m")
    assert summary["nodes"] == {"A": "FINISHED", "B": "FINISHED"} and summary["drops"] == 8
    assert {n["name"]: [m["name"] for m in n["nodes"]] for n in mm.nodes()} == {
        "A": ["a0", "a1"],
        "B": ["b0", "b1"],
    }


def test_drop_on_an_unknown_island_is_refused(master):
    mm, _ = master
    mm.create_session("bad")
    mm.append("bad", [NoopSpec(id="n", node="c0", island="C")])
    with pytest.raises(BadGraph, match="'C' is not one of this manager's islands"):
        mm.deploy("bad")
