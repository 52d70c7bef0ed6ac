"""A node's entry point inside the job: take a free port, say where, and become a manager daemon.

Theory of operation
-------------------
The bootstrap starts one srun task per node, all with the same command line; each task reads the plan
(``nodes.json`` in the results directory), finds its own node by ``SLURMD_NODENAME`` (which Slurm sets per
node, also for emulated nodes that share a host) and *replaces itself* with ``dropflow nm`` for that node's
address, its output going to ``nm-NODE.log``. Because of the exec, srun's signals (SIGTERM at teardown)
reach the node manager itself.

Ports are chosen here, on the node, when the daemon starts -- not from a fixed base -- so that two jobs
sharing a node never collide: a plan port of 0 means "take a free one" (the port is bound once, to learn a
free number, and given to the daemon, which binds it again at once). Where the daemon listens is *announced*
in a file of the results directory (``daemons/<name>.json``: address, port, pid), written atomically before
the exec; the bootstrap waits for those files, and then checks that whoever answers there is this job's own
daemon. ``--daemon NAME`` runs any other manager command (an island manager on another node) the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys

from .cluster import ClusterPlan
from .launchers import dropflow_command, node_manager_command

__all__ = ["ANNOUNCE_DIR", "announcement", "free_port", "main"]

#: Directory of the results where daemons announce where they listen.
ANNOUNCE_DIR = "daemons"


def free_port(address: str) -> int:
    """A TCP port of ``address`` that nothing listens on now."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def announcement(directory: str, name: str) -> str:
    return os.path.join(directory, re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".json")


def announce(directory: str, name: str, address: str, port: int) -> None:
    """Record where daemon ``name`` listens (atomically: a reader never sees half of it)."""
    os.makedirs(directory, exist_ok=True)
    path = announcement(directory, name)
    entry = {"name": name, "address": address, "port": port, "pid": os.getpid(), "host": socket.gethostname()}
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(entry, f)
    os.replace(path + ".tmp", path)


def _log_to(logs: str | None, name: str) -> None:
    if logs:
        # srun names output files by host (%N), and emulated nodes share one: each daemon opens its own log.
        fd = os.open(os.path.join(logs, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dropflow.deploy.node_entry")
    p.add_argument("--plan", help="the job's nodes.json: become this node's manager")
    p.add_argument("--workspace", help="workspace root; each node uses ROOT/NODE")
    p.add_argument("--logs", help="directory for this daemon's log (default: srun's output)")
    p.add_argument("--daemon", metavar="NAME", help="run the command after -- as daemon NAME instead")
    p.add_argument("--address", help="with --daemon: the address it binds")
    p.add_argument("--announce", metavar="DIR", help="where to say which port the daemon took")
    p.add_argument(
        "rest", nargs=argparse.REMAINDER, help="-- then more options of dropflow nm (or --daemon's command)"
    )
    args = p.parse_args(argv)
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    if args.daemon:
        if not args.address or not args.announce or not rest:
            print("node_entry: --daemon needs --address, --announce and a command after --", file=sys.stderr)
            return 2
        port = free_port(args.address)
        announce(args.announce, args.daemon, args.address, port)
        cmd = [*rest, "--port", str(port)]
        os.execvp(cmd[0], cmd)
    node = os.environ.get("SLURMD_NODENAME")
    if not node:
        print("node_entry: SLURMD_NODENAME is not set; run me through srun", file=sys.stderr)
        return 2
    if not args.plan or not args.workspace:
        print("node_entry: --plan and --workspace are needed", file=sys.stderr)
        return 2
    with open(args.plan, encoding="utf-8") as f:
        plan = ClusterPlan.from_json(f.read())
    try:
        nm = plan.node_manager(node)
    except KeyError as exc:
        print(f"node_entry: {exc.args[0]}", file=sys.stderr)
        return 2
    _log_to(args.logs, f"nm-{node}.log")
    if nm.port == 0:
        nm = type(nm)(nm.node, nm.address, free_port(nm.address))
        announce(
            os.path.join(os.path.dirname(os.path.abspath(args.plan)), ANNOUNCE_DIR),
            f"nm {node}",
            nm.address,
            nm.port,
        )
    cmd = node_manager_command(dropflow_command(sys.executable), nm, args.workspace, rest)
    print(f"node_entry: {node} -> {' '.join(cmd)}", file=sys.stderr, flush=True)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    sys.exit(main())
