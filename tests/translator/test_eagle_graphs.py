"""DALiuGE's own translator test graphs (PyPI package eagle-test-graphs) through ``dropflow translate``.

Every one translates -- a component dropflow cannot run keeps its place in the physical graph and is refused
at deploy. Where the package holds DALiuGE's translation (``drop_spec/*.spec``), every
logical node unrolls to as many drops as DALiuGE made of it. The same .spec files, being DALiuGE physical
graphs, are read back by the physical-graph importer.
"""

from __future__ import annotations

import collections
import glob
import json
import os
from typing import Any

import pytest
from lgtools import LG_DIR, SPEC_DIR

from dropflow.cli import main
from dropflow.drops.graph import decode_physical

GRAPHS = sorted(glob.glob(os.path.join(LG_DIR, "*.graph")))
NAMES = [os.path.basename(g)[: -len(".graph")] for g in GRAPHS]
#: Logical nodes whose drops DALiuGE counts differently, and why (see docs/daliuge.md).
DIFFERENT = {
    # DALiuGE makes each group-by an app of its own plus a "grp-data" drop, and keeps gathers without
    # an embedded application out of the physical graph; dropflow's group-by and gather instances are the
    # constructs' embedded applications.
    "test_grpby_gather",
}


def translate_cli(path: str, out: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["translate", path, "-o", out])
    return code, capsys.readouterr().err


def logical_ids(path: str) -> set[str]:
    with open(path, "rb") as f:
        graph = json.load(f)
    return {str(n["id"]) for n in graph["nodeDataArray"]}


def drops_per_node(specs: list[Any], ids: set[str]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for s in specs:
        base = s.id.split("#", 1)[0]
        if base in ids:  # null drops put between two linked apps are not logical nodes
            counts[base] += 1
    return counts


def test_package_has_the_graphs() -> None:
    assert len(GRAPHS) >= 20


def test_every_graph_translates(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    refused = [p for p in GRAPHS if translate_cli(p, str(tmp_path / "pg.json"), capsys)[0] != 0]
    assert not refused


@pytest.mark.parametrize("name", NAMES)
def test_graph(name: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Translate one graph; check the drops per logical node against DALiuGE's."""
    path = os.path.join(LG_DIR, f"{name}.graph")
    out = tmp_path / "pg.json"
    code, err = translate_cli(path, str(out), capsys)
    assert code == 0, err
    specs = decode_physical(out.read_bytes()).drops
    assert specs
    expected_path = os.path.join(SPEC_DIR, f"{name}.spec")
    if not os.path.exists(expected_path) or name in DIFFERENT:
        return
    with open(expected_path, "rb") as f:
        expected = collections.Counter(
            d["lg_key"] for d in json.load(f) if isinstance(d, dict) and "oid" in d and d.get("lg_key")
        )
    assert drops_per_node(specs, logical_ids(path)) == expected


@pytest.mark.parametrize(
    "name",
    [
        "HelloWorld_simple",
        "SharedMemoryTest_update",
        "chiles_simple",
        "eagle_gather_update",
        "testLoop",
        "test_ports",
    ],
)
def test_daliuge_physical_graph_import(name: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """DALiuGE's translation, read as a DALiuGE physical graph, keeps every drop and its placement."""
    path = os.path.join(SPEC_DIR, f"{name}.spec")
    out = tmp_path / "pg.json"
    assert main(["translate", path, "-o", str(out), "--algorithm", "none"]) == 0, capsys.readouterr().err
    specs = decode_physical(out.read_bytes()).drops
    with open(path, "rb") as f:
        original = [d for d in json.load(f) if isinstance(d, dict) and "oid" in d]
    assert {s.id for s in specs} == {d["oid"] for d in original}
    assert {s.node for s in specs} == {d["node"] for d in original}
