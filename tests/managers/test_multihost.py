"""Several hosts: three network namespaces joined by a bridge, a node manager in each announcing itself
with zeroconf, an island manager that discovers them, and a graph whose data crosses hosts.

    ns h1 (10.77.0.1): nm h1, dim (--discover)      ns h2 (10.77.0.2): nm h2      ns h3 (10.77.0.3): nm h3
              \\________________________ bridge in its own namespace ________________________/

The namespaces, their bridge and every daemon are created by this test and removed at its end. Traffic
stays inside them: daemons bind only to their namespace's 10.77.0.x address and share a token.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

from dropflow.drops import FileSpec, MemorySpec, PythonSpec, SharedMemorySpec, ShellSpec, encode_physical

from conftest import poll_for, require

APPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps")


def _can_make_namespaces() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def hosts():
    require("network namespaces", _can_make_namespaces(), "needs root and iproute2 (ip netns)")
    tag = uuid.uuid4().hex[:6]
    names = [f"df{tag}h{i}" for i in (1, 2, 3)]
    bridge = f"df{tag}br"
    made: list[str] = []
    try:
        ip("netns", "add", bridge)
        made.append(bridge)
        ip("-n", bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", bridge, "link", "set", "br0", "up")
        for i, ns in enumerate(names, start=1):
            ip("netns", "add", ns)
            made.append(ns)
            ip(
                "link",
                "add",
                f"v{tag}{i}",
                "netns",
                bridge,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
            ip("-n", bridge, "link", "set", f"v{tag}{i}", "master", "br0")
            ip("-n", bridge, "link", "set", f"v{tag}{i}", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"10.77.0.{i}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")  # mDNS leaves through eth0
        yield names
    finally:
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def in_ns(ns: str, *argv: str, **kw) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "dropflow", *argv],
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": APPS},
        **kw,
    )


def run_in(ns: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "dropflow", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": APPS},
    )


def test_island_discovers_nodes_on_three_hosts_and_runs_across_them(hosts, tmp_path):
    token = tmp_path / "token"
    token.write_text(uuid.uuid4().hex)
    token.chmod(0o600)  # a token file others may read is refused
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for i, ns in enumerate(hosts, start=1):
            log = open(tmp_path / f"nm-h{i}.log", "wb")  # noqa: SIM115
            logs.append(log)
            procs.append(
                in_ns(
                    ns,
                    "nm",
                    "--host",
                    f"10.77.0.{i}",
                    "--port",
                    "8000",
                    "--name",
                    f"h{i}",
                    "--announce",
                    "--interface",
                    f"10.77.0.{i}",
                    "--token-file",
                    str(token),
                    "--workspace",
                    str(tmp_path / f"ws{i}"),
                    stdout=log,
                    stderr=log,
                )
            )
        dim_log = open(tmp_path / "dim.log", "wb")  # noqa: SIM115
        logs.append(dim_log)
        procs.append(
            in_ns(
                hosts[0],
                "dim",
                "--host",
                "10.77.0.1",
                "--port",
                "8001",
                "--discover",
                "--interface",
                "10.77.0.1",
                "--token-file",
                str(token),
                stdout=dim_log,
                stderr=dim_log,
            )
        )
        url = "http://10.77.0.1:8001"

        def listed() -> dict[str, bool]:
            """Every node the island lists, and whether it answers, asked as a user would from host h1."""
            r = run_in(hosts[0], "nodes", "--to", url, "--token-file", str(token), "--json", timeout=30)
            return {n["name"]: n["reachable"] for n in json.loads(r.stdout)} if r.returncode == 0 else {}

        poll_for(lambda: listed() == {"h1": True, "h2": True, "h3": True}, timeout=60, interval=0.5)

        graph = tmp_path / "graph.json"
        graph.write_bytes(
            encode_physical(
                [
                    ShellSpec(id="gen", command="seq 1 1000 > {out}", outputs={"out": "numbers"}, node="h1"),
                    FileSpec(id="numbers", node="h1"),
                    ShellSpec(
                        id="sum",
                        command="awk '{{s += $1}} END {{print s}}' {i}",
                        inputs={"i": "numbers"},
                        outputs={"stdout": "s"},
                        node="h2",
                    ),
                    MemorySpec(id="s", codec="utf-8", node="h2"),
                    MemorySpec(id="n", data=1 << 20, codec="json", node="h3"),
                    PythonSpec(
                        id="fill",
                        func="testfuncs:random_bytes",
                        inputs={"n": "n"},
                        outputs={"out": "arr"},
                        node="h3",
                    ),
                    SharedMemorySpec(id="arr", node="h3"),
                    PythonSpec(
                        id="crc1",
                        func="testfuncs:crc",
                        inputs={"arr": "arr"},
                        outputs={"out": "c1"},
                        node="h3",
                    ),
                    MemorySpec(id="c1", node="h3"),
                    PythonSpec(
                        id="crc2",
                        func="testfuncs:crc",
                        inputs={"arr": "arr"},
                        outputs={"out": "c2"},
                        node="h1",
                    ),
                    MemorySpec(id="c2", node="h1"),
                    PythonSpec(
                        id="check",
                        func="testfuncs:same",
                        inputs={"a": "c1", "b": "c2", "total": "s"},
                        outputs={"out": "ok"},
                        node="h2",
                    ),
                    MemorySpec(id="ok", node="h2"),
                ],
                "multihost",
            )
        )
        report = tmp_path / "report.json"
        result = run_in(
            hosts[0],
            "submit",
            str(graph),
            "--to",
            url,
            "--token-file",
            str(token),
            "--wait",
            "--report",
            str(report),
            "--session-id",
            "multihost",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        outcome = json.loads(report.read_text())
        assert outcome["state"] == "FINISHED"
        assert set(outcome["placement"]) == {"h1", "h2", "h3"}
        assert outcome["nodes"] == {"h1": "FINISHED", "h2": "FINISHED", "h3": "FINISHED"}

        # A node manager that stops withdraws its announcement, and the island drops it.
        procs[2].send_signal(signal.SIGTERM)
        assert procs[2].wait(30) == 0
        # Removed from the list, not merely unreachable.
        poll_for(
            lambda: listed() == {"h1": True, "h2": True},
            timeout=30,
            interval=0.5,
            what=lambda: f"the island still lists {listed()}",
        )
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
