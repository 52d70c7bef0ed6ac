"""``dropflow nm|dim|mm`` (the daemons, under gunicorn) and ``dropflow cluster up|down`` (a local cluster).

Secure by default: daemons bind to loopback; binding elsewhere needs a shared token (``--token-file`` or
``$DROPFLOW_TOKEN``), which then guards the REST API and the bus, unless ``--no-auth`` says otherwise. The
local cluster itself is :mod:`dropflow.deploy.localcluster`; ``cluster`` only parses its arguments.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from .common import UsageError, command, integer, read_token
from .common import port_number as _port

__all__ = ["cmd_cluster", "cmd_dim", "cmd_mm", "cmd_nm"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _common(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=_port, default=port, help=f"REST port (default {port})")
    p.add_argument("--name", help="name of this manager (default: host:port)")
    p.add_argument("--token-file", metavar="FILE", help="file holding the shared secret (or $DROPFLOW_TOKEN)")
    p.add_argument("--no-auth", action="store_true", help="allow binding beyond loopback without a token")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="text: one line per event with key=value fields (default); json: one JSON object per line",
    )
    p.add_argument("--threads", type=integer(1), default=16, help="REST threads (default 16)")


def _token(args: argparse.Namespace) -> str | None:
    token = read_token(args.token_file)
    if token is None and args.host not in LOOPBACK and not args.no_auth:
        raise UsageError(
            f"--host {args.host} exposes the API beyond this machine: give --token-file (or "
            "$DROPFLOW_TOKEN), or --no-auth to accept that anyone who can connect may run code"
        )
    return token


def _name(args: argparse.Namespace) -> str:
    host = args.advertise if getattr(args, "advertise", None) else args.host
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    return args.name or f"{host}:{args.port}"


def _serve(args: argparse.Namespace, factory: Any, token: str | None) -> int:
    from ..managers.serve import ManagerApplication

    ManagerApplication(
        factory, args.host, args.port, token, args.log_level, args.threads, log_format=args.log_format
    ).run()
    return 0


def _nm_args(p: argparse.ArgumentParser) -> None:
    _common(p, 8000)
    p.add_argument(
        "--workspace",
        metavar="DIR",
        help="root of session workspaces (default: "
        "$DROPFLOW_WORKSPACE or ./dropflow-workspace, then the node's name)",
    )
    p.add_argument(
        "--allow-path",
        action="append",
        default=[],
        metavar="DIR",
        help="let file drops use paths under DIR (repeatable)",
    )
    p.add_argument("--app-threads", type=integer(1), default=32, help="app threads (default 32)")
    p.add_argument("--processes", type=integer(1), help="worker processes (default: CPU count)")
    p.add_argument(
        "--executor",
        choices=("process", "thread"),
        default="process",
        help="where Python functions that name no executor run (default: process -- warm worker processes, "
        "so that a crashing app fails its own drop only; thread: faster, but a crash takes the daemon down)",
    )
    p.add_argument("--bus-port", type=_port, default=0, help="ZeroMQ port between nodes (default: any free)")
    p.add_argument(
        "--advertise", metavar="HOST", help="address other nodes use to reach this one (default: --host)"
    )
    p.add_argument("--announce", action="store_true", help="announce this node with zeroconf")
    p.add_argument(
        "--interface",
        action="append",
        default=[],
        metavar="ADDR",
        help="zeroconf interface address (repeatable; default: all)",
    )


@command("nm", _nm_args)
def cmd_nm(args: argparse.Namespace) -> int:
    from ..engine.workspace import default_root

    token = _token(args)
    name = _name(args)
    workspace = args.workspace or os.path.join(default_root(), name.replace(":", "-"))

    def factory() -> Any:
        from ..managers.node_manager import NodeManager
        from ..managers.serve import Started
        from ..managers.zmqbus import ZmqBus

        nm = NodeManager(
            name,
            workspace_root=workspace,
            allowed_paths=args.allow_path,
            threads=args.app_threads,
            processes=args.processes,
            executor=args.executor,
        )
        bus = ZmqBus(
            nm.node, host=args.host, port=args.bus_port, advertise=args.advertise, token=token
        ).start()
        nm.node.bus = bus
        nm.start()
        closers = [nm.close, bus.close]
        if args.announce:
            from ..managers.discovery import Announcer

            announcer = Announcer(name, args.advertise or args.host, args.port, args.interface or None)
            closers.insert(0, announcer.close)
        return Started(nm, closers)

    return _serve(args, factory, token)


def _island_args(p: argparse.ArgumentParser, port: int, members: str) -> None:
    _common(p, port)
    p.add_argument(f"--{members}", default="", metavar="URL,URL", help=f"the {members}' REST URLs")
    if members == "nodes":
        p.add_argument("--discover", action="store_true", help="adopt node managers announced with zeroconf")
        p.add_argument(
            "--interface",
            action="append",
            default=[],
            metavar="ADDR",
            help="zeroconf interface address (repeatable; default: all)",
        )
    p.add_argument(
        "--wait-members",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the listed managers to answer at start (default 30)",
    )


def _urls(text: str, option: str) -> list[str]:
    urls = [u.strip().rstrip("/") for u in text.split(",") if u.strip()]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"--{option}: {url!r} is not an http:// URL")
    return urls


def _island_factory(args: argparse.Namespace, token: str | None, master: bool) -> Any:
    members = "islands" if master else "nodes"
    urls = _urls(getattr(args, members), members)
    if not urls and not getattr(args, "discover", False):
        raise UsageError(f"give --{members} URL,URL" + ("" if master else " or --discover"))
    name = _name(args)

    def factory() -> Any:
        from ..deploy.localcluster import wait_healthy
        from ..managers.client import RestClient
        from ..managers.island import DataIslandManager
        from ..managers.master import MasterManager
        from ..managers.serve import Started

        cls = MasterManager if master else DataIslandManager
        manager = cls(name)
        closers: list[Any] = [manager.close]
        for url in urls:
            info = wait_healthy(url, args.wait_members, token)
            if info is None:
                print(
                    f"dropflow {cls.role}: {url} did not answer; add it later with POST /api/node/NAME",
                    file=sys.stderr,
                )
                continue
            manager.add_node(RestClient(url, name=info["name"], token=token))
        if getattr(args, "discover", False):
            from ..managers.discovery import Browser

            browser = Browser(
                lambda n, u: manager.add_node(RestClient(u, name=n, token=token)),
                lambda n: manager.remove_node(n),
                args.interface or None,
            )
            closers.insert(0, browser.close)
        return Started(manager, closers)

    return factory


@command("dim", lambda p: _island_args(p, 8001, "nodes"))
def cmd_dim(args: argparse.Namespace) -> int:
    token = _token(args)
    return _serve(args, _island_factory(args, token, master=False), token)


@command("mm", lambda p: _island_args(p, 8002, "islands"))
def cmd_mm(args: argparse.Namespace) -> int:
    token = _token(args)
    return _serve(args, _island_factory(args, token, master=True), token)


# -- a local cluster ----------------------------------------------------------------------------------------


def _cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--nodes", type=integer(1), default=3, help="node managers to start (default 3)")
    p.add_argument("--dir", default=".dropflow-cluster", help="state and logs (default ./.dropflow-cluster)")
    p.add_argument("--port", type=_port, default=8001, help="the island manager's port (default 8001)")
    p.add_argument("--node-port", type=_port, default=8100, help="first node manager's port (default 8100)")
    p.add_argument("--workspace", metavar="DIR", help="workspace root of the node managers")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for daemons (default 60)")


@command("cluster", _cluster_args)
def cmd_cluster(args: argparse.Namespace) -> int:
    from ..deploy import localcluster

    if args.action == "status":
        cluster = localcluster.read_state(args.dir)
        if cluster is None:
            print("no cluster")
            return 1
        alive = cluster.alive()
        print(f"island manager {cluster.url}; {len(alive)}/{len(cluster.pids)} daemons running")
        return 0 if len(alive) == len(cluster.pids) else 1
    try:
        if args.action == "down":
            cluster, killed = localcluster.down(args.dir, args.timeout)
            print(
                f"stopped {len(cluster.pids)} daemons"
                + (f" ({len(killed)} had to be killed)" if killed else "")
            )
            return 0
        cluster = localcluster.up(
            args.dir, args.nodes, args.port, args.node_port, args.workspace, args.timeout
        )
    except localcluster.ClusterError as exc:
        raise UsageError(str(exc)) from None
    print(
        f"island manager {cluster.url} over {args.nodes} node managers; "
        f"submit with: dropflow submit GRAPH --to {cluster.url}"
    )
    return 0
