"""Differential test of running: DALiuGE's public test graphs, run by DALiuGE 6.6 and by dropflow, must end
with every drop in the same state and every output file with the same content.

The corpus is the ``eagle-test-graphs`` package. DALiuGE (the oracle, ``oracle_run.py`` in its own
interpreter) runs every graph in an in-process node manager, the way its own engine tests do, deploying
with the graph's roots as ``completed`` as ``dlg submit`` does; logical graphs first go through its
pipeline (fill, unroll, partition, map). dropflow then runs the very physical graph DALiuGE ran -- the same
drops, by the same oids -- in an engine node, and the two are compared drop by drop (DALiuGE's ``status``
and ``execStatus`` codes) and file by file.

Every graph of the corpus is a case, and every case checks something: that DALiuGE still cannot run the
graphs listed in ``DALIUGE_CANNOT`` (so that list stays true), that the graphs in ``NOT_BUILTIN`` need
code that is not DALiuGE's (a user's function shipped inside the graph, a third-party package), and that
every other graph runs alike in both -- except for the differences kept on purpose in ``ACCEPTED``, which
must still show (the test fails when one goes away), and the gaps dropflow still has, in ``GAPS``, marked
as expected failures that must keep failing until they are fixed (``strict``). docs/daliuge.md lists them.
"""

from __future__ import annotations

import builtins
import glob
import json
import os
import re
import subprocess
import sys
from typing import Any

import daliuge_tests
import msgspec
import pytest
from oracle import Oracle, find_oracle

from dropflow.drops.errors import GraphError
from dropflow.drops.spec import DirectorySpec, FileSpec
from dropflow.engine import Node
from dropflow.loading import decode_graph_bytes
from dropflow.managers.dlgcompat import APP_CODE, APP_DROP_CODE, DROP_CODE, roots

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS_DIR = os.path.dirname(daliuge_tests.__file__)
CORPUS = sorted(os.path.relpath(p, CORPUS_DIR) for p in glob.glob(f"{CORPUS_DIR}/**/*.graph", recursive=True))
#: Seconds each engine gets to run a graph.
TIMEOUT = 60.0

#: Graphs DALiuGE 6.6 cannot run (refused at unroll or deploy), and why: not compared.
DALIUGE_CANNOT = {
    "engine/graphs/HelloWorld_simplePG.graph": "an output FileDROP with check_filepath_exists=1",
    "engine/graphs/SLURM_HelloWorld_simplePG.graph": "an output FileDROP with check_filepath_exists=1",
    "engine/graphs/LoopWithBranchExit_multiple_input.graph": "dlg.apps.branch.Branch does not exist in 6.6",
    "engine/graphs/branch_skip.graph": "dlg.apps.branch.Branch does not exist in 6.6",
    "engine/graphs/branch_skip_multiple_input.graph": "dlg.apps.branch.Branch does not exist in 6.6",
    "translator/logical_graphs/branchTest.graph": "dlg.apps.branch.Branch does not exist in 6.6",
    "engine/topoGraphs/computationSandwich.graph": "BashShellApps without a command",
    "engine/topoGraphs/dataFan.graph": "BashShellApps without a command",
    "engine/topoGraphs/dataFunnel.graph": "BashShellApps without a command",
    "engine/topoGraphs/dataSandwich.graph": "BashShellApps without a command",
    "engine/topoGraphs/testCycle.graph": "BashShellApps without a command",
    "engine/topoGraphs/testNotDAG.graph": "BashShellApps without a command",
    "engine/topoGraphs/testSingle.graph": "a BashShellApp without a command",
    "engine/topoGraphs/testTwoEnd.graph": "BashShellApps without a command",
    "engine/topoGraphs/testTwoLines.graph": "BashShellApps without a command",
    "engine/topoGraphs/testTwoStart.graph": "BashShellApps without a command",
    "engine/topoGraphs/testEmpty.graph": "an empty graph",
    "reproGraphs/HelloSBash.graph": "an output FileDROP with check_filepath_exists=1",
    "reproGraphs/HelloSPython.graph": "an output FileDROP with check_filepath_exists=1",
    "reproGraphs/HelloSPython2.graph": "an output FileDROP with check_filepath_exists=1",
    "reproGraphs/HelloWorldBash.graph": "an output FileDROP with check_filepath_exists=1",
    "reproGraphs/HelloWorldBashSplit.graph": "an output FileDROP with check_filepath_exists=1",
    "reproGraphs/HelloWorldFile.graph": "an output FileDROP with check_filepath_exists=1",
    "reproGraphs/apps.graph": "components that cannot be built here (MPI, Docker)",
    "reproGraphs/simpleNoScatter.graph": "an output FileDROP with check_filepath_exists=1",
    "reproGraphs/simpleScatter.graph": "an output FileDROP with check_filepath_exists=1",
    "reproGraphs/files.graph": "an NGAS drop: needs an NGAS server",
    "reproGraphs/groupUse.graph": "refused at unroll",
    "reproGraphs/misc.graph": "refused at unroll",
    "translator/logical_graphs/ExampleSubgraphSimple.graph": "refused at unroll",
    "translator/logical_graphs/Plasma_test.graph": "refused at unroll (Plasma)",
    "translator/logical_graphs/HelloWorld_simple.graph": "an output FileDROP with check_filepath_exists=1",
    "translator/logical_graphs/eagle_gather_empty_update.graph": "BashShellApps without a command",
    "translator/logical_graphs/eagle_gather_simple_update.graph": "BashShellApps without a command",
    "translator/logical_graphs/eagle_gather_update.graph": "BashShellApps without a command",
    "translator/logical_graphs/test_grpby_gather.graph": "BashShellApps without a command",
}

