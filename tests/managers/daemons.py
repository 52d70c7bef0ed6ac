"""Starting and stopping real dropflow daemons for system tests: by PID, waiting on health, never sleeping."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field

import psutil

from dropflow.deploy.localcluster import wait_healthy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    url: str
    log: str
    name: str = ""
    killed: bool = False

    def kill_hard(self) -> None:
        """SIGKILL the daemon and everything it started: a node dying."""
        self.killed = True
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            children = psutil.Process(self.proc.pid).children(recursive=True)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            _gone, alive = psutil.wait_procs(children, timeout=10)
            for p in alive:
                p.kill()

    def tail(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-3000:]
        except FileNotFoundError:
            return ""


def start(
    role: str,
    *args: str,
    logdir: str,
    name: str,
    port: int | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    prefix: list[str] | None = None,
) -> Daemon:
    port = port or free_port()
    log = os.path.join(logdir, f"{role}-{name}.log")
    argv = [
        *(prefix or []),
        sys.executable,
        "-m",
        "dropflow",
        role,
        "--port",
        str(port),
        "--name",
        name,
        *args,
    ]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    daemon = Daemon(proc, f"http://127.0.0.1:{port}", log, name)
    if wait_healthy(daemon.url, timeout) is None:
        daemon.stop()
        raise AssertionError(f"{role} {name} did not become healthy:\n{daemon.tail()}")
    return daemon


@dataclass
class Cluster:
    dim: Daemon
    nodes: list[Daemon] = field(default_factory=list)

    def stop(self) -> None:
        self.dim.stop()
        for n in self.nodes:
            n.stop()
