"""DALiuGE physical graphs are read and run as DALiuGE reads and runs them (the DALiuGE format only).

Each test is a small physical graph in DALiuGE's own shape -- the drops a ``dlg unroll`` + ``dlg map``
would write -- read by dropflow's importer and, where what matters is the run, run in an engine node.
"""

from __future__ import annotations

import json
import os
import pickle
from typing import Any

import pytest

from dropflow.drops.apps.base import AppError
from dropflow.drops.apps.daliuge import PickOneSpec
from dropflow.drops.apps.dlgpyfunc import DlgPythonSpec, resolve
from dropflow.drops.errors import GraphError
from dropflow.drops.spec import AppSpec, DropSpec, MemorySpec
from dropflow.engine import Node
from dropflow.loading import decode_graph_bytes

from conftest import run


def read(drops: list[dict[str, Any]]) -> dict[str, DropSpec]:
    """The specs of a DALiuGE physical graph, by id."""
    return {s.id: s for s in decode_graph_bytes(json.dumps(drops).encode(), "pg")}


def app(oid: str, dropclass: str, inputs: list[Any], outputs: list[Any], **kw: Any) -> dict[str, Any]:
    return {"oid": oid, "categoryType": "Application", "dropclass": dropclass, "inputs": inputs,
            "outputs": outputs, **kw}  # fmt: skip


def data(oid: str, category: str = "Memory", **kw: Any) -> dict[str, Any]:
    return {"oid": oid, "categoryType": "Data", "category": category, **kw}


def arg(value: Any, usage: str = "NoPort", encoding: str = "pickle", kind: str = "Object") -> dict[str, Any]:
    return {"value": value, "usage": usage, "encoding": encoding, "type": kind, "positional": False}


def test_a_port_used_both_ways_gets_an_output_name_of_its_own() -> None:
    """
    pick (PickOne) reads port rest_array and writes rest_array (DALiuGE's InputOutput usage), and value:

        seq --rest_array--> pick --rest_array--> rest
                                 --value-------> first
    """
    specs = read(
        [
            data("seq", pydata="[1, 2, 3]", applicationArgs={"pydata": arg("[1, 2, 3]", kind="Json")}),
            app(
                "pick",
                "dlg.apps.simple.PickOne",
                [{"seq": "rest_array"}],
                [{"rest": "rest_array"}, {"first": "value"}],
            ),
            data("rest", name="rest_array"),
            data("first", name="value"),
        ]
    )
    pick = specs["pick"]
    assert isinstance(pick, PickOneSpec)
    assert pick.inputs == {"rest_array": "seq"}
    assert pick.outputs == {"rest_array_out": "rest", "value": "first"}
    assert pick.rest_ports == ["rest_array_out"]
    seq = specs["seq"]
    assert isinstance(seq, MemorySpec) and seq.data == [1, 2, 3]


def test_pick_one_writes_the_rest_to_the_drops_named_rest_array(node: Node) -> None:
    """
    DALiuGE's PickOne tells its outputs apart by the name of their drops, not of their ports:

        seq [10, 20, 30] --> pick --rest_arraycopy--> rest (named rest_array): [20, 30]
                                  --data------------> first (named File): 10
    """
    specs = read(
        [
            data("seq", pydata="[10, 20, 30]", applicationArgs={"pydata": arg("[10, 20, 30]", kind="Json")}),
            app(
                "pick",
                "dlg.apps.simple.PickOne",
                [{"seq": "rest_array"}],
                [{"first": "data"}, {"rest": "rest_arraycopy"}],
            ),
            data("rest", name="rest_array", persist=True),
            data("first", name="File", persist=True),
        ]
    )
    pick = specs["pick"]
    assert isinstance(pick, PickOneSpec) and pick.rest_ports == ["rest_arraycopy"]
    session = run(node, list(specs.values()))
    assert session.state == "FINISHED", session.failures()
    assert list(session.value("rest")) == [20, 30]
    assert session.value("first") == 10


