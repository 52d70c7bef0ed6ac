"""Shell commands are started by the owner and driven by the node's one watcher thread (engine/children.py):
no thread waits for a command, yet everything a thread did still holds -- timeouts, standard input and output
of any size, bounded logs, stragglers killed, nothing left when the node closes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

import psutil
import pytest

from dropflow.drops import MemorySpec, NoopSpec, ShellSpec
from dropflow.drops.apps.base import OUTPUT_TAIL, CancelToken, Outcome, Task
from dropflow.drops.apps.command import Command, Sink
from dropflow.drops.apps.shell import start
from dropflow.engine.children import Children
from dropflow.engine.node import Node

from conftest import poll_for, run


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_shell_apps_take_no_pool_thread(node):
    """Twelve commands at once, with eight slots: they all run, and the app thread pool never started a
    thread (a thread per command is what the watcher replaces)."""
    drops = [ShellSpec(id=f"s{i}", command="sleep 0.2; echo $DROPFLOW_DROP_ID") for i in range(12)]
    s = run(node, drops)
    assert s.state == "FINISHED", s.failures()
    assert s.outputs.get("s7") == ("s7\n", "")
    assert node._threads.threads() == 0
    assert node._children is not None and node._children.running() == 0


def test_a_timeout_kills_the_command_and_says_so(node):
    s = run(
        node,
        [
            ShellSpec(id="slow", command="echo started >&2; exec sleep 60", timeout=0.5),
            ShellSpec(id="quick", command="true", outputs={"out": "done"}),
            MemorySpec(id="done"),
            NoopSpec(id="after", inputs={"i": "done"}),
        ],
    )
    failures = {f.uid: f.message for f in s.failures()}
    assert list(failures) == ["slow"]
    assert "timed out after 0.5 s" in failures["slow"] and "started" in failures["slow"]
    assert s.drop_state("after") == "FINISHED"


def test_standard_input_and_output_of_any_size_pass_whole(node):
    """8 MiB through ``cat``: far more than a pipe holds, so the watcher must feed and drain as it goes."""
    data = os.urandom(8 << 20)
    s = run(
        node,
        [
            MemorySpec(id="in", data=data, codec="bytes"),
            ShellSpec(id="cat", command="cat", inputs={"stdin": "in"}, outputs={"stdout": "out"}),
            MemorySpec(id="out", codec="bytes", persist=True),
        ],
    )
    assert s.state == "FINISHED", s.failures()
    assert s.value("out") == data


def test_a_command_that_does_not_read_its_input_still_ends(node):
    s = run(
        node,
        [
            MemorySpec(id="in", data=b"x" * (4 << 20), codec="bytes"),
            ShellSpec(id="deaf", command="echo ignored", inputs={"stdin": "in"}, outputs={"stdout": "out"}),
            MemorySpec(id="out", codec="utf-8", persist=True),
        ],
    )
    assert s.state == "FINISHED", s.failures()
    assert s.value("out") == "ignored\n"


def test_a_chatty_command_keeps_only_the_end_of_its_log(node):
    command = "i=0; while [ $i -lt 20000 ]; do echo line $i; echo err $i >&2; i=$((i+1)); done"
    s = run(node, [ShellSpec(id="chatty", command=command)])
    assert s.state == "FINISHED", s.failures()
    out, err = s.outputs.get("chatty")
    assert len(out) <= OUTPUT_TAIL and out.endswith("line 19999\n") and "line 0\n" not in out
    assert len(err) <= OUTPUT_TAIL and err.endswith("err 19999\n")


def test_a_background_straggler_ends_with_its_command(node, tmp_path):
    """``sleep &`` keeps the command's output pipes open: the app ends when its shell does, and the
    straggler is killed with its group."""
    pidfile = tmp_path / "pid"
    s = run(node, [ShellSpec(id="bg", command=f"sleep 1000 & echo $! > {pidfile}; echo done")])
    assert s.state == "FINISHED", s.failures()
    assert s.outputs.get("bg") == ("done\n", "")
    poll_for(lambda: _gone(int(pidfile.read_text())), timeout=10)


def test_a_process_that_escapes_the_group_does_not_hold_the_app(node, tmp_path):
    """A process in a session of its own keeps the output pipes open and survives the group kill (it left
    the app's group on purpose): the app must not wait for it. The test then ends it, by its pid."""
    pidfile = tmp_path / "pid"
    s = run(
        node,
        [ShellSpec(id="escape", command=f"setsid sleep 1000 & echo $! > {pidfile}; echo left")],
    )
    pid = int(pidfile.read_text())
    try:
        assert s.state == "FINISHED", s.failures()
        assert s.outputs.get("escape") == ("left\n", "")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    poll_for(lambda: _gone(pid), timeout=10)


def test_closing_the_node_kills_and_reaps_running_commands(workspace_root, tmp_path):
    pidfile = tmp_path / "pid"
    node = Node(workspace_root=workspace_root, threads=2).start()
    try:
        session = node.create_session("closing")
        session.add([ShellSpec(id="long", command=f"echo $$ > {pidfile}; exec sleep 1000")])
        session.deploy()
        poll_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=10)
        pid = int(pidfile.read_text())
    finally:
        node.close(timeout=5)
    assert session.ended and session.state in ("CANCELLED", "FAILED")
    poll_for(lambda: not psutil.pid_exists(pid), timeout=10, what=lambda: f"process {pid} left")


def _task(tmp_path, command: str, **kw: object) -> Task:
    return Task("t", str(tmp_path), ShellSpec(id="c", command=command, **kw), [], [])  # type: ignore[arg-type]


def test_the_watcher_survives_a_failing_callback(tmp_path):
    """A ``then`` that raises is logged; the next command's news still arrives."""
    children = Children("dropflow-children-test")
    got: list[Outcome] = []
    arrived = threading.Event()
    try:

        def broken(outcome: Outcome) -> None:
            raise RuntimeError("a bug downstream")

        def fine(outcome: Outcome) -> None:
            got.append(outcome)
            arrived.set()

        first = start(_task(tmp_path, "echo one"), CancelToken())
        assert isinstance(first, Command)
        children.watch(first, broken)
        second = start(_task(tmp_path, "echo two; exit 3"), CancelToken())
        assert isinstance(second, Command)
        children.watch(second, fine)
        assert arrived.wait(30)
        assert not got[0].ok and "exit status 3" in (got[0].error or "")
        poll_for(lambda: children.running() == 0, timeout=10)
    finally:
        assert children.close()


def test_a_closed_watcher_refuses_and_cancels(tmp_path):
    children = Children("dropflow-children-test")
    assert children.close()
    token = CancelToken()
    command = start(_task(tmp_path, "exec sleep 1000"), token)
    assert isinstance(command, Command)
    pid = command.proc.pid
    with pytest.raises(RuntimeError, match="closed"):
        children.watch(command, lambda outcome: None)
    assert token.cancelled
    command.proc.wait(10)
    command.token.detach()
    command.close()
    assert _gone(pid)


def test_a_sink_keeps_all_or_only_its_tail():
    whole, tail = Sink(), Sink(limit=10)
    for i in range(1000):
        chunk = f"{i:04d}".encode()
        whole.add(chunk)
        tail.add(chunk)
    assert whole.value() == b"".join(f"{i:04d}".encode() for i in range(1000))
    assert tail.value() == whole.value()[-10:] and tail.total == whole.total == 4000
    assert len(tail._buf) <= 2 * 10 + 4
