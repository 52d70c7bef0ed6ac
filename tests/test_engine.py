"""Sessions on a real node: Python, shell and branch apps, failures, retries, cancel and cleanup."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from dropflow.drops import (
    BranchSpec,
    DirectorySpec,
    FileSpec,
    MemorySpec,
    NoopSpec,
    NullSpec,
    PythonSpec,
    SharedMemorySpec,
    ShellSpec,
    SleepSpec,
)

from conftest import poll_for, run


def test_python_apps_pass_values_through_ports(node):
    """
    a=2 \\
          add -> s -> total(xs=[s, b]) -> result     (a list port gathers several drops)
    b=3 /
    """
    s = run(
        node,
        [
            MemorySpec(id="a", data=2, codec="json"),
            MemorySpec(id="b", data=3, codec="json"),
            PythonSpec(id="add", func="testfuncs:add", inputs={"a": "a", "b": "b"}, outputs={"out": "s"}),
            MemorySpec(id="s"),
            PythonSpec(
                id="total", func="testfuncs:total", inputs={"xs": ["s", "b"]}, outputs={"out": "result"}
            ),
            MemorySpec(id="result", persist=True),
        ],
    )
    assert s.state == "FINISHED"
    assert s.value("result") == 8


def test_multiple_output_ports_take_a_dict(node):
    s = run(
        node,
        [
            MemorySpec(id="x", data=10, codec="json"),
            PythonSpec(
                id="f", func="testfuncs:two_outputs", inputs={"x": "x"}, outputs={"left": "l", "right": "r"}
            ),
            MemorySpec(id="l", persist=True),
            MemorySpec(id="r", persist=True),
        ],
    )
    assert (s.value("l"), s.value("r")) == (9, 11)


def test_list_output_port_scatters_one_item_per_drop(node):
    s = run(
        node,
        [
            MemorySpec(id="n", data=3, codec="json"),
            PythonSpec(
                id="split", func="testfuncs:split", inputs={"n": "n"}, outputs={"parts": ["p0", "p1", "p2"]}
            ),
            *[MemorySpec(id=f"p{i}", persist=True) for i in range(3)],
        ],
    )
    assert [s.value(f"p{i}") for i in range(3)] == [0, 1, 2]


def test_codecs_and_path_ports(node):
    """A file written through an output's path is read back by a consumer through the path codec."""
    s = run(
        node,
        [
            MemorySpec(id="text", data="hello", codec="json"),
            PythonSpec(id="w", func="testfuncs:write_text", inputs={"text": "text"}, outputs={"out": "f"}),
            FileSpec(id="f", path="sub/dir/hello.txt"),
            PythonSpec(
                id="r",
                func="testfuncs:read_text",
                inputs={"path": "f"},
                outputs={"out": "back"},
                codecs={"path": "path"},
            ),
            MemorySpec(id="back", codec="utf-8", persist=True),
        ],
    )
    assert s.state == "FINISHED", s.failures()
    assert s.value("back") == "hello"


def test_streaming_writes_count_size_and_checksum(node):
    import zlib

    s = run(
        node,
        [
            MemorySpec(id="n", data=50, codec="json"),
            PythonSpec(id="w", func="testfuncs:stream_out", inputs={"chunks": "n"}, outputs={"out": "f"}),
            FileSpec(id="f", persist=True),
        ],
    )
    store = s.graph.by_id["f"].store
    expected = b"".join(bytes([i]) * 1000 for i in range(50))
    assert store.size() == len(expected)
    assert store.checksum() == zlib.crc32(expected)


def test_shell_app_placeholders_environment_and_stdout(node):
    s = run(
        node,
        [
            ShellSpec(id="gen", command="printf '3\\n1\\n2\\n' > {out}", outputs={"out": "f"}),
            FileSpec(id="f"),
            ShellSpec(
                id="sort",
                command="sort -n {inp}; echo $DROPFLOW_SESSION_ID $DROPFLOW_DROP_ID",
                inputs={"inp": "f"},
                outputs={"stdout": "sorted"},
            ),
            MemorySpec(id="sorted", codec="utf-8", persist=True),
            ShellSpec(id="upper", command="tr a-z A-Z", inputs={"stdin": "sorted"}, outputs={"stdout": "up"}),
            MemorySpec(id="up", codec="utf-8", persist=True),
        ],
        session_id="shell-env",
    )
    assert s.state == "FINISHED", s.failures()
    assert s.value("sorted") == "1\n2\n3\nshell-env sort\n"
    assert s.value("up") == "1\n2\n3\nSHELL-ENV SORT\n"


