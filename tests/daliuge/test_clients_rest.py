"""The two representations of the managers' REST API, in process: DALiuGE's under /api, dropflow's under
/api/v1, over the same sessions; the bodies DALiuGE's client sends (chunked, zlib labelled gzip, deploy's
form); error bodies both clients read; the token as HTTP basic auth; the local-user check; and an OpenAPI
document that covers every route of both."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import socket
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from falcon import testing

from dropflow.drops import MemorySpec, NoopSpec, encode_physical
from dropflow.managers import localuser
from dropflow.managers.dlgcompat import check_completed, find_member, parse_address, roots
from dropflow.managers.errors import BadGraph
from dropflow.managers.island import DataIslandManager
from dropflow.managers.node_manager import NodeManager
from dropflow.managers.openapi import openapi
from dropflow.managers.rest import make_app

#: a --> s --> b, in DALiuGE's physical graph format
DLG_GRAPH = [
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
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def nm(tmp_path: Any) -> Iterator[NodeManager]:
    manager = NodeManager("node-1", workspace_root=str(tmp_path / "ws"), threads=4, processes=1).start()
    yield manager
    manager.close()


@pytest.fixture
def api(nm: NodeManager) -> Iterator[testing.TestClient]:
    app = make_app(nm)
    yield testing.TestClient(app)
    app.close()


def wait_ended(api: testing.TestClient, sid: str) -> str:
    return str(api.simulate_get(f"/api/v1/sessions/{sid}/wait", params={"timeout": "20"}).json["status"])


def test_one_session_in_both_representations(api: testing.TestClient) -> None:
    """DALiuGE's client creates, appends (zlib, labelled gzip) and deploys naming the roots; both
    representations then describe the same session, each in its own shape."""
    created = api.simulate_post("/api/sessions", json={"sessionId": "s1"})
    assert created.status_code == 200 and created.json == {"sessionId": "s1"}
    assert api.simulate_get("/api/sessions/s1/status").json == 0
    assert api.simulate_get("/api/v1/sessions/s1/status").json == {"sessionId": "s1", "status": "PRISTINE"}
    appended = api.simulate_post(
        "/api/sessions/s1/graph/append",
        body=zlib.compress(json.dumps(DLG_GRAPH).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert appended.status_code == 200 and appended.json == {"Status": "Success"}
    assert api.simulate_get("/api/sessions").json == [{"sessionId": "s1", "status": 1, "size": 3}]
    deployed = api.simulate_post("/api/sessions/s1/deploy", body="completed=a", headers=FORM)
    assert deployed.status_code == 200 and deployed.json == {"Status": "Success"}
    assert wait_ended(api, "s1") == "FINISHED"
    assert api.simulate_get("/api/sessions/s1/status").json == 4
    assert api.simulate_get("/api/sessions/s1/graph/status").json == {
        "a": {"status": 2},
        "s": {"status": 2, "execStatus": 2},
        "b": {"status": 2},
    }
    assert api.simulate_get("/api/v1/sessions/s1/graph/status").json["s"] == {
        "status": "FINISHED",
        "execStatus": "FINISHED",
    }
    session = api.simulate_get("/api/sessions/s1").json
    assert session["status"] == 4 and session["graph"]["a"]["consumers"] == ["s"]
    assert session["dir"]["dir"].endswith(os.path.join("ws", "s1"))
    assert api.simulate_get("/api/v1/sessions/s1").json["status"] == "FINISHED"
    assert api.simulate_get("/api/sessions/s1/graph/size").json == 3  # the same under both prefixes
    log = api.simulate_get("/api/sessions/s1/logs")
    assert log.headers["content-type"].startswith("text/plain") and "s: RUNNING -> FINISHED" in log.text
    assert api.simulate_get("/api").json["sessions"] == [{"sessionId": "s1", "status": 4, "size": 3}]
    assert api.simulate_get("/api/past_sessions").json == [{"sessionId": "s1"}]
    deleted = api.simulate_delete("/api/sessions/s1")
    assert deleted.status_code == 200 and deleted.json == {"Status": "Success"}


def test_dropflow_shape_keeps_its_codes(api: testing.TestClient) -> None:
    """dropflow's representation still creates with 201 and deletes with 204; real gzip still works."""
    assert api.simulate_post("/api/v1/sessions", json={"sessionId": "n"}).status_code == 201
    body = gzip.compress(
        encode_physical([MemorySpec(id="x", data=1, codec="json"), NoopSpec(id="y", inputs={"i": "x"})])
    )
    resp = api.simulate_post(
        "/api/v1/sessions/n/graph/append", body=body, headers={"Content-Encoding": "gzip"}
    )
    assert resp.json == {"sessionId": "n", "appended": 2}
    assert api.simulate_post("/api/v1/sessions/n/deploy").json["status"] in ("RUNNING", "FINISHED")
    assert wait_ended(api, "n") == "FINISHED"
    assert api.simulate_delete("/api/v1/sessions/n").status_code == 204


