"""GET /api/sessions/{sid}/graph/drop/{uid}/data: a finished drop's data, bounded, from any manager.

Called in-process through falcon's test client, on a node manager and on an island over two node managers
(the island finds the node that holds the drop and asks it).
"""

from __future__ import annotations

import base64

import pytest
from falcon import testing

from dropflow.drops import FileSpec, MemorySpec, PythonSpec, ShellSpec
from dropflow.drops.spec import DirectorySpec
from dropflow.managers.island import DataIslandManager
from dropflow.managers.node_manager import NodeManager
from dropflow.managers.rest import make_app
from dropflow.managers.results import decode_value

import apitools  # noqa: F401  (the import path)


@pytest.fixture
def nodes(tmp_path):
    managers = [
        NodeManager(f"n{i}", workspace_root=str(tmp_path / f"ws{i}"), threads=4, processes=1).start()
        for i in range(2)
    ]
    yield managers
    for m in managers:
        m.close()


def graph(node: str | None = None) -> list:
    drops = [
        MemorySpec(id="x", data={"a": 1}, codec="json", node=node),
        PythonSpec(id="dump", func="json:dumps", inputs={"obj": "x"}, outputs={"text": "y#0"}, node=node),
        MemorySpec(id="y#0", codec="utf-8", persist=True, node=node),
        MemorySpec(id="gone", codec="utf-8", node=node),
        ShellSpec(
            id="sh",
            command="echo big > %o[f]; mkdir -p %o[d]",
            outputs={"f": "f", "d": "d", "stdout": "gone"},
            node=node,
        ),
        FileSpec(id="f", persist=True, node=node),
        DirectorySpec(id="d", persist=True, node=node),
    ]
    return drops


def run_on(api, session: str, drops: list, end: str = "FINISHED") -> None:
    from dropflow.drops import encode_physical

    assert api.simulate_post("/api/v1/sessions", json={"sessionId": session}).status_code == 201
    assert (
        api.simulate_post(f"/api/v1/sessions/{session}/graph/append", body=encode_physical(drops)).status_code
        == 200
    )
    assert api.simulate_post(f"/api/v1/sessions/{session}/deploy").status_code == 200
    waited = api.simulate_get(f"/api/v1/sessions/{session}/wait", params={"timeout": "30"})
    assert waited.json["status"] == end


_apps: list = []


def client_of(manager):
    """A test client of a manager's REST app; the app (and its request threads) is closed at teardown."""
    app = make_app(manager)
    _apps.append(app)
    return testing.TestClient(app)


@pytest.fixture(autouse=True)
def close_apps():
    yield
    while _apps:
        _apps.pop().close()


def data(api, session: str, uid: str, **params):
    return api.simulate_get(
        f"/api/v1/sessions/{session}/graph/drop/{uid.replace('#', '%23')}/data", params=params
    )


@pytest.mark.parametrize("role", ["nm", "dim"])
def test_values_paths_and_refusals(nodes, role):
    """
    A kept memory drop answers its bytes and codec (its value decodes); a file answers its bytes and path,
    or only its path with content=false; a directory only its path. A drop whose data is gone, a drop over
    max_bytes and an unknown drop are refused with what to do.
    """
    if role == "nm":
        api, node = client_of(nodes[0]), None
    else:
        island = DataIslandManager("island", nodes)
        api, node = client_of(island), "n1"
    run_on(api, "s", graph(node))

    value = data(api, "s", "y#0")
    assert value.status_code == 200, value.text
    assert value.json["codec"] == "utf-8" and value.json["node"] == (node or "n0")
    assert decode_value(value.json) == '{"a": 1}'

    f = data(api, "s", "f").json
    assert base64.b64decode(f["data"]) == b"big\n" and f["path"].endswith("/f")
    assert data(api, "s", "f", content="false").json["data"] is None
    assert data(api, "s", "d").json["data"] is None and data(api, "s", "d").json["path"].endswith("/d")

    gone = data(api, "s", "gone")
    assert gone.status_code == 409 and "mark it persist" in gone.json["error"]["message"]
    big = data(api, "s", "f", max_bytes="2")
    assert big.status_code == 413 and "read it at" in big.json["error"]["message"]
    assert data(api, "s", "nope").status_code == 404
    assert data(api, "s", "dump").status_code == 404
    assert data(api, "nosession", "y#0").status_code == 404
    if role == "dim":
        island.close()


def test_a_drop_that_has_not_completed_is_a_conflict(nodes):
    api = client_of(nodes[0])
    run_on(
        api,
        "s",
        [ShellSpec(id="fail", command="exit 3", outputs={"stdout": "o"}), MemorySpec(id="o", persist=True)],
        "FAILED",
    )
    answer = data(api, "s", "o")
    assert answer.status_code == 409 and "ERROR" in answer.json["error"]["message"]