def test_shell_nonzero_exit_is_error_with_stderr_tail(node):
    s = run(
        node,
        [
            ShellSpec(
                id="bad", command="echo first >&2; echo 'disk on fire' >&2; exit 3", outputs={"out": "f"}
            ),
            FileSpec(id="f"),
            NoopSpec(id="next", inputs={"i": "f"}),
        ],
    )
    assert s.state == "FAILED"
    (failure,) = s.failures()
    assert failure.uid == "bad"
    assert "exit status 3" in failure.message and "disk on fire" in failure.message
    assert s.drop_state("f") == "ERROR" and s.drop_state("next") == "ERROR"


def test_python_exception_fails_downstream_and_names_cause(node):
    s = run(
        node,
        [
            MemorySpec(id="x", data=1, codec="json"),
            PythonSpec(id="boom", func="testfuncs:boom", inputs={"x": "x"}, outputs={"out": "y"}),
            MemorySpec(id="y"),
            NoopSpec(id="after", inputs={"i": "y"}, outputs={"o": "z"}),
            MemorySpec(id="z"),
        ],
    )
    assert s.state == "FAILED"
    assert [(f.uid, f.message.splitlines()[0]) for f in s.failures()] == [
        ("boom", "ValueError: boom: bad value")
    ]
    assert "testfuncs.py" in s.failures()[0].message  # the app's own frame, not the engine's
    assert {u: s.drop_state(u) for u in ("y", "after", "z")} == {"y": "ERROR", "after": "ERROR", "z": "ERROR"}
    assert s.story("after")[-1].cause == "y"


def test_retries_then_success(node):
    s = run(
        node,
        [
            PythonSpec(
                id="f",
                func="testfuncs:flaky",
                kwargs={"key": "retry-ok", "fails": 2},
                retries=2,
                outputs={"out": "r"},
            ),
            MemorySpec(id="r", persist=True),
        ],
    )
    assert s.state == "FINISHED" and s.value("r") == 3
    ends = [e.end for e in s.story("f")]
    assert ends.count("RUNNING") == 3


def test_retries_exhausted(node):
    s = run(
        node,
        [
            PythonSpec(
                id="f",
                func="testfuncs:flaky",
                kwargs={"key": "retry-bad", "fails": 5},
                retries=1,
                outputs={"out": "r"},
            ),
            MemorySpec(id="r"),
        ],
    )
    assert s.state == "FAILED" and "flaky failure 2" in s.failures()[0].message


def test_branch_skips_untaken_side_and_session_finishes(node):
    s = run(
        node,
        [
            MemorySpec(id="x", data=5, codec="json"),
            BranchSpec(
                id="br", func="testfuncs:positive", inputs={"x": "x"}, outputs={"true": "yes", "false": "no"}
            ),
            MemorySpec(id="yes", codec="json", persist=True),
            MemorySpec(id="no"),
            ShellSpec(id="never", command="exit 1", inputs={"stdin": "no"}, outputs={"stdout": "n2"}),
            MemorySpec(id="n2"),
        ],
    )
    assert s.state == "FINISHED"
    assert s.value("yes") == 5  # the taken side carries the input through
    assert [s.drop_state(u) for u in ("no", "never", "n2")] == ["SKIPPED"] * 3


def test_process_executor_runs_in_another_process(node):
    s = run(
        node,
        [
            PythonSpec(id="here", func="testfuncs:pid", outputs={"out": "p1"}),
            PythonSpec(id="there", func="testfuncs:pid", executor="process", outputs={"out": "p2"}),
            MemorySpec(id="p1", persist=True),
            MemorySpec(id="p2", persist=True),
        ],
    )
    assert s.state == "FINISHED", s.failures()
    assert s.value("p1") == os.getpid()
    assert s.value("p2") != os.getpid() and s.value("p2") in node.worker_pids()


def test_cancel_kills_running_shell_command_within_a_second(node):
    """Cancel a session whose shell app runs `sleep 100`: the process group dies and the session ends."""
    session = node.create_session("cancel")
    session.add(
        [
            ShellSpec(id="sleeper", command="sleep 100 & sleep 100", outputs={"out": "f"}),
            FileSpec(id="f"),
            NoopSpec(id="after", inputs={"i": "f"}),
        ]
    )
    session.deploy()

    def sleeps() -> list[psutil.Process]:
        return [p for p in psutil.Process().children(recursive=True) if p.name() == "sleep"]

    procs = poll_for(lambda: len(sleeps()) == 2 and sleeps(), timeout=10)
    start = time.monotonic()
    session.cancel()
    session.wait(1.0)
    assert session.ended and session.state == "CANCELLED"

    def dead(p: psutil.Process) -> bool:  # an orphan killed in a container may linger as an unreaped zombie
        try:
            return p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    poll_for(lambda: all(dead(p) for p in procs), timeout=max(0.0, 1.0 - (time.monotonic() - start)))
    assert session.drop_state("sleeper") == "CANCELLED" and session.drop_state("after") == "CANCELLED"
    assert not os.path.exists(session.workspace.dir)


