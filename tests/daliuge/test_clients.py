"""DALiuGE 6.6's own clients, unchanged, against real dropflow daemons: full rounds.

``dlg.clients.NodeManagerClient``, ``DataIslandManagerClient`` and ``MasterManagerClient`` (from the
oracle's virtualenv, in its own interpreter: ``dlg_clients_driver.py``) create a session, append a
DALiuGE physical graph (zlib-compressed, labelled gzip, sent chunked), deploy it naming its roots in
``completed``, read its status, graph status, graph, directory, drop log and data, cancel a running
session and destroy both; on bad input, they rebuild DALiuGE's typed exceptions. The daemons are real:
``dropflow nm`` twice, ``dropflow dim`` over both, ``dropflow mm`` over the island, all requiring their
token and started with ``--trust-local-user``, which is how a DALiuGE client (which cannot send a token)
is admitted: as the daemons' own user on their machine. ``dlg map`` then maps a physical graph template
onto the island's nodes (host:port, as DALiuGE names them) and ``dlg submit -w`` runs it to the end, on
the island and through the master.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import _siblings  # noqa: F401  (daemons)
import httpx
import pytest
from daemons import Daemon, start, token
from oracle import Oracle, find_oracle

from dropflow.managers.client import RestClient

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "dlg_clients_driver.py")
MEMORY = "dlg.data.drops.memory.InMemoryDROP"
SLEEP = "dlg.apps.simple.SleepApp"


def _drop(oid: str, **links: Any) -> dict[str, Any]:
    if oid.startswith(("s", "t")) or oid == "ls":
        return {"oid": oid, "categoryType": "Application", "dropclass": SLEEP, "sleep_time": 0, **links}
    return {"oid": oid, "categoryType": "Data", "dropclass": MEMORY, **links}


def plan(nodes: list[str], island: str | None) -> dict[str, Any]:
    """
    a --> s --> b --> t --> c         (a, s on the first node; b, t, c on the second)
    la --> ls (sleeps 60 s) --> lb     (to be cancelled)
    """
    first, second = [*nodes, None, None][:2]
    place = {
        "a": first,
        "s": first,
        "b": second,
        "t": second,
        "c": second,
        "la": first,
        "ls": first,
        "lb": second,
    }

    def placed(d: dict[str, Any]) -> dict[str, Any]:
        if place[d["oid"]] is not None:
            d["node"] = place[d["oid"]]
        if island is not None:
            d["island"] = island
        return d

    graph = [
        placed(_drop("a", consumers=["s"])),
        placed(_drop("s", outputs=["b"])),
        placed(_drop("b", consumers=["t"])),
        placed(_drop("t", outputs=["c"])),
        placed(_drop("c")),
        {},  # the reproducibility element DALiuGE's tools append
    ]
    long = [placed(_drop("la", consumers=["ls"])), placed(_drop("ls", outputs=["lb"])), placed(_drop("lb"))]
    long[1]["sleep_time"] = 60
    return {"session": "round", "app": "s", "data": "b", "nodes": nodes, "graph": graph, "long": long}


def address(d: Daemon) -> str:
    return d.url.removeprefix("http://")


class Cluster:
    def __init__(self, tmp: str) -> None:
        self.daemons: list[Daemon] = []
        trust = ("--trust-local-user",)
        self.nm = [
            self._start("nm", f"n{i}", tmp, "--workspace", os.path.join(tmp, f"ws{i}"), *trust)
            for i in range(2)
        ]
        urls = ",".join(d.url for d in self.nm)
        self.dim = self._start("dim", "isl", tmp, "--nodes", urls, *trust)
        self.mm = self._start("mm", "master", tmp, "--islands", self.dim.url, *trust)
        #: A node manager that does not trust its local user: DALiuGE's clients must be refused there.
        self.strict = self._start("nm", "strict", tmp, "--workspace", os.path.join(tmp, "ws-strict"))

    def _start(self, role: str, name: str, tmp: str, *args: str) -> Daemon:
        d = start(role, *args, logdir=tmp, name=name)
        self.daemons.append(d)
        return d

    def stop(self) -> None:
        for d in reversed(self.daemons):
            d.stop()


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    return find_oracle()


@pytest.fixture(scope="module")
def cluster(oracle: Oracle, tmp_path_factory: Any) -> Iterator[Cluster]:
    c = Cluster(str(tmp_path_factory.mktemp("dlg-clients")))
    try:
        yield c
    finally:
        c.stop()


def drive(
    oracle: Oracle, role: str, daemon: Daemon, the_plan: dict[str, Any], tmp_path: Any
) -> dict[str, Any]:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(the_plan))
    host, port = address(daemon).rsplit(":", 1)
    r = oracle.run([oracle.python, DRIVER, role, host, port, str(path)], timeout=240)
    assert r.returncode == 0, r.stderr[-3000:] + daemon.tail()
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def check_round(out: dict[str, Any], status: Any, ended: Any, cancelled: Any) -> None:
    """What every manager must answer DALiuGE's client, whatever its role (``status``: a state code in the
    manager's shape)."""
    assert out["submission_method"]["ok"] == {"methods": ["BROWSER", "SERVER"]}
    for unknown in ("session_unknown", "status_unknown", "session_destroyed"):
        assert out[unknown]["error"] == "NoSessionException", out[unknown]
    assert out["create"] == {"ok": None}
    assert out["create_again"]["error"] == "SessionAlreadyExistsException"
    assert out["sessions_pristine"]["ok"] == [{"sessionId": "round", "status": status(0), "size": 0}]
    assert out["status_pristine"]["ok"] == status(0)
    assert out["append_bad"]["error"] == "InvalidGraphException" and "nowhere" in out["append_bad"]["message"]
    assert out["append"] == {"ok": None}
    assert out["status_building"]["ok"] == status(1)
    assert out["deploy_wrong_roots"]["error"] == "InvalidGraphException"
    assert "not found: ['ghost']" in out["deploy_wrong_roots"]["message"]
    assert out["roots"] == ["a"] and out["deploy"] == {"ok": None}
    assert out["final_status"] == ended
    assert out["sessions"]["ok"] == [{"sessionId": "round", "status": ended, "size": 5}]
    session = out["session"]["ok"]
    assert session["status"] == ended and sorted(session["graph"]) == ["a", "b", "c", "s", "t"]
    assert session["graph"]["s"]["categoryType"] == "Application"
    assert out["graph_status"]["ok"] == {
        "a": {"status": 2},
        "s": {"status": 2, "execStatus": 2},
        "b": {"status": 2},
        "t": {"status": 2, "execStatus": 2},
        "c": {"status": 2},
    }
    assert out["graph_size"]["ok"] == 5 and sorted(out["graph"]["ok"]) == ["a", "b", "c", "s", "t"]
    assert out["session_dir"]["ok"]["dir"].endswith("/round")
    drop = out["drop_status"]["ok"]
    assert drop["oid"] == "s" and drop["status"] == 4
    assert [r["Message"].split(" (")[0] for r in drop["logs"]] == [
        "NOT_RUN -> RUNNING",
        "RUNNING -> FINISHED",
    ]
    assert out["drop_data"]["ok"] == {"filepath": ""}  # a memory drop has no file
    assert out["append_after_deploy"]["error"] == "InvalidSessionState"
    assert out["status_long"]["ok"] == status(3)
    assert out["cancel"] == {"ok": None} and out["cancelled_status"] == cancelled
    for call in ("destroy_long", "destroy"):
        assert out[call] == {"ok": None}


