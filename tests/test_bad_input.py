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
