"""The REST API of a node manager, called in-process through falcon's test client."""

from __future__ import annotations

import gzip
import json

import pytest
from falcon import testing

from dropflow.drops import MemorySpec, NoopSpec, PythonSpec, ShellSpec, encode_physical
from dropflow.managers.node_manager import NodeManager
from dropflow.managers.rest import make_app


@pytest.fixture
def nm(tmp_path):
    manager = NodeManager("node-1", workspace_root=str(tmp_path / "ws"), threads=4, processes=1).start()
    yield manager
    manager.close()


@pytest.fixture
def api(nm):
    return testing.TestClient(make_app(nm))


GRAPH = encode_physical(
    [
        MemorySpec(id="x", data=4, codec="json"),
        PythonSpec(id="sq", func="testfuncs:add", inputs={"a": "x", "b": "x"}, outputs={"out": "y"}),
        MemorySpec(id="y", codec="json", persist=True),
    ]
)


def error(resp):
    body = resp.json["error"]
    assert set(body) >= {"status", "title", "message"} and body["status"] == resp.status_code
    return body


def test_session_lifecycle_like_dalige_clients(api, nm):
    assert api.simulate_get("/api/v1/health").json["role"] == "nm"
    assert api.simulate_post("/api/v1/sessions", json={"sessionId": "s1"}).status_code == 201
    assert api.simulate_get("/api/v1/sessions/s1/status").json["status"] == "PRISTINE"
    resp = api.simulate_post(
        "/api/v1/sessions/s1/graph/append",
        body=gzip.compress(GRAPH),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert resp.json == {"sessionId": "s1", "appended": 3}
    assert api.simulate_get("/api/v1/sessions/s1/status").json["status"] == "BUILDING"
    assert api.simulate_post("/api/v1/sessions/s1/deploy").status_code == 200
    waited = api.simulate_get("/api/v1/sessions/s1/wait", params={"timeout": "20"}).json
    assert waited["ended"] and waited["status"] == "FINISHED"
    assert waited["summary"]["by_state"] == {"COMPLETED": 2, "FINISHED": 1}
    status = api.simulate_get("/api/v1/sessions/s1/graph/status").json
    assert status["sq"] == {"status": "FINISHED", "execStatus": "FINISHED"} and status["y"] == {
        "status": "COMPLETED"
    }
    only = api.simulate_get("/api/v1/sessions/s1/graph/status", params={"state": "FINISHED"}).json
    assert list(only) == ["sq"]
    assert api.simulate_get("/api/v1/sessions/s1/graph/size").json == 3
    log = api.simulate_get("/api/v1/sessions/s1/logs/sq").json
    assert [e["to"] for e in log["events"]] == ["RUNNING", "FINISHED"]
    assert json.loads(api.simulate_get("/api/v1/sessions/s1/graph").text)["drops"][0]["id"] == "x"
    assert [s["sessionId"] for s in api.simulate_get("/api/v1/sessions").json] == ["s1"]
    assert api.simulate_delete("/api/v1/sessions/s1").status_code == 204
    assert api.simulate_get("/api/v1/sessions/s1").status_code == 404


def test_failures_are_in_the_summary_and_the_drop_log(api):
    api.simulate_post("/api/v1/sessions", json={"sessionId": "f"})
    api.simulate_post(
        "/api/v1/sessions/f/graph/append",
        body=encode_physical(
            [
                ShellSpec(id="bad", command="echo nope >&2; exit 4", outputs={"stdout": "m"}),
                MemorySpec(id="m"),
            ]
        ),
    )
    api.simulate_post("/api/v1/sessions/f/deploy")
    assert api.simulate_get("/api/v1/sessions/f/wait", params={"timeout": "20"}).json["status"] == "FAILED"
    summary = api.simulate_get("/api/v1/sessions/f/summary").json
    assert summary["failures"][0]["uid"] == "bad" and "nope" in summary["failures"][0]["message"]
    assert "exit status 4" in api.simulate_get("/api/v1/sessions/f/logs/bad").json["error"]


def test_dalige_physical_graph_can_be_appended(api):
    api.simulate_post("/api/v1/sessions", json={"sessionId": "d"})
    dlg = [
        {
            "oid": "a",
            "categoryType": "Data",
            "dropclass": "dlg.data.drops.memory.InMemoryDROP",
            "consumers": ["s"],
        },
        {
            "oid": "s",
            "categoryType": "Application",
            "dropclass": "dlg.apps.simple.SleepApp",
            "sleep_time": 0,
            "outputs": ["b"],
        },
        {"oid": "b", "categoryType": "Data", "dropclass": "dlg.data.drops.memory.InMemoryDROP"},
    ]
    resp = api.simulate_post("/api/v1/sessions/d/graph/append", json=dlg)
    assert resp.status_code == 200, resp.text
    api.simulate_post("/api/v1/sessions/d/deploy")
    assert api.simulate_get("/api/v1/sessions/d/wait", params={"timeout": "20"}).json["status"] == "FINISHED"


@pytest.mark.parametrize(
    "method,path,kw,status,text",
    [
        ("post", "/api/v1/sessions", {"json": {"nope": 1}}, 400, "sessionId"),
        ("post", "/api/v1/sessions", {"body": b"{not json"}, 400, "not JSON"),
        ("post", "/api/v1/sessions", {"json": {"sessionId": "../x"}}, 400, "letters, digits"),
        ("get", "/api/v1/sessions/ghost/status", {}, 404, "no session 'ghost'"),
        ("post", "/api/v1/sessions/ghost/deploy", {}, 404, "no session"),
        ("get", "/api/v1/no/such/thing", {}, 404, "Not Found"),
        ("get", "/api/v1/sessions/ghost/wait", {"params": {"timeout": "x"}}, 400, "must be a number"),
    ],
)
def test_bad_requests_get_json_errors(api, method, path, kw, status, text):
    resp = getattr(api, f"simulate_{method}")(path, **kw)
    assert resp.status_code == status
    assert text in json.dumps(error(resp))


def test_bad_graphs_name_the_drop_and_field(api):
    api.simulate_post("/api/v1/sessions", json={"sessionId": "b"})
    bad = {"format": "dropflow/physical-graph", "version": 1, "drops": [{"id": "a", "kind": "memroy"}]}
    body = error(api.simulate_post("/api/v1/sessions/b/graph/append", json=bad))
    assert body["problems"] == [
        {
            "where": "drop 'a' (drops[0])",
            "field": "kind",
            "message": "unknown drop kind 'memroy'; did you mean 'memory'?",
        }
    ]
    api.simulate_post(
        "/api/v1/sessions/b/graph/append", body=encode_physical([NoopSpec(id="n", inputs={"i": "missing"})])
    )
    body = error(api.simulate_post("/api/v1/sessions/b/deploy"))
    assert body["status"] == 400 and body["problems"][0]["field"] == "inputs"
    assert api.simulate_get("/api/v1/sessions/b/status").json["status"] == "BUILDING"  # nothing ran
    gz = api.simulate_post(
        "/api/v1/sessions/b/graph/append", body=b"not gzip", headers={"Content-Encoding": "gzip"}
    )
    assert gz.status_code == 400 and "gzip" in error(gz)["message"]


def test_wrong_state_and_duplicates_are_conflicts(api):
    api.simulate_post("/api/v1/sessions", json={"sessionId": "c"})
    assert api.simulate_post("/api/v1/sessions", json={"sessionId": "c"}).status_code == 409
    api.simulate_post("/api/v1/sessions/c/graph/append", body=encode_physical([NoopSpec(id="n")]))
    api.simulate_post("/api/v1/sessions/c/deploy")
    api.simulate_get("/api/v1/sessions/c/wait", params={"timeout": "10"})
    resp = api.simulate_post("/api/v1/sessions/c/graph/append", body=encode_physical([NoopSpec(id="m")]))
    assert resp.status_code == 409 and "before deploy" in error(resp)["message"]
    assert api.simulate_post("/api/v1/sessions/c/deploy").status_code == 409


def test_token_is_required_when_configured(nm):
    api = testing.TestClient(make_app(nm, token="s3cret"))
    assert api.simulate_get("/api/v1/health").status_code == 200
    resp = api.simulate_get("/api/v1/sessions")
    assert resp.status_code == 401 and "Bearer" in error(resp)["message"]
    assert api.simulate_get("/api/v1/sessions", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.simulate_get("/api/v1/sessions", headers={"Authorization": "Bearer s3cret"}).status_code == 200
