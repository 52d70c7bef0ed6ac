"""``dropflow nm|dim|mm`` (the daemons, under gunicorn) and ``dropflow cluster up|down`` (a local cluster).

Secure by default: daemons bind to loopback, and every daemon requires the cluster's token on every request
(:mod:`dropflow.managers.auth` says where it is found or made; it is never taken on the command line). The
one opt-out, ``--insecure-no-token``, is refused unless the daemon binds to loopback only. The bus is
always authenticated and encrypted (CURVE). ``--certfile``/``--keyfile`` serve the API over TLS. The local
cluster itself is :mod:`dropflow.deploy.localcluster`; ``cluster`` only parses its arguments.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from .common import UsageError, command, integer, tls_verify
from .common import port_number as _port

__all__ = ["cmd_cluster", "cmd_dim", "cmd_mm", "cmd_nm"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _common(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=_port, default=port, help=f"REST port (default {port})")
    p.add_argument("--name", help="name of this manager (default: host:port)")
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding the cluster's token (default: $DROPFLOW_TOKEN, else ~/.config/dropflow/token, "
        "made on first use)",
    )
    p.add_argument(
        "--insecure-no-token",
        action="store_true",
        help="DANGER: serve without a token, so that every user of this machine may run code as you "
        "(loopback only; for throw-away tests)",
    )
    p.add_argument(
        "--trust-local-user",
        action="store_true",
        help="also admit requests that carry no token from processes of this daemon's own user on this "
        "machine (checked with the kernel's socket table; browsers refused): for DALiuGE's clients, which "
        "cannot send one",
    )
    p.add_argument("--certfile", metavar="PEM", help="serve the API over TLS with this certificate")
    p.add_argument("--keyfile", metavar="PEM", help="the certificate's private key")
    p.add_argument(
        "--ca-file",
        metavar="PEM",
        help="CA certificate(s) to check https:// members against (default: $DROPFLOW_CA_FILE, else the "
        "system's)",
    )
    p.add_argument(
        "--max-body",
        type=integer(1),
        default=1024,
        metavar="MiB",
        help="largest request body, after decompression (default 1024 MiB)",
    )
    p.add_argument(
        "--allocator",
        choices=("malloc", "pymalloc"),
        default="malloc",
        help="memory allocator of the daemon (default malloc: each deleted session's memory goes back to "
        "the system; pymalloc: 10-20%% faster graph building, but the daemon keeps about a third more)",
    )
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="text: one line per event with key=value fields (default); json: one JSON object per line",
    )
    p.add_argument("--threads", type=integer(1), default=16, help="REST threads (default 16)")


def _token(args: argparse.Namespace) -> str | None:
    """The daemon's token (found or made); None only with --insecure-no-token on loopback."""
    from ..managers.auth import TOKEN_ENV, TokenError, ensure_token

    if args.insecure_no_token:
        if args.host not in LOOPBACK:
            raise UsageError(
                f"--insecure-no-token is for loopback only, and --host {args.host} is not: anyone who can "
                "connect could run code as you. Drop --insecure-no-token; the daemon then uses your token "
                "file (~/.config/dropflow/token, or --token-file)"
            )
        print(
            f"dropflow {args.command}: WARNING: --insecure-no-token: every user of this machine may run "
            "code as you through this daemon",
            file=sys.stderr,
        )
        return None
    if (args.certfile is None) != (args.keyfile is None):
        raise UsageError("--certfile and --keyfile go together")
    try:
        token, where = ensure_token(args.token_file)
    except TokenError as exc:
        raise UsageError(str(exc)) from None
    # Children (apps) need not inherit the secret; they can read the file if their code should.
    os.environ.pop(TOKEN_ENV, None)
    print(f"dropflow {args.command}: requests need the token in {where}", file=sys.stderr)
    return token


def _self_url(args: argparse.Namespace) -> str:
    """Where this daemon is reached: what it proves to an island that checks it."""
    host = getattr(args, "advertise", None) or args.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostbyname(socket.gethostname())
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if args.certfile else 'http'}://{host}:{args.port}"


def _name(args: argparse.Namespace) -> str:
    host = args.advertise if getattr(args, "advertise", None) else args.host
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    return args.name or f"{host}:{args.port}"


def _allocator(args: argparse.Namespace) -> None:
    """First thing a daemon does: re-execute itself on the allocator it was asked for, with the environment
    it was given (the token's variable is still there, before _token takes it out)."""
    from ..engine.heap import daemon_allocator

    daemon_allocator(args.argv, args.allocator)


