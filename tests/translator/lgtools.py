"""Helpers for translator tests: build native logical graphs, unroll them, compare results by structure."""

from __future__ import annotations

import json
import os
from typing import Any

import daliuge_tests

from dropflow.drops.spec import AppSpec, DropSpec, port_drops
from dropflow.translator import read, translate

TESTS_DIR = os.path.join(os.path.dirname(daliuge_tests.__file__), "translator")
LG_DIR = os.path.join(TESTS_DIR, "logical_graphs")
SPEC_DIR = os.path.join(TESTS_DIR, "drop_spec")
EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def doc(nodes: list[dict[str, Any]], links: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"format": "dropflow/logical-graph", "version": 1, "nodes": nodes, "links": links, **extra}


def app(
    node_id: str,
    inputs: list[str] = (),
    outputs: list[str] = (),
    parent: str | None = None,  # type: ignore[assignment]
    **fields: Any,
) -> dict[str, Any]:
    n: dict[str, Any] = {
        "id": node_id,
        "app": "noop",
        "inputs": list(inputs),
        "outputs": list(outputs),
        **fields,
    }
    if parent:
        n["parent"] = parent
    return n


def data(node_id: str, parent: str | None = None, kind: str = "memory") -> dict[str, Any]:
    n: dict[str, Any] = {"id": node_id, "data": kind}
    if parent:
        n["parent"] = parent
    return n


def construct(node_id: str, kind: str, parent: str | None = None, **size: Any) -> dict[str, Any]:
    n: dict[str, Any] = {"id": node_id, "construct": kind, **size}
    if parent:
        n["parent"] = parent
    return n


def out(app_id: str, port: str, data_id: str, **extra: Any) -> dict[str, Any]:
    return {"from": app_id, "from_port": port, "to": data_id, **extra}


def into(data_id: str, app_id: str, port: str, **extra: Any) -> dict[str, Any]:
    return {"from": data_id, "to": app_id, "to_port": port, **extra}


def specs_of(d: dict[str, Any], params: dict[str, str] | None = None) -> list[DropSpec]:
    return translate(read(json.dumps(d).encode(), params or {})).specs


def edges(specs: list[DropSpec]) -> set[tuple[str, str, str, str]]:
    """(app, direction, port, data) for every port link."""
    out_: set[tuple[str, str, str, str]] = set()
    for s in specs:
        if isinstance(s, AppSpec):
            for port, v in s.inputs.items():
                out_ |= {(s.id, "in", port, d) for d in port_drops(v)}
            for port, v in s.outputs.items():
                out_ |= {(s.id, "out", port, d) for d in port_drops(v)}
    return out_


def structure(specs: list[DropSpec]) -> tuple[set[str], set[tuple[str, str, str, str]]]:
    return {s.id for s in specs}, edges(specs)


def renamed(d: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """The same graph with node ids renamed and the node list reversed (ids and order must not matter)."""
    nodes = []
    for n in reversed(d["nodes"]):
        n = dict(n)
        n["id"] = mapping[n["id"]]
        if "parent" in n:
            n["parent"] = mapping[n["parent"]]
        nodes.append(n)
    links = [
        dict(link, **{"from": mapping[link["from"]], "to": mapping[link["to"]]})
        for link in reversed(d["links"])
    ]
    return {**d, "nodes": nodes, "links": links}


def unrename(
    structure_: tuple[set[str], set[tuple[str, str, str, str]]], mapping: dict[str, str]
) -> tuple[set[str], set[tuple[str, str, str, str]]]:
    back = {v: k for k, v in mapping.items()}

    def orig(drop_id: str) -> str:
        base, sep, index = drop_id.partition("#")
        return back[base] + sep + index

    ids, es = structure_
    return {orig(i) for i in ids}, {(orig(a), d, p, orig(x)) for a, d, p, x in es}


def assert_id_independent(d: dict[str, Any]) -> tuple[set[str], set[tuple[str, str, str, str]]]:
    """Unroll ``d`` and a renamed, reordered copy; assert both give the same drops and links."""
    first = structure(specs_of(d))
    ids = [n["id"] for n in d["nodes"]]
    # Reverse alphabetical order of the new ids against the old, so any id-order dependence shows.
    mapping = {old: f"n{len(ids) - i:03d}" for i, old in enumerate(sorted(ids))}
    second = unrename(structure(specs_of(renamed(d, mapping))), mapping)
    assert first == second
    return first