#: Graphs that need code which is not DALiuGE's: a function shipped pickled inside the graph (which
#: dropflow does not run), or a third-party package.
NOT_BUILTIN = {
    "engine/graphs/DirectoryDropSideEffects.graph": "a function pickled into the graph (func_code)",
    "engine/test_filedrops/Filepath_test_side_effect.graph": "a function pickled into the graph",
    "engine/test_filedrops/Filepath_test_side_effectPG.graph": "a function pickled into the graph",
    "translator/logical_graphs/earth_location.graph": "astropy",
}

#: Differences kept on purpose: the graph runs differently, and the test checks that it still does.
ACCEPTED = {
    "engine/graphs/ddTest.graph": "its root is a file that does not exist: DALiuGE completes it (empty) at "
    "deploy; dropflow fails it, naming the file ('input file ... does not exist and nothing produces it')",
    "engine/graphs/application_args.graph": "DALiuGE 6.6 fails its RandomArrayApp on the graph's own "
    "arguments; dropflow runs it",
    "translator/logical_graphs/ExampleSubgraphNoInput.graph": "DALiuGE 6.6 fails its HelloWorldApp, which "
    "has no input; dropflow runs it",
    "translator/logical_graphs/SuperBasicScatterGather.graph": "DALiuGE 6.6 fails its GenericScatterApp on "
    "an empty input; dropflow scatters it",
    "translator/logical_graphs/test-20190830-110556.graph": "DALiuGE 6.6 fails its BashShellApp; dropflow "
    "runs the command",
    "translator/logical_graphs/testLoop.graph": "DALiuGE 6.6 fails its BashShellApps, which read their "
    "InputOutput port's output drop (encoding pickle) before it is written; dropflow runs the commands",
    "translator/logical_graphs/chiles_simple.graph": "DALiuGE 6.6 does not finish it within the test's 60 s "
    "(SleepApps of 15, 20 and 10 s queued on its 4 threads); dropflow runs them side by side and finishes",
    "translator/logical_graphs/cont_img_mvp.graph": "DALiuGE 6.6 never finishes it: the apps its branches "
    "lead to (linked app to app) stay NOT_RUN; dropflow runs it to the end",
    "engine/graphs/HelloWorld_universePG.graph": "DALiuGE 6.6 fails its PyFuncApp (KeyError 'encoding': "
    "its application arguments give no encoding); dropflow runs the graph",
    "engine/graphs/compilePG.graph": "its root is a file that does not exist: DALiuGE completes it (empty), "
    "dropflow fails it, naming the file; both fail the PyFuncApp (compile of None)",
    **{
        f"engine/graphs/{g}.graph": "its BashShellApp writes to '%o0', a placeholder neither engine knows "
        "(the shell makes a file of that name): DALiuGE leaves the output FileDROP's file there, empty, "
        "dropflow none; both fail the PyFuncApp that reads it"
        for g in ("funcTestPG", "funcTestPG_namedPorts", "pyfunc_glob_testPG")
    },
}