def _serve(args: argparse.Namespace, factory: Any, token: str | None) -> int:
    from ..managers.serve import ManagerApplication

    ManagerApplication(
        factory,
        args.host,
        args.port,
        token,
        args.log_level,
        args.threads,
        certfile=args.certfile,
        keyfile=args.keyfile,
        max_body=args.max_body << 20,
        log_format=args.log_format,
        trust_local_user=args.trust_local_user,
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
    p.add_argument(
        "--journal",
        metavar="DIR",
        help="keep sessions' journals under DIR, so that a session ended early (a killed node, a cancel) can "
        "be resumed (default: none); nodes that share DIR let a resume read all of a session's journals "
        "in one place (dropflow cluster up and Slurm jobs do this)",
    )
    p.add_argument(
        "--deadline",
        type=float,
        metavar="EPOCH",
        help="the end of the batch job (seconds since the epoch, less a margin): apps that cannot finish "
        "before it do not start, and sessions still running just after it stop (their journal resumes them)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, end every session within this time, by force if need be (default 30; inside a "
        "batch job, less than its KillWait)",
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

    _allocator(args)
    token = _token(args)
    name = _name(args)
    url = _self_url(args)
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
            journal=args.journal,
            deadline=args.deadline,
            shutdown_timeout=args.shutdown_timeout,
        )
        bus = ZmqBus(nm.node, host=args.host, port=args.bus_port, advertise=args.advertise).start()
        nm.node.bus = bus
        nm.start()
        closers = [nm.close, bus.close]
        if args.announce:
            from ..managers.discovery import Announcer

            announcer = Announcer(name, url, args.interface or None)
            closers.insert(0, announcer.close)
        return Started(nm, closers, url)

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

    verify = tls_verify(args.ca_file)
    url = _self_url(args)

    def factory() -> Any:
        from ..deploy.localcluster import wait_healthy
        from ..managers.client import adopt
        from ..managers.errors import ApiError
        from ..managers.island import DataIslandManager
        from ..managers.master import MasterManager
        from ..managers.serve import Started

        cls = MasterManager if master else DataIslandManager
        manager = cls(name, token=token, verify=verify)
        closers: list[Any] = [manager.close]
        for member in urls:
            problem = None
            if wait_healthy(member, args.wait_members, verify=verify) is None:
                problem = "it did not answer"
            else:
                try:
                    manager.add_node(adopt(member, token, verify=verify))
                except ApiError as exc:
                    problem = exc.message
            if problem is not None:
                print(
                    f"dropflow {cls.role}: {member} not adopted ({problem}); add it later with "
                    "POST /api/v1/node/NAME",
                    file=sys.stderr,
                )
        if getattr(args, "discover", False):
            from ..managers.discovery import Browser

            browser = Browser(manager.discovered, manager.vanished, args.interface or None)
            closers.insert(0, browser.close)
        return Started(manager, closers, url)

    return factory


@command("dim", lambda p: _island_args(p, 8001, "nodes"))
def cmd_dim(args: argparse.Namespace) -> int:
    _allocator(args)
    token = _token(args)
    return _serve(args, _island_factory(args, token, master=False), token)


@command("mm", lambda p: _island_args(p, 8002, "islands"))
def cmd_mm(args: argparse.Namespace) -> int:
    _allocator(args)
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
    p.add_argument(
        "--allow-path",
        action="append",
        default=[],
        metavar="DIR",
        help="let file drops use paths under DIR, outside the workspaces (repeatable)",
    )
    p.add_argument(
        "--pythonpath",
        action="append",
        default=[],
        metavar="DIR",
        help="where the node managers import Python function apps from (repeatable)",
    )


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
        for d in [*args.allow_path, *args.pythonpath]:
            if not os.path.isdir(d):
                raise localcluster.ClusterError(f"{d!r} is not a directory")
        cluster = localcluster.up(
            args.dir,
            args.nodes,
            args.port,
            args.node_port,
            args.workspace,
            args.timeout,
            allow_paths=args.allow_path,
            pythonpath=args.pythonpath,
        )
    except localcluster.ClusterError as exc:
        raise UsageError(str(exc)) from None
    print(
        f"island manager {cluster.url} over {args.nodes} node managers; "
        f"submit with: dropflow submit GRAPH --to {cluster.url}"
    )
    return 0