def test_chunked_bodies_without_content_length(nm: NodeManager) -> None:
    """DALiuGE's client streams every body with Transfer-Encoding: chunked and no Content-Length."""
    app = make_app(nm)

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 7):
            yield data[i : i + 7]

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            created = await c.post("/api/sessions", content=chunks(b'{"sessionId": "c"}'))
            compressed = zlib.compress(json.dumps(DLG_GRAPH).encode())
            appended = await c.post(
                "/api/sessions/c/graph/append",
                content=chunks(compressed),
                headers={"Content-Encoding": "gzip"},
            )
            return [created, appended]

    try:
        created, appended = asyncio.run(run())
        assert created.status_code == 200 and created.json() == {"sessionId": "c"}
        assert appended.status_code == 200, appended.text
        assert nm.graph_size("c") == 3
        assert "content-length" not in created.request.headers
    finally:
        app.close()


def test_errors_carry_both_shapes(api: testing.TestClient) -> None:
    """Every error carries dropflow's ``error`` object and DALiuGE's ``type``/``args``, which its client
    turns into the exception of that name: ``args`` are that exception's constructor arguments."""
    missing = api.simulate_get("/api/sessions/ghost/status")
    assert missing.status_code == 404
    assert missing.json["type"] == "NoSessionException" and missing.json["args"][0] == "ghost"
    assert missing.json["error"]["status"] == 404 and "ghost" in missing.json["error"]["message"]
    api.simulate_post("/api/sessions", json={"sessionId": "d"})
    dup = api.simulate_post("/api/sessions", json={"sessionId": "d"}).json
    assert dup["type"] == "SessionAlreadyExistsException" and dup["args"][0] == "d"
    bad = api.simulate_post(
        "/api/sessions/d/graph/append", json=[{"oid": "x", "consumers": ["nowhere"]}]
    ).json
    assert bad["type"] == "InvalidGraphException" and "nowhere" in bad["args"][0]
    assert bad["error"]["problems"][0]["message"].startswith("dangling link")
    api.simulate_post("/api/sessions/d/graph/append", json=DLG_GRAPH)
    roots_missing = api.simulate_post("/api/sessions/d/deploy", body="completed=b", headers=FORM).json
    assert roots_missing["type"] == "InvalidGraphException"
    assert [p["message"][:22] for p in roots_missing["error"]["problems"]] == [
        "['b'] are not roots: a",
        "roots a are not in 'co",
    ]
    assert api.simulate_get("/api/sessions/d/status").json == 1  # refused before anything was built
    api.simulate_post("/api/sessions/d/deploy", params={"completed": "a"})
    wait_ended(api, "d")
    late = api.simulate_post("/api/sessions/d/graph/append", json=DLG_GRAPH).json
    assert late["type"] == "InvalidSessionState" and late["args"][0] == "d"
    again = api.simulate_post("/api/sessions/d/deploy", body="completed=a", headers=FORM).json
    assert again["type"] == "InvalidSessionState"  # deployed already: that, not the roots, is the problem
    assert api.simulate_get("/api/sessions/d/graph/drop/data/b").json == {"filepath": ""}  # memory
    assert api.simulate_get("/api/sessions/d/graph/drop/data/zz").json["type"] == "NoDropException"
    route = api.simulate_get("/api/no/such/thing")
    assert route.status_code == 404 and route.json["type"] == "DaliugeException"


