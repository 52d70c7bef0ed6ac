"""Shared fixtures: a started node with its own workspace, graph helpers, and leak checks.

Every test that uses ``node`` is checked at teardown: the invariants of every session still on the node
(``Session.validate``), then what the test may leave behind -- shared-memory segments named by dropflow,
worker processes, app threads, and Python objects (no session, graph or node survives its test).
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psutil
import pytest

from dropflow.drops import encode_physical
from dropflow.drops.shm import SHM_DIR, SHM_PREFIX, root_scope
from dropflow.drops.spec import DropSpec
from dropflow.engine import Node, Session
from dropflow.engine.session import live_sessions

HERE = os.path.dirname(os.path.abspath(__file__))
#: Every session of the tests -- in this process and in the daemons they start -- checks the core's
#: invariants as it ends (dropflow.engine.session), and fails if one is broken.
os.environ["DROPFLOW_VALIDATE"] = "1"
sys.path.insert(0, os.path.join(HERE, "apps"))  # test app functions live in tests/apps/


#: Names of the engine's threads (the owner, app threads -- abandoned ones included --, process-pool slots,
#: the zygote's reader, in-process transfers, the command watcher). The managers' threads are LeakCheck's
#: business.
ENGINE_THREADS = (
    "dropflow-owner",
    "dropflow-app",
    "dropflow-proc",
    "dropflow-zygote",
    "dropflow-inproc",
    "dropflow-children",
)


def ours() -> list[str]:
    """The engine's threads in this process."""
    return [t.name for t in threading.enumerate() if t.name.startswith(ENGINE_THREADS)]


def poll_for(
    predicate: Callable[[], Any],
    timeout: float,
    interval: float = 0.01,
    what: Callable[[], str] | None = None,
) -> Any:
    """Wait until ``predicate()`` is truthy (returning it), or fail after ``timeout`` seconds (saying
    ``what()`` if given)."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {what() if what else predicate}")
        event.wait(interval)


def require(component: str, available: bool, how: str) -> None:
    """Skip a test whose component is missing -- except in CI (CI=true), where it must run, so fail."""
    if available:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{component} is required in CI but is not available: {how}")
    pytest.skip(f"{component} is not available here: {how}")


def announce(request: pytest.FixtureRequest, text: str) -> None:
    """Print past pytest's capture, so that a seed shows in every CI log (and in a failure's output)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(text)
    print(text)


