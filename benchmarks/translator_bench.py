"""Translator benchmarks; prints one JSON object.

- ``nested_scatter``: a logical graph of nested scatters that unrolls to ~1,000,000 drops, unrolled,
  partitioned by METIS into 64 parts, mapped onto 64 nodes in 4 islands, and made into drop specs.
- ``gather``: one gather of N inputs for N = 100k, 200k, 300k (unrolling must be linear in N).
- ``partition_quality``: random layered DAGs; data volume cut by METIS versus round-robin placement, and
  METIS' load imbalance (heaviest partition over the mean, minus one).

Usage: ``python benchmarks/translator_bench.py [--drops-scale 1.0] [--seed 0]``. Run it alone: the numbers
are wall-clock times on this machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from typing import Any

import numpy as np
import psutil

from dropflow.translator import read, translate
from dropflow.translator.partition import Weighted, cut_volume, partition


def _doc(nodes: list[dict[str, Any]], links: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {"format": "dropflow/logical-graph", "version": 1, "nodes": nodes, "links": links}
    ).encode()


def nested_scatter(outer: int, inner: int) -> dict[str, Any]:
    """
    +-- outer ------------------------------------------+
    |  split --> part    +-- inner ------------------+  |
    |                \\-> |  work --> result          |  |
    |                    +---------------------------+  |
    +---------------------------------------------------+
    """
    data = _doc(
        [
            {"id": "outer", "construct": "scatter", "copies": outer},
            {"id": "split", "app": "noop", "parent": "outer", "outputs": ["o"], "time": 1},
            {"id": "part", "data": "memory", "parent": "outer", "volume": 10},
            {"id": "inner", "construct": "scatter", "copies": inner, "parent": "outer"},
            {"id": "work", "app": "noop", "parent": "inner", "inputs": ["i"], "outputs": ["o"], "time": 5},
            {"id": "result", "data": "memory", "parent": "inner", "volume": 1},
        ],
        [
            {"from": "split", "from_port": "o", "to": "part"},
            {"from": "part", "to": "work", "to_port": "i"},
            {"from": "work", "from_port": "o", "to": "result"},
        ],
    )
    proc = psutil.Process()
    gc.collect()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    r = read(data)
    t1 = time.perf_counter()
    nodes = [f"node{i:02d}" for i in range(68)]
    result = translate(r, algorithm="metis", parts=64, nodes=nodes, islands=4)
    t2 = time.perf_counter()
    rss1 = proc.memory_info().rss
    p = result.partitioning
    assert p is not None
    loads = p.loads
    return {
        "drops": len(result.specs),
        "unroll_s": round(t1 - t0, 2),
        "partition_map_specs_s": round(t2 - t1, 2),
        "total_s": round(t2 - t0, 2),
        "parts": p.count,
        "imbalance": round(float(loads.max() / loads.mean() - 1), 4),
        "rss_bytes_per_drop": round((rss1 - rss0) / len(result.specs)),
    }


def gather(n: int) -> float:
    data = _doc(
        [
            {"id": "s", "construct": "scatter", "copies": n},
            {"id": "a", "app": "noop", "parent": "s", "outputs": ["o"]},
            {"id": "d", "data": "memory", "parent": "s"},
            {"id": "g", "construct": "gather", "width": n},
            {"id": "join", "app": "noop", "parent": "g", "inputs": ["items"]},
        ],
        [{"from": "a", "from_port": "o", "to": "d"}, {"from": "d", "to": "join", "to_port": "items"}],
    )
    t0 = time.perf_counter()
    specs = translate(read(data)).specs
    elapsed = time.perf_counter() - t0
    assert len(specs) == 2 * n + 1
    return round(elapsed, 3)


def layered_dag(layers: int, width: int, rng: random.Random) -> Weighted:
    """Apps in layers; each writes one data drop read by 1-3 apps of the next layer."""
    src: list[int] = []
    dst: list[int] = []
    is_app: list[bool] = []
    time_: list[float] = []
    volume: list[float] = []
    prev_data: list[int] = []
    for _layer in range(layers):
        data_now = []
        for _ in range(width):
            a = len(is_app)
            is_app.append(True)
            time_.append(rng.uniform(1, 10))
            volume.append(0)
            for d in rng.sample(prev_data, min(len(prev_data), rng.randint(1, 3))) if prev_data else []:
                src.append(d)
                dst.append(a)
            d = len(is_app)
            is_app.append(False)
            time_.append(0)
            volume.append(rng.uniform(1, 100))
            src.append(a)
            dst.append(d)
            data_now.append(d)
        prev_data = data_now
    return Weighted(
        len(is_app), np.array(src), np.array(dst), np.array(is_app), np.array(time_), np.array(volume)
    )


def round_robin(g: Weighted, parts: int) -> np.ndarray:
    out = np.zeros(g.n, dtype=np.int64)
    apps = np.flatnonzero(g.is_app)
    out[apps] = np.arange(len(apps)) % parts
    # Data drops with their producer, as any placement would do.
    producer = g.src[g.is_app[g.src]]
    out[g.dst[g.is_app[g.src]]] = out[producer]
    return out


def partition_quality(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    rows = []
    for layers, width, parts in ((20, 100, 8), (50, 200, 16), (100, 300, 32)):
        g = layered_dag(layers, width, rng)
        p = partition(g, "metis", parts, seed=seed, imbalance=0.05)
        rr = cut_volume(g, round_robin(g, parts))
        rows.append(
            {
                "apps": int(g.is_app.sum()),
                "parts": parts,
                "metis_cut": round(p.cut),
                "round_robin_cut": round(rr),
                "cut_ratio_rr_over_metis": round(rr / max(p.cut, 1e-9), 1),
                "metis_imbalance": round(float(p.loads.max() / p.loads.mean() - 1), 4),
            }
        )
    return {"graphs": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drops-scale", type=float, default=1.0, help="scale the 1M-drop graph (e.g. 0.1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    inner = max(1, int(500 * args.drops_scale))
    out = {
        "nested_scatter": nested_scatter(1000, inner),
        "gather_seconds": {str(n): gather(n) for n in (100_000, 200_000, 300_000)},
        "partition_quality": partition_quality(args.seed),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
