"""DALiuGE's built-in components run in dropflow as they run in DALiuGE.

Each test builds a small EAGLE graph of DALiuGE components (the palette's categories and classes), runs it
with ``dropflow run`` and checks what its outputs hold. Only loopback-free URLs (``file://``) are fetched.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from eaglegraph import Graph

from dropflow.cli import main
from dropflow.translator.dlgclasses import map_app, shell_command


def run(graph: Graph, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    path = tmp_path / f"{graph.name}.graph"
    path.write_text(graph.dumps())
    code = main(
        ["run", str(path), "--workspace", str(tmp_path / "ws"), "--allow-path", str(tmp_path), "--json"]
    )
    out = capsys.readouterr()
    summary: dict[str, Any] = json.loads(out.out) if out.out.strip() else {"err": out.err}
    assert code == 0, (summary, out.err)
    return summary


def test_shell_commands_translate_as_dalguge_reads_them() -> None:
    args = [("bs", 4, False), ("count", 2, False), ("verbose", True, False)]
    ports = ["in", "out"]
    command = shell_command("dd if=%i[in] of=%o[out] bs={bs} count={count}", args, ports, {})
    assert command == "dd if={in} of={out} bs=4 count=2 --verbose true"
    awk = shell_command("awk '{print $1}' {in} > %o[out]; echo ${HOME}", [], ports, {})
    assert awk == "awk '{{print $1}}' {in} > {out}; echo ${{HOME}}"
    root = shell_command("cp %i[in] $DLG_ROOT/copy", [], ports, {})
    assert root.startswith('export DLG_ROOT="${{DLG_ROOT:-$DROPFLOW_WORKDIR}}";') and root.endswith(
        "$DLG_ROOT/copy"
    )


def test_sleep_app_reads_the_older_field_and_defaults_to_no_sleep() -> None:
    sleep = "dlg.apps.simple.SleepApp"
    assert map_app("PythonApp", sleep, {"sleepTime": "2"}, [], [], "n").fields == {"seconds": 2.0}
    assert map_app("PythonApp", sleep, {"sleep_time": 0.5}, [], [], "n").fields == {"seconds": 0.5}
    assert map_app("PythonApp", sleep, {}, [], [], "n").kind == "noop"


def test_bash_shell_app_with_arguments_awk_and_dlg_root(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    write (echo) --> words.txt --> upper (awk, {bs} from an argument) --> result (file)
    """
    result = tmp_path / "result.txt"
    g = Graph("shell")
    g.node("write", "BashShellApp", None, (), ("out",), command="printf 'a b\\nc d\\n' > %o[out]")
    g.data("words", category="File", filepath="$DLG_ROOT/words.txt")
    g.node(
        "upper",
        "BashShellApp",
        None,
        ("in",),
        ("out",),
        command="awk '{print toupper($2)}' %i[in] > %o[out]; echo {tag} >> %o[out]; "
        "test -f $DLG_ROOT/words.txt",
        args={"tag": "done"},
    )
    g.data("result", category="File", filepath=str(result))
    g.link("write", "out", "words", "in").link("words", "out", "upper", "in").link(
        "upper", "out", "result", "in"
    )
    summary = run(g, tmp_path, capsys)
    assert summary["state"] == "FINISHED"
    assert result.read_text() == "B\nD\ndone\n"


def test_parameter_set_is_a_key_value_file(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "parset.txt"
    g = Graph("parset")
    g.data("config", category="ParameterSet", mode="YANDA", args={"nchan": 16, "field": "3C273"})
    g.node("cat", "BashShellApp", None, ("in",), ("out",), command="cp %i[in] %o[out]")
    g.data("copy", category="File", filepath=str(copy))
    g.link("config", "out", "cat", "in").link("cat", "out", "copy", "in")
    assert run(g, tmp_path, capsys)["state"] == "FINISHED"
    assert copy.read_text() == "nchan=16\nfield=3C273\n"


def test_builtin_function_string2json(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    g = Graph("string2json")
    g.node(
        "parse",
        "PyFuncApp",
        None,
        (),
        ("output",),
        func_name="dlg.apps.simple_functions.string2json",
        args={"string": '{"a": [1, 2]}'},
    )
    g.data("value", persist=True)
    g.link("parse", "output", "value", "in")
    summary = run(g, tmp_path, capsys)
    assert summary["state"] == "FINISHED"
    assert "{'a': [1, 2]}" in json.dumps(summary["values"])


def test_url_retrieve_sleep_and_copy(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """UrlRetrieveApp (a file:// URL) --> page --> SleepAndCopyApp --> copy (file)"""
    source = tmp_path / "source.txt"
    source.write_bytes(b"retrieved content\n")
    copy = tmp_path / "copy.txt"
    g = Graph("url")
    g.node(
        "fetch",
        "PythonApp",
        None,
        (),
        ("out",),
        dropclass="dlg.apps.simple.UrlRetrieveApp",
        url=source.as_uri(),
    )
    g.data("page")
    g.node(
        "slow_copy",
        "PythonApp",
        None,
        ("in",),
        ("out",),
        dropclass="dlg.apps.simple.SleepAndCopyApp",
        sleepTime=0.1,
    )
    g.data("copy", category="File", filepath=str(copy))
    g.link("fetch", "out", "page", "in").link("page", "out", "slow_copy", "in").link(
        "slow_copy", "out", "copy", "in"
    )
    assert run(g, tmp_path, capsys)["state"] == "FINISHED"
    assert copy.read_bytes() == b"retrieved content\n"


def test_arrays_gathered_averaged_and_picked(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """
    +-- scatter (3) -----------------+
    | RandomArrayApp --> array       | --> ArrayGatherApp --> gathered --> PickOne (one output) --> first
    +--------------------------------+ --> AverageArraysApp --> averaged (the mean of all 12 numbers)
    """
    g = Graph("arrays")
    g.node("scatter", "Scatter", num_of_copies=3)
    g.node(
        "random", "PythonApp", "scatter", (), ("array",), dropclass="dlg.apps.simple.RandomArrayApp", size=4
    )
    g.data("array", "scatter")
    g.node("gather", "PythonApp", None, ("in",), ("out",), dropclass="dlg.apps.simple.ArrayGatherApp")
    g.data("gathered")
    g.node("average", "PythonApp", None, ("in",), ("out",), dropclass="dlg.apps.simple.AverageArraysApp")
    g.data("averaged", persist=True)
    g.node("pick", "PythonApp", None, ("in",), ("value",), dropclass="dlg.apps.simple.PickOne")
    g.data("first", persist=True)
    g.link("random", "array", "array", "in").link("array", "out", "gather", "in").link(
        "gather", "out", "gathered", "in"
    )
    g.link("array", "out", "average", "in").link("average", "out", "averaged", "in")
    g.link("gathered", "out", "pick", "in").link("pick", "value", "first", "in")
    summary = run(g, tmp_path, capsys)
    assert summary["state"] == "FINISHED", summary
    first = summary["values"]["first"]
    assert first.startswith("array([") and first.count(",") == 3, first  # the first of three 4-arrays
    assert summary["values"]["averaged"].startswith("np.float64(")
