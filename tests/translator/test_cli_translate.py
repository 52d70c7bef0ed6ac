"""``dropflow translate`` and its steps from the command line: outputs, placement, and clear refusals."""

from __future__ import annotations

import os
from typing import Any

import pytest
from lgtools import EXAMPLES, LG_DIR

from dropflow.cli import main
from dropflow.drops.graph import decode_physical

EXAMPLE = os.path.join(EXAMPLES, "scatter_gather.lg.json")


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_translate_with_nodes_and_islands(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pg.json"
    code = main(
        [
            "translate",
            EXAMPLE,
            "-o",
            str(out),
            "--nodes",
            "dim0,n1",
            "--nodes",
            "n2",
            "--islands",
            "1",
            "--param",
            "copies=8",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "logical graph" in err and "18 drops" in err
    drops = decode_physical(out.read_bytes()).drops
    assert {d.node for d in drops} <= {"n1", "n2"} and {d.island for d in drops} == {"dim0"}


def test_steps_unroll_partition_map(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """unroll -> partition (node "#p") -> map onto real nodes gives every drop a real node."""
    pgt, parted, mapped = (str(tmp_path / n) for n in ("pgt.json", "parted.json", "mapped.json"))
    assert main(["unroll", EXAMPLE, "-o", pgt]) == 0
    assert all(d.node is None for d in decode_physical(read_bytes(pgt)).drops)
    assert main(["partition", pgt, "-o", parted, "--algorithm", "metis", "--parts", "2"]) == 0
    assert {d.node for d in decode_physical(read_bytes(parted)).drops} <= {"#0", "#1"}
    assert main(["map", parted, "-o", mapped, "--nodes", "a,b"]) == 0
    assert {d.node for d in decode_physical(read_bytes(mapped)).drops} <= {"a", "b"}
    capsys.readouterr()


def test_translate_to_standard_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["translate", os.path.join(LG_DIR, "HelloWorld_simple.graph")]) == 0
    assert '"format":"dropflow/physical-graph"' in capsys.readouterr().out


def test_unsupported_graph_translates_and_is_refused_at_run(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A component dropflow cannot run translates (structure only) and is refused, in one message, at run."""
    graph = os.path.join(LG_DIR, "Plasma_test.graph")
    assert main(["translate", graph, "-o", os.devnull]) == 0
    assert main(["validate", graph]) == 0
    assert "cannot run here (refused at deploy)" in capsys.readouterr().out
    code = main(["run", graph, "--workspace", str(tmp_path / "ws")])
    err = capsys.readouterr().err
    assert code == 2
    assert "invalid graph, nothing was run" in err
    assert (
        "node 'Plasma' (Plasma, id ba7d20ac-9ae2-4ba2-ad13-fb0512dd928c), field 'category': unsupported"
        in err
    )
    assert "Traceback" not in err


def test_bad_param_and_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["translate", EXAMPLE, "--param", "copies"]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err
    assert main(["translate", EXAMPLE, "--param", "copies=many"]) == 2
    assert "'many' is not an integer" in capsys.readouterr().err
    assert main(["partition", EXAMPLE]) == 2
    assert "metis needs --parts N" in capsys.readouterr().err
    assert main(["map", EXAMPLE, "--nodes", "a"]) == 2
    assert "map takes the output of dropflow partition" in capsys.readouterr().err


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["translate", "/nonexistent/graph.json"]) == 2
    assert "cannot read '/nonexistent/graph.json'" in capsys.readouterr().err


def test_min_num_parts_from_the_cli(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pg.json"
    assert main(["translate", EXAMPLE, "-o", str(out), "--algorithm", "min_num_parts", "--max-dop", "2"]) == 0
    assert "partitions (min_num_parts)" in capsys.readouterr().err
