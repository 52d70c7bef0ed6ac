"""``dropflow translator``: EAGLE's form, the page's calls and the JSON API, against real daemons.

EAGLE's "Translate" posts an HTML form (urlencoded, as a browser sends it) to its Translator URL; the
service answers with a page, then deploys the translation to a dropflow island of two node managers, all
real daemons with one token, and the session FINISHES. The same inputs go to DALiuGE 6.6's own translator
service (``dlg tm``, the oracle) and both answers must have the same drops and edges per logical node.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import _siblings  # noqa: F401  (daemons, lgtools)
import httpx
import psutil
import pytest
from daemons import Daemon, free_port, start
from eaglegraph import Graph
from lgtools import LG_DIR
from oracle import Oracle, find_oracle
from structure import differences, from_daliuge, from_dropflow

from dropflow.drops.graph import decode_physical
from dropflow.managers.client import RestClient

from conftest import poll_for

TOKEN = "translator-test-token-0123456789"
GRAPHS = ["ArrayLoop", "HelloWorld_simple", "SuperBasicScatterGather", "eagle_gather_update", "chiles_simple"]


def eagle_form(name: str, graph: bytes, algo: str = "metis", num_par: int = 1) -> dict[str, str]:
    """The fields of EAGLE's Translate form, as EAGLE fills them."""
    return {
        "lg_name": f"{name}.graph",
        "json_data": graph.decode(),
        "algo": algo,
        "num_par": str(num_par),
        "num_islands": "0",
        "par_label": "Partition",
        "max_load_imb": "100",
        "max_cpu": "8",
        "rmode": "0",
        "test": "false",
    }


def read_graph(name: str) -> bytes:
    with open(os.path.join(LG_DIR, f"{name}.graph"), "rb") as f:
        return f.read()


@pytest.fixture
def island(tmp_path: Any) -> Iterator[tuple[Daemon, Daemon]]:
    """An island of two node managers and a translator, all real daemons sharing one token."""
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {"DROPFLOW_TOKEN": TOKEN}
    started: list[Daemon] = []
    try:
        for i in range(2):
            ws = str(tmp_path / f"ws{i}")
            started.append(start("nm", "--workspace", ws, logdir=str(logs), name=f"n{i}", env=env))
        urls = ",".join(d.url for d in started)
        started.append(start("dim", "--nodes", urls, logdir=str(logs), name="island", env=env))
        started.append(start("translator", logdir=str(logs), name="translator", env=env))
        yield started[2], started[3]
    finally:
        pids = [d.proc.pid for d in started]
        for d in reversed(started):
            d.stop()
        assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def test_eagle_form_translates_and_deploys_to_an_island(island: tuple[Daemon, Daemon]) -> None:
    dim, translator = island
    with httpx.Client(base_url=translator.url, timeout=60) as http:
        # Without the token: refused, and no graph is kept.
        refused = http.post("/gen_pgt", data=eagle_form("ArrayLoop", read_graph("ArrayLoop")))
        assert refused.status_code == 401 and "token" in refused.json()["detail"]
        # EAGLE's Translator URL carries the token; the form is posted as a browser posts it.
        page = http.post(
            "/gen_pgt",
            params={"token": TOKEN},
            data=eagle_form("ArrayLoop", read_graph("ArrayLoop"), num_par=2),
        )
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        pgt_id = re.search(r"ArrayLoop\d+_pgt\.graph", page.text)
        assert pgt_id, page.text
        # The page's own links work with the cookie it set.
        assert "dropflow_token" in page.cookies
        pgt = http.get("/pgt_jsonbody", params={"pgt_name": pgt_id.group(0)})
        assert pgt.status_code == 200
        drops = decode_physical(pgt.content).drops
        assert {d.node for d in drops} == {"#0", "#1"}
        assert http.get("/api/submission_method").json() == {"methods": ["SERVER"]}
        spec = http.post("/gen_pg_spec", json={"pgt_id": pgt_id.group(0), "node_list": ["n0", "n1"]}).json()
        assert {d["node"] for d in spec["pg_spec"]["drops"]} == {"n0", "n1"} and spec["root_uids"]
        # Deploy, as the page's form does: the service creates the session on the island and redirects.
        deployed = http.get(
            "/gen_pg",
            params={"pgt_id": pgt_id.group(0), "dlg_mgr_url": dim.url, "dlg_mgr_deploy": "on"},
        )
        assert deployed.status_code == 303, deployed.text
        session = deployed.headers["location"].rsplit("/", 1)[-1]
    with RestClient(dim.url, token=TOKEN) as client:
        answer = poll_for(lambda: (a := client.wait(session, 10)).get("ended") and a, timeout=120)
        assert answer["status"] == "FINISHED", answer
        assert set(answer["summary"]["nodes"]) == {"n0", "n1"}


