"""Bad input is refused before anything runs, with a message naming the drop and the field, never a traceback.

Each case runs the real ``dropflow`` command in a subprocess, checks the exit status (2), that the message
names the place and the field, that no traceback is printed, and that no workspace was created.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dropflow.drops import GraphError, decode_physical
from dropflow.drops.graph import NESTED_TOO_DEEPLY

PG = {"format": "dropflow/physical-graph", "version": 1}


def cli(*args: str, cwd: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DROPFLOW_WORKSPACE": os.path.join(cwd, "ws")}
    return subprocess.run(
        [sys.executable, "-m", "dropflow.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def refused(
    tmp_path, graph: object | bytes, *expected: str, command: str = "run", extra: tuple[str, ...] = ()
):
    path = tmp_path / "graph.json"
    path.write_bytes(graph if isinstance(graph, bytes) else json.dumps(graph).encode())
    result = cli(command, str(path), *extra, cwd=str(tmp_path))
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr + result.stdout
    for text in expected:
        assert text in result.stderr, f"{text!r} not in:\n{result.stderr}"
    assert not (tmp_path / "ws").exists(), "something ran: a workspace was created"
    return result.stderr


def graph(*drops: dict) -> dict:
    return {**PG, "drops": list(drops)}


def test_malformed_json(tmp_path):
    refused(
        tmp_path,
        b'{"format": "dropflow/physical-graph", "version": 1,\n "drops": [{"id": "a",}]}',
        "malformed",
        "line 2, column",
    )


def test_unknown_drop_kind(tmp_path):
    refused(
        tmp_path,
        graph({"id": "a", "kind": "memroy"}),
        "drop 'a'",
        "field 'kind'",
        "unknown drop kind 'memroy'",
        "did you mean 'memory'",
    )


def test_duplicate_id(tmp_path):
    refused(
        tmp_path,
        graph({"id": "a", "kind": "memory"}, {"id": "a", "kind": "null"}),
        "drop 'a' (drops[1])",
        "field 'id'",
        "duplicate id",
    )


def test_link_to_missing_drop(tmp_path):
    refused(
        tmp_path,
        graph({"id": "app", "kind": "noop", "inputs": {"x": "ghost"}}),
        "noop drop 'app'",
        "field 'inputs'",
        "links to missing drop 'ghost'",
    )


def test_link_from_app_to_app(tmp_path):
    refused(
        tmp_path,
        graph({"id": "a", "kind": "noop"}, {"id": "b", "kind": "noop", "inputs": {"x": "a"}}),
        "noop drop 'b'",
        "field 'inputs'",
        "links to app drop 'a'",
    )


def test_cycle(tmp_path):
    refused(
        tmp_path,
        graph(
            {"id": "a", "kind": "noop", "inputs": {"i": "d2"}, "outputs": {"o": "d1"}},
            {"id": "d1", "kind": "memory"},
            {"id": "b", "kind": "noop", "inputs": {"i": "d1"}, "outputs": {"o": "d2"}},
            {"id": "d2", "kind": "memory"},
            {"id": "root", "kind": "memory"},
        ),
        "the graph has a cycle",
        "-> d1 ->",
    )


@pytest.mark.parametrize(
    "func,message",
    [
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("json:no_such_function", "module 'json' has no attribute 'no_such_function'"),
        ("json:__doc__", "is a str, not a callable"),
        ("just_a_name", "is not of the form 'module:function'"),
    ],
)
def test_app_with_no_callable(tmp_path, func, message):
    refused(
        tmp_path,
        graph({"id": "f", "kind": "python", "func": func}),
        "python drop 'f'",
        "field 'func'",
        message,
    )


def test_python_app_without_func_field(tmp_path):
    refused(
        tmp_path, graph({"id": "f", "kind": "python"}), "drop 'f'", "field 'func'", "missing required field"
    )


def test_function_signature_does_not_match_ports(tmp_path):
    refused(
        tmp_path,
        graph(
            {"id": "d", "kind": "memory"},
            {"id": "f", "kind": "python", "func": "os.path:basename", "inputs": {"nope": "d"}},
        ),
        "python drop 'f'",
        "field 'inputs'",
        "no parameter for input port 'nope'",
    )


@pytest.mark.parametrize(
    "drop,field,message",
    [
        ({"id": "s", "kind": "sleep", "seconds": "long"}, "seconds", "Expected `float`, got `str`"),
        ({"id": "s", "kind": "shell", "command": 42}, "command", "Expected `str`, got `int`"),
        ({"id": "s", "kind": "noop", "retries": -1}, "retries", ">= 0"),
        ({"id": "s", "kind": "noop", "error_tolerance": 2}, "error_tolerance", "<= 1.0"),
        ({"id": "s", "kind": "memory", "codec": "yaml"}, "codec", "Invalid enum value 'yaml'"),
        ({"id": "s", "kind": "noop", "executor": "gpu"}, "executor", "Invalid enum value 'gpu'"),
        ({"id": "s", "kind": "memory", "persist": "yes"}, "persist", "Expected `bool`"),
        ({"id": "s", "kind": "memory", "colour": "red"}, "colour", "unknown field for a memory drop"),
        ({"id": 7, "kind": "memory"}, "id", "Expected `str`, got `int`"),
    ],
)
def test_wrong_parameter_type(tmp_path, drop, field, message):
    refused(tmp_path, graph(drop), "drops[0]", f"field '{field}'", message)


@pytest.mark.parametrize("path", ["../../outside.txt", "/etc/passwd", "a/../../../x"])
def test_file_path_escaping_the_workspace(tmp_path, path):
    refused(
        tmp_path,
        graph({"id": "f", "kind": "file", "path": path}),
        "file drop 'f'",
        "field 'path'",
        "outside the session workspace",
        "--allow-path",
    )


def test_allowed_path_outside_the_workspace_is_accepted(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("x")
    path = tmp_path / "g.json"
    path.write_text(json.dumps(graph({"id": "f", "kind": "file", "path": str(tmp_path / "data" / "in.txt")})))
    result = cli("validate", str(path), "--allow-path", str(tmp_path / "data"), cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "drops,where,field,message",
    [
        (
            [{"id": "s", "kind": "shell", "command": "cat {nope}"}],
            "shell drop 's'",
            "command",
            "{nope} names no port",
        ),
        (
            [
                {"id": "m", "kind": "memory"},
                {"id": "s", "kind": "shell", "command": "cat {m}", "inputs": {"m": "m"}},
            ],
            "shell drop 's'",
            "command",
            "'m' is a memory drop",
        ),
        (
            [{"id": "s", "kind": "shell", "command": "echo { ${HOME} %i[nope]"}],
            "shell drop 's'",
            "command",
            "placeholder %i[nope] names no port",
        ),
        (
            [
                {"id": "m", "kind": "memory"},
                {
                    "id": "b",
                    "kind": "branch",
                    "func": "json:dumps",
                    "inputs": {"obj": "m"},
                    "outputs": {"maybe": "m2"},
                },
                {"id": "m2", "kind": "memory"},
            ],
            "branch drop 'b'",
            "outputs",
            "not 'maybe'",
        ),
        (
            [
                {"id": "m", "kind": "memory"},
                {"id": "a", "kind": "noop", "inputs": {"p": "m"}, "outputs": {"p": "m2"}},
                {"id": "m2", "kind": "memory"},
            ],
            "noop drop 'a'",
            "outputs",
            "used as both input and output",
        ),
        (
            [{"id": "s", "kind": "shell", "command": "true", "executor": "process"}],
            "shell drop 's'",
            "executor",
            "cannot run on 'process'",
        ),
        ([{"id": "s", "kind": "shm", "persist": True}], "shm drop 's'", "persist", "cannot outlive"),
    ],
)
def test_kind_specific_checks(tmp_path, drops, where, field, message):
    refused(tmp_path, graph(*drops), where, f"field '{field}'", message)


@pytest.mark.parametrize(
    "doc,message",
    [
        ({"format": "something-else", "version": 1, "drops": []}, "field 'format'"),
        ({"format": "dropflow/physical-graph", "version": 99, "drops": []}, "99 is not supported"),
        ({"format": "dropflow/physical-graph", "version": 1}, "field 'drops': missing required field"),
        ([1, 2, 3], "graph"),
    ],
)
def test_graph_header_problems(tmp_path, doc, message):
    err = refused(tmp_path, doc, message)
    assert "nothing was run" in err


def test_empty_and_missing_files(tmp_path):
    refused(tmp_path, b"", "graph")
    result = cli("run", str(tmp_path / "nope.json"), cwd=str(tmp_path))
    assert result.returncode == 2 and "cannot read" in result.stderr and "Traceback" not in result.stderr


def test_many_problems_are_reported_together():
    data = json.dumps(
        graph(
            {"id": "a", "kind": "noop", "inputs": {"x": "m1"}},
            {"id": "b", "kind": "noop", "inputs": {"x": "m2"}},
        )
    ).encode()
    decoded = decode_physical(data)
    from dropflow.engine import Workspace, build

    with pytest.raises(GraphError) as info:
        build(decoded.drops, Workspace("/tmp", "x"))
    assert [p.where for p in info.value.problems] == ["noop drop 'a'", "noop drop 'b'"]


@pytest.mark.parametrize(
    "args,message",
    [
        (("run", "g.json", "--threads", "0"), "must be at least 1"),
        (("run", "g.json", "--threads", "many"), "is not an integer"),
        (("run", "g.json", "--session-id", "../evil"), "--session-id"),
        (("run", "g.json", "--param", "novalue"), "expected NAME=VALUE"),
        (("run", "g.json", "--pythonpath", "/no/such/dir"), "is not a directory"),
        (("frobnicate",), "invalid choice"),
        (("run",), "the following arguments are required: graph"),
    ],
)
def test_bad_command_line_arguments(tmp_path, args, message):
    (tmp_path / "g.json").write_text(json.dumps(graph({"id": "a", "kind": "noop"})))
    result = cli(*args, cwd=str(tmp_path))
    assert result.returncode == 2, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# -- Hostile input (issue 10, items 6, 7): refused cleanly, in every format, before anything is allocated
#
# These run ``dropflow validate`` in this process (its ``main``, on a file): the same code path as the
# command, fast enough for many cases. Each case failed before the fix with a traceback, a hang, gigabytes
# of memory, or by being accepted.


def validate(tmp_path, doc: object | bytes, capsys, *args: str) -> tuple[int, str]:
    from dropflow.cli import main

    path = tmp_path / "graph.json"
    path.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    code = main(["validate", str(path), *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def rejects(tmp_path, capsys, doc: object | bytes, *expected: str) -> str:
    code, err = validate(tmp_path, doc, capsys)
    assert code == 2, err
    for text in expected:
        assert text in err, f"{text!r} not in:\n{err}"
    return err


def logical(nodes: list[dict], links: list[dict] = ()) -> dict:  # type: ignore[assignment]
    return {"format": "dropflow/logical-graph", "version": 1, "nodes": nodes, "links": list(links)}


def eagle_field(name: str, value: object, usage: str = "NoPort", fid: str | None = None) -> dict:
    return {
        "id": fid or f"f-{name}",
        "name": name,
        "value": value,
        "usage": usage,
        "parameterType": "ComponentParameter",
    }


def eagle_comp(cid: str, category: str, ctype: str, fields: list[dict], parent: str | None = None) -> dict:
    comp = {"id": cid, "name": cid, "category": category, "categoryType": ctype, "fields": fields}
    if parent:
        comp["parentId"] = parent
    return comp


def eagle(nodes: list[dict], links: list[dict] = ()) -> dict:  # type: ignore[assignment]
    return {
        "modelData": {"schemaVersion": "OJS", "filePath": "t.graph"},
        "nodeDataArray": nodes,
        "linkDataArray": list(links),
    }


def eagle_scatter(copies: object) -> dict:
    """Scatter(copies) of hello -> memory: the EAGLE form of the size bomb."""
    return eagle(
        [
            eagle_comp("s", "Scatter", "Construct", [eagle_field("num_of_copies", copies)]),
            eagle_comp(
                "a",
                "PythonApp",
                "Application",
                [
                    eagle_field("dropclass", "dlg.apps.simple.HelloWorldApp"),
                    eagle_field("out", None, "OutputPort", "a-out"),
                ],
                "s",
            ),
            eagle_comp("d", "Memory", "Data", [eagle_field("d", None, "InputOutput", "d-p")], "s"),
        ],
        [{"from": "a", "fromPort": "a-out", "to": "d", "toPort": "d-p"}],
    )


def test_cycle_found_from_a_drop_downstream_of_it(tmp_path, capsys):
    """3 drops: 'e' (listed first) reads 'd'; 'a' reads and writes 'd' (a cycle). The first blocked drop lies
    downstream of the cycle, where a forward walk found no way on (StopIteration)."""
    err = rejects(
        tmp_path,
        capsys,
        graph(
            {"id": "e", "kind": "noop", "inputs": {"i": "d"}},
            {"id": "a", "kind": "noop", "inputs": {"i": "d"}, "outputs": {"o": "d"}},
            {"id": "d", "kind": "memory"},
        ),
        "the graph has a cycle: a -> d -> a",
    )
    assert "StopIteration" not in err


def test_logical_cycle_found_from_a_node_downstream_of_it(tmp_path, capsys):
    rejects(
        tmp_path,
        capsys,
        logical(
            [
                {"id": "z", "data": "memory"},
                {"id": "a", "app": "noop", "inputs": ["i"], "outputs": ["o", "p"]},
                {"id": "d", "data": "memory"},
            ],
            [
                {"from": "a", "from_port": "p", "to": "z"},
                {"from": "a", "from_port": "o", "to": "d"},
                {"from": "d", "to": "a", "to_port": "i"},
            ],
        ),
        "node 'a' (noop): the graph has a cycle that is not declared as a loop: 'a' -> 'd' -> 'a'",
    )


@pytest.mark.parametrize("self_link", [False, True])
def test_eagle_cycle_and_self_link(tmp_path, capsys, self_link):
    """EAGLE: a link back from the app's output data to its input (a cycle), or from the app's output port
    to its own input port (a self-link); the data node downstream is listed first."""
    back = (
        {"from": "w", "fromPort": "w-out", "to": "w", "toPort": "w-in"}
        if self_link
        else {"from": "m", "fromPort": "m-p", "to": "w", "toPort": "w-in"}
    )
    doc = eagle(
        [
            eagle_comp("out", "Memory", "Data", [eagle_field("o", None, "InputOutput", "out-p")]),
            eagle_comp(
                "w",
                "PyFuncApp",
                "Application",
                [
                    eagle_field("func_name", "json.dumps"),
                    eagle_field("obj", None, "InputPort", "w-in"),
                    eagle_field("o", None, "OutputPort", "w-out"),
                ],
            ),
            eagle_comp("m", "Memory", "Data", [eagle_field("m", None, "InputOutput", "m-p")]),
        ],
        [
            {"from": "w", "fromPort": "w-out", "to": "m", "toPort": "m-p"},
            {"from": "w", "fromPort": "w-out", "to": "out", "toPort": "out-p"},
            back,
        ],
    )
    rejects(tmp_path, capsys, doc, "the graph has a cycle")


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "template,message",
    [
        # (A typed decoder stops at the first value of the wrong type, before it nests further.)
        ('{"format": "dropflow/physical-graph", "version": 1, "drops": %s}', "drops[0]: Expected `object`"),
        (
            '{"format": "dropflow/physical-graph", "version": 1, "drops": [{"id": "a", "kind": "memory", '
            '"data": %s}]}',
            "graph: nested too deeply",
        ),
        (
            '{"format": "dropflow/logical-graph", "version": 1, "nodes": [{"id": "a", "app": "noop", '
            '"x": %s}]}',
            "graph: nested too deeply",
        ),
        ('{"nodeDataArray": [{"id": "a", "category": "Memory", "fields": %s}]}', "graph: nested too deeply"),
        (
            '[{"oid": "a", "categoryType": "Data", "category": "Memory", "consumers": %s}]',
            "graph: nested too deeply",
        ),
    ],
    ids=["physical", "physical-field", "logical", "eagle", "daliuge"],
)
def test_json_nested_20000_deep(tmp_path, capsys, template, message):
    rejects(tmp_path, capsys, (template % deep(20_000)).encode(), message)


@pytest.mark.parametrize("command", ["validate", "translate"])
def test_a_value_too_deep_for_the_readers_walks(tmp_path, command):
    """700 levels decode, but walking them (parameter substitution: two frames a level) passed Python's
    recursion limit: a RecursionError traceback out of ``dropflow translate``."""
    doc = json.dumps(logical([{"id": "a", "app": "noop", "kwargs": {"x": [[[]]]}}]))
    refused(tmp_path, doc.replace("[[[]]]", deep(700)).encode(), "graph: nested too deeply", command=command)


_DEEP_WITH_GARBAGE = """
import contextlib, gc, io, sys
from dropflow.cli import main

