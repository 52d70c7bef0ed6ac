"""A local cluster: an island manager over N node managers, each a daemon process on this machine.

Theory of operation
-------------------
:func:`up` starts N node managers (``python -m dropflow nm``) on consecutive loopback ports, waits until
each answers ``GET /api/health``, then starts an island manager over them and waits for it as well. Every
daemon runs in a session of its own, its output in ``DIR/logs``, so it outlives the command that started
it. What ``up`` started is written to ``DIR/cluster.json`` -- the island manager's URL, the node managers'
URLs and every daemon's PID -- and that file is the cluster's only state: :func:`down` reads it, sends
SIGTERM to the daemons in the reverse order of their start (the island manager first), kills those still
running after the timeout, and removes the file; :func:`read_state` and :func:`LocalCluster.alive` answer
``status``. If ``up`` fails or is interrupted half way, it stops every daemon it had started before the
error goes on, so nothing is left behind without a state file naming it.

A port that something else holds -- often another local cluster, whose daemons would answer the health
checks in place of ours -- is found before anything starts, by binding each port once; and a daemon that
answers its health check must still be running, or the answer came from someone else. ``pythonpath`` and
``allow_paths`` reach the node managers (``$PYTHONPATH``, ``--allow-path``), so that their Python apps
import the user's modules and their file drops may use the user's directories.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import psutil

__all__ = [
    "STATE_FILE",
    "ClusterError",
    "LocalCluster",
    "down",
    "read_state",
    "state_path",
    "stop",
    "up",
    "wait_healthy",
]

STATE_FILE = "cluster.json"
#: How long a failed ``up`` gives the daemons it started to stop before killing them.
ABORT_TIMEOUT = 30.0


class ClusterError(Exception):
    """The cluster could not be brought up or down; the message says why."""


@dataclass(frozen=True, slots=True)
class LocalCluster:
    #: The island manager's REST URL: where graphs are submitted.
    url: str
    #: The node managers' REST URLs.
    nodes: tuple[str, ...]
    #: Every daemon's PID, in the order they were started (node managers, then the island manager).
    pids: tuple[int, ...]

    def alive(self) -> list[int]:
        """The PIDs of the daemons still running."""
        return [pid for pid in self.pids if psutil.pid_exists(pid)]

    def to_json(self) -> str:
        return json.dumps({"url": self.url, "nodes": list(self.nodes), "pids": list(self.pids)}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> LocalCluster:
        raw = json.loads(text)
        return cls(str(raw["url"]), tuple(raw["nodes"]), tuple(int(p) for p in raw["pids"]))


def state_path(directory: str) -> str:
    return os.path.join(directory, STATE_FILE)


def read_state(directory: str) -> LocalCluster | None:
    """The cluster recorded in ``directory``; None if there is none."""
    path = state_path(directory)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return LocalCluster.from_json(f.read())


def wait_healthy(
    url: str, timeout: float, token: str | None = None, verify: Any = True
) -> dict[str, Any] | None:
    """The manager's health answer, once it gives one; None if it did not within ``timeout``. Without the
    token, the answer says only that it is up."""
    import httpx

    deadline = time.monotonic() + timeout
    pause = threading.Event()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    while True:
        try:
            resp = httpx.get(f"{url}/api/health", timeout=2.0, headers=headers, verify=verify)
            if resp.status_code == 200:
                return dict(resp.json())
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            return None
        pause.wait(0.1)


def _start(argv: list[str], log_path: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115  (the daemon keeps the file after we return)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dropflow", *argv],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    log.close()
    return proc


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Is ``port`` held by something (a listener), so that a daemon could not bind it?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the daemons do: connections of a cluster just stopped (TIME_WAIT) do not hold the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _check_ports(ports: list[int]) -> None:
    taken = [p for p in ports if p and port_taken(p)]
    if taken:
        raise ClusterError(
            f"port(s) {', '.join(map(str, taken))} on 127.0.0.1 are in use (another local cluster? "
            "'dropflow cluster status --dir DIR' tells of one): choose others with --port and --node-port"
        )


def _healthy(url: str, proc: subprocess.Popen[bytes], timeout: float, what: str, log: str) -> None:
    """Wait for the daemon ``proc`` at ``url``; an answer while ``proc`` is dead is someone else's."""
    if wait_healthy(url, timeout) is None or proc.poll() is not None:
        code = proc.poll()
        why = f"it exited with status {code}" if code is not None else "no answer"
        raise ClusterError(f"{what} {url} did not start ({why}); see {log}")


