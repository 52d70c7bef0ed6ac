"""``dropflow run`` killed half way (SIGKILL: nothing of it gets to clean or checkpoint), then ``--resume``.

The graph's apps count their own executions in files. The first run blocks on a gate after its first half;
once the journal records that half as finished, the process is killed. The resume must end FINISHED, with
outputs byte-identical to an uninterrupted run's, and no app that the journal recorded as finished may have
run twice (the gate app, running when the process died, runs again: it had not finished).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from dropflow.drops import FileSpec, MemorySpec, NullSpec, PythonSpec, ShellSpec
from dropflow.engine.journal import read

from conftest import poll_for, write_graph

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from resumefuncs import runs  # noqa: E402

CLI = [sys.executable, "-m", "dropflow"]
SESSION = "night"


def pipeline(counts: str, gate: str) -> list[Any]:
    """
    x -> s0 -> m0 -> s1 -> m1 --------------------------------.
    p0 -> f0 --.                                               +-> sum -> total (persisted, memory)
    p1 -> f1 --+-> wait (until GATE exists) -> w -> cat -> result.txt (persisted file)
    p2 -> f2 --'                         n (null) -> after ----'
    p2 -> big (a file the killed run keeps, read only after the gate)
    """
    count = f"echo run >> {counts}/{{name}}"
    specs: list[Any] = [MemorySpec(id="x", data=1, codec="json")]
    prev = "x"
    for i in range(2):
        specs += [
            PythonSpec(
                id=f"s{i}", func="resumefuncs:step", kwargs={"name": f"s{i}", "counts": counts},
                inputs={"x": prev}, outputs={"out": f"m{i}"},
            ),
            MemorySpec(id=f"m{i}", codec="json"),
        ]  # fmt: skip
        prev = f"m{i}"
    for i in range(3):
        specs += [
            ShellSpec(id=f"p{i}", command=count.format(name=f"p{i}") + f"; seq {i} {i + 40} > {{out}}",
                      outputs={"out": f"f{i}"}),
            FileSpec(id=f"f{i}"),
        ]  # fmt: skip
    specs += [
        ShellSpec(id="big", command=count.format(name="big") + "; seq 1 5000 > {out}",
                  inputs={"after": "f2"}, outputs={"out": "b"}),
        FileSpec(id="b"),
        ShellSpec(
            id="wait",
            command=count.format(name="wait") + f"; while [ ! -e {gate} ]; do sleep 0.05; done; "
            "cat {a} {b} {c} > {out}",
            inputs={"a": "f0", "b": "f1", "c": "f2"}, outputs={"out": "w", "done": "n"},
        ),
        FileSpec(id="w"),
        NullSpec(id="n"),
        ShellSpec(id="cat", command=count.format(name="cat") + "; cat {w} {b} > {out}",
                  inputs={"w": "w", "b": "b", "n": "n"}, outputs={"out": "result"}),
        FileSpec(id="result", path="result.txt", persist=True),
        PythonSpec(id="sum", func="resumefuncs:total", kwargs={"name": "sum", "counts": counts},
                   inputs={"xs": ["m1", "x"]}, outputs={"out": "total"}),
        MemorySpec(id="total", codec="json", persist=True),
    ]  # fmt: skip
    return specs


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": HERE}
    return subprocess.run([*CLI, "run", *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def killed_run(tmp_path):
    """A `dropflow run` killed with SIGKILL once its journal holds the first half; what it left."""
    counts, ws = tmp_path / "counts", tmp_path / "ws"
    counts.mkdir()
    gate = str(tmp_path / "gate")
    graph = write_graph(tmp_path / "night.json", pipeline(str(counts), gate), name="night")
    log = open(tmp_path / "killed.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [*CLI, "run", graph, "--session-id", SESSION, "--workspace", str(ws), "--allow-path", str(counts)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": HERE},
        start_new_session=True,
    )  # fmt: skip
    first_half = {"s0", "s1", "p0", "p1", "p2", "big"}
    journal = ws / ".journal" / SESSION

    def recorded() -> set[str]:
        try:
            return set(read(str(journal)).finished)
        except (FileNotFoundError, OSError):
            return set()

    try:
        poll_for(lambda: first_half <= recorded() and (counts / "wait").exists(), timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    # The engine's reaper kills the apps' process groups once the engine is gone: the gate app too.
    poll_for(lambda: not _processes(gate), timeout=30)
    return {"graph": graph, "ws": ws, "counts": counts, "gate": gate, "finished": recorded(), "tmp": tmp_path}


def _processes(marker: str) -> list[int]:
    import psutil

    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any(marker in a for a in p.info["cmdline"] or ()) and p.pid != os.getpid()
    ]


def test_a_killed_run_resumes_without_running_finished_apps_again(killed_run, tmp_path):
    k = killed_run
    assert "wait" not in k["finished"] and {"s0", "s1", "p0", "p1", "p2", "big"} <= k["finished"]
    # What the killed run left is still there: the workspace (kept for the resume) and the journal.
    assert (k["ws"] / SESSION / "b").exists()
    open(k["gate"], "w").close()

    resumed = run("--resume", SESSION, "--workspace", str(k["ws"]), "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["state"] == "FINISHED" and out["resumed"] >= len(k["finished"])
    assert f"resuming session {SESSION}" in resumed.stderr

    counted = runs(str(k["counts"]))
    for app in k["finished"]:
        assert counted[app] == 1, f"{app} finished before the kill but ran {counted[app]} times"
    assert counted["wait"] == 2  # it was running when the process died: not finished, so it runs again
    assert counted["cat"] == counted["sum"] == 1

    # The same graph, uninterrupted, in a workspace of its own: the same results, byte for byte.
    clean_counts = tmp_path / "clean-counts"
    clean_counts.mkdir()
    clean_graph = write_graph(tmp_path / "clean.json", pipeline(str(clean_counts), k["gate"]), name="night")
    clean = run(clean_graph, "--session-id", SESSION, "--workspace", str(tmp_path / "clean"),
                "--allow-path", str(clean_counts), "--json")  # fmt: skip
    assert clean.returncode == 0, clean.stdout + clean.stderr
    expected = (tmp_path / "clean" / SESSION / "result.txt").read_bytes()
    assert (k["ws"] / SESSION / "result.txt").read_bytes() == expected
    assert out["values"] == json.loads(clean.stdout)["values"] == {"total": "4"}

    # Finished: the journal is gone, and so is everything of the session but its result.
    assert not (k["ws"] / ".journal" / SESSION).exists()
    assert sorted(os.listdir(k["ws"] / SESSION)) == ["result.txt"]
    assert not os.path.exists(k["ws"] / ".locks" / f"{SESSION}.lock")


def test_resume_refuses_another_graph_and_a_session_with_no_journal(killed_run, tmp_path):
    k = killed_run
    other = write_graph(tmp_path / "other.json", [MemorySpec(id="x", data=2, codec="json")], name="night")
    refused = run(other, "--resume", SESSION, "--workspace", str(k["ws"]))
    assert refused.returncode == 2 and "is not the one session 'night' ran" in refused.stderr
    missing = run("--resume", "nosuch", "--workspace", str(k["ws"]))
    assert missing.returncode == 2 and "no journal of session 'nosuch'" in missing.stderr
    again = run(k["graph"], "--session-id", SESSION, "--workspace", str(k["ws"]))
    assert again.returncode == 2 and f"Resume it with --resume {SESSION}" in again.stderr
    # None of these touched what the killed run left: it still resumes.
    open(k["gate"], "w").close()
    assert run("--resume", SESSION, "--workspace", str(k["ws"])).returncode == 0
