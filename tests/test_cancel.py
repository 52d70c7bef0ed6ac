"""Cancel and shutdown never wait on code that does not return.

Python code in a thread cannot be interrupted. A cancelled app that does not stop is given up on after
``Session.ABANDON_AFTER`` seconds: the session ends CANCELLED, its pool thread stops counting (a replacement
starts), and what the app writes if it ever returns is deleted. The blocked apps here wait on a gate that the
test opens at the end, so that no thread outlives the test.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import psutil

from dropflow.drops import MemorySpec, PythonSpec, ShellSpec
from dropflow.engine import Node

import testfuncs
from conftest import poll_for, run, write_graph


def stuck(name: str, app: str = "stuck") -> PythonSpec:
    return PythonSpec(id=app, func="testfuncs:wait_gate", kwargs={"name": name, "timeout": 3600})


def test_ten_cancels_of_stuck_apps_leave_the_pool_usable(workspace_root):
    """A node with 2 app threads: ten sessions whose app never returns are cancelled one after another;
    then a normal session still runs to FINISHED (before, 2 cancels used up the pool for ever)."""
    name = f"stuck-{id(workspace_root)}"
    node = Node(workspace_root=workspace_root, threads=2, processes=1).start()
    try:
        for i in range(10):
            s = node.create_session(f"c{i}")
            s.add([stuck(name)])
            s.deploy()
            poll_for(lambda s=s: s.drop_state("stuck") == "RUNNING", timeout=10)
            s.cancel()
            assert s.wait(10) == "CANCELLED", s.summary()
            assert "abandoned 1 cancelled app" in (s.error or "")
        ok = run(
            node,
            [
                PythonSpec(id="a", func="testfuncs:inc", kwargs={"x": 1}, outputs={"out": "y"}),
                MemorySpec(id="y", persist=True),
            ],
            session_id="after",
        )
        assert ok.state == "FINISHED" and ok.value("y") == 2
    finally:
        testfuncs.gate(name).set()
        node.close()


def test_close_returns_and_ends_sessions_whose_apps_never_return(workspace_root):
    """Node.close(timeout=1) with a stuck app returns promptly and leaves no session RUNNING (it used to
    block 15 s and leave the session RUNNING)."""
    name = f"close-{id(workspace_root)}"
    node = Node(workspace_root=workspace_root, threads=2, processes=1).start()
    s = node.create_session("s")
    s.add([stuck(name)])
    s.deploy()
    poll_for(lambda: s.drop_state("stuck") == "RUNNING", timeout=10)
    closer = threading.Thread(target=node.close, kwargs={"timeout": 1.0})
    closer.start()
    try:
        closer.join(20)
        assert not closer.is_alive(), "Node.close(timeout=1) did not return"
        assert s.state in ("CANCELLED", "FAILED") and s.ended
    finally:
        testfuncs.gate(name).set()
        closer.join()


def test_ctrl_c_on_run_exits_although_an_app_never_returns(tmp_path):
    """``dropflow run`` of a Python app that never returns (in a thread): Ctrl-C cancels, gives the app up,
    cleans the workspace and exits 130 (it used to wait for ever)."""
    path = write_graph(
        tmp_path / "g.json",
        [
            PythonSpec(id="stuck", func="testfuncs:forever", outputs={"out": "m"}),
            MemorySpec(id="m"),
            ShellSpec(id="sh", command="sleep 100"),
        ],
    )
    ws = tmp_path / "ws"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dropflow", "run", path, "--workspace", str(ws), "--session-id", "int"],
        cwd=str(tmp_path),
        env={
            **__import__("os").environ,
            "PYTHONPATH": str(tmp_path.parent.parent) + ":" + testfuncs.__file__.rsplit("/", 1)[0],
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sleeper = poll_for(
            lambda: [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "sleep"],
            timeout=30,
        )[0]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "CANCELLED" in out and "Traceback" not in err
    poll_for(
        lambda: not psutil.pid_exists(sleeper.pid) or sleeper.status() == psutil.STATUS_ZOMBIE, timeout=10
    )
    assert not (ws / "int").exists()