def test_apps_linked_directly_keep_the_port_the_graph_names() -> None:
    """
    A SimpleBranch whose two outputs are apps (DALiuGE links them directly): its ports Y and N are its
    branches, taken and not taken.

        start --> branch --Y--> yes
                         --N--> no
    """
    specs = read(
        [
            data("start"),
            app("branch", "dlg.apps.simple.SimpleBranch", [{"start": "x"}], [{"yes": "Y"}, {"no": "N"}]),
            app("yes", "dlg.apps.simple.NullBarrierApp", [], []),
            app("no", "dlg.apps.simple.NullBarrierApp", [], []),
        ]
    )
    branch = specs["branch"]
    assert isinstance(branch, AppSpec)
    assert branch.outputs == {"true": "branch-yes", "false": "branch-no"}


def test_memory_drops_hold_their_pydata_as_its_type_says() -> None:
    def initial(value: Any, kind: str) -> Any:
        drop = data("d", pydata=value, applicationArgs={"pydata": arg(value, kind=kind)})
        spec = read([drop])["d"]
        assert isinstance(spec, MemorySpec)
        return spec.data

    assert initial(2048, "Integer") == 2048
    assert initial("2048", "Integer") == 2048
    assert initial("1.5", "Float") == 1.5
    assert initial('{"a": [1]}', "Json") == {"a": [1]}
    assert initial("hello", "String") == "hello"
    assert initial("None", "String") is None
    assert initial("gASVBQAAAAAAAABLAi4=", "Object") is None  # DALiuGE's base64 pickles are not run here


def test_a_shell_placeholder_of_a_value_port_is_the_value(node: Node, tmp_path: Any) -> None:
    """
    DALiuGE fills a BashShellApp's {port} with the drop's value when the port's encoding is a value's
    (pickle), and with its path when it is ``path``:

        count (memory, 3) --count (pickle)--> dd --of (path)--> out (file)
        /dev/zero (file)  --if (path)------->
    """
    out = tmp_path / "out.bin"
    node.allowed_paths = ("/dev", str(tmp_path))
    shell = "dlg.apps.bash_shell_app.BashShellApp"
    drops = [
        data("count", pydata=3, applicationArgs={"pydata": arg(3, "OutputPort", kind="Integer")}),
        data("zero", "File", filepath="/dev/zero"),
        app(
            "dd",
            shell,
            [{"zero": "if"}, {"count": "count"}],
            [{"out": "of"}],
            command="dd if={if} of={of} bs=7 count={count}",
            applicationArgs={
                "if": arg("", "InputPort", "path"),
                "count": arg(None, "InputPort", "pickle", "Integer"),
                "of": arg("", "OutputPort", "path"),
            },
        ),
        data("out", "File", filepath=str(out)),
    ]
    specs = list(read(drops).values())
    session = run(node, specs)
    assert session.state == "FINISHED", session.failures()
    assert out.read_bytes() == bytes(21)


def test_a_device_is_a_file_that_exists(node: Node, tmp_path: Any) -> None:
    """A root file drop that is a character device (/dev/null) is there to be read, not missing."""
    out = tmp_path / "copy"
    node.allowed_paths = ("/dev", str(tmp_path))
    shell = "dlg.apps.bash_shell_app.BashShellApp"
    drops = [
        data("null", "File", filepath="/dev/null"),
        app("cp", shell, [{"null": "src"}], [{"copy": "dst"}], command="cp %i[src] %o[dst]"),
        data("copy", "File", filepath=str(out)),
    ]
    session = run(node, list(read(drops).values()))
    assert session.state == "FINISHED", session.failures()
    assert os.path.getsize(out) == 0


PYFUNC = "dlg.apps.pyfunc.PyFuncApp"


def test_a_pyfunc_app_fills_missing_arguments_with_none(node: Node) -> None:
    """
    string2json named with no argument at all: DALiuGE passes None for ``string`` (and takes the graph's
    ``pickle_flag`` only when it is not empty), so the function runs and gives "".

        parse (string2json) --output--> value
    """
    drops = [
        app(
            "parse",
            PYFUNC,
            [],
            [{"value": "output"}],
            func_name="dlg.apps.simple_functions.string2json",
            pickle_flag="",
        ),
        data("value", persist=True),
    ]
    session = run(node, list(read(drops).values()))
    assert session.state == "FINISHED", session.failures()
    assert session.value("value") == ""