#: Graphs whose output files hold random numbers (RandomArrayApp, dd of /dev/urandom), or copies of memory
#: drops' initial values, which DALiuGE pickles with protocol 4 (strings as text, functions with dill) and
#: dropflow with its codec (protocol 5): the files must exist in both, their content differs.
RANDOM_CONTENT = ("ArrayLoop", "pydata_types", "ddExample")

#: What dropflow still does differently from DALiuGE on graphs of built-in components -- bugs to fix, each
#: an expected failure that must keep failing until it is fixed.
GAPS: dict[str, str] = {}


@pytest.fixture(scope="module")
def oracle_runs(tmp_path_factory: Any) -> dict[str, dict[str, Any]]:
    """Every corpus graph run by DALiuGE, once: name -> what ``oracle_run.py`` recorded."""
    oracle: Oracle = find_oracle()
    root = tmp_path_factory.mktemp("dlg-root")
    out = tmp_path_factory.mktemp("dlg-runs")
    env = {"DLG_ROOT": str(root), "ORACLE_RUN_TIMEOUT": str(TIMEOUT)}
    paths = [os.path.join(CORPUS_DIR, name) for name in CORPUS]
    shm_before = set(os.listdir("/dev/shm"))
    r = subprocess.run(
        [oracle.python, os.path.join(HERE, "oracle_run.py"), str(out), *paths],
        env={**oracle.env(), **env},
        cwd=str(root),
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    # The corpus has SharedMemoryDROPs, whose blocks DALiuGE never unlinks: the oracle must (nothing else
    # runs while the fixture does, so every new block is DALiuGE's).
    left = sorted(set(os.listdir("/dev/shm")) - shm_before)
    assert not left, f"the DALiuGE oracle left shared-memory blocks behind: {left[:10]}"
    runs = {}
    for i, name in enumerate(CORPUS):
        with open(os.path.join(out, f"{i}.json")) as f:
            runs[name] = json.load(f)
    return runs


def _builtin_problem(pg: list[dict[str, Any]]) -> str | None:
    """Why a DALiuGE physical graph needs code that is not DALiuGE's own, or None."""
    for drop in pg:
        if drop.get("func_code"):
            return "a function pickled into the graph (func_code)"
        func = drop.get("func_name") or ""
        module = func.split(".")[0]
        if module == "dlg" or module in sys.stdlib_module_names or hasattr(builtins, module):
            continue  # DALiuGE's, the standard library's, or a builtin (``object.__init__``, ``compile``)
        if func and "." in func:
            return module
    return None


def _codes(state: str, app: bool) -> dict[str, int]:
    return (
        {"status": APP_DROP_CODE[state], "execStatus": APP_CODE[state]}
        if app
        else {"status": DROP_CODE[state]}
    )


class Refused(Exception):
    """dropflow refused the graph (a GraphError, by message: no frame of the session is kept alive)."""


def run_in_dropflow(
    node: Node, name: str, dlg: dict[str, Any]
) -> tuple[str, dict[str, Any], dict[str, bytes]] | str:
    """Run the physical graph DALiuGE ran in ``node``: the session's end state, each drop's DALiuGE codes,
    and the content of each file drop's file (kept: dropflow deletes what is not persisted); or why
    dropflow refuses the graph."""
    pg = dlg["pg"]
    try:
        specs = decode_graph_bytes(json.dumps(pg).encode(), name)
    except GraphError as exc:
        return str(exc)
    specs = [
        msgspec.structs.replace(s, persist=True) if isinstance(s, FileSpec | DirectorySpec) else s
        for s in specs
    ]
    dlg_drops = [d for d in pg if "oid" in d]
    # The roots dlg submit names in deploy's ``completed`` are the roots dropflow triggers.
    assert roots(specs) == set(dlg["roots"])
    session = node.create_session(re.sub(r"[^A-Za-z0-9._-]", "-", name)[-100:].lstrip("-._"))
    try:
        session.add(specs)
        try:
            session.deploy(source=name)
        except GraphError as exc:
            return str(exc)
        end = str(session.wait(TIMEOUT))
        by_id = {s.id: s for s in specs}
        states = {
            d["oid"]: _codes(session.drop_state(d["oid"]), by_id[d["oid"]].CATEGORY == "app")
            for d in dlg_drops
        }
        files = {}
        for spec in specs:
            if isinstance(spec, FileSpec):
                path = session.workspace.resolve(spec, spec.path).path
                if os.path.isfile(path):
                    with open(path, "rb") as f:
                        files[spec.id] = f.read()
        return end, states, files
    finally:
        node.delete_session(session.id)


def compare(
    name: str, dlg: dict[str, Any], end: str, states: dict[str, Any], files: dict[str, bytes]
) -> list[str]:
    """Every difference between DALiuGE's run and dropflow's."""
    diffs = []
    dlg_end = {4: "FINISHED", 5: "CANCELLED", 6: "FAILED"}.get(dlg["session"], "RUNNING")
    if dlg_end != end:
        diffs.append(f"session: DALiuGE {dlg_end}, dropflow {end}")
    for uid, codes in dlg["drops"].items():
        if states.get(uid) != codes:
            diffs.append(f"drop {uid}: DALiuGE {codes}, dropflow {states.get(uid)}")
    random = any(word in name for word in RANDOM_CONTENT)
    for uid, content in dlg["files"].items():
        mine = files.get(uid)
        if mine is None:
            diffs.append(f"file of {uid}: DALiuGE wrote it, dropflow did not")
        elif not random and mine.hex() != content:
            diffs.append(
                f"file of {uid}: {bytes.fromhex(content)[:40]!r} in DALiuGE, {mine[:40]!r} in dropflow"
            )
    return diffs


def _case(name: str) -> Any:
    if name in GAPS:
        return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=GAPS[name]))
    return name


