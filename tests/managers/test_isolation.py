"""A daemon survives its users' code: apps that crash fail their own drop, cancels give capacity back.

One real ``dropflow nm`` with its defaults (Python functions run in warm worker processes), two worker
processes. Before, an ``os.abort()`` in a Python app killed the gunicorn worker and every session of every
user vanished, leaving workspaces and shared memory behind; and each cancel of an app that never returns
stranded a pool thread for ever.
"""

from __future__ import annotations

import os

import pytest
from daemons import start

from dropflow.drops import FileSpec, MemorySpec, PythonSpec, SharedMemorySpec
from dropflow.managers.client import RestClient

from conftest import poll_for, shm_segments

APPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps")


@pytest.fixture
def daemon(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    shm_before = shm_segments(str(tmp_path / "ws"))
    nm = start(
        "nm",
        "--workspace",
        str(tmp_path / "ws"),
        "--processes",
        "2",
        logdir=str(logs),
        name="n0",
        env={"PYTHONPATH": APPS},
    )
    client = RestClient(nm.url)
    try:
        yield nm, client, tmp_path / "ws"
    finally:
        client.close()
        nm.stop()
        assert shm_segments(str(tmp_path / "ws")) <= shm_before


def submit(client: RestClient, sid: str, drops: list) -> None:
    client.create_session(sid)
    client.append(sid, drops)
    client.deploy(sid)


@pytest.mark.parametrize("crash", ["abort", "segfault", "exit3"])
def test_a_crashing_app_fails_its_own_drop_only(daemon, crash):
    """A bystander session keeps running while another session's app dies of SIGABRT, SIGSEGV or
    ``os._exit``; the crashed session FAILS with the cause and leaves nothing behind."""
    _nm, client, ws = daemon
    release = ws.parent / "release"
    submit(
        client,
        "bystander",
        [
            PythonSpec(
                id="hold", func="poolfuncs:wait_for_file", kwargs={"path": str(release)}, outputs={"out": "r"}
            ),
            MemorySpec(id="r", persist=True),
        ],
    )
    poll_for(lambda: client.graph_status("bystander").get("hold", {}).get("status") == "RUNNING", timeout=30)
    submit(
        client,
        "crash",
        [
            SharedMemorySpec(id="arr"),
            PythonSpec(id="fill", func="testfuncs:fill_array", kwargs={"n": 1000}, outputs={"out": "arr"}),
            PythonSpec(id="boom", func=f"poolfuncs:{crash}", inputs={}, outputs={"out": "f"}),
            FileSpec(id="f"),
        ],
    )
    answer = client.wait("crash", 30)
    assert answer["status"] == "FAILED", answer
    failures = answer["summary"]["failures"]
    assert [f["uid"] for f in failures] == ["boom"]
    expected = {"abort": "SIGABRT", "segfault": "SIGSEGV", "exit3": "exit status 3"}[crash]
    assert expected in failures[0]["message"]
    assert not (ws / "crash").exists()
    # The daemon and the other user's session are still there; the session then finishes.
    assert {s["sessionId"] for s in client.sessions()} == {"bystander", "crash"}
    assert client.status("bystander") == "RUNNING"
    release.write_text("go")
    assert client.wait("bystander", 30)["status"] == "FINISHED"


def test_ten_cancels_of_apps_that_never_return_then_a_normal_session(daemon):
    """With 2 worker processes, ten sessions whose Python app never returns are cancelled one after the
    other; each cancel frees its worker, so a normal session then runs to FINISHED."""
    _nm, client, ws = daemon
    for i in range(10):
        sid = f"stuck{i}"
        submit(client, sid, [PythonSpec(id="forever", func="poolfuncs:forever")])
        poll_for(
            lambda sid=sid: client.graph_status(sid).get("forever", {}).get("status") == "RUNNING", timeout=30
        )
        client.cancel(sid)
        assert client.wait(sid, 30)["status"] == "CANCELLED"
    submit(
        client,
        "normal",
        [
            MemorySpec(id="x", data=41, codec="json"),
            PythonSpec(id="inc", func="testfuncs:inc", inputs={"x": "x"}, outputs={"out": "y"}),
            MemorySpec(id="y", persist=True, codec="json"),
        ],
    )
    answer = client.wait("normal", 30)
    assert answer["status"] == "FINISHED", answer
    for i in range(10):
        assert not (ws / f"stuck{i}").exists()