# -- the oracle: DALiuGE's translator service on the same inputs ---------------------------------------------


@pytest.fixture(scope="module")
def dlg_translator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    oracle: Oracle = find_oracle()
    base = tmp_path_factory.mktemp("dlg-tm")
    (base / "lg").mkdir()
    (base / "pgt").mkdir()
    port = free_port()
    log = open(base / "tm.log", "wb")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(
        [
            oracle.dlg,
            "tm",
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
            "-d",
            str(base / "lg"),
            "-t",
            str(base / "pgt"),
        ],
        env=oracle.env(),
        cwd=base,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (base / "tm.log").read_text()[-3000:]
        try:
            return httpx.head(url + "/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        poll_for(up, timeout=120, interval=0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("translator-logs")
    # Open, as DALiuGE's is: these tests compare answers (the token is tested against the island above).
    daemon = start("translator", "--insecure-no-token", logdir=str(logs), name="translator")
    try:
        yield daemon.url
    finally:
        daemon.stop()


def _inputs() -> list[tuple[str, bytes]]:
    g = Graph("app_chain")
    g.node("first", "PythonApp", None, (), ("out",)).node("second", "PythonApp", None, ("in",), ())
    g.link("first", "out", "second", "in")
    return [(name, read_graph(name)) for name in GRAPHS] + [("app_chain", g.dumps().encode())]


def _logical(graph: bytes) -> dict[str, str]:
    return {str(n["id"]): str(n.get("name")) for n in json.loads(graph)["nodeDataArray"]}


@pytest.mark.parametrize(("name", "graph"), _inputs(), ids=[n for n, _ in _inputs()])
def test_unroll_answers_match_dalguge(name: str, graph: bytes, dlg_translator: str, ours: str) -> None:
    """POST /unroll with the same graph: DALiuGE's template and ours have the same drops and edges."""
    theirs = httpx.post(f"{dlg_translator}/unroll", data={"lg_content": graph.decode()}, timeout=120)
    assert theirs.status_code == 200, theirs.text[-2000:]
    mine = httpx.post(f"{ours}/unroll", data={"lg_content": graph.decode()}, timeout=120)
    assert mine.status_code == 200, mine.text[-2000:]
    nodes = _logical(graph)
    found = differences(
        from_daliuge(theirs.json()), from_dropflow(decode_physical(mine.content).drops, nodes), nodes
    )
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(("name", "graph"), _inputs()[:3], ids=[n for n, _ in _inputs()[:3]])
def test_eagle_form_answers_match_dalguge(name: str, graph: bytes, dlg_translator: str, ours: str) -> None:
    """EAGLE's form to /gen_pgt, then the page's /gen_pg: the same physical graph from both services."""
    answers = []
    for url in (dlg_translator, ours):
        page = httpx.post(f"{url}/gen_pgt", data=eagle_form(name, graph), timeout=120)
        assert page.status_code == 200, page.text[-2000:]
        pgt_id = re.search(rf"{re.escape(name)}\d+_pgt\.graph", page.text)
        assert pgt_id, page.text[-2000:]
        pg = httpx.get(f"{url}/gen_pg", params={"pgt_id": pgt_id.group(0), "tpl_nodes_len": 1}, timeout=120)
        assert pg.status_code == 200, pg.text[-2000:]
        answers.append(pg)
    nodes = _logical(graph)
    theirs = from_daliuge(answers[0].json())
    found = differences(theirs, from_dropflow(decode_physical(answers[1].content).drops, nodes), nodes)
    assert found == [], "\n".join(found)
