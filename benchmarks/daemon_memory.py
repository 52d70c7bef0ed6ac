"""Does a long-running node manager give back what deleted sessions took? The RSS curve of a real daemon.

Starts ``dropflow nm`` (gunicorn, default options) on loopback, then runs the same physical graph through it
again and again -- create, append, deploy, wait, DELETE -- and after each deletion records the resident
memory of the daemon's processes (the gunicorn master, its worker and the warm app workers). The floor is the
same daemon idle, before the first session. Prints JSON: the curve, the floor, the RSS after the first
session and after the last, and their ratio (the goal: the last within 10% of the first).

    python benchmarks/daemon_memory.py                        # 200 sessions of 100,000 drops
    python benchmarks/daemon_memory.py --sessions 20 --drops 10000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil

from dropflow.deploy.localcluster import wait_healthy
from dropflow.managers.client import RestClient

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--drops", type=int, default=100_000)
    ap.add_argument("--shape", choices=sorted(generate.SHAPES), default="chain")
    ap.add_argument("--allocator", choices=("malloc", "pymalloc"), default="malloc", help="the daemon's")
    args = ap.parse_args()
    data = generate.SHAPES[args.shape](args.drops)
    port = _free_port()
    with (
        tempfile.TemporaryDirectory(prefix="dropflow-mem-") as tmp,
        open(os.path.join(tmp, "nm.log"), "wb") as log,
    ):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dropflow",
                "nm",
                "--allocator",
                args.allocator,
                "--port",
                str(port),
                "--workspace",
                os.path.join(tmp, "ws"),
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            if wait_healthy(url, 60) is None:
                raise SystemExit("the node manager did not start")
            client = RestClient(url, timeout=600)
            floor = rss_mb(proc.pid)
            curve: list[float] = []
            seconds: list[float] = []
            for i in range(args.sessions):
                sid = f"s{i}"
                t0 = time.perf_counter()
                client.create_session(sid)
                client.append_bytes(sid, data)
                client.deploy(sid)
                while not (answer := client.wait(sid, 30))["ended"]:
                    pass
                if answer["status"] != "FINISHED":
                    raise SystemExit(f"session {sid} ended {answer['status']}")
                client.delete_session(sid)
                seconds.append(time.perf_counter() - t0)
                curve.append(round(rss_mb(proc.pid), 1))
                print(f"session {i + 1}/{args.sessions}: {curve[-1]} MiB", file=sys.stderr)
            client.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
    result: dict[str, Any] = {
        "benchmark": "daemon_memory",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": os.getloadavg(),
        "shape": args.shape,
        "allocator": args.allocator,
        "drops": args.drops,
        "sessions": args.sessions,
        "floor_idle_mib": round(floor, 1),
        "after_first_mib": curve[0],
        "after_last_mib": curve[-1],
        "peak_mib": max(curve),
        "last_over_first": round(curve[-1] / curve[0], 3),
        "median_session_seconds": round(sorted(seconds)[len(seconds) // 2], 3),
        "curve_mib": curve,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