def test_island_in_both_representations(tmp_path: Any) -> None:
    """An island's DALiuGE view: members as addresses (here, in process, their names), status
    ``{node: int}``, per-node routes that are the node's own DALiuGE view."""
    nodes = [
        NodeManager(f"n{i}", workspace_root=str(tmp_path / f"ws{i}"), threads=2, processes=1).start()
        for i in range(2)
    ]
    island = DataIslandManager("isl", nodes)
    app = make_app(island)
    api = testing.TestClient(app)
    try:
        assert api.simulate_get("/api/nodes").json == ["n0", "n1"]
        assert [n["name"] for n in api.simulate_get("/api/v1/nodes").json] == ["n0", "n1"]
        api.simulate_post("/api/sessions", json={"sessionId": "i"})
        assert api.simulate_get("/api/sessions/i/status").json == {"n0": 0, "n1": 0}
        graph = [dict(d, node="n0") for d in DLG_GRAPH]
        api.simulate_post("/api/sessions/i/graph/append", json=graph)
        started = api.simulate_post("/api/sessions/i/start")  # not deployed: the path names the session
        assert started.status_code == 409 and started.json["type"] == "InvalidSessionState"
        assert started.json["args"][0] == "i"
        api.simulate_post("/api/sessions/i/deploy", body="completed=a", headers=FORM)
        assert wait_ended(api, "i") == "FINISHED"
        assert api.simulate_get("/api/sessions/i/status").json == {"n0": 4}
        assert api.simulate_get("/api/node/n0/sessions/i/status").json == 4
        assert api.simulate_get("/api/node/n0/sessions").json == [{"sessionId": "i", "status": 4, "size": 3}]
        assert api.simulate_get("/api/node/ghost/sessions").status_code == 404
        assert api.simulate_get("/api").json == {"hosts": ["n0", "n1"], "sessionIds": ["i"]}
        assert api.simulate_get("/api/sessions/i/dir").json["dirs"] == {"n0": str(tmp_path / "ws0" / "i")}
    finally:
        app.close()
        island.close()
        for n in nodes:
            n.close()


# -- authentication -----------------------------------------------------------------------------------------

