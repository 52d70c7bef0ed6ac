"""Scaled EAGLE scatter graphs for the translator rows, made from ``examples/eagle_scatter_gather.graph``.

The example (``make -> array -> Scatter{part -> work -> done}``, then a Gather) loses its Gather, and the
scatter's ``num_of_copies`` becomes a literal, so both translators unroll exactly the same logical graph:
about three drops per copy. (DALiuGE's unrolling of one gather of N inputs is quadratic -- 549 s at 300k
drops -- which would measure that one known defect rather than the translator.) Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

__all__ = ["EXAMPLE", "copies_for", "scatter_graph", "write"]

EXAMPLE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "examples",
    "eagle_scatter_gather.graph",
)
GATHER_NODES = {"join", "result"}
DROPS_PER_COPY = 3


def copies_for(drops: int) -> int:
    """Scatter copies for about ``drops`` drops."""
    return max(1, drops // DROPS_PER_COPY)


def scatter_graph(copies: int, example: str = EXAMPLE) -> dict[str, Any]:
    with open(example) as f:
        lg: dict[str, Any] = json.load(f)
    lg["nodeDataArray"] = [n for n in lg["nodeDataArray"] if n["id"] not in GATHER_NODES]
    lg["linkDataArray"] = [
        link
        for link in lg["linkDataArray"]
        if link["from"] not in GATHER_NODES and link["to"] not in GATHER_NODES
    ]
    for node in lg["nodeDataArray"]:
        for fld in node.get("fields", []):
            if fld["name"] == "num_of_copies":
                fld["value"] = copies
            if fld["name"] == "copies":
                fld["value"] = copies
    lg["modelData"]["filePath"] = f"scatter-{copies}.graph"
    return lg


def write(drops: int, path: str) -> int:
    """Write the graph of about ``drops`` drops to ``path``; return its number of copies."""
    copies = copies_for(drops)
    with open(path, "w") as f:
        json.dump(scatter_graph(copies), f)
    return copies


if __name__ == "__main__":
    print(write(int(sys.argv[1]), sys.argv[2]))
