"""Drive a DALiuGE node manager the way its users do: ``dlg.clients.NodeManagerClient`` over REST.

Reads a DALiuGE physical graph file (load), creates a session, appends the graph and deploys it with the root
drops marked completed (deploy), then polls the session status until it is FINISHED, FAILED or CANCELLED
(run). Afterwards (outside the timed window) it reads every drop's status to check that all completed, and
deletes the session. CPU seconds of the window are the node manager's process tree (psutil) plus this
client's own.

Usage: ``python daliuge_client.py --port PORT --nm-pid PID --root OID [--poll S] GRAPH.json``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from typing import Any

import psutil

SESSION_STATES = ["PRISTINE", "BUILDING", "DEPLOYING", "RUNNING", "FINISHED", "CANCELLED", "FAILED"]
DROP_STATES = ["INITIALIZED", "WRITING", "COMPLETED", "ERROR", "EXPIRED", "DELETED", "CANCELLED", "SKIPPED"]
ENDED = {"FINISHED", "CANCELLED", "FAILED"}


def tree_cpu(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def main(argv: list[str] | None = None) -> int:
    from dlg.clients import NodeManagerClient

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("graph")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--nm-pid", type=int, required=True)
    p.add_argument("--root", action="append", default=[])
    p.add_argument("--poll", type=float, default=0.05)
    p.add_argument("--session", default="bench")
    args = p.parse_args(argv)

    client = NodeManagerClient("127.0.0.1", args.port, timeout=60)
    cpu0, own0 = tree_cpu(args.nm_pid), time.process_time()
    t0 = time.perf_counter()
    with open(args.graph, "rb") as f:
        graph = f.read()
    t1 = time.perf_counter()
    client.create_session(args.session)
    client.append_graph(args.session, graph)
    client.deploy_session(args.session, completed_uids=args.root)
    t2 = time.perf_counter()
    while True:
        state = SESSION_STATES[client.session_status(args.session)]
        if state in ENDED:
            break
        time.sleep(args.poll)
    t3 = time.perf_counter()
    cpu = tree_cpu(args.nm_pid) - cpu0 + time.process_time() - own0
    status: dict[str, Any] = client.graph_status(args.session)
    drops = Counter(DROP_STATES[s["status"]] for s in status.values())
    apps = Counter(s["execStatus"] for s in status.values() if "execStatus" in s)
    client.destroy_session(args.session)
    out = {
        "load_s": t1 - t0,
        "deploy_s": t2 - t1,
        "run_s": t3 - t2,
        "state": state,
        "drops": len(status),
        "by_state": dict(drops),
        "apps_finished": apps.get(2, 0),
        "apps": sum(apps.values()),
        "cpu_window_s": cpu,
    }
    print(json.dumps(out))
    return 0 if state == "FINISHED" else 1


if __name__ == "__main__":
    sys.exit(main())