@pytest.mark.parametrize("name", [_case(n) for n in CORPUS])
def test_runs_like_dalige(name: str, oracle_runs: dict[str, dict[str, Any]], node: Node) -> None:
    dlg = oracle_runs[name]
    if name in DALIUGE_CANNOT:
        assert not dlg["ok"], f"DALiuGE now runs {name}: compare it ({DALIUGE_CANNOT[name]} no longer holds)"
        return
    assert dlg["ok"], f"DALiuGE cannot run {name}: {dlg['error']}"
    problem = _builtin_problem(dlg["pg"])
    if name in NOT_BUILTIN:
        assert problem is not None, f"{name} uses only DALiuGE's built-ins now: compare it"
        return
    assert problem is None, f"{name} needs {problem}: list it in NOT_BUILTIN"
    node.allowed_paths = ("/dev",)  # the dd examples read /dev/urandom: allowed as a user would allow it
    ran = run_in_dropflow(node, name, dlg)
    if isinstance(ran, str):
        raise Refused(f"dropflow refuses {name}:\n{ran}")
    diffs = compare(name, dlg, *ran)
    if name in ACCEPTED:
        assert diffs, f"{name} now runs as in DALiuGE: remove it from ACCEPTED ({ACCEPTED[name]})"
        return
    assert not diffs, "\n".join(diffs[:20])