def test_node_manager_client_full_round(oracle: Oracle, cluster: Cluster, tmp_path: Any) -> None:
    """NodeManagerClient against ``dropflow nm``: states are bare integers."""
    out = drive(oracle, "nm", cluster.nm[0], plan([], None), tmp_path)
    check_round(out, lambda code: code, 4, 5)
    log = out["log"]
    assert "a: INITIALIZED -> COMPLETED (cause: trigger)" in log and "t: RUNNING -> FINISHED" in log


def test_island_manager_client_full_round(oracle: Oracle, cluster: Cluster, tmp_path: Any) -> None:
    """DataIslandManagerClient against ``dropflow dim`` over two nodes, the graph placed on the nodes by
    address (host:port, as ``dlg map`` writes it): states are ``{node: int}``."""
    nodes = [address(d) for d in cluster.nm]
    out = drive(oracle, "dim", cluster.dim, plan(nodes, address(cluster.dim)), tmp_path)
    per_node = lambda code: {n: code for n in nodes}  # noqa: E731
    check_round(out, per_node, per_node(4), per_node(5))
    assert out["nodes"]["ok"] == nodes
    assert {d["node"] for d in out["graph"]["ok"].values()} == set(nodes)
    assert out["node_sessions"]["ok"] == [{"sessionId": "round", "status": 4, "size": 2 + 1}]  # + a proxy
    assert out["node_status"]["ok"] == 4
    assert out["node_graph_status"]["ok"] == {"a": {"status": 2}, "s": {"status": 2, "execStatus": 2}}
    assert out["info"]["ok"] == {"hosts": nodes, "sessionIds": ["round"]}
    assert out["past_sessions"]["ok"] == [{"sessionId": "round"}]
    assert out["remove_node"] == {"ok": None} and out["nodes_after_remove"]["ok"] == nodes[:1]
    assert out["add_node"] == {"ok": None} and out["nodes_after_add"]["ok"] == nodes