class Finalized:  # cyclic garbage whose finalizer runs Python code, as many libraries' objects do
    def __del__(self):
        str([1])

def garbage():
    a, b = Finalized(), Finalized()
    a.other, b.other = b, a

for _ in range(20):
    for _ in range(50):
        garbage()
    gc.set_threshold(1)  # a collection as often as they go
    err = io.StringIO()  # as the fuzzer captures it (the hook itself fails then, writing into it)
    with contextlib.redirect_stderr(err):
        print(main(["validate", sys.argv[1]]))
    print(err.getvalue(), end="")
"""


_DEEP_PG = b'{"format": "dropflow/physical-graph", "version": 1, "drops": [{"id": "a", "kind": '
_NESTED = f"graph: {NESTED_TOO_DEEPLY}"


@pytest.mark.parametrize(
    "doc,problem",
    [
        (b"[" * 20_000 + b"{}" + b"]" * 20_000, _NESTED),
        (_DEEP_PG + b'"memory", "data": ' + deep(20_000).encode() + b"}]}", _NESTED),
        # Refused at its first level (an object, not seconds), then re-read to name the drop: recursion.
        (_DEEP_PG + b'"sleep", "seconds": ' + b'{"n":' * 990 + b"1" + b"}" * 990 + b"}]}", "drops[0], field"),
        (
            json.dumps(logical([{"id": "a", "app": "noop", "kwargs": {"x": [[[]]]}}]))
            .replace("[[[]]]", deep(700))
            .encode(),
            _NESTED,
        ),
    ],
    ids=["decode", "physical", "physical-explained", "parse"],
)
def test_json_nested_deep_with_garbage_about(tmp_path, doc, problem):
    """The decoder recurses to the interpreter's limit; a garbage collection there ran finalizers (and the
    collector's callbacks) with no stack left, each printing "Exception ignored ... RecursionError" among
    the refusal's lines (the fuzzer found it). In a child process: pytest catches such exceptions itself."""
    path = tmp_path / "deep.json"
    path.write_bytes(doc)
    result = subprocess.run(
        [sys.executable, "-c", _DEEP_WITH_GARBAGE, str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 60 and lines[:2] == ["2", "dropflow validate: invalid graph, nothing was run:"], (
        lines
    )
    assert lines[2].startswith(f"{path}: {problem}") and lines == lines[:3] * 20, lines


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda d: d.update(linkDataArray=0.5), "field 'linkDataArray': must be a list"),
        (lambda d: d.update(modelData="x"), "valid"),
        (lambda d: d["nodeDataArray"][1]["fields"].__setitem__(0, {"id": ["a"], "name": "dropclass"}), ""),
        (lambda d: d["nodeDataArray"][1].update(fields=-1e308), ""),
        (lambda d: d["nodeDataArray"][1].update(inputAppFields=["\x00"]), ""),
        (lambda d: d["nodeDataArray"][1].update(category={"a": 1}), "valid"),  # the dropclass decides
        (
            lambda d: d.update(activeGraphConfigId=["x"], graphConfigurations={"x": {}}),
            "field 'activeGraphConfigId'",
        ),
        (lambda d: d.update(activeGraphConfigId="x", graphConfigurations={"x": {"nodes": [1]}}), "valid"),
        # A weight too large for a float (an OverflowError once): the default weight.
        (
            lambda d: d["nodeDataArray"][1]["fields"].append({"name": "execution_time", "value": 10**400}),
            "valid",
        ),
    ],
)
def test_eagle_values_of_the_wrong_type(tmp_path, capsys, mutate, expected):
    """Wrong types anywhere in an EAGLE graph give a refusal (or a graph without the broken part), never a
    TypeError or AttributeError."""
    doc = eagle_scatter(3)
    mutate(doc)
    code, err = validate(tmp_path, doc, capsys)
    assert code in (0, 2) and expected in (err if code else "valid")


