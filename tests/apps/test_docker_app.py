"""Docker app drops against a real Docker engine: files in and out, uid, failures, cancel, no engine."""

from __future__ import annotations

import os

import pytest
from containers import busybox_image, engine, session_containers

from dropflow.drops import FileSpec, MemorySpec, PythonSpec, ShellSpec
from dropflow.drops.apps.docker import DockerSpec
from dropflow.drops.errors import GraphError
from dropflow.engine import Node

from conftest import poll_for, run


@pytest.fixture(scope="module")
def docker_client():
    return engine()


@pytest.fixture(scope="module")
def image(docker_client):
    return busybox_image(docker_client)


@pytest.fixture
def no_leftovers(docker_client):
    """Session ids used by a test; none of their containers may remain afterwards."""
    used: list[str] = []
    yield used
    for session_id in used:
        left = session_containers(docker_client, session_id)
        assert not left, f"containers left behind for {session_id}: {[c.name for c in left]}"


def test_container_transforms_a_file_that_a_python_app_checks(node, image, no_leftovers):
    """
    write (shell) -> in.txt -> upper (docker: tr, id, env) -> out.txt ---> check (python) -> result
                                                         \\-> who.txt    (in.txt also goes to check)
    The container reads its input and writes its outputs through the same paths as the host, as the calling
    user, with the session's environment and the spec's ``env``.
    """
    no_leftovers.append("docker-ok")
    s = run(
        node,
        [
            ShellSpec(id="write", command="printf 'hello dropflow\\n' > {out}", outputs={"out": "in"}),
            FileSpec(id="in", path="in.txt"),
            DockerSpec(
                id="upper",
                image=image,
                command="tr a-z A-Z < {inp} > {out}; "
                'echo "$(id -u):$(id -g) $GREETING $DROPFLOW_DROP_ID" > {who}',
                env={"GREETING": "hi"},
                inputs={"inp": "in"},
                outputs={"out": "out", "who": "who"},
            ),
            FileSpec(id="out", path="out.txt"),
            FileSpec(id="who", path="who.txt", codec="utf-8"),
            PythonSpec(
                id="check",
                func="containerfuncs:expect_upper",
                inputs={"text": "out", "original": "in"},
                outputs={"out": "result"},
            ),
            MemorySpec(id="result", persist=True, codec="utf-8"),
            PythonSpec(
                id="keep_who", func="testfuncs:const", inputs={"value": "who"}, outputs={"o": "who_v"}
            ),
            MemorySpec(id="who_v", persist=True, codec="utf-8"),
        ],
        session_id="docker-ok",
    )
    assert s.state == "FINISHED", s.summary()
    assert s.value("result") == "HELLO DROPFLOW\n"
    assert s.value("who_v") == f"{os.getuid()}:{os.getgid()} hi upper\n"


def test_failing_container_fails_the_session_with_its_stderr_tail(node, image, no_leftovers):
    """A non-zero exit puts the app in ERROR with the end of the container's standard error."""
    no_leftovers.append("docker-fail")
    s = run(
        node,
        [
            DockerSpec(
                id="bad",
                image=image,
                command="echo starting; for i in 1 2 3; do echo line $i >&2; done; "
                "echo 'frobnicator not found' >&2; exit 3",
                outputs={"out": "never"},
            ),
            FileSpec(id="never"),
        ],
        session_id="docker-fail",
    )
    assert s.state == "FAILED"
    [failure] = s.failures()
    assert failure.uid == "bad"
    assert "exit status 3" in failure.message
    assert failure.message.rstrip().endswith("frobnicator not found")
    assert "line 1" in failure.message and "starting" not in failure.message
    assert s.drop_state("never") == "ERROR"


