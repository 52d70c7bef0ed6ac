"""Starting and stopping real dropflow daemons for system tests: by PID, waiting on health, never sleeping.

Every daemon a test starts, and every client in the test process, finds its token the way dropflow's own
clients do -- in the default file -- but under a config directory of this test run, never the user's own
``~/.config``: importing this module points ``$XDG_CONFIG_HOME`` there (and removes it at exit).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

import psutil

from dropflow.deploy.localcluster import wait_healthy
from dropflow.managers.auth import ensure_token, tls_verify

_CONFIG = tempfile.mkdtemp(prefix="dropflow-test-config-")
os.environ["XDG_CONFIG_HOME"] = _CONFIG
os.environ.pop("DROPFLOW_TOKEN", None)
os.environ.pop("DROPFLOW_TOKEN_FILE", None)
atexit.register(shutil.rmtree, _CONFIG, True)


def token() -> str:
    """The token of every daemon this test run starts (made on first use, as a daemon would)."""
    return ensure_token()[0]


def auth() -> dict[str, str]:
    """Headers that authenticate a request to a daemon of this test run."""
    return {"Authorization": f"Bearer {token()}"}


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
    ca_file: str | None = None,
) -> Daemon:
    """Start a daemon and wait until it answers its health check (over https, checked against ``ca_file``,
    when one is given: the daemon then serves TLS)."""
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
    scheme = "https" if ca_file else "http"
    daemon = Daemon(proc, f"{scheme}://127.0.0.1:{port}", log, name)
    verify = tls_verify(ca_file) if ca_file else True
    if wait_healthy(daemon.url, timeout, verify=verify) is None:
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
