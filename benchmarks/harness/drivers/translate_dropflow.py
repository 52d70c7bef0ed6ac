"""dropflow's translator, through its Python API (``dropflow.translator``), on one EAGLE graph.

Times, in one process: unroll (``read``: parse and unroll) and partition + map (``translate`` with METIS into
P parts, mapped onto one island and P nodes, which also makes the final drop specs).
Usage: ``python translate_dropflow.py GRAPH PARTS``; prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import time

from dropflow.translator import read, translate


def main(argv: list[str]) -> int:
    path, parts = argv[0], int(argv[1])
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        r = read(f.read())
    t1 = time.perf_counter()
    nodes = ["127.0.0.1"] + [f"10.0.0.{i}" for i in range(parts)]
    result = translate(r, algorithm="metis", parts=parts, nodes=nodes, islands=1)
    t2 = time.perf_counter()
    out = {
        "unroll_s": t1 - t0,
        "partition_s": t2 - t1,
        "map_s": 0.0,
        "total_s": t2 - t0,
        "drops": len(result.specs),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