def up(
    directory: str,
    nodes: int = 3,
    port: int = 8001,
    node_port: int = 8100,
    workspace: str | None = None,
    timeout: float = 60.0,
    allow_paths: list[str] | tuple[str, ...] = (),
    pythonpath: list[str] | tuple[str, ...] = (),
) -> LocalCluster:
    """Start a cluster of ``nodes`` node managers (ports ``node_port`` and up) under an island manager on
    ``port``, and record it in ``directory``.

    Returns once every daemon answers its health check; raises :class:`ClusterError` (having stopped what it
    started) when one does not within ``timeout`` seconds, or when ``directory`` already holds a cluster.
    """
    path = state_path(directory)
    if os.path.exists(path):
        raise ClusterError(f"a cluster is already up ({path}); run 'dropflow cluster down' first")
    _check_ports([port, *(node_port + i for i in range(nodes))])
    logs = os.path.join(directory, "logs")
    os.makedirs(logs, exist_ok=True)
    workspace = workspace or os.path.abspath(os.path.join(directory, "workspace"))
    env = dict(os.environ)
    if pythonpath:
        paths = [os.path.abspath(p) for p in pythonpath]
        env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    allow = [arg for p in allow_paths for arg in ("--allow-path", os.path.abspath(p))]
    pids: list[int] = []
    procs: list[subprocess.Popen[bytes]] = []
    node_urls = []
    try:
        for i in range(nodes):
            nm_port = node_port + i
            argv = ["nm", "--port", str(nm_port), "--name", f"node-{i}"]
            argv += ["--workspace", os.path.join(workspace, f"node-{i}"), *allow]
            # One journal directory for every node: a resume reads all of a session's journals there, also
            # those of a node that died.
            argv += ["--journal", os.path.join(workspace, ".journal")]
            procs.append(_start(argv, os.path.join(logs, f"nm-{i}.log"), env))
            pids.append(procs[-1].pid)
            node_urls.append(f"http://127.0.0.1:{nm_port}")
        for i, url in enumerate(node_urls):
            _healthy(url, procs[i], timeout, "node manager", os.path.join(directory, "logs", f"nm-{i}.log"))
        url = f"http://127.0.0.1:{port}"
        procs.append(
            _start(
                ["dim", "--port", str(port), "--name", "island", "--nodes", ",".join(node_urls)],
                os.path.join(logs, "dim.log"),
                env,
            )
        )
        pids.append(procs[-1].pid)
        _healthy(url, procs[-1], timeout, "island manager", os.path.join(directory, "logs", "dim.log"))
    except BaseException:
        stop(pids, ABORT_TIMEOUT)
        raise
    cluster = LocalCluster(url, tuple(node_urls), tuple(pids))
    with open(path, "w") as f:
        f.write(cluster.to_json())
    return cluster


def stop(pids: list[int], timeout: float) -> list[int]:
    """SIGTERM each process, wait up to ``timeout`` for all, SIGKILL the rest; the PIDs that were killed."""
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.send_signal(signal.SIGTERM)
            procs.append(proc)
        except psutil.NoSuchProcess:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        proc.kill()
    return [p.pid for p in alive]


def down(directory: str, timeout: float = 60.0) -> tuple[LocalCluster, list[int]]:
    """Stop the cluster recorded in ``directory`` and forget it; the cluster and the PIDs that were killed."""
    cluster = read_state(directory)
    if cluster is None:
        raise ClusterError(f"no cluster state in {state_path(directory)}")
    killed = stop(list(reversed(cluster.pids)), timeout)
    os.unlink(state_path(directory))
    return cluster, killed
