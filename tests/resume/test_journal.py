"""The journal and the resume in one process: what is recorded, what a resume keeps, what the lifecycle keeps.

Pure tests of the plan (graphs drawn in the docstrings), then sessions on a real node (the ``node`` fixture
checks invariants, leaks and that sessions are freed): a cancelled session spills its frontier out of the
workspace and resumes from it; a failed one keeps the inputs of the app that failed; restored apps finish
through the transition tables (their story says ``journal``); a deadline defers apps that cannot finish.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

from dropflow.drops import FileSpec, MemorySpec, NullSpec, PythonSpec, ShellSpec
from dropflow.engine.journal import Journal, Location, Records, journal_dir, read
from dropflow.engine.resume import ResumePlan, plan
from dropflow.engine.walltime import Deadline

from conftest import poll_for, run

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def records(finished: list[str], where: dict[str, Location] | None = None) -> Records:
    r = Records()
    r.finished = {uid: () for uid in finished}
    r.locations = {uid: [loc] for uid, loc in (where or {}).items()}
    return r


def chain3() -> list[Any]:
    """x -> A -> y -> B -> z -> C -> w (persisted)"""
    return [
        MemorySpec(id="x", data=1),
        PythonSpec(id="A", func="testfuncs:const", inputs={"value": "x"}, outputs={"out": "y"}),
        MemorySpec(id="y"),
        PythonSpec(id="B", func="testfuncs:const", inputs={"value": "y"}, outputs={"out": "z"}),
        MemorySpec(id="z"),
        PythonSpec(id="C", func="testfuncs:const", inputs={"value": "z"}, outputs={"out": "w"}),
        MemorySpec(id="w", persist=True),
    ]


def test_plan_keeps_finished_apps_whose_outputs_a_consumer_still_needs():
    """
    x -> A -> y -> B -> z -> C -> w      A, B finished; z is recorded: C runs, nothing else.
    """
    p = plan(chain3(), records(["A", "B"], {"z": Location(value=b"3")}))
    assert p.finished == {"A": (), "B": ()} and p.data == {"z": Location(value=b"3")} and p.rerun == []


def test_plan_runs_again_what_made_a_missing_input_back_to_what_exists():
    """
    x -> A -> y -> B -> z -> C -> w      A, B finished; z is gone, y exists: B runs again (not A).
                                         With y gone too, A runs again (x is a root: always there).
    """
    p = plan(chain3(), records(["A", "B"], {"y": Location(value=b"2")}))
    assert p.finished == {"A": ()} and p.rerun == ["B"] and p.data == {"y": Location(value=b"2")}
    p = plan(chain3(), records(["A", "B"]))
    assert p.finished == {} and sorted(p.rerun) == ["A", "B"] and p.data == {}


def test_plan_needs_persisted_results_but_not_what_only_finished_apps_read():
    """
    x -> A -> y -> B -> z -> C -> w (persisted)   all finished; w exists: nothing runs, only w restored.
    """
    p = plan(chain3(), records(["A", "B", "C"], {"w": Location(value=b"1")}))
    assert set(p.finished) == {"A", "B", "C"} and p.data == {"w": Location(value=b"1")}
    p = plan(chain3(), records(["A", "B", "C"], {"z": Location(value=b"1")}))  # w is gone
    assert set(p.finished) == {"A", "B"} and p.rerun == ["C"] and p.data == {"z": Location(value=b"1")}


def test_plan_remakes_a_partly_made_drop_and_needs_no_bytes_of_a_skipped_side():
    """
    P1 --.                       P1 finished, P2 did not: g is made again whole (P1 runs again).
    P2 --+-> g -> R
    br -> t (taken) -> T         br finished skipping its port "no": its drop n needs no bytes.
       -> n (skipped) -> N
    """
    specs = [
        PythonSpec(id="P1", func="testfuncs:const", kwargs={"value": 1}, outputs={"out": "g"}),
        PythonSpec(id="P2", func="testfuncs:const", kwargs={"value": 2}, outputs={"out": "g"}),
        MemorySpec(id="g"),
        PythonSpec(id="R", func="testfuncs:const", inputs={"value": "g"}, outputs={"out": "r"}),
        MemorySpec(id="r"),
        PythonSpec(id="br", func="testfuncs:const", kwargs={"value": 1}, outputs={"yes": "t", "no": "n"}),
        MemorySpec(id="t"),
        MemorySpec(id="n"),
        PythonSpec(id="T", func="testfuncs:const", inputs={"value": "t"}, outputs={"out": "tt"}),
        MemorySpec(id="tt"),
        PythonSpec(id="N", func="testfuncs:const", inputs={"value": "n"}, outputs={"out": "nn"}),
        MemorySpec(id="nn"),
    ]
    r = records(["P1"], {"g": Location(value=b"1"), "t": Location(value=b"1")})
    r.finished["br"] = ("no",)
    p = plan(specs, r)
    assert "P1" not in p.finished and "P1" in p.rerun and "g" not in p.data
    assert p.finished["br"] == ("no",) and p.data["t"] == Location(value=b"1") and "n" not in p.data
    assert ResumePlan.from_dict(p.to_dict()) == p


def _journal(node, sid: str) -> Journal:
    return Journal(journal_dir(os.path.join(node.workspace_root, ".journal"), sid), node.name)


def fan_in(gate: str) -> list[Any]:
    """
    a -> fa (file) --.
    b -> mb (memory) -+-> wait (until GATE) -> out (persisted file)
    """
    return [
        ShellSpec(id="a", command="echo A > {out}", outputs={"out": "fa"}),
        FileSpec(id="fa", expire_after_use=True),
        PythonSpec(id="b", func="testfuncs:const", kwargs={"value": "B" * 10_000}, outputs={"out": "mb"}),
        MemorySpec(id="mb", codec="json"),
        ShellSpec(
            id="wait",
            command=f"while [ ! -e {gate} ]; do sleep 0.02; done; cat {{x}} > {{out}}; wc -c >> {{out}}",
            inputs={"x": "fa", "stdin": "mb"},
            outputs={"out": "out"},
        ),
        FileSpec(id="out", path="result.txt", persist=True),
    ]


def test_a_cancelled_session_spills_its_frontier_and_resumes_from_it(node, tmp_path):
    """Cancel while `wait` runs: fa (a file) and mb (10 kB in memory: too large for the journal itself) are
    spilled out of the workspace, which is removed; the resume restores them and runs `wait` only."""
    gate = str(tmp_path / "gate")
    s = node.create_session("s")
    s.journal = _journal(node, "s")
    s.add(fan_in(gate))
    s.deploy()
    poll_for(lambda: s.drop_state("wait") == "RUNNING" and s.drop_state("mb") == "COMPLETED", timeout=30)
    s.cancel()
    assert str(s.wait(30)) == "CANCELLED"
    node.call(s.validate)
    ws = os.path.join(node.workspace_root, "s")
    assert not os.path.exists(ws) or not os.listdir(ws)  # the frontier left it: nothing there any more
    journal = s.journal.directory
    r = read(journal)
    assert set(r.finished) == {"a", "b"}
    spilled = {uid: r.location(uid) for uid in ("fa", "mb")}
    assert all(loc is not None and loc.path and loc.path.startswith(journal) for loc in spilled.values())
    node.delete_session("s")

    open(gate, "w").close()
    p = plan(fan_in(gate), r)
    assert set(p.finished) == {"a", "b"} and set(p.data) == {"fa", "mb"}
    again = node.create_session("s")
    again.journal = Journal(journal, node.name, p)
    again.add(fan_in(gate))
    again.deploy()
    assert str(again.wait(30)) == "FINISHED"
    node.call(again.validate)
    with open(os.path.join(node.workspace_root, "s", "result.txt")) as f:
        assert f.read() == "A\n10002\n"  # (a JSON string of 10,000 characters)
    causes = {e.end: e.cause for e in again.story("a")}
    assert causes["FINISHED"] == "journal"  # restored through the tables, not run
    assert again.summary().by_state.get("FINISHED") == 3


def test_a_failed_app_keeps_the_inputs_it_did_not_use(node, tmp_path):
    """An app that fails releases its inputs; with a journal, one that expires after use keeps its bytes
    (EXPIRED, not deleted), and is spilled at the end: a resume after the fix runs only the failed app."""
    flag = tmp_path / "fixed"
    specs = [
        ShellSpec(id="make", command="echo data > {out}", outputs={"out": "d"}),
        FileSpec(id="d", expire_after_use=True),
        ShellSpec(id="use", command=f"test -e {flag} && cp {{inp}} {{out}}", inputs={"inp": "d"},
                  outputs={"out": "r"}),
        FileSpec(id="r", path="r.txt", persist=True),
    ]  # fmt: skip
    s = node.create_session("f")
    s.journal = _journal(node, "f")
    s.add(specs)
    s.deploy()
    assert str(s.wait(30)) == "FAILED"
    assert s.drop_state("d") == "EXPIRED"  # kept: its consumer failed
    r = read(s.journal.directory)
    assert set(r.finished) == {"make"} and (loc := r.location("d")) is not None and loc.path
    node.delete_session("f")
    flag.touch()
    again = node.create_session("f")
    again.journal = Journal(s.journal.directory, node.name, plan(specs, r))
    again.add(specs)
    again.deploy()
    assert str(again.wait(30)) == "FINISHED"
    assert [e.cause for e in again.story("make") if e.end == "FINISHED"] == ["journal"]
    with open(os.path.join(node.workspace_root, "f", "r.txt")) as f:
        assert f.read() == "data\n"


def test_a_deadline_defers_apps_that_cannot_finish_in_time(node):
    """Near its deadline a session starts the apps that fit and defers one that declares it may take an
    hour; the deferred app waits RUNNING without a task (invariants hold) until the session is cancelled."""
    s = node.create_session("d")
    s.deadline = Deadline(time.time() + 60, node.timings)
    s.add([
        ShellSpec(id="quick", command="true", outputs={"out": "q"}),
        NullSpec(id="q"),
        ShellSpec(id="long", command="sleep 3600", timeout=3600, inputs={"after": "q"}, outputs={"out": "l"}),
        NullSpec(id="l"),
    ])  # fmt: skip
    s.deploy()
    poll_for(lambda: s.drop_state("quick") == "FINISHED" and s.drop_state("long") == "RUNNING", timeout=30)
    node.call(s.validate)
    assert s.deadline.deferred == 1 and not any("sleep 3600" in " ".join(p) for p in _children_cmdlines())
    s.cancel()
    assert str(s.wait(30)) == "CANCELLED"


def _children_cmdlines() -> list[list[str]]:
    import psutil

    out = []
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            out.append(p.cmdline())
    return out


def test_a_deadline_learns_how_long_code_takes():
    from dropflow.drops.apps.pyfunc import PythonSpec as Py

    d = Deadline(time.time() + 10)
    spec = Py(id="p", func="testfuncs:const")
    assert d.expected(spec) is None and d.fits(spec)
    d.ran(spec, 30.0)
    assert d.expected(spec) == 30.0 and not d.fits(spec) and d.deferred == 1


def test_a_journal_that_cannot_be_written_is_given_up_and_the_session_runs_on(node, tmp_path):
    s = node.create_session("w")
    s.journal = _journal(node, "w")
    s.add(chain3())
    s.deploy()
    assert str(s.wait(30)) == "FINISHED"
    assert s.journal.written > 0 and s.journal.error is None
    assert run(node, chain3(), "plain").summary().state == "FINISHED"  # no journal: nothing recorded


def test_a_report_written_from_the_journals_keeps_small_persisted_values(node):
    """A job killed before ``dropflow submit`` could report: its small results are in the journals."""
    from dropflow.deploy.report import JobReport

    s = node.create_session("v")
    s.journal = _journal(node, "v")
    s.add([
        MemorySpec(id="x", data=20, codec="json"),
        PythonSpec(id="add", func="testfuncs:add", inputs={"a": "x"}, kwargs={"b": 22}, outputs={"out": "y"}),
        MemorySpec(id="y", codec="json", persist=True),
    ])  # fmt: skip
    s.deploy()
    assert str(s.wait(30)) == "FINISHED"
    report = JobReport("1", "j", ["localhost"], "v")
    report.take_journals(s.journal.directory)
    assert report.values["y"]["preview"] == "42" and report.values["y"]["codec"] == "json"
    assert report.finished == 1 and report.by_state == {"COMPLETED": 2, "FINISHED": 1}
