"""Generators of large physical graphs of no-op apps between memory drops (chain, fan-out/fan-in).

Usable as a module (``chain(n)``, ``fan(n)`` return the graph as JSON bytes) and as a script:
``python benchmarks/generate.py chain 1000000 -o chain.json``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

HEADER = {"format": "dropflow/physical-graph", "version": 1}


def chain(n: int) -> bytes:
    """d0 -> a1 -> d1 -> ... : ``n`` drops in all (rounded up to an odd number)."""
    apps = max(1, (n - 1) // 2)
    drops: list[dict[str, Any]] = [{"id": "d0", "kind": "memory"}]
    for i in range(1, apps + 1):
        drops.append(
            {"id": f"a{i}", "kind": "noop", "inputs": {"in": f"d{i - 1}"}, "outputs": {"out": f"d{i}"}}
        )
        drops.append({"id": f"d{i}", "kind": "memory"})
    return msgspec.json.encode({**HEADER, "name": f"chain-{len(drops)}", "drops": drops})


def fan(n: int) -> bytes:
    """root -> w_i -> d_i (i < k) -> gather -> out: one scatter of k no-op apps and one gather of k inputs."""
    k = max(1, (n - 3) // 2)
    drops: list[dict[str, Any]] = [{"id": "root", "kind": "memory"}]
    for i in range(k):
        drops.append({"id": f"w{i}", "kind": "noop", "inputs": {"in": "root"}, "outputs": {"out": f"d{i}"}})
        drops.append({"id": f"d{i}", "kind": "memory"})
    drops.append(
        {
            "id": "gather",
            "kind": "noop",
            "inputs": {"parts": [f"d{i}" for i in range(k)]},
            "outputs": {"out": "out"},
        }
    )
    drops.append({"id": "out", "kind": "memory"})
    return msgspec.json.encode({**HEADER, "name": f"fan-{len(drops)}", "drops": drops})


SHAPES = {"chain": chain, "fan": fan}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shape", choices=sorted(SHAPES))
    p.add_argument("drops", type=int)
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args(argv)
    with open(args.output, "wb") as f:
        f.write(SHAPES[args.shape](args.drops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
