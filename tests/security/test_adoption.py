"""Attack 3 of issue 10: getting a token, or a graph, out of an island by pretending to be a node.

On three hosts (network namespaces made by the test), an island discovers nodes over zeroconf. A real
node manager on h2 holds the token; an impostor on h3, which does not, announces a node "evil" and a
second "h2", both at its own URL, and records every request it receives. The island must adopt the real h2
only, keep it when the impostor announces its name, and send the impostor nothing but a challenge -- no
``Authorization`` header, no session, no graph. On loopback, the same for ``POST /api/node/{name}``
(whose client now carries the island's token, so a node it adopts really works) and
``POST /api/sessions/{id}/peers`` (which needs each peer's bus key).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from dropflow.drops import MemorySpec, NoopSpec

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "managers"))
from daemons import auth, start  # noqa: E402
from test_multihost import hosts, in_ns, run_in  # noqa: E402, F401  (the namespaces fixture)

from conftest import poll_for  # noqa: E402

IMPOSTOR = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from dropflow.managers.discovery import Announcer

log = open(sys.argv[1], "a")
URL = "http://10.77.0.3:8000"

class Handler(BaseHTTPRequestHandler):
    def answer(self):
        log.write(json.dumps({"method": self.command, "path": self.path,
                              "auth": self.headers.get("Authorization")}) + "\n")
        log.flush()
        query = parse_qs(urlsplit(self.path).query)
        body = json.dumps({"status": "ok", "name": "evil", "url": URL, "proof": "0" * 64,
                           "role": "nm", "bus": "tcp://10.77.0.3:9", "bus_key": "x"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_DELETE = answer
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("10.77.0.3", 8000), Handler)
announcers = [Announcer(name, URL, ["10.77.0.3"]) for name in ("evil", "h2")]
print("announced", flush=True)
server.serve_forever()
"""


