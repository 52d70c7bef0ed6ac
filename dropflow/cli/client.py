"""``dropflow submit | status | cancel | sessions``: drive a running manager over REST.

``submit`` does what a user of a cluster would otherwise do by hand: it reads any graph format, translates
a logical graph, maps the drops onto the manager's nodes (METIS by default) unless they are already placed
there, creates the session, appends the graph (gzip), deploys, and with ``--wait`` follows it with a progress
bar to the end, printing the summary and exiting non-zero unless it FINISHED. ``--report FILE`` writes the
outcome as JSON, for batch jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    command,
    params,
    read_token,
    tls_verify,
)

if TYPE_CHECKING:
    from ..drops.spec import DropSpec

__all__: list[str] = []

DEFAULT_URL = "http://127.0.0.1:8001"


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--to",
        default=os.environ.get("DROPFLOW_URL", DEFAULT_URL),
        metavar="URL",
        help=f"manager URL (default $DROPFLOW_URL or {DEFAULT_URL})",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding the manager's token (default: $DROPFLOW_TOKEN, else ~/.config/dropflow/token)",
    )
    p.add_argument(
        "--ca-file",
        metavar="FILE",
        help="CA certificate(s) to check an https:// manager against (default: $DROPFLOW_CA_FILE, else the "
        "system's)",
    )


def _client(args: argparse.Namespace) -> Any:
    from ..managers.client import RestClient

    if not args.to.startswith(("http://", "https://")):
        raise UsageError(f"--to {args.to!r} is not an http:// URL")
    return RestClient(args.to, token=read_token(args.token_file), verify=tls_verify(args.ca_file))


def _submit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("graph", help="graph file: any format dropflow reads; - for stdin")
    _client_args(p)
    p.add_argument(
        "--wait", action="store_true", help="follow the session to its end; exit 0 only if FINISHED"
    )
    p.add_argument("--session-id", help="session id (default: graph name and time)")
    p.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="logical graph parameter"
    )
    p.add_argument(
        "--algorithm",
        default="metis",
        choices=("metis", "min_num_parts", "none"),
        help="partitioning when the graph must be mapped onto the nodes (default metis)",
    )
    p.add_argument("--report", metavar="FILE", help="with --wait: write the outcome as JSON")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto")


def _placed(client: Any, role: str, data: bytes, params: dict[str, str], algorithm: str) -> list[DropSpec]:
    """The graph's specs, placed on the manager's nodes (and islands) where they are not already."""
    import msgspec

    from ..translator import read, translate

    r = read(data, params)
    if role == "nm":
        return translate(r).specs
    members = client.nodes()
    if role == "mm":
        island_of = {n["name"]: i["name"] for i in members for n in i.get("nodes", []) if n.get("reachable")}
    else:
        island_of = {n["name"]: None for n in members if n.get("reachable")}
    if not island_of:
        raise UsageError(f"the manager at {client.url} has no reachable node managers")
    nodes = sorted(island_of)
    specs = r.specs
    if specs is None or not all(s.node in island_of for s in specs):
        specs = translate(r, algorithm=algorithm if len(nodes) > 1 else "none", nodes=nodes).specs
    if role == "mm":
        specs = [msgspec.structs.replace(s, island=island_of[s.node or ""]) for s in specs]
    return specs


def _follow(client: Any, session_id: str, mode: str) -> dict[str, Any]:
    show = mode == "always" or (mode == "auto" and sys.stderr.isatty())
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=client.graph_size(session_id), unit="drop", file=sys.stderr, desc=session_id[:40])
    try:
        while True:
            answer = client.wait(session_id, 1.0)
            if bar is not None:
                info = client.session_info(session_id)
                bar.update(info.get("settled", bar.n) - bar.n)
            if answer["ended"]:
                summary: dict[str, Any] = answer["summary"]
                if bar is not None:
                    bar.update(bar.total - bar.n)
                return summary
    finally:
        if bar is not None:
            bar.close()


def _print_summary(summary: dict[str, Any], url: str) -> None:
    total = (summary.get("deploy_seconds") or 0) + (summary.get("run_seconds") or 0)
    by_state = ", ".join(f"{k} {v}" for k, v in summary.get("by_state", {}).items())
    print(f"session {summary['sessionId']} on {url}: {summary['status']} in {total:.2f} s")
    print(f"  drops: {summary.get('drops')} -- {by_state}")
    if summary.get("error"):
        print(f"  error: {summary['error']}")
    for f in summary.get("failures", [])[:20]:
        head, *rest = (f.get("message") or "").splitlines() or [""]
        where = f" on {f['node']}" if f.get("node") else ""
        print(f"    drop {f['uid']!r}{where}: {head}")
        for line in rest[-6:]:
            print(f"      {line}")


@command("submit", _submit_args)
def cmd_submit(args: argparse.Namespace) -> int:
    from ..engine.workspace import check_session_id
    from ..loading import read_graph_bytes

    client = _client(args)
    data = read_graph_bytes(args.graph)
    info = client.info()
    role = info.get("role")
    specs = _placed(client, role, data, params(args.param), args.algorithm)
    base = os.path.basename(args.graph).split(".")[0] if args.graph != "-" else "stdin"
    session_id = args.session_id or f"{base}-{datetime.now():%Y%m%dT%H%M%S}-{os.urandom(2).hex()}"
    try:
        check_session_id(session_id)
    except ValueError as exc:
        raise UsageError(f"--session-id: {exc}") from None
    started = time.time()
    client.create_session(session_id)
    client.append(session_id, specs)
    client.deploy(session_id)
    placement = Counter(s.node for s in specs if s.node)
    print(f"submitted {len(specs)} drops as session {session_id} to {role} {args.to}", file=sys.stderr)
    if not args.wait:
        print(session_id)
        return EXIT_OK
    try:
        summary = _follow(client, session_id, args.progress)
    except KeyboardInterrupt:
        client.cancel(session_id)
        print(f"dropflow submit: interrupted; session {session_id} cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    _print_summary(summary, args.to)
    if args.report:
        report = {
            "session_id": session_id,
            "url": args.to,
            "role": role,
            "state": summary["status"],
            "drops": summary.get("drops"),
            "by_state": summary.get("by_state"),
            "failures": summary.get("failures"),
            "error": summary.get("error"),
            "placement": dict(placement),
            "nodes": summary.get("nodes"),
            "submitted": started,
            "wall_seconds": round(time.time() - started, 3),
            "deploy_seconds": summary.get("deploy_seconds"),
            "run_seconds": summary.get("run_seconds"),
        }
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2)
    return EXIT_OK if summary["status"] == "FINISHED" else EXIT_FAILED


def _session_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", help="session id")
    _client_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")


@command("status", _session_args)
def cmd_status(args: argparse.Namespace) -> int:
    summary = _client(args).summary(args.session)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, args.to)
    return EXIT_OK


@command("cancel", _session_args)
def cmd_cancel(args: argparse.Namespace) -> int:
    client = _client(args)
    client.cancel(args.session)
    print(f"session {args.session}: cancel requested ({client.status(args.session)})")
    return EXIT_OK


def _nodes_args(p: argparse.ArgumentParser) -> None:
    _client_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")


@command("nodes", _nodes_args)
def cmd_nodes(args: argparse.Namespace) -> int:
    rows = _client(args).nodes()
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for row in rows:
        state = "reachable" if row.get("reachable") else f"UNREACHABLE ({row.get('error')})"
        print(
            f"{row['name']:30} {state:12} sessions: {row.get('sessions', '?')}  bus: {row.get('bus') or '-'}"
        )
    return EXIT_OK


def _sessions_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", nargs="?", help="list this session's drops instead of the sessions")
    _client_args(p)
    p.add_argument(
        "--state",
        action="append",
        default=[],
        metavar="STATE",
        help="only drops in this state (repeatable), e.g. --state ERROR",
    )
    p.add_argument("--limit", type=int, default=100, help="at most this many rows (default 100)")
    p.add_argument("--json", action="store_true", help="print JSON")


@command("sessions", _sessions_args)
def cmd_sessions(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.session is None:
        rows = client.sessions()
        if args.json:
            print(json.dumps(rows, indent=2))
            return EXIT_OK
        print(f"{'SESSION':40} {'STATUS':10} {'DROPS':>8}")
        for row in rows[: args.limit]:
            print(f"{row['sessionId']:40} {row['status']:10} {row.get('size', ''):>8}")
        return EXIT_OK
    states = {s.upper() for s in args.state} or None
    status = client.graph_status(args.session, states)
    if args.json:
        print(json.dumps(status, indent=2))
        return EXIT_OK
    counts = Counter(v["status"] for v in status.values())
    print("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no drops")
    for uid, entry in list(status.items())[: args.limit]:
        print(f"  {uid:50} {entry['status']}")
    if len(status) > args.limit:
        print(f"  ... {len(status) - args.limit} more (use --limit)")
    return EXIT_OK
