"""A large graph through real daemons: an island manager over three node managers on loopback.

For each shape (chain, fan-out/fan-in of no-op apps), the graph is generated, placed on the three nodes with
METIS (as ``dropflow submit`` does), then driven over REST and timed step by step: append (gzip JSON to the
island, which keeps it until deploy), deploy (split by node, cross-node relations registered, each part
appended, built and checked on its node), and run (roots triggered everywhere to the end). Prints JSON.

    python benchmarks/cluster_scale.py                  # 100,000 drops
    python benchmarks/cluster_scale.py --drops 10000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from dropflow.managers.client import RestClient
from dropflow.managers.split import cross_links
from dropflow.translator import read, translate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dropflow(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dropflow", *args], check=True, capture_output=True)


def measure(client: RestClient, shape: str, drops: int, nodes: list[str]) -> dict[str, Any]:
    data = generate.SHAPES[shape](drops)
    t0 = time.perf_counter()
    specs = translate(read(data), algorithm="metis", nodes=nodes).specs
    t_place = time.perf_counter() - t0
    sid = f"{shape}-{drops}-{os.urandom(2).hex()}"
    client.create_session(sid)
    t0 = time.perf_counter()
    client.append(sid, specs)
    t_append = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.deploy(sid, start=False)
    t_deploy = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.start_session(sid)
    while not (answer := client.wait(sid, 10))["ended"]:
        pass
    t_run = time.perf_counter() - t0
    summary = answer["summary"]
    total = t_append + t_deploy + t_run
    client.delete_session(sid)
    return {
        "shape": shape,
        "drops": len(specs),
        "cross_node_links": cross_links(specs),
        "state": summary["status"],
        "place_s": round(t_place, 3),
        "append_s": round(t_append, 3),
        "deploy_s": round(t_deploy, 3),
        "run_s": round(t_run, 3),
        "append_deploy_run_s": round(total, 3),
        "drops_per_s": round(len(specs) / total),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--drops", type=int, default=100_000)
    p.add_argument("--shapes", nargs="+", default=["chain", "fan"], choices=sorted(generate.SHAPES))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dropflow-cluster-bench-") as tmp:
        port = _free_port()
        state = os.path.join(tmp, "cluster")
        _dropflow(
            "cluster",
            "up",
            "--nodes",
            "3",
            "--dir",
            state,
            "--port",
            str(port),
            "--node-port",
            str(_free_port()),
        )
        try:
            with RestClient(f"http://127.0.0.1:{port}", timeout=600) as client:
                nodes = [n["name"] for n in client.nodes() if n["reachable"]]
                rows = [measure(client, shape, args.drops, nodes) for shape in args.shapes]
        finally:
            _dropflow("cluster", "down", "--dir", state)
    print(
        json.dumps(
            {
                "benchmark": "cluster_scale",
                "date": time.strftime("%Y-%m-%d"),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "setup": "island manager + 3 node managers (gunicorn, ZeroMQ bus) on loopback, one machine",
                "rows": rows,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
