"""``dropflow why`` names what a stuck session waits for, with real daemons and the real command.

1. A node that stops answering: two node managers under an island; ``p`` on n0 writes ``d`` (on n0) that
   ``c`` on n1 waits for. n0 is SIGSTOPped while ``p`` runs::

       root[n0] -> p[n0] -> d[n0] -> c[n1] -> e[n1]

   ``dropflow why`` (asked of the island) names n0 as not answering, ``c`` waiting for input ``d`` and
   ``p`` on n0 as its producer -- while n0 is silent, and after the island gave it up (the session then
   failed, and the report tells where it stood when it stopped). The island's log, in JSON lines, tells
   the session's life and the lost node with their ids.
2. An app that never returns: a Python function that waits for ever, in a node manager's worker process;
   ``dropflow why`` names it as running longest, and the input its consumer waits for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from monitorkit import APPS_PATH, start

from dropflow.drops import MemorySpec, NoopSpec, PythonSpec, SleepSpec
from dropflow.managers.client import RestClient

from conftest import poll_for

CLI = [sys.executable, "-c", "import sys; from dropflow.cli import main; sys.exit(main())"]


def why(url: str, session: str, *extra: str) -> str:
    done = subprocess.run(
        [*CLI, "why", session, "--to", url, *extra], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_why_names_a_node_that_stopped_answering_and_the_input_waiting_on_it(tmp_path):
    env = {"PYTHONPATH": APPS_PATH}
    nodes = [
        start("nm", "--workspace", str(tmp_path / f"ws{i}"), logdir=str(tmp_path), name=f"n{i}", env=env)
        for i in range(2)
    ]
    dim = start(
        "dim",
        "--nodes",
        ",".join(n.url for n in nodes),
        "--log-format",
        "json",
        logdir=str(tmp_path),
        name="island",
        env=env,
    )
    n0 = nodes[0]
    try:
        with RestClient(dim.url) as island:
            island.create_session("s")
            island.append(
                "s",
                [
                    MemorySpec(id="root", node="n0", data=1, codec="json"),
                    SleepSpec(id="p", seconds=600, inputs={"i": "root"}, outputs={"o": "d"}, node="n0"),
                    MemorySpec(id="d", node="n0"),
                    NoopSpec(id="c", inputs={"d": "d"}, outputs={"o": "e"}, node="n1"),
                    MemorySpec(id="e", node="n1"),
                ],
            )
            island.deploy("s")
            poll_for(lambda: "being written by p on n0" in why(dim.url, "s"), timeout=30)

            os.killpg(n0.proc.pid, signal.SIGSTOP)
            try:
                # While n0 is silent, and after the island lost it: either way the report names all three.
                def named() -> str | bool:
                    text = why(dim.url, "s")
                    return (
                        "wait for input d (on n0), being written by p on n0" in text
                        and ("node n0 has not answered heartbeats" in text or "node n0 was lost" in text)
                        and text
                    )

                text = poll_for(named, timeout=30)
                assert "1 app(s) (c)" in text, text
                lost = poll_for(lambda: w if "is FAILED" in (w := why(dim.url, "s")) else None, timeout=30)
                # n0's drops are not counted: it does not answer; n1's two were cancelled.
                assert lost.splitlines()[0] == "session s is FAILED: 2 of 5 drops settled", lost
                assert "node n0 was lost: stopped answering heartbeats" in lost
                assert "it stopped (cancelled or a node was lost)" in lost
                assert "wait for input d (on n0), being written by p on n0" in lost
                report = json.loads(why(dim.url, "s", "--json"))
                assert report["nodes"]["n0"]["status"] == "LOST"
                assert [b["input"] for b in report["blockers"]] == ["d"]
            finally:
                os.killpg(n0.proc.pid, signal.SIGCONT)
        with open(dim.log) as f:
            events = [json.loads(line) for line in f if line.startswith("{")]
        life = [(e["event"], e.get("node")) for e in events if e.get("session") == "s"]
        assert [e for e, _ in life[:3]] == ["created", "deployed", "started"], life
        assert ("node_lost", "n0") in life
        (end,) = [e for e in events if e.get("event") == "ended" and e.get("session") == "s"]
        assert end["state"] == "FAILED" and end["lost"] == "n0" and "n0" in end["message"]
        assert end["time"][:4].isdigit() and end["level"] == "WARNING"
    finally:
        for d in (dim, *nodes):
            d.stop()


def test_why_names_an_app_that_never_returns(tmp_path):
    nm = start(
        "nm",
        "--workspace",
        str(tmp_path / "ws"),
        "--processes",
        "1",
        logdir=str(tmp_path),
        name="solo",
        env={"PYTHONPATH": APPS_PATH},
    )
    try:
        with RestClient(nm.url) as client:
            client.create_session("h")
            client.append(
                "h",
                [
                    PythonSpec(id="hang", func="monfuncs:never_returns", outputs={"o": "x"}),
                    MemorySpec(id="x"),
                    NoopSpec(id="next#0", inputs={"x": "x"}, outputs={"o": "y"}),
                    MemorySpec(id="y"),
                ],
            )
            client.deploy("h")
            text = poll_for(lambda: t if "running for" in (t := why(nm.url, "h")) else None, timeout=30)
            assert (
                "1 app(s) (next#0) wait for input x (on solo), being written by hang on solo, running for"
                in text
            )
            assert "1 app(s) running; the longest is hang on solo" in text
            assert "running (1), longest first:" in text and "python" in text
            client.cancel("h")
            assert client.wait("h", 30)["status"] == "CANCELLED"
            after = why(nm.url, "h")
            assert "it stopped" in after and "being written by hang on solo" in after
    finally:
        nm.stop()