TOKEN = "a-token-of-twenty-four-chars"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_token_as_basic_auth_password(nm: NodeManager) -> None:
    """The token is accepted as HTTP basic auth's password (any user name: ``http://user:TOKEN@host``),
    as well as a bearer token; anything else is a 401 that says how to authenticate."""
    app = make_app(nm, token=TOKEN)
    api = testing.TestClient(app)
    try:
        assert api.simulate_get("/api/sessions", headers=_basic("dlg", TOKEN)).status_code == 200
        assert api.simulate_get("/api/v1/sessions", headers=_basic("", TOKEN)).status_code == 200
        assert (
            api.simulate_get("/api/sessions", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        )
        assert api.simulate_get("/api/sessions", headers=_basic(TOKEN, "nope")).status_code == 401
        assert api.simulate_get("/api/sessions", headers={"Authorization": "Basic !!!"}).status_code == 401
        refused = api.simulate_get("/api/sessions")
        assert refused.status_code == 401 and refused.json["type"] == "DaliugeException"
        assert "--trust-local-user" in refused.json["error"]["message"]
        assert api.simulate_get("/api/health").json == {"status": "ok"}  # says nothing without the token
    finally:
        app.close()


def test_no_local_user_trust_unless_asked(nm: NodeManager) -> None:
    """Without ``trust_local_user``, a request with no credential is refused even from this very user:
    the falcon test client's requests come from 127.0.0.1 but are not in the kernel's table either."""
    for trust in (False, True):
        app = make_app(nm, token=TOKEN, trust_local_user=trust)
        try:
            resp = testing.TestClient(app).simulate_get("/api/sessions", remote_addr="127.0.0.1")
            assert resp.status_code == 401
        finally:
            app.close()


@pytest.fixture
def connection() -> Iterator[tuple[tuple[str, int], tuple[str, int]]]:
    """A real loopback TCP connection of this process: (peer, local) as the server sees them."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    conn, peer = server.accept()
    try:
        yield peer, conn.getsockname()
    finally:
        for s in (client, conn, server):
            s.close()


def test_the_kernel_names_the_user_at_the_other_end(connection: Any) -> None:
    peer, local = connection
    assert localuser.socket_owner(peer, local) == os.geteuid()
    assert localuser.socket_owner((peer[0], peer[1] + 1 or 1), local) is None  # no such connection
    headers = {"host": f"127.0.0.1:{local[1]}"}
    assert localuser.local_user_request(peer, local, headers)
    assert localuser.local_user_request(peer, local, {"host": "localhost", "origin": localuser.DLG_ORIGIN})


@pytest.mark.parametrize(
    "headers",
    [
        {"host": "evil.example:8000"},  # a page that rebound its name to 127.0.0.1
        {"host": "127.0.0.1", "origin": "https://evil.example"},  # a cross-site request
        {"host": "127.0.0.1", "sec-fetch-site": "same-origin"},  # any request of a browser
        {},  # no Host at all
    ],
)
def test_browsers_and_foreign_names_are_refused(connection: Any, headers: dict[str, str]) -> None:
    peer, local = connection
    assert not localuser.local_user_request(peer, local, headers)


def test_another_user_is_refused(connection: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The socket belongs to this process's user; a daemon of another user must refuse it."""
    peer, local = connection
    monkeypatch.setattr(localuser.os, "geteuid", lambda: os.getuid() + 4242)
    assert not localuser.local_user_request(peer, local, {"host": "localhost"})
    assert not localuser.local_user_request(("10.0.0.5", peer[1]), local, {"host": "localhost"})


# -- addresses, roots, the document -------------------------------------------------------------------------


def test_dalige_addresses() -> None:
    assert parse_address("127.0.0.1:8000:5555:6666") == ("127.0.0.1", 8000)
    assert parse_address("node-3") == ("node-3", None)
    assert parse_address("[::1]:8001") == ("::1", 8001)
    assert parse_address("bad host") is None and parse_address("h:99999") is None
    members = {"n0": "http://127.0.0.1:8000", "n1": "http://127.0.0.1:8010", "far": "http://10.1.1.1:8000"}
    assert find_member("n1", members) == "n1"
    assert find_member("127.0.0.1:8010", members) == "n1"
    assert find_member("localhost:8010:5555:6666", members) == "n1"  # compared by address
    assert find_member("10.1.1.1", members) == "far"  # the only member on that host
    assert find_member("127.0.0.1", members) == "n0"  # two on that host: DALiuGE's default port
    assert find_member("127.0.0.1:9", members) is None


def test_completed_must_name_the_roots() -> None:
    """
    a --> s --> b     (s2 reads nothing: a root too)
    s2 --> c
    """
    specs = [
        MemorySpec(id="a"),
        NoopSpec(id="s", inputs={"i": "a"}, outputs={"o": "b"}),
        MemorySpec(id="b"),
        NoopSpec(id="s2", outputs={"o": "c"}),
        MemorySpec(id="c"),
    ]
    assert roots(specs) == {"a", "s2"}
    check_completed(specs, ["s2", "a"])
    for wrong in (["a"], ["a", "s2", "b"], ["a", "s2", "zz"]):
        with pytest.raises(BadGraph):
            check_completed(specs, wrong)


@pytest.mark.parametrize("role", ["nm", "dim", "mm"])
def test_the_document_covers_every_route_of_both_representations(role: str, tmp_path: Any) -> None:
    nm = NodeManager("doc", workspace_root=str(tmp_path), threads=1, processes=1)
    manager: Any = nm
    if role != "nm":
        from dropflow.managers.master import MasterManager

        manager = (DataIslandManager if role == "dim" else MasterManager)("doc-island", [nm])
    app = make_app(manager)
    try:
        doc = openapi(role)
        api = {route for route in app.routes if route == "/api" or route.startswith("/api/")}
        documented = {p for p in doc["paths"] if p == "/api" or p.startswith("/api/")}
        assert sorted(api) == sorted(documented)
        assert set(doc["paths"]) - documented <= {"/metrics"}  # (the monitor's scrape endpoint)
        assert doc["paths"]["/api/sessions/{sid}/status"]["get"]["responses"]["200"]["content"]
        assert doc["paths"]["/api/v1/sessions/{sid}/status"]["get"]["responses"]["200"]["content"]
        schemas = doc["components"]["schemas"]
        assert {"SessionInfo", "DlgSession", "DlgSessionItem", "Error", "Summary"} <= set(schemas)
        error = schemas["Error"]["properties"]
        assert set(error) == {"error", "type", "args"}
    finally:
        app.close()
        if manager is not nm:
            manager.close()
        nm.close()
