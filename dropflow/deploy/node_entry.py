"""A node's entry point inside the job: find this node's line of the plan and become its node manager.

Theory of operation
-------------------
The bootstrap starts one srun task per node, all with the same command line; each task reads the plan
(``nodes.json`` in the results directory), finds its own node by ``SLURMD_NODENAME`` (which Slurm sets per
node, also for emulated nodes that share a host) and *replaces itself* with ``dropflow nm`` for that node's
address and port, its output going to ``nm-NODE.log``. Because of the exec, srun's signals (SIGTERM at
teardown) reach the node manager itself.
"""

from __future__ import annotations

import argparse
import os
import sys

from .cluster import ClusterPlan
from .launchers import dropflow_command, node_manager_command

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dropflow.deploy.node_entry")
    p.add_argument("--plan", required=True, help="the job's nodes.json")
    p.add_argument("--workspace", required=True, help="workspace root; each node uses ROOT/NODE")
    p.add_argument("--logs", help="directory for this node's log, nm-NODE.log (default: srun's output)")
    args = p.parse_args(argv)
    node = os.environ.get("SLURMD_NODENAME")
    if not node:
        print("node_entry: SLURMD_NODENAME is not set; run me through srun", file=sys.stderr)
        return 2
    with open(args.plan, encoding="utf-8") as f:
        plan = ClusterPlan.from_json(f.read())
    try:
        nm = plan.node_manager(node)
    except KeyError as exc:
        print(f"node_entry: {exc.args[0]}", file=sys.stderr)
        return 2
    if args.logs:
        # srun names output files by host (%N), and emulated nodes share one: each node opens its own log.
        fd = os.open(os.path.join(args.logs, f"nm-{node}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    cmd = node_manager_command(dropflow_command(sys.executable), nm, args.workspace)
    print(f"node_entry: {node} -> {' '.join(cmd)}", file=sys.stderr, flush=True)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    sys.exit(main())