def test_master_manager_client_full_round(oracle: Oracle, cluster: Cluster, tmp_path: Any) -> None:
    """MasterManagerClient against ``dropflow mm`` over the island: states are ``{island: {node: int}}``."""
    nodes = [address(d) for d in cluster.nm]
    island = address(cluster.dim)
    out = drive(oracle, "mm", cluster.mm, plan(nodes, island), tmp_path)
    nested = lambda code: {island: {n: code for n in nodes}}  # noqa: E731
    flat = lambda code: {island: code}  # noqa: E731  (before the islands hold parts)
    assert out["status_pristine"]["ok"] == flat(0) and out["status_building"]["ok"] == flat(1)
    check_round(out, lambda code: flat(code) if code < 2 else nested(code), nested(4), nested(5))
    assert out["islands"]["ok"] == {"islands": [island]}
    assert out["nodes"]["ok"] == {"nodes": sorted(nodes)}
    assert out["node_status"]["ok"] == 4  # a node of the island, asked through the master


def _pgt() -> list[dict[str, Any]]:
    """A physical graph template as ``dlg unroll``/``dlg partition`` make them: partitions ``#i``."""
    spec = plan(["#0", "#1"], "#0")["graph"]
    return spec


def _dlg(oracle: Oracle, *args: str, stdin: str | None = None) -> str:
    r = oracle.run([oracle.dlg, *args], timeout=120, input=stdin)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def _finished(daemon: Daemon, session: str) -> str:
    with RestClient(daemon.url) as c:
        return c.status(session)


def test_dlg_map_and_submit_wait_on_the_island(oracle: Oracle, cluster: Cluster, tmp_path: Any) -> None:
    """``dlg map -H island`` asks the island for its nodes (host strings) and maps the template onto
    them; ``dlg submit -w`` creates, appends, deploys with the roots and polls until FINISHED."""
    host, port = address(cluster.dim).rsplit(":", 1)
    (tmp_path / "pgt.json").write_text(json.dumps(_pgt()))
    pg = json.loads(_dlg(oracle, "map", "-H", host, "-p", port, "-P", str(tmp_path / "pgt.json")))
    assert {d["node"] for d in pg if d} == {address(d) for d in cluster.nm}
    (tmp_path / "pg.json").write_text(json.dumps(pg))
    _dlg(
        oracle,
        "submit",
        "-H",
        host,
        "-p",
        port,
        "-P",
        str(tmp_path / "pg.json"),
        "-s",
        "mapped",
        "-w",
        "-i",
        "0.2",
    )
    assert _finished(cluster.dim, "mapped") == "FINISHED"


def test_dlg_map_and_submit_wait_through_the_master(oracle: Oracle, cluster: Cluster, tmp_path: Any) -> None:
    """``dlg map -N island,node,node`` names the island and the nodes by address; the master finds them
    among its islands' nodes, and ``dlg submit -w`` returns once the nested status is all FINISHED."""
    host, port = address(cluster.mm).rsplit(":", 1)
    nodes = ",".join([address(cluster.dim), *(address(d) for d in cluster.nm)])
    (tmp_path / "pgt.json").write_text(json.dumps(_pgt()))
    pg = _dlg(oracle, "map", "-N", nodes, "-i", "1", "-P", str(tmp_path / "pgt.json"))
    (tmp_path / "pg.json").write_text(pg)
    _dlg(
        oracle,
        "submit",
        "-H",
        host,
        "-p",
        port,
        "-P",
        str(tmp_path / "pg.json"),
        "-s",
        "mastered",
        "-w",
        "-i",
        "0.2",
    )
    assert _finished(cluster.mm, "mastered") == "FINISHED"


def test_dalige_clients_are_refused_without_local_user_trust(
    oracle: Oracle, cluster: Cluster, tmp_path: Any
) -> None:
    """A daemon started without ``--trust-local-user`` requires its token of DALiuGE's client too, which
    cannot send one: the 401 becomes an exception whose message says what to do."""
    host, port = address(cluster.strict).rsplit(":", 1)
    script = (
        "import sys\nfrom dlg.clients import NodeManagerClient\n"
        f"c = NodeManagerClient({host!r}, {int(port)})\n"
        "try:\n    c.sessions()\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    )
    r = oracle.run([oracle.python, "-c", script], timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("DaliugeException") and "--trust-local-user" in r.stdout


def test_local_user_trust_stops_at_browsers(cluster: Cluster) -> None:
    """The trusted daemon admits this user's plain HTTP client without a token, but not what a web page
    in this user's browser could send: a cross-site request, a browser's fetch, or a name rebound to
    127.0.0.1. Nobody needs the trust to hold the token, of course."""
    url = cluster.dim.url
    assert httpx.get(f"{url}/api/nodes").status_code == 200
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Mode": "cors"}, {"Host": "evil.example"}):
        assert httpx.get(f"{url}/api/nodes", headers=headers).status_code == 401, headers
    assert httpx.get(f"{cluster.strict.url}/api/sessions").status_code == 401
    assert httpx.get(f"{cluster.strict.url}/api/sessions", auth=("dlg", token())).status_code == 200