def test_cancel_stops_process_app(node):
    session = node.create_session("cancel-proc")
    session.add([SleepSpec(id="nap", seconds=100, executor="process"), NoopSpec(id="after")])
    session.deploy()
    poll_for(lambda: node.worker_pids(), timeout=20)
    poll_for(lambda: session.drop_state("nap") == "RUNNING", timeout=5)
    session.cancel()
    session.wait(10)
    assert session.state == "CANCELLED"


def test_cancel_before_deploy(node):
    session = node.create_session("early")
    session.add([NoopSpec(id="a")])
    session.cancel()
    assert session.wait(5) == "CANCELLED"


def test_missing_root_input_file_fails_cleanly(node, tmp_path):
    s = run(node, [FileSpec(id="in", path="not-there.txt"), NoopSpec(id="use", inputs={"i": "in"})])
    assert s.state == "FAILED"
    assert "does not exist" in s.failures()[0].message


def test_external_input_file_is_read_and_never_deleted(workspace_root, tmp_path):
    from dropflow.engine import Node

    data = tmp_path / "data" / "input.txt"
    data.parent.mkdir()
    data.write_text("external\n")
    with Node(workspace_root=workspace_root, allowed_paths=[str(data.parent)]) as n:
        s = run(
            n,
            [
                FileSpec(id="in", path=str(data)),
                ShellSpec(id="cat", command="cat {i}", inputs={"i": "in"}, outputs={"stdout": "out"}),
                MemorySpec(id="out", codec="utf-8", persist=True),
            ],
        )
    assert s.value("out") == "external\n"
    assert data.read_text() == "external\n"


def test_persisted_files_survive_and_the_rest_of_the_workspace_goes(node):
    s = run(
        node,
        [
            ShellSpec(
                id="w",
                command="echo keep > {k}; echo drop > {d}; mkdir -p {dir}/x && echo y > {dir}/x/y",
                outputs={"k": "keep", "d": "tmp", "dir": "dir"},
            ),
            FileSpec(id="keep", path="results/keep.txt", persist=True),
            FileSpec(id="tmp", path="scratch/tmp.txt"),
            DirectorySpec(id="dir"),
            NullSpec(id="nothing"),
        ],
    )
    assert s.state == "FINISHED", s.failures()
    ws = s.workspace.dir
    found = sorted(os.path.relpath(os.path.join(top, f), ws) for top, _, files in os.walk(ws) for f in files)
    assert found == ["results/keep.txt"]
    assert s.summary().persisted == [os.path.join(ws, "results", "keep.txt")]


def test_expire_after_use_deletes_during_the_session(node):
    """f expires when its only consumer finished: a later app sees the file gone while the session runs."""
    # Build the check with the real path of the file, which depends on the node's workspace.
    session = node.create_session("expire")
    path = os.path.join(session.workspace.dir, "f.txt")
    session.add(
        [
            ShellSpec(id="w", command="echo x > {out}", outputs={"out": "f"}),
            FileSpec(id="f", path="f.txt", expire_after_use=True),
            ShellSpec(id="r", command="cat {i}", inputs={"i": "f"}, outputs={"stdout": "copy"}),
            MemorySpec(id="copy", codec="utf-8"),
            ShellSpec(
                id="check",
                command=f"test -e {path} && echo present || echo absent",
                inputs={"stdin": "copy"},
                outputs={"stdout": "gone"},
            ),
            MemorySpec(id="gone", codec="utf-8", persist=True),
        ]
    )
    session.deploy()
    session.wait(30)
    assert session.state == "FINISHED", session.failures()
    assert session.value("gone") == "absent\n"
    assert [e.end for e in session.story("f")][-2:] == ["EXPIRED", "DELETED"]


def test_lifespan_expires_data_without_polling(node):
    session = node.create_session("lifespan")
    session.add(
        [
            ShellSpec(id="w", command="echo x", outputs={"stdout": "m"}),
            MemorySpec(id="m", lifespan=0.2, persist=False),
            SleepSpec(id="nap", seconds=2),
        ]
    )
    session.deploy()
    poll_for(lambda: session.drop_state("m") == "DELETED", timeout=5)
    assert not session.ended  # deleted by its timer while the session still runs
    session.wait(10)
    assert session.state == "FINISHED"


