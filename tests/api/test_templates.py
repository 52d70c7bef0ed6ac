"""Shell command templates: placeholders in a syntax no shell uses, and the shell's own braces left alone.

``%i[port]`` / ``%o[port]`` (DALiuGE's) and ``%[name]`` are the placeholders; a command without them is read
in the older ``{port}`` syntax, but only ``{identifier}`` not after ``$`` is a placeholder there, so
``${HOME}``, awk programs and ``{ a; b; }`` groups run as written.
"""

from __future__ import annotations

import pytest

from dropflow.drops import FileSpec, MemorySpec, ShellSpec
from dropflow.drops.apps.shell import Placeholder, parse, substitute
from dropflow.drops.errors import GraphError

import apitools  # noqa: F401  (the import path)
from conftest import run


@pytest.mark.parametrize(
    "command, fields, expected",
    [
        ("gzip -c %i[data] > %o[out]", {"data": "/a", "out": "/b"}, "gzip -c /a > /b"),
        ("cat %[data] # %%i[data] and 100%%[sic]", {"data": "/a"}, "cat /a # %i[data] and 100%[sic]"),
        # the dropflow syntax turns braces into plain text
        ("awk '{print $1}' %i[x] > ${HOME}/{x}", {"x": "/x"}, "awk '{print $1}' /x > ${HOME}/{x}"),
        # the legacy syntax: {port} still works, {{ }} are literal braces, ${...} is the shell's
        ("wc -l < {inp} > ${OUT:-{x}}", {"inp": "/i"}, "wc -l < /i > ${OUT:-{x}}"),
        ("awk '{{s += $1}} END {{print s}}' {i}", {"i": "/i"}, "awk '{s += $1} END {print s}' /i"),
        ("{ echo a; echo b; } > {out}", {"out": "/o"}, "{ echo a; echo b; } > /o"),
        ("printf '%i\\n' 5 > %o[out]", {"out": "/o"}, "printf '%i\\n' 5 > /o"),
    ],
)
def test_substitution(command, fields, expected):
    assert substitute(command, fields) == expected


def test_parse_says_which_port_direction():
    segments, syntax = parse("cp %i[a] %o[b] %[c]")
    assert syntax == "dropflow"
    assert [s for s in segments if isinstance(s, Placeholder)] == [
        Placeholder("a", "in", "%i[a]"),
        Placeholder("b", "out", "%o[b]"),
        Placeholder("c", None, "%[c]"),
    ]


def test_shell_braces_run_as_written(node, tmp_path):
    """
    Commands that str.format refused now run: awk's braces, a brace group and ${VAR} next to placeholders
    of either syntax.
    """
    drops = [
        ShellSpec(id="gen", command="seq 1 10 > %o[out]", outputs={"out": "numbers"}),
        FileSpec(id="numbers"),
        ShellSpec(
            id="sum",
            command="{ awk '{s += $1} END {print s}' %i[nums]; echo ${DROPFLOW_DROP_ID}; }",
            inputs={"nums": "numbers"},
            outputs={"stdout": "total"},
        ),
        MemorySpec(id="total", codec="utf-8", persist=True),
        ShellSpec(
            id="legacy",
            command="wc -l < {n} | tr -d ' '",
            inputs={"n": "numbers"},
            outputs={"stdout": "lines"},
        ),
        MemorySpec(id="lines", codec="utf-8", persist=True),
    ]
    session = run(node, drops)
    assert session.state == "FINISHED", session.summary()
    assert session.value("total") == "55\nsum\n"
    assert session.value("lines") == "10\n"


@pytest.mark.parametrize(
    "command, message",
    [
        ("cat %i[numz]", "placeholder %i[numz] names no port of this app; did you mean 'nums'?"),
        ("cat %o[nums]", "'nums' is an input port; write %i[nums]"),
        ("cat {numz}", "for literal braces write {{numz}}, or use %i[port] / %o[port] placeholders"),
    ],
)
def test_bad_placeholders_are_refused_before_running(node, command, message):
    drops = [
        ShellSpec(id="gen", command="seq 3 > %o[out]", outputs={"out": "f"}),
        FileSpec(id="f"),
        ShellSpec(id="s", command=command, inputs={"nums": "f"}),
    ]
    session = node.create_session("bad")
    session.add(drops)
    with pytest.raises(GraphError) as err:
        session.deploy()
    assert message in str(err.value)