def test_a_pyfunc_result_goes_whole_to_every_output_as_its_port_encodes_it(node: Node, tmp_path: Any) -> None:
    """
    createMultiOut(v1, v2) returns a tuple; DALiuGE writes all of it to each output, encoded as the port
    says: ``npy`` (an array), ``utf-8`` (its repr), ``pickle``. Its inputs are read as their ports say too,
    and an input port that names no parameter of the function (``ignored``) is left out.

        a (v1=2, v2=8) --out1 (npy)----> m1 --v1--> b --out1 (utf-8)--> text (file)
                       --out2 (pickle)-> m2 --v2-->   --out2 (pickle)-> pickled (file)
        junk ---------------------------------ignored->
    """
    multi = "dlg.apps.simple_functions.createMultiOut"
    text, pickled = tmp_path / "text", tmp_path / "pickled"
    node.allowed_paths = (str(tmp_path),)
    drops = [
        app(
            "a",
            PYFUNC,
            [],
            [{"m1": "out1"}, {"m2": "out2"}],
            func_name=multi,
            applicationArgs={
                "v1": arg(2, kind="Integer"),
                "v2": arg(8, kind="Integer"),
                "out1": arg("", "OutputPort", "npy"),
                "out2": arg("", "OutputPort", "pickle"),
            },
        ),
        data("m1"),
        data("m2"),
        data("junk", pydata=7, applicationArgs={"pydata": arg(7, kind="Integer")}),
        app(
            "b",
            PYFUNC,
            [{"m1": "v1"}, {"m2": "v2"}, {"junk": "ignored"}],
            [{"text": "out1"}, {"pickled": "out2"}],
            func_name=multi,
            applicationArgs={
                "v1": arg("", "InputPort", "npy"),
                "v2": arg("", "InputPort", "pickle"),
                "out1": arg("", "OutputPort", "utf-8"),
                "out2": arg("", "OutputPort", "pickle"),
            },
        ),
        data("text", "File", filepath=str(text)),
        data("pickled", "File", filepath=str(pickled)),
    ]
    session = run(node, list(read(drops).values()))
    assert session.state == "FINISHED", session.failures()
    assert text.read_text() == "(array([2, 8]), (2, 8))"
    v1, v2 = pickle.loads(pickled.read_bytes())
    assert list(v1) == [2, 8] and v2 == (2, 8)


def test_pyfunc_names_resolve_as_in_daliuge() -> None:
    assert resolve("object.__init__") is object
    assert resolve("compile") is compile
    assert resolve("os.path.abspath") is os.path.abspath
    assert resolve("dropflow.drops.apps.dlgfunctions.getMax")(3, 9) == 9
    with pytest.raises(AppError, match="not a builtin"):
        resolve("nosuchbuiltin")
    with pytest.raises(AppError, match="has no attribute"):
        resolve("os.path.nosuchfunction")


def test_a_pyfunc_app_naming_no_function_is_refused(node: Node) -> None:
    drops = [app("f", PYFUNC, [], [{"out": "o"}], func_name="os.path.nosuchfunction"), data("out")]
    session = node.create_session("s")
    try:
        session.add(list(read(drops).values()))
        with pytest.raises(GraphError, match="has no attribute 'nosuchfunction'"):
            session.deploy()
    finally:
        node.delete_session(session.id)


def test_pyfunc_drops_of_one_kind_keep_their_own_values() -> None:
    """Drops of one component are mapped once and share the result, but each keeps the values its function
    may take by name: its own, whether flat keys or application arguments, and whatever names it has."""
    getmax = "dlg.apps.simple_functions.getMax"
    flat = [app(f"f{i}", PYFUNC, [], [], func_name=getmax, v1=i, iid=str(i)) for i in range(3)]
    flat.append(app("f3", PYFUNC, [], [], func_name=getmax, v1=3, v2=9, iid="3"))
    args = [
        app(f"a{i}", PYFUNC, [], [], func_name=getmax, applicationArgs={"v1": arg(i + 1, kind="Integer")})
        for i in range(3)
    ]
    specs = read(flat + args)
    got = {}
    for oid, spec in specs.items():
        assert isinstance(spec, DlgPythonSpec)
        got[oid] = spec.params
    assert got == {
        "f0": {},
        "f1": {"v1": 1},
        "f2": {"v1": 2},
        "f3": {"v1": 3, "v2": 9},
        "a0": {"v1": 1},
        "a1": {"v1": 2},
        "a2": {"v1": 3},
    }