def test_shared_memory_never_left_behind_after_failure(node):
    from conftest import shm_segments

    before = shm_segments()
    s = run(
        node,
        [
            MemorySpec(id="n", data=1000, codec="json"),
            PythonSpec(
                id="fill",
                func="testfuncs:fill_array",
                inputs={"n": "n"},
                outputs={"out": "seg"},
                executor="process",
            ),
            SharedMemorySpec(id="seg"),
            PythonSpec(id="boom", func="testfuncs:boom", inputs={"x": "seg"}),
        ],
    )
    assert s.state == "FAILED"
    assert shm_segments() <= before
    assert not os.path.exists(s.workspace.dir)


@pytest.mark.parametrize("executor", ["thread", "process", "inline"])
def test_executors_all_run_python_apps(node, executor):
    s = run(
        node,
        [
            MemorySpec(id="a", data=20, codec="json"),
            MemorySpec(id="b", data=22, codec="json"),
            PythonSpec(
                id="add",
                func="testfuncs:add",
                executor=executor,
                inputs={"a": "a", "b": "b"},
                outputs={"out": "r"},
            ),
            MemorySpec(id="r", persist=True),
        ],
        session_id=f"exec-{executor}",
    )
    assert s.value("r") == 42


def test_session_wide_process_executor(workspace_root):
    """A node whose default executor is "process" runs Python apps that name none in worker processes;
    trivial apps stay inline and shell apps (threads only) keep their own."""
    from dropflow.engine import Node

    with Node(workspace_root=workspace_root, processes=1, executor="process") as n:
        s = run(
            n,
            [
                PythonSpec(id="where", func="testfuncs:pid", outputs={"out": "p"}),
                MemorySpec(id="p", persist=True),
                NoopSpec(id="n", inputs={"i": "p"}),
                ShellSpec(id="sh", command="true"),
            ],
            session_id="proc-default",
        )
        assert s.state == "FINISHED", s.failures()
        assert s.value("p") != os.getpid() and s.value("p") in n.worker_pids()


def test_an_engine_bug_fails_the_session_instead_of_hanging(node, monkeypatch):
    """Fault injection at the one boundary under test: the cascade raises while handling an event. The
    session must end FAILED with the reason and clean up; the node keeps serving other sessions."""
    from dropflow.engine.core import Core

    original = Core.app_finished

    def broken(self, app, skip_ports=()):
        if app.spec.id == "bad":
            raise RuntimeError("injected fault")
        return original(self, app, skip_ports)

    monkeypatch.setattr(Core, "app_finished", broken)
    s = run(
        node,
        [ShellSpec(id="bad", command="true", outputs={"stdout": "m"}), MemorySpec(id="m")],
        session_id="bug",
    )
    assert s.state == "FAILED" and "injected fault" in (s.error or "")
    assert not os.path.exists(s.workspace.dir)
    ok = run(node, [ShellSpec(id="fine", command="true")], session_id="after-bug")
    assert ok.state == "FINISHED"


@pytest.mark.parametrize("executor", ["inline", "thread", "process"])
def test_a_no_op_behaves_the_same_on_every_executor(node, executor):
    """A no-op prepares its outputs like any app (its directory output exists for its consumer), and the
    drops' histories do not depend on where it ran: there is no shortcut that settles it differently."""
    s = run(
        node,
        [
            NoopSpec(id="n", executor=executor, outputs={"o": "d"}),
            DirectorySpec(id="d"),
            PythonSpec(id="check", func="testfuncs:exists", inputs={"path": "d"}, outputs={"out": "ok"}),
            MemorySpec(id="ok", persist=True),
        ],
        session_id=f"noop-{executor}",
    )
    assert s.state == "FINISHED", s.failures()
    assert s.value("ok") is True
    assert [e.end for e in s.story("n")] == ["RUNNING", "FINISHED"]
    assert [e.end for e in s.story("d")] == ["WRITING", "COMPLETED"]


def test_status_reads_from_other_threads_while_the_owner_writes(node):
    """Readers on other threads (REST) take snapshots: failures, summaries and stories while 20,000 apps
    fail on the owner never raise 'changed size during iteration'."""
    import threading

    n = 20_000
    drops = []
    for i in range(n):
        drops += [
            PythonSpec(id=f"b{i}", func="testfuncs:boom", outputs={"out": f"o{i}"}),
            MemorySpec(id=f"o{i}"),
        ]
    s = node.create_session("reads")
    s.add(drops)
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                s.failures()
                s.summary()
                s.story("b1")
                s.graph_status()
            except BaseException as exc:  # the test's point: any exception here is a failure
                errors.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        s.deploy()
        s.wait(120)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert s.state == "FAILED" and len(s.failures()) == n
    assert not errors, errors[:3]