class _Recorder(BaseHTTPRequestHandler):
    """A fake manager on loopback: answers like one (without a valid proof) and records what it gets."""

    seen: list[dict[str, str | None]] = []

    def answer(self) -> None:
        self.seen.append(
            {"method": self.command, "path": self.path, "auth": self.headers.get("Authorization")}
        )
        body = json.dumps({"status": "ok", "name": "evil", "url": "http://x", "proof": "0" * 64}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder():
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()
    thread.join()


def test_post_node_adopts_only_a_node_that_proves_it_holds_the_token(tmp_path, recorder):
    fake_url, seen = recorder
    daemons = []
    try:
        nm = start("nm", "--workspace", str(tmp_path / "ws"), logdir=str(tmp_path), name="real")
        other = start("nm", "--workspace", str(tmp_path / "ws2"), logdir=str(tmp_path), name="other")
        daemons += [nm, other]
        dim = start("dim", "--nodes", nm.url, logdir=str(tmp_path), name="island")
        daemons.insert(0, dim)
        api = httpx.Client(base_url=dim.url, headers=auth(), timeout=60)

        # The impostor: refused, and it saw one challenge and nothing else.
        r = api.post("/api/v1/node/evil", json={"url": fake_url})
        assert r.status_code == 400 and "did not prove" in r.json()["error"]["message"]
        assert [(s["method"], s["path"].split("?")[0], s["auth"]) for s in seen] == [
            ("GET", "/api/health", None)
        ]
        # A real node under the name of a member: a member is never replaced.
        r = api.post("/api/v1/node/real", json={"url": other.url})
        assert r.status_code == 409
        # A real node under another name than its own: refused.
        r = api.post("/api/v1/node/someone", json={"url": other.url})
        assert r.status_code == 400 and "named 'other'" in r.json()["error"]["message"]
        # A real node: adopted, with a client that carries the token -- a session runs on both nodes.
        assert api.post("/api/v1/node/other", json={"url": other.url}).status_code == 201
        graph = [
            MemorySpec(id="x", data=1, codec="json", node="real"),
            NoopSpec(id="n", inputs={"i": "x"}, outputs={"o": "y"}, node="other"),
            MemorySpec(id="y", node="other"),
        ]
        from dropflow.managers.client import RestClient

        with RestClient(dim.url) as client:
            client.create_session("both")
            client.append("both", graph)
            client.deploy("both")
            assert client.wait("both", 30)["status"] == "FINISHED"
        assert len(seen) == 1

        # Peers without bus keys are refused; and without the token, nothing at all.
        peers = httpx.post(
            f"{nm.url}/api/sessions/none/peers", json={"x": "tcp://10.0.0.1:1"}, headers=auth()
        )
        assert peers.status_code == 400 and "key" in peers.json()["error"]["message"]
        peers = httpx.post(
            f"{nm.url}/api/sessions/none/peers", json={"x": {"bus": "tcp://1.2.3.4:5", "key": "k"}}
        )
        assert peers.status_code == 401
        api.close()
    finally:
        for d in daemons:
            d.stop()


def test_an_impostor_announced_over_zeroconf_gets_nothing(hosts, tmp_path):  # noqa: F811
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    config = os.environ["XDG_CONFIG_HOME"]  # the shared token, as a shared home directory gives it
    try:
        for i, ns in ((1, hosts[0]), (2, hosts[1])):
            log = open(tmp_path / f"nm-h{i}.log", "wb")  # noqa: SIM115
            logs.append(log)
            procs.append(
                in_ns(ns, "nm", "--host", f"10.77.0.{i}", "--port", "8000", "--name", f"h{i}", "--announce",
                      "--interface", f"10.77.0.{i}", "--workspace", str(tmp_path / f"ws{i}"),
                      stdout=log, stderr=log)
            )  # fmt: skip
        dim_log_path = tmp_path / "dim.log"
        dim_log = open(dim_log_path, "wb")  # noqa: SIM115
        logs.append(dim_log)
        procs.append(
            in_ns(hosts[0], "dim", "--host", "10.77.0.1", "--port", "8001", "--discover",
                  "--interface", "10.77.0.1", stdout=dim_log, stderr=dim_log)
        )  # fmt: skip
        url = "http://10.77.0.1:8001"

        def listed() -> dict[str, str]:
            r = run_in(hosts[0], "nodes", "--to", url, "--json", timeout=30)
            return {n["name"]: n.get("bus", "") for n in json.loads(r.stdout)} if r.returncode == 0 else {}

        poll_for(lambda: set(listed()) == {"h1", "h2"}, timeout=60, interval=0.5)

        seen_path = tmp_path / "impostor.jsonl"
        impostor_log = open(tmp_path / "impostor.log", "wb")  # noqa: SIM115
        logs.append(impostor_log)
        procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", hosts[2], sys.executable, "-c", IMPOSTOR, str(seen_path)],
                start_new_session=True, stdout=impostor_log, stderr=impostor_log,
                env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "impostor-has-no-token")},
            )
        )  # fmt: skip

        def decided() -> bool:
            text = dim_log_path.read_text(errors="replace")
            return "announced node evil at http://10.77.0.3:8000 not adopted" in text and (
                "announcement of h2 at http://10.77.0.3:8000 ignored" in text
            )

        poll_for(decided, timeout=60, interval=0.2)
        nodes = listed()
        assert set(nodes) == {"h1", "h2"} and nodes["h2"].startswith("tcp://10.77.0.2:")
        seen = [json.loads(line) for line in seen_path.read_text().splitlines()]
        assert seen and all(s["method"] == "GET" and s["auth"] is None for s in seen)
        assert all(s["path"].startswith("/api/health?challenge=") for s in seen)
        assert config  # the island and nodes shared it; the impostor never did
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for log in logs:
            log.close()


def test_a_forged_goodbye_keeps_a_working_node_and_a_real_one_drops_a_stopped_node(tmp_path):
    """A withdrawal (zeroconf goodbye) is believed only once the node stops answering at its URL: one
    forged for a node that still proves itself is ignored after the grace period, while a node that says
    goodbye as it stops -- its REST server still up for a moment -- is forgotten once it is down."""
    from daemons import token

    from dropflow.managers.island import DataIslandManager

    nm = start("nm", "--workspace", str(tmp_path / "ws"), logdir=str(tmp_path), name="real")
    island = DataIslandManager("island", token=token())
    island.VANISH_GRACE = 1.0
    try:
        island.add_node_url("real", nm.url)
        forged = island.vanished("real")  # the node is up and stays up
        assert forged is not None
        forged.result(timeout=30)
        assert "real" in island.info()["nodes"]
        island.VANISH_GRACE = 30.0
        real = island.vanished("real")
        assert real is not None
        nm.stop()  # goodbye first, then the daemon goes: forgotten once it no longer answers
        real.result(timeout=60)
        assert "real" not in island.info()["nodes"]
    finally:
        nm.stop()
        island.close()