def test_cancel_stops_and_removes_the_container(node, docker_client, image, no_leftovers):
    """Cancelling the session stops a container that would run for ten minutes, and removes it."""
    no_leftovers.append("docker-cancel")
    session = node.create_session("docker-cancel")
    session.add(
        [
            DockerSpec(id="long", image=image, command="sleep 600", outputs={"out": "o"}),
            FileSpec(id="o"),
        ]
    )
    session.deploy()
    poll_for(
        lambda: any(c.status == "running" for c in session_containers(docker_client, "docker-cancel")),
        timeout=30,
    )
    session.cancel()
    assert session.wait(30) == "CANCELLED"
    poll_for(lambda: not session_containers(docker_client, "docker-cancel"), timeout=15)


def test_timeout_stops_the_container(node, image, no_leftovers):
    no_leftovers.append("docker-timeout")
    s = run(
        node,
        [
            DockerSpec(
                id="slow", image=image, command="echo waiting >&2; sleep 600", timeout=1.0, outputs={"o": "o"}
            ),
            FileSpec(id="o"),
        ],
        session_id="docker-timeout",
    )
    assert s.state == "FAILED"
    [failure] = s.failures()
    assert "timed out after 1 s" in failure.message and "waiting" in failure.message


def test_paths_outside_the_workspace_are_mounted_read_only_or_at_their_directory(tmp_path, image):
    """An input under an allowed directory is mounted read-only; an output there through its directory."""
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "data.txt").write_text("abc\n")
    with Node(workspace_root=str(tmp_path / "ws"), allowed_paths=[str(ext)], threads=2) as node:
        s = run(
            node,
            [
                FileSpec(id="data", path=str(ext / "data.txt")),
                DockerSpec(
                    id="c",
                    image=image,
                    command="cat {inp} {inp} > {out}; echo x >> {inp} || echo read-only > {flag}",
                    inputs={"inp": "data"},
                    outputs={"out": "res", "flag": "flag"},
                ),
                FileSpec(id="res", path=str(ext / "results" / "res.txt"), persist=True),
                FileSpec(id="flag", path="flag.txt", codec="utf-8"),
                PythonSpec(id="k", func="testfuncs:const", inputs={"value": "flag"}, outputs={"o": "flag_v"}),
                MemorySpec(id="flag_v", persist=True, codec="utf-8"),
            ],
            session_id="docker-mounts",
        )
    assert s.state == "FINISHED", s.summary()
    assert (ext / "results" / "res.txt").read_text() == "abc\nabc\n"
    assert (ext / "data.txt").read_text() == "abc\n"
    assert s.value("flag_v") == "read-only\n"


def test_missing_image_with_pull_never_is_a_clear_error(node, docker_client):
    s = run(
        node,
        [
            DockerSpec(
                id="c", image="dropflow-test/absent:none", command="true", pull="never", outputs={"o": "o"}
            ),
            FileSpec(id="o"),
        ],
        session_id="docker-noimage",
    )
    assert s.state == "FAILED"
    assert "image 'dropflow-test/absent:none' is not on the Docker engine" in s.failures()[0].message


def test_no_engine_is_a_clear_error(node, tmp_path):
    """No daemon at the address: the app fails saying where it looked and what to do -- no traceback."""
    sock = tmp_path / "nothing.sock"
    s = run(
        node,
        [
            DockerSpec(id="c", image="any", command="true", docker_host=f"unix://{sock}", outputs={"o": "o"}),
            FileSpec(id="o"),
        ],
        session_id="docker-noengine",
    )
    assert s.state == "FAILED"
    message = s.failures()[0].message
    assert message.startswith(f"no Docker engine is reachable at unix://{sock}")
    assert "Traceback" not in message


def test_graph_checks_reject_bad_placeholders_and_memory_drops(node):
    session = node.create_session("docker-bad-graph")
    session.add(
        [
            MemorySpec(id="m", data=1),
            DockerSpec(
                id="c", image="any", command="cat {inp} > {nope}", inputs={"inp": "m"}, outputs={"o": "o"}
            ),
            FileSpec(id="o"),
        ]
    )
    with pytest.raises(GraphError) as err:
        session.deploy()
    text = str(err.value)
    assert "placeholder {nope} names no port" in text
    assert "'m' is a memory drop" in text