@pytest.mark.parametrize(
    "drop,field,message",
    [
        (
            {"oid": "a", "categoryType": "Application", "category": "PythonApp", "applicationArgs": 0.5},
            "applicationArgs",
            "must be an object",
        ),
        (
            {"oid": "a", "categoryType": "Data", "category": "Memory", "consumers": 5},
            "consumers",
            "must be a list",
        ),
        (
            {"oid": "a", "categoryType": "Data", "category": "Memory", "consumers": [7]},
            "consumers",
            "entries are oids",
        ),
        (
            {"oid": "a", "categoryType": "Data", "category": "Memory", "fields": "x"},
            "fields",
            "must be a list",
        ),
        ({"oid": ["a"], "categoryType": "Data", "category": "Memory"}, "oid", "must be a string"),
    ],
)
def test_daliuge_physical_values_of_the_wrong_type(tmp_path, capsys, drop, field, message):
    rejects(tmp_path, capsys, [drop], f"field '{field}'", message)


def test_daliuge_physical_graph_with_a_duplicated_oid(tmp_path, capsys):
    drop = {"oid": "a", "categoryType": "Data", "category": "Memory"}
    rejects(tmp_path, capsys, [drop, dict(drop)], "drop 'a' ([1]), field 'oid': duplicate oid")


