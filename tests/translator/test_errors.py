"""Bad logical graphs are refused before anything is unrolled, with a message naming the node and field."""

from __future__ import annotations

import json
import tempfile
from typing import Any

import pytest
from lgtools import app, construct, data, doc, into, out

from dropflow.drops.errors import GraphError
from dropflow.engine.graph import build
from dropflow.engine.workspace import Workspace
from dropflow.translator import load_logical


def refuse_at_deploy(d: dict[str, Any]) -> str:
    """The graph translates (structure only); building it for a session refuses it: the message."""
    specs, _format = load_logical(json.dumps(d).encode(), "g.json", {})
    with pytest.raises(GraphError) as info:
        build(specs, Workspace(tempfile.gettempdir(), "refused", []), "g.json")
    return str(info.value)


def refuse(d: dict[str, Any] | bytes, params: dict[str, str] | None = None) -> str:
    raw = d if isinstance(d, bytes) else json.dumps(d).encode()
    with pytest.raises(GraphError) as info:
        load_logical(raw, "g.json", params or {})
    return str(info.value)


def test_cycle_not_declared_as_a_loop() -> None:
    """a -> x -> b -> y -> a, with no loop construct: the message lists the cycle and says how to loop."""
    d = doc(
        [app("a", ["i"], ["o"]), data("x"), app("b", ["i"], ["o"]), data("y")],
        [out("a", "o", "x"), into("x", "b", "i"), out("b", "o", "y"), into("y", "a", "i")],
    )
    msg = refuse(d)
    assert "cycle that is not declared as a loop" in msg
    assert "'a'" in msg and "'x'" in msg and "'b'" in msg and "'y'" in msg
    assert msg.startswith("g.json: node ")


def test_dangling_link() -> None:
    d = doc([app("a", outputs=["o"])], [out("a", "o", "nowhere")])
    assert (
        "link 'a' -> 'nowhere' (links[0]), field 'to': dangling link: there is no node 'nowhere'" in refuse(d)
    )


def test_unknown_kind_in_native_graph() -> None:
    d = doc([{"id": "a", "app": "pythn", "func": "m:f"}], [])
    assert "node 'a' (pythn), field 'app': unknown app kind 'pythn'; did you mean 'python'?" in refuse(d)


def test_unknown_category_in_eagle_graph() -> None:
    """DALiuGE translates a component of any category; dropflow too, and refuses it at deploy."""
    eagle = {
        "modelData": {"schemaVersion": "OJS"},
        "linkDataArray": [],
        "nodeDataArray": [
            {"id": "n1", "name": "Thing", "category": "Teleporter", "categoryType": "Widget", "fields": []}
        ],
    }
    msg = refuse_at_deploy(eagle)
    assert "node 'Thing' (Teleporter, id n1), field 'category': unknown category 'Teleporter'" in msg


def test_missing_construct_parameter() -> None:
    d = doc(
        [construct("s", "scatter"), app("a", outputs=["o"], parent="s"), data("d", parent="s")],
        [out("a", "o", "d")],
    )
    assert "node 's' (scatter), field 'copies': missing required construct parameter" in refuse(d)


def test_non_integer_construct_parameter() -> None:
    d = doc([construct("s", "scatter", copies="four"), app("a", parent="s")], [])
    assert "node 's' (scatter), field 'copies': must be an integer, not 'four'" in refuse(d)


def test_non_integer_construct_parameter_in_eagle_graph() -> None:
    eagle = {
        "modelData": {"schemaVersion": "OJS"},
        "linkDataArray": [],
        "nodeDataArray": [
            {
                "id": "s1",
                "name": "Split",
                "category": "Scatter",
                "categoryType": "Construct",
                "fields": [{"id": "f1", "name": "num_of_copies", "value": "2.5", "usage": "NoPort"}],
            }
        ],
    }
    assert "node 'Split' (Scatter, id s1), field 'num_of_copies': must be an integer, not '2.5'" in refuse(
        eagle
    )


def test_port_used_with_the_wrong_direction() -> None:
    """'i' is an input port of b; a link going out of it is refused."""
    d = doc([app("b", ["i"], ["o"]), data("x")], [out("b", "i", "x")])
    msg = refuse(d)
    assert "field 'from_port': port 'i' of app 'b' is an input port; a link cannot go out of it" in msg


def test_gather_wider_than_its_scatter() -> None:
    """A gather of 5 inputs per instance fed by a scatter of 3 copies."""
    d = doc(
        [
            construct("s", "scatter", copies=3),
            app("a", outputs=["o"], parent="s"),
            data("d", parent="s"),
            construct("g", "gather", width=5),
            app("j", ["items"], parent="g"),
        ],
        [out("a", "o", "d"), into("d", "j", "items")],
    )
    msg = refuse(d)
    assert "node 'g' (gather), field 'width'" in msg and "wider than its scatter allows" in msg


def test_empty_graph() -> None:
    assert "the graph is empty" in refuse(doc([], []))


def test_empty_eagle_graph() -> None:
    assert "the graph is empty" in refuse(
        {"modelData": {"schemaVersion": "OJS"}, "nodeDataArray": [], "linkDataArray": []}
    )


def test_unknown_parameter_override() -> None:
    d = doc([app("a")], [], params={"n": 1})
    assert "--param m: the graph has no parameter 'm' (its parameters: n)" in refuse(d, {"m": "2"})


def test_malformed_json() -> None:
    assert "malformed JSON" in refuse(b'{"format": ')


def test_unsupported_dalGuge_category_names_node_and_what_is_missing() -> None:
    """Translated for its structure; deploying it says what is missing, naming the node."""
    eagle = {
        "modelData": {"schemaVersion": "OJS"},
        "linkDataArray": [],
        "nodeDataArray": [
            {
                "id": "d1",
                "name": "Native",
                "category": "DynlibApp",
                "categoryType": "Application",
                "fields": [{"id": "f", "name": "dropclass", "value": "dlg.apps.dynlib.DynlibApp"}],
            }
        ],
    }
    msg = refuse_at_deploy(eagle)
    where = "node 'Native' (DynlibApp, id d1), field 'category'"
    assert f"{where}: unsupported: dropflow cannot run dynamic-library apps" in msg


def test_loop_carried_link_outside_a_loop() -> None:
    d = doc([app("a", ["i"], ["o"]), data("x")], [out("a", "o", "x"), into("x", "a", "i", loop=True)])
    assert "loop-carried link joins two nodes directly inside the same loop" in refuse(d)
