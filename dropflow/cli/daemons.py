"""``dropflow nm|dim|mm`` (the daemons, under gunicorn) and ``dropflow cluster up|down`` (a local cluster).

Secure by default: daemons bind to loopback; binding elsewhere needs a shared token (``--token-file`` or
``$DROPFLOW_TOKEN``), which then guards the REST API and the bus, unless ``--no-auth`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import psutil

from ..engine.workspace import default_root
from .common import UsageError, command, integer, read_token

__all__ = ["wait_healthy"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535)")
    return value


def _common(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=_port, default=port, help=f"REST port (default {port})")
    p.add_argument("--name", help="name of this manager (default: host:port)")
    p.add_argument("--token-file", metavar="FILE", help="file holding the shared secret (or $DROPFLOW_TOKEN)")
    p.add_argument("--no-auth", action="store_true", help="allow binding beyond loopback without a token")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
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

    ManagerApplication(factory, args.host, args.port, token, args.log_level, args.threads).run()
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


def wait_healthy(url: str, timeout: float, token: str | None = None) -> dict[str, Any] | None:
    """The manager's health answer, once it gives one; None if it did not within ``timeout``."""
    import httpx

    deadline = time.monotonic() + timeout
    pause = threading.Event()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    while True:
        try:
            resp = httpx.get(f"{url}/api/health", timeout=2.0, headers=headers)
            if resp.status_code == 200:
                return dict(resp.json())
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            return None
        pause.wait(0.1)


def _island_factory(args: argparse.Namespace, token: str | None, master: bool) -> Any:
    members = "islands" if master else "nodes"
    urls = _urls(getattr(args, members), members)
    if not urls and not getattr(args, "discover", False):
        raise UsageError(f"give --{members} URL,URL" + ("" if master else " or --discover"))
    name = _name(args)

    def factory() -> Any:
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


def _start(argv: list[str], log_path: str) -> int:
    log = open(log_path, "ab")  # noqa: SIM115  (the daemon keeps the file after we return)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dropflow", *argv],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    return proc.pid


def _state_file(args: argparse.Namespace) -> str:
    return os.path.join(args.dir, "cluster.json")


@command("cluster", _cluster_args)
def cmd_cluster(args: argparse.Namespace) -> int:
    path = _state_file(args)
    if args.action == "status":
        if not os.path.exists(path):
            print("no cluster")
            return 1
        with open(path) as f:
            state = json.load(f)
        alive = [pid for pid in state["pids"] if psutil.pid_exists(pid)]
        print(f"island manager {state['url']}; {len(alive)}/{len(state['pids'])} daemons running")
        return 0 if len(alive) == len(state["pids"]) else 1
    if args.action == "down":
        return _cluster_down(args, path)
    if os.path.exists(path):
        raise UsageError(f"a cluster is already up ({path}); run 'dropflow cluster down' first")
    os.makedirs(os.path.join(args.dir, "logs"), exist_ok=True)
    workspace = args.workspace or os.path.abspath(os.path.join(args.dir, "workspace"))
    pids: list[int] = []
    node_urls = []
    try:
        for i in range(args.nodes):
            port = args.node_port + i
            pids.append(
                _start(
                    [
                        "nm",
                        "--port",
                        str(port),
                        "--name",
                        f"node-{i}",
                        "--workspace",
                        os.path.join(workspace, f"node-{i}"),
                    ],
                    os.path.join(args.dir, "logs", f"nm-{i}.log"),
                )
            )
            node_urls.append(f"http://127.0.0.1:{port}")
        for url in node_urls:
            if wait_healthy(url, args.timeout) is None:
                raise UsageError(f"node manager {url} did not start; see {args.dir}/logs")
        url = f"http://127.0.0.1:{args.port}"
        pids.append(
            _start(
                ["dim", "--port", str(args.port), "--name", "island", "--nodes", ",".join(node_urls)],
                os.path.join(args.dir, "logs", "dim.log"),
            )
        )
        if wait_healthy(url, args.timeout) is None:
            raise UsageError(f"island manager {url} did not start; see {args.dir}/logs/dim.log")
    except BaseException:
        _stop(pids, 30)
        raise
    with open(path, "w") as f:
        json.dump({"url": url, "nodes": node_urls, "pids": pids}, f, indent=2)
    print(
        f"island manager {url} over {args.nodes} node managers; submit with: dropflow submit GRAPH --to {url}"
    )
    return 0


def _stop(pids: list[int], timeout: float) -> list[int]:
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.send_signal(signal.SIGTERM)
            procs.append(proc)
        except psutil.NoSuchProcess:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        proc.kill()
    return [p.pid for p in alive]


def _cluster_down(args: argparse.Namespace, path: str) -> int:
    if not os.path.exists(path):
        raise UsageError(f"no cluster state in {path}")
    with open(path) as f:
        state = json.load(f)
    killed = _stop(list(reversed(state["pids"])), args.timeout)
    os.unlink(path)
    print(f"stopped {len(state['pids'])} daemons" + (f" ({len(killed)} had to be killed)" if killed else ""))
    return 0