# -- sizes: counted before anything is allocated

BOMB = {  # 250 bytes: a scatter of 10**7 copies of an app and its output, 2 * 10**7 drops
    "format": "dropflow/logical-graph",
    "version": 1,
    "nodes": [
        {"id": "s", "construct": "scatter", "copies": 10**7},
        {"id": "a", "app": "noop", "parent": "s", "outputs": ["o"]},
        {"id": "d", "data": "memory", "parent": "s"},
    ],
    "links": [{"from": "a", "from_port": "o", "to": "d"}],
}


def peak_rss_of_validate(tmp_path, doc: dict, env: dict[str, str] | None = None) -> tuple[int, str, int]:
    """Run ``dropflow validate`` in a child of a small wrapper process; its exit code, stderr and peak RSS
    in MiB (the wrapper's only child, so RUSAGE_CHILDREN is this command's). The address space is capped at
    4 GiB, so that a regression fails here instead of exhausting the machine."""
    path = tmp_path / "bomb.json"
    path.write_text(json.dumps(doc))
    wrapper = (
        "import resource, subprocess, sys\n"
        "cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True, preexec_fn=cap)\n"
        "sys.stderr.write(r.stderr)\n"
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, "-m", "dropflow.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    code, rss_kib = result.stdout.split()
    return int(code), result.stderr, int(rss_kib) // 1024


def test_a_250_byte_scatter_of_ten_million_is_refused_at_small_memory(tmp_path):
    assert len(json.dumps(BOMB)) < 302
    code, err, rss = peak_rss_of_validate(tmp_path, BOMB)
    assert code == 2, err
    assert "node 's' (scatter), field 'copies'" in err and "20,000,000 drops" in err
    assert "limit of 10,000,000" in err and "DROPFLOW_MAX_DROPS" in err
    assert "Traceback" not in err
    assert rss < 300, f"validate peaked at {rss} MiB"


@pytest.mark.parametrize(
    "copies,message",
    [
        (10**9, "2,000,000,000 drops"),
        (2**63, "18,446,744,073,709,551,616 drops"),
        (2**64 + 1, "drops, more than the limit"),
        ("1000000000", "2,000,000,000 drops"),
        (-5, "must be at least 1, not -5"),
        (0, "must be at least 1, not 0"),
        ("many", "must be an integer, not 'many'"),
    ],
)
def test_eagle_num_of_copies(tmp_path, copies, message):
    """In a capped child process: before the limit, 10**9 copies took 13.6 GB."""
    code, err, rss = peak_rss_of_validate(tmp_path, eagle_scatter(copies))
    assert code == 2 and "node 's' (Scatter, id s), field 'num_of_copies'" in err and message in err, err
    assert "Traceback" not in err and rss < 300


@pytest.mark.parametrize(
    "node,field,message",
    [
        ({"id": "s", "construct": "scatter", "copies": 2**63}, "copies", "drops, more than the limit"),
        ({"id": "s", "construct": "scatter", "copies": -1}, "copies", "must be at least 1"),
        ({"id": "s", "construct": "loop", "iterations": 10**12}, "iterations", "drops, more than the limit"),
    ],
)
def test_native_construct_sizes(tmp_path, node, field, message):
    code, err, rss = peak_rss_of_validate(
        tmp_path, logical([node, {"id": "a", "app": "noop", "parent": "s"}])
    )
    assert code == 2 and f"node 's' ({node['construct']}), field '{field}'" in err and message in err, err
    assert "Traceback" not in err and rss < 300


def test_the_limit_is_a_setting(tmp_path, capsys, monkeypatch):
    """DROPFLOW_MAX_DROPS moves the limit both ways; a bad value is refused, naming the variable."""
    doc = logical(
        [{"id": "s", "construct": "scatter", "copies": 100}, {"id": "a", "app": "noop", "parent": "s"}]
    )
    monkeypatch.setenv("DROPFLOW_MAX_DROPS", "99")
    rejects(tmp_path, capsys, doc, "100 drops, more than the limit of 99")
    monkeypatch.setenv("DROPFLOW_MAX_DROPS", "100")
    assert validate(tmp_path, doc, capsys)[0] == 0
    monkeypatch.setenv("DROPFLOW_MAX_DROPS", "lots")
    rejects(
        tmp_path, capsys, doc, "environment variable DROPFLOW_MAX_DROPS: 'lots' is not a positive integer"
    )


def test_links_are_bounded_too(tmp_path, capsys, monkeypatch):
    """100 copies gathered whole into each of 100 copies of a consumer: 300 drops, but 10,000 links."""
    monkeypatch.setenv("DROPFLOW_MAX_DROPS", "1000")
    doc = logical(
        [
            {"id": "s", "construct": "scatter", "copies": 100},
            {"id": "make", "app": "noop", "parent": "s", "outputs": ["o"]},
            {"id": "x", "data": "memory", "parent": "s"},
            {"id": "g", "construct": "gather", "width": 100},
            {"id": "t", "construct": "scatter", "copies": 100, "parent": "g"},
            {"id": "use", "app": "noop", "parent": "t", "inputs": ["i"]},
        ],
        [{"from": "make", "from_port": "o", "to": "x"}, {"from": "x", "to": "use", "to_port": "i"}],
    )
    rejects(tmp_path, capsys, doc, "node 't' (scatter), field 'copies'", "more than 4,000 links")


def test_constructs_nested_thousands_deep_are_refused_quickly(tmp_path, capsys):
    """3,000 scatters, each inside the previous, and 3,000 apps in the innermost: unrolling work grows with
    depth x nodes (10 s here before the bound); refused at the 65th level."""
    nodes = [
        {"id": f"c{i}", "construct": "scatter", "copies": 1, **({"parent": f"c{i - 1}"} if i else {})}
        for i in range(3000)
    ]
    nodes += [{"id": f"a{i}", "app": "noop", "parent": "c2999"} for i in range(3000)]
    rejects(tmp_path, capsys, logical(nodes), "node 'c64' (scatter), field 'parent': constructs nest 65 deep")


def test_many_duplicate_app_to_app_links_cost_linear_time(tmp_path, capsys):
    """Each app -> app link gets a null drop whose id must be new; 20,000 duplicates of one link used to try
    every earlier name first (quadratic, with ids thousands of characters long)."""
    links = [{"from": "a", "from_port": "o", "to": "b", "to_port": "i"}] * 20_000
    doc = logical(
        [{"id": "a", "app": "noop", "outputs": ["o"]}, {"id": "b", "app": "noop", "inputs": ["i"]}], links
    )
    code, err = validate(tmp_path, doc, capsys)
    assert code == 0, err


# -- values that pass a type check but cannot run -----------------------------------------------------------


@pytest.mark.parametrize(
    "drop,field,message",
    [
        ({"id": "s", "kind": "sleep", "seconds": -5}, "seconds", ">= 0.0"),
        ({"id": "r", "kind": "random_array", "size": -1}, "size", ">= 0"),
        ({"id": "r", "kind": "random_array", "size": 2**40}, "size", "<= 2147483647"),
        ({"id": "r", "kind": "random_array", "seed": -3}, "seed", ">= 0"),
        ({"id": "m", "kind": "mpi", "command": "true", "ranks": 10**7}, "ranks", "<= 4194304"),
        ({"id": "n", "kind": "noop", "retries": 10**9}, "retries", "<= 1000"),
    ],
)
def test_numbers_out_of_range(tmp_path, capsys, drop, field, message):
    rejects(tmp_path, capsys, graph(drop), "drops[0]", f"field '{field}'", message)


@pytest.mark.parametrize(
    "category,fields,field,message",
    [
        ("PythonApp", [("dropclass", "dlg.apps.simple.RandomArrayApp"), ("size", -10)], "size", ">= 0"),
        (
            "PythonApp",
            [("dropclass", "dlg.apps.simple.RandomArrayApp"), ("size", "1e999")],
            "size",
            "is not a number",
        ),
        ("Mpi", [("command", "true"), ("num_of_procs", 10**7)], "ranks", "<= 4194304"),
        ("Mpi", [("command", "true"), ("num_of_procs", 1e308)], "ranks", "<= 4194304"),
        ("Mpi", [("command", "true"), ("num_of_procs", "many")], "num_of_procs", "is not a number"),
        ("Mpi", [("command", "true"), ("num_of_procs", 0)], "num_of_procs", "at least one rank"),
        (
            "PythonApp",
            [("dropclass", "dlg.apps.simple.AverageArraysApp"), ("method", "max")],
            "method",
            "is not mean or median",
        ),
    ],
)
def test_eagle_numbers_out_of_range(tmp_path, capsys, category, fields, field, message):
    doc = eagle([eagle_comp("x", category, "Application", [eagle_field(k, v) for k, v in fields])])
    rejects(tmp_path, capsys, doc, "node 'x'", f"field '{field}'", message)


def test_eagle_incomplete_component_is_foreign_but_a_wrong_value_is_refused(tmp_path, capsys):
    """A Docker component naming no image is incomplete: it translates (as DALiuGE translates it) and waits
    for deploy. The same component with an MPI rank count that is not a number is wrong: refused at once."""
    incomplete = eagle([eagle_comp("x", "Docker", "Application", [eagle_field("command", "true")])])
    code, err = validate(tmp_path, incomplete, capsys)
    assert code == 0, err
    wrong = eagle(
        [
            eagle_comp(
                "x", "Mpi", "Application", [eagle_field("command", "true"), eagle_field("maxprocs", "x")]
            )
        ]
    )
    rejects(tmp_path, capsys, wrong, "node 'x' (Mpi, id x), field 'maxprocs': 'x' is not a number")


@pytest.mark.parametrize(
    "drop,field,message",
    [
        ({"num_of_procs": "many"}, "num_of_procs", "is not a number"),
        ({"num_of_procs": 0}, "num_of_procs", "at least one rank"),
        ({"num_of_procs": 10**7}, "ranks", "<= 4194304"),
    ],
)
def test_daliuge_physical_numbers_out_of_range(tmp_path, capsys, drop, field, message):
    mpi = {"oid": "m", "categoryType": "Application", "category": "Mpi", "command": "true", **drop}
    rejects(tmp_path, capsys, [mpi], "drop 'm' (Mpi)", f"field '{field}'", message)


def loop_members(loop: str, ends: int, starts: int) -> list[dict]:
    """``ends`` group_end data and ``starts`` group_start apps in ``loop``."""
    return [
        eagle_comp(f"{loop}-d{i}", "Memory", "Data", [eagle_field("group_end", 1)], loop) for i in range(ends)
    ] + [
        eagle_comp(
            f"{loop}-a{i}",
            "PythonApp",
            "Application",
            [eagle_field("dropclass", "dlg.apps.simple.NullBarrierApp"), eagle_field("group_start", 1)],
            loop,
        )
        for i in range(starts)
    ]


def test_a_loop_closed_by_a_square_of_links_is_refused(tmp_path, capsys):
    """DALiuGE closes a loop from each group_end to each group_start: 101 x 100 marked nodes would make
    10,100 links from 201 nodes."""
    loop = eagle_comp("L", "Loop", "Construct", [eagle_field("num_of_iter", 2)])
    rejects(
        tmp_path,
        capsys,
        eagle([loop, *loop_members("L", 101, 100)]),
        "node 'L' (Loop, id L), field 'group_end'",
        "101 group_end and 100 group_start nodes would close the loop with 10,100 links (at most 10,000)",
    )
    assert validate(tmp_path, eagle([loop, *loop_members("L", 100, 100)]), capsys)[0] == 0


@pytest.mark.timeout(120)
def test_many_loops_close_in_linear_time():
    """12,000 loops of a group_start app and a group_end data each: reading them looked for every loop's
    members among all components and every loop's drawn closing links among all links (minutes; seconds
    now)."""
    from dropflow.translator.eagle import parse_eagle

    nodes: list[dict] = []
    for i in range(12_000):
        nodes += [eagle_comp(f"L{i}", "Loop", "Construct", [eagle_field("num_of_iter", 1)])]
        nodes += loop_members(f"L{i}", 1, 1)
    graph = parse_eagle(eagle(nodes), {})
    assert len(graph.links) == 12_000 and all(link.carried for link in graph.links)


@pytest.mark.parametrize("cls,kind", [("SleepApp", "noop"), ("SleepAndCopyApp", "sleep_copy")])
def test_eagle_negative_sleep_is_no_sleep_as_in_daliuge(tmp_path, capsys, cls, kind):
    """DALiuGE's SleepApp catches the error of a negative sleep_time and sleeps 0 s: the graph is valid there,
    so it is here, and no negative number reaches a spec. (A native sleep of -5 s is refused: above.)"""
    from dropflow.translator import load_logical

    fields = [eagle_field("dropclass", f"dlg.apps.simple.{cls}"), eagle_field("sleep_time", "-5")]
    doc = eagle([eagle_comp("x", "PythonApp", "Application", fields)])
    assert validate(tmp_path, doc, capsys)[0] == 0
    specs, _format = load_logical(json.dumps(doc).encode(), "g.graph", {})
    assert [(s.kind, getattr(s, "seconds", 0.0)) for s in specs] == [(kind, 0.0)]


@pytest.mark.parametrize(
    "codec,data",
    [("npy", {"a": 1}), ("npy", [[1], [1, 2]]), ("bytes", 5), ("utf-8", [1]), ("path", "x")],
)
def test_memory_data_its_codec_cannot_encode(tmp_path, capsys, codec, data):
    rejects(
        tmp_path,
        capsys,
        graph({"id": "m", "kind": "memory", "codec": codec, "data": data}),
        "memory drop 'm', field 'data'",
        f"cannot be encoded with the {codec} codec",
    )


def test_nul_in_a_file_path_is_refused_by_validate_and_run(tmp_path):
    """Accepted by validate before, then a ValueError traceback in run."""
    doc = graph(
        {"id": "h", "kind": "hello", "outputs": {"o": "f"}}, {"id": "f", "kind": "file", "path": "a\0b"}
    )
    for command in ("validate", "run"):
        refused(tmp_path, doc, "file drop 'f'", "field 'path'", "NUL", command=command)


def test_the_size_bomb_over_rest_is_a_400_naming_the_construct(tmp_path):
    """Over REST it was an HTML 500 after 29 s (and GBs); now the append is refused at once, as a bad graph.
    (In-process through falcon's test client; the daemons serve the same app.)"""
    from falcon import testing

    from dropflow.managers.node_manager import NodeManager
    from dropflow.managers.rest import make_app

    nm = NodeManager("node-1", workspace_root=str(tmp_path / "ws"), threads=1, processes=1).start()
    try:
        api = testing.TestClient(make_app(nm))
        assert api.simulate_post("/api/v1/sessions", json={"sessionId": "s1"}).status_code == 201
        resp = api.simulate_post(
            "/api/v1/sessions/s1/graph/append",
            body=json.dumps(BOMB),
            headers={"Content-Type": "application/json"},
        )
        assert resp.status_code == 400, resp.text
        (problem,) = resp.json["error"]["problems"]
        assert problem["where"] == "node 's' (scatter)" and problem["field"] == "copies"
        assert "more than the limit of 10,000,000" in problem["message"]
    finally:
        nm.close()
