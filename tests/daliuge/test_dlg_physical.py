"""DALiuGE physical graphs are read and run as DALiuGE reads and runs them (the DALiuGE format only).

Each test is a small physical graph in DALiuGE's own shape -- the drops a ``dlg unroll`` + ``dlg map``
would write -- read by dropflow's importer and, where what matters is the run, run in an engine node.
"""

from __future__ import annotations

import json
import os
from typing import Any

from dropflow.drops.apps.daliuge import PickOneSpec
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
            data("rest"),
            data("first"),
        ]
    )
    pick = specs["pick"]
    assert isinstance(pick, PickOneSpec)
    assert pick.inputs == {"rest_array": "seq"}
    assert pick.outputs == {"rest_array_out": "rest", "value": "first"}
    assert pick.rest_ports == ["rest_array_out"]
    seq = specs["seq"]
    assert isinstance(seq, MemorySpec) and seq.data == [1, 2, 3]


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
