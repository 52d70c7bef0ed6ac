"""Sweeping what dead processes left: session directories and /dev/shm segments, never a live session's.

Each test kills a real process holding a session mid-run (SIGKILL: nothing of it gets to clean), shows
that its leftovers are there, starts the next process on the same workspace root, and checks that the
leftovers are gone -- but the paths of persisted drops, and everything of a live session in another
process on the same root (or of a session with the same id under another root).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from dropflow.drops import FileSpec, MemorySpec, NoopSpec, PythonSpec, SharedMemorySpec, ShellSpec, SleepSpec
from dropflow.drops.shm import SHM_PREFIX, create_segment, segment_name, session_scope
from dropflow.engine.sweep import LOCK_DIR, sweep
from dropflow.engine.workspace import Workspace
from dropflow.managers.client import RestClient

from conftest import poll_for, shm_segments, write_graph

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")
sys.path.insert(0, os.path.join(HERE, "managers"))
from daemons import Daemon, start  # noqa: E402  (real daemons, as the cluster system tests start them)


def segments(root: str, session_id: str) -> set[str]:
    prefix = f"{SHM_PREFIX}{session_scope(root, session_id)}."
    return {n for n in shm_segments() if n.startswith(prefix)}


def blocking_graph() -> list[Any]:
    """
    n -> fill -> seg (shm) --.
    write -> f (file) -------+--> hold (sleeps for ten minutes)
    keep -> k (persisted) ---'
    """
    return [
        MemorySpec(id="n", data=4096, codec="json"),
        PythonSpec(id="fill", func="testfuncs:fill_array", inputs={"n": "n"}, outputs={"out": "seg"}),
        SharedMemorySpec(id="seg"),
        ShellSpec(id="write", command="echo scratch > {out}", outputs={"out": "f"}),
        FileSpec(id="f"),
        ShellSpec(id="keep", command="echo result > {out}", outputs={"out": "k"}),
        FileSpec(id="k", path="kept.txt", persist=True),
        SleepSpec(id="hold", seconds=600, inputs={"s": "seg", "f": "f", "k": "k"}),
    ]


def mid_run(root: str, session_id: str) -> bool:
    """The session has made its segment and both files: what a crash now would leave."""
    d = os.path.join(root, session_id)
    return bool(segments(root, session_id)) and all(
        os.path.exists(os.path.join(d, name)) for name in ("f", "kept.txt")
    )


class Runs:
    """`dropflow run` processes started by a test, each in its own process group; killed at the end."""

    def __init__(self, tmp_path: Any) -> None:
        self.tmp = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, graph: str, *args: str, cwd: str) -> subprocess.Popen[bytes]:
        log = open(os.path.join(self.tmp, f"run-{len(self.procs)}.log"), "wb")  # noqa: SIM115
        with log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dropflow",
                    "run",
                    graph,
                    "--pythonpath",
                    APPS,
                    "--progress",
                    "never",
                    "--no-journal",  # a journaled session's workspace is kept for its resume: tests/resume
                    *args,
                ],
                cwd=cwd,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def kill_hard(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill_hard(proc)


@pytest.fixture
def runs(tmp_path: Any) -> Iterator[Runs]:
    r = Runs(tmp_path)
    try:
        yield r
    finally:
        r.close()


def test_a_killed_run_is_swept_by_the_next_run_and_a_live_one_is_not(tmp_path, runs):
    """Runs A (killed) and C (live) share ./dropflow-workspace; run B, started after A died, sweeps A only."""
    work = str(tmp_path)
    root = os.path.join(work, "dropflow-workspace")
    graph = write_graph(tmp_path / "block.json", blocking_graph())
    small = write_graph(
        tmp_path / "small.json", [MemorySpec(id="a", data=1), NoopSpec(id="b", inputs={"a": "a"})]
    )
    try:
        dead = runs.start(graph, "--session-id", "dead", cwd=work)
        live = runs.start(graph, "--session-id", "live", cwd=work)
        poll_for(lambda: mid_run(root, "dead") and mid_run(root, "live"), timeout=60)
        runs.kill_hard(dead)
        # Nothing of A cleaned itself: this is what the sweep is for.
        assert segments(root, "dead") and os.path.exists(os.path.join(root, "dead", "f"))

        b = runs.start(small, "--session-id", "next", cwd=work)
        assert b.wait(60) == 0

        assert not segments(root, "dead")
        assert os.listdir(os.path.join(root, "dead")) == ["kept.txt"]  # persisted: it survives the crash
        assert not os.path.exists(os.path.join(root, LOCK_DIR, "dead.lock"))
        # C is untouched and still running.
        assert live.poll() is None and mid_run(root, "live")

        live.send_signal(signal.SIGINT)  # Ctrl-C: C cancels and cleans up after itself
        assert live.wait(60) != 0
        assert not segments(root, "live") and os.listdir(os.path.join(root, "live")) == ["kept.txt"]
        assert not os.path.exists(os.path.join(root, LOCK_DIR))
    finally:
        runs.close()
        sweep(root)  # whatever a failed test left


def test_a_killed_node_manager_is_swept_when_it_restarts(tmp_path, runs):
    """A `dropflow nm` dies with a session mid-run; a `dropflow run` on the same root keeps running; the
    next node manager started on the root sweeps the dead one's session and leaves the run's alone."""
    root = str(tmp_path / "ws")
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {"PYTHONPATH": APPS}
    graph = write_graph(tmp_path / "block.json", blocking_graph())
    nm: Daemon | None = None
    try:
        nm = start("nm", "--workspace", root, logdir=str(logs), name="n0", env=env)
        with RestClient(nm.url) as client:
            client.create_session("dead")
            client.append("dead", blocking_graph())
            client.deploy("dead")
        live = runs.start(graph, "--session-id", "live", "--workspace", root, cwd=str(tmp_path))
        poll_for(lambda: mid_run(root, "dead") and mid_run(root, "live"), timeout=60)
        nm.kill_hard()
        assert segments(root, "dead") and os.path.exists(os.path.join(root, "dead", "f"))

        nm = start("nm", "--workspace", root, logdir=str(logs), name="n0", env=env)

        assert not segments(root, "dead")
        assert os.listdir(os.path.join(root, "dead")) == ["kept.txt"]
        assert live.poll() is None and mid_run(root, "live")
        with RestClient(nm.url) as client:
            assert client.sessions() == []  # the dead manager's sessions died with it
    finally:
        if nm is not None:
            nm.stop()
        runs.close()
        sweep(root)


_DIE_HOLDING = textwrap.dedent(
    """
    import os, sys
    from dropflow.drops.shm import create_segment, segment_name
    from dropflow.engine.workspace import Workspace

    ws = Workspace(sys.argv[1], sys.argv[2])
    ws.create()
    os.close(create_segment(segment_name(ws.shm_scope, sys.argv[2], "seg"), 8))
    with open(os.path.join(ws.dir, "scratch"), "w") as f:
        f.write("left behind")
    os._exit(0)  # no cleanup: the kernel drops the lock, the files stay
    """
)


def die_holding(root: str, session_id: str) -> None:
    subprocess.run([sys.executable, "-c", _DIE_HOLDING, root, session_id], check=True, timeout=60)


def test_sweep_is_scoped_by_root_and_by_liveness(tmp_path):
    """Same session id under two roots, a live session beside a dead one, and a dead session's id reused."""
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    live_b = Workspace(b, "same")
    neighbour = Workspace(a, "other")
    try:
        live_b.create()
        os.close(create_segment(segment_name(live_b.shm_scope, "same", "seg"), 8))
        neighbour.create()
        os.close(create_segment(segment_name(neighbour.shm_scope, "other", "seg"), 8))
        die_holding(a, "same")
        assert segments(a, "same") and os.path.exists(os.path.join(a, "same", "scratch"))

        assert sweep(a) == ["same"]
        assert not segments(a, "same") and not os.path.exists(os.path.join(a, "same"))
        assert segments(b, "same") and segments(a, "other")  # another root's namesake, a live neighbour
        assert sweep(b) == [] and sweep(a) == []

        # A new session that reuses a dead one's id reaps its predecessor first (no sweep ran in between).
        die_holding(a, "again")
        reuse = Workspace(a, "again")
        reuse.create()
        assert not segments(a, "again") and os.listdir(reuse.dir) == []
        reuse.cleanup()
    finally:
        live_b.cleanup()
        neighbour.cleanup()
    assert not segments(b, "same") and not segments(a, "other")
    assert not os.path.exists(os.path.join(a, LOCK_DIR)) and not os.path.exists(os.path.join(b, LOCK_DIR))
