"""DALiuGE 6.6's translator, through its Python API (``dlg.dropmake.pg_generator``), on one EAGLE graph.

Times, in one process: unroll (JSON parse + ``unroll``), partition (``partition(pgt, "metis", P)``, which
also makes the partitioned physical graph) and map (``resource_map`` onto one island and P nodes).
Usage: ``python translate_daliuge.py GRAPH PARTS``; prints one JSON object.
"""

from __future__ import annotations

import json
import logging
import sys
import time


def main(argv: list[str]) -> int:
    from dlg.dropmake.pg_generator import partition, resource_map, unroll

    logging.disable(logging.INFO)
    path, parts = argv[0], int(argv[1])
    t0 = time.perf_counter()
    with open(path) as f:
        lg = json.load(f)
    pgt = unroll(lg)
    t1 = time.perf_counter()
    pg = partition(pgt, "metis", num_partitions=parts, num_islands=1)
    t2 = time.perf_counter()
    nodes = ["127.0.0.1"] + [f"10.0.0.{i}" for i in range(parts)]  # names only: nothing is contacted
    mapped = resource_map(pg, nodes, num_islands=1)
    t3 = time.perf_counter()
    drops = sum(1 for d in mapped if isinstance(d, dict) and "oid" in d)
    out = {"unroll_s": t1 - t0, "partition_s": t2 - t1, "map_s": t3 - t2, "total_s": t3 - t0, "drops": drops}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