def slurm_idle(nodes: int, timeout: float = 120.0) -> bool:
    """True once the Slurm cluster has ``nodes`` idle nodes, waiting up to ``timeout`` seconds: a job of an
    earlier test may still be completing (its nodes not idle for a few seconds more)."""
    if shutil.which("sbatch") is None:
        return False

    def idle() -> int:
        try:
            out = subprocess.run(
                ["sinfo", "-h", "-t", "idle", "-o", "%D"], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return 0
        return sum(int(n) for n in out.stdout.split() if n.isdigit())

    deadline = time.monotonic() + timeout
    while idle() < nodes:
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(1.0)
    return True


def shm_segments(root: str | None = None) -> set[str]:
    """dropflow's segments in /dev/shm; with ``root``, only those of sessions under that workspace root
    (immune to other processes' sessions on the machine)."""
    prefix = SHM_PREFIX + (root_scope(root) if root is not None else "")
    return {name for name in os.listdir(SHM_DIR) if name.startswith(prefix)}


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def validate_all(node: Node) -> None:
    """Check the invariants of every session on a running node, on its owner thread."""
    for session in list(node.sessions.values()):
        node.call(session.validate)


def check_freed(refs: Sequence[weakref.ref[Any]], what: str) -> None:
    """Every referent is gone once the cyclic collector has run: nothing of the test is kept alive."""
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    assert not alive, f"{what} still in memory after the test: {alive[:5]}"


class LeakCheck:
    """What a cluster test may leave behind: threads, sockets, fds, child processes, shared memory -- the
    segments of sessions under ``roots`` (the test's workspace roots), else any of dropflow's (then a test
    run beside this one on the machine may look like a leak)."""

    def __init__(self, roots: Sequence[str] = ()) -> None:
        # falcon's ASGI test client keeps one event loop per process (an epoll and a socket pair), made on
        # first use: a library singleton too.
        import falcon.asgi
        import falcon.testing

        falcon.testing.TestClient(falcon.asgi.App()).simulate_get("/")
        # pyzmq keeps one garbage-collector context per process for zero-copy sends, made on first use and
        # never closed: a library singleton, so it belongs in the baseline rather than counting as a leak.
        from zmq.utils.garbage import gc as zmq_gc

        if not zmq_gc.is_alive():
            zmq_gc.start()
        self.proc = psutil.Process()
        self.threads = {t.ident for t in threading.enumerate()}
        self.sockets = len(self.proc.net_connections(kind="inet"))
        self.fds = self.proc.num_fds()
        self.kids = children()
        self.roots = list(roots)
        self.shm = self.segments()

    def segments(self) -> set[str]:
        if not self.roots:
            return shm_segments()
        return set().union(*(shm_segments(root) for root in self.roots))

    def check(self) -> None:
        def new_threads() -> list[str]:
            # Ours are named dropflow-*; any other new non-daemon thread would also keep the process alive.
            return [
                t.name
                for t in threading.enumerate()
                if t.ident not in self.threads and (not t.daemon or t.name.startswith("dropflow"))
            ]

        gc.collect()  # what the test dropped (a test client's app and its request threads) goes now
        poll_for(lambda: not new_threads(), timeout=10, what=lambda: f"threads left: {new_threads()}")
        poll_for(
            lambda: len(self.proc.net_connections(kind="inet")) <= self.sockets,
            timeout=10,
            what=lambda: f"sockets left: {self.proc.net_connections(kind='inet')}",
        )
        poll_for(  # +2: lazily opened library files
            lambda: self.proc.num_fds() <= self.fds + 2,
            timeout=10,
            what=lambda: f"{self.proc.num_fds() - self.fds} more file descriptors",
        )
        poll_for(
            lambda: children() <= self.kids, timeout=10, what=lambda: f"children: {children() - self.kids}"
        )
        assert self.segments() <= self.shm, f"shared memory leaked: {self.segments() - self.shm}"


@pytest.fixture
def workspace_root(tmp_path: Any) -> str:
    root = tmp_path / "ws"
    return str(root)


@pytest.fixture
def node(workspace_root: str) -> Iterator[Node]:
    kids_before = children()
    sessions_before = set(map(id, live_sessions()))
    n = Node(workspace_root=workspace_root, threads=8, processes=2).start()
    try:
        yield n
        validate_all(n)
    finally:
        n.close()
        poll_for(lambda: not ours(), timeout=10, what=lambda: f"threads left: {ours()}")
        poll_for(lambda: children() <= kids_before, timeout=10)
        leaked = shm_segments(workspace_root)
        assert not leaked, f"shared memory leaked: {leaked}"
        # (The node itself stays referenced by pytest's fixture cache until teardown ends.)
        check_freed([weakref.ref(s) for s in live_sessions() if id(s) not in sessions_before], "sessions")


def run(node: Node, drops: Sequence[DropSpec], session_id: str = "s", timeout: float = 60) -> Session:
    """Run drops in a new session of ``node`` and wait for its end."""
    session = node.create_session(session_id)
    session.add(drops)
    session.deploy()
    session.wait(timeout)
    assert session.ended, f"session did not end within {timeout} s: {session.summary()}"
    node.call(session.validate)
    return session


def write_graph(path: Any, drops: Sequence[DropSpec], name: str | None = None) -> str:
    with open(path, "wb") as f:
        f.write(encode_physical(drops, name))
    return str(path)
