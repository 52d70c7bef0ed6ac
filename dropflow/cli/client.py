"""``dropflow submit | status | cancel | sessions``: drive a running manager over REST.

``submit`` does what a user of a cluster would otherwise do by hand: it reads any graph format, translates
a logical graph, maps the drops onto the manager's nodes (METIS by default) unless they are already placed
there, creates the session, appends the graph (gzip), deploys, and with ``--wait`` follows it with a progress
bar to the end, printing the summary and exiting non-zero unless it FINISHED. ``--report FILE`` writes the
outcome as JSON, for batch jobs.
"""

from __future__ import annotations

import argparse
import contextlib
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

__all__ = ["fetch_values", "placed", "settled"]

DEFAULT_URL = "http://127.0.0.1:8001"


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--to",
        default=os.environ.get("DROPFLOW_URL", DEFAULT_URL),
        metavar="URL",
        help=f"manager URL, or slurm:JOBID for a pilot job (default $DROPFLOW_URL or {DEFAULT_URL})",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding the manager's token (default: $DROPFLOW_TOKEN, else ~/.config/dropflow/token)",
    )
    p.add_argument(
        "--results",
        default=os.environ.get("DROPFLOW_RESULTS", "dropflow-results"),
        metavar="DIR",
        help="with --to slurm:JOBID, where the job's results are (default $DROPFLOW_RESULTS or "
        "./dropflow-results)",
    )
    p.add_argument(
        "--ca-file",
        metavar="FILE",
        help="CA certificate(s) to check an https:// manager against (default: $DROPFLOW_CA_FILE, else the "
        "system's)",
    )


def _client(args: argparse.Namespace) -> Any:
    from ..managers.client import RestClient

    token_file = args.token_file
    if args.to.startswith("slurm:"):  # a pilot job: its entry manager, and the job's own token
        from ..deploy.pilot import PilotError, resolve

        try:
            args.to, job_token = resolve(args.to, args.results)
        except PilotError as exc:
            raise UsageError(str(exc)) from None
        token_file = token_file or job_token
    if not args.to.startswith(("http://", "https://")):
        raise UsageError(f"--to {args.to!r} is not an http:// URL (or slurm:JOBID, a pilot job)")
    token = read_token(token_file)
    verify = tls_verify(args.ca_file)
    if token is not None:
        _check_own(args.to, token, verify)
    return RestClient(args.to, token=token, verify=verify)


def _check_own(url: str, token: str, verify: Any) -> None:
    """The manager at ``url`` must prove it holds our token before anything is sent: else it is not the one
    meant (another user's or another job's daemon on that port), and the error says so."""
    import httpx

    from ..managers.auth import check_proof, new_challenge

    challenge = new_challenge()
    try:
        resp = httpx.get(
            f"{url.rstrip('/')}/api/health", params={"challenge": challenge}, timeout=30, verify=verify
        )
        body = resp.json() if resp.is_success else None
    except (httpx.HTTPError, ValueError):
        return  # unreachable: the request that follows says so
    if not isinstance(body, dict) or "name" not in body:
        raise UsageError(f"{url} does not answer like a dropflow manager")
    if body.get("proof") is None:
        return  # a manager without a token (loopback, --insecure-no-token): nothing to prove
    if not check_proof(token, challenge, str(body["name"]), str(body.get("url") or ""), body["proof"]):
        raise UsageError(
            f"the manager at {url} ({body['name']}) does not hold your token: it is not the one you meant -- "
            "another user's or another job's daemon on that port? (or give its token with --token-file)"
        )


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
    p.add_argument(
        "--resume",
        metavar="SESSION",
        help="continue SESSION (the same graph), which ended early: apps that finished are not run again "
        "where what they made still exists, on whichever nodes the managers have now",
    )
    p.add_argument(
        "--journal",
        action="append",
        default=[],
        metavar="DIR",
        help="with --resume: where the session's journals are (repeatable; default: where the node "
        "managers say they keep them, which must be readable here)",
    )


def placed(client: Any, role: str, data: bytes, params: dict[str, str], algorithm: str) -> list[DropSpec]:
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


#: Drop states that are final: what progress counts.
SETTLED = frozenset({"COMPLETED", "ERROR", "EXPIRED", "DELETED", "CANCELLED", "SKIPPED", "FINISHED"})
#: Persisted in-memory results fetched after a session: how many, and up to what size each.
VALUES_KEPT = 100
VALUE_BYTES = 64 * 1024
PREVIEW = 200


def settled(client: Any, session_id: str) -> int:
    """Drops of the session that have settled: from its info (a node manager says), or else from the drops
    by state of its summary (an island or master adds up its nodes')."""
    info = client.session_info(session_id)
    if isinstance(info.get("settled"), int):
        return int(info["settled"])
    by_state = client.summary(session_id).get("by_state") or {}
    return int(sum(n for state, n in by_state.items() if state in SETTLED))


def _follow(client: Any, session_id: str, mode: str) -> dict[str, Any]:
    show = mode == "always" or (mode == "auto" and sys.stderr.isatty())
    bar = None
    if show:
        from tqdm import tqdm

        total = int(client.graph_size(session_id))
        bar = tqdm(total=total, unit="drop", file=sys.stderr, desc=session_id[:40])
    try:
        while True:
            answer = client.wait(session_id, 1.0)
            if bar is not None:
                bar.update(min(settled(client, session_id), int(bar.total)) - bar.n)
            if answer["ended"]:
                summary: dict[str, Any] = answer["summary"]
                if bar is not None:
                    bar.update(int(bar.total) - bar.n)
                return summary
    finally:
        if bar is not None:
            bar.close()


def _preview(entry: dict[str, Any]) -> str:
    from ..managers.results import decode_value

    if entry.get("error"):
        return f"<{entry['error']}>"
    if entry.get("codec") == "pickle":
        return f"<pickle, {entry.get('size')} bytes>"
    try:
        text = repr(decode_value(entry))
    except Exception as exc:  # a preview must never break a summary
        text = f"<cannot decode: {exc}>"
    return text if len(text) <= PREVIEW else text[: PREVIEW - 3] + "..."


def fetch_values(client: Any, session_id: str, specs: list[DropSpec]) -> dict[str, dict[str, Any]]:
    """The persisted in-memory results of an ended session: drop id -> its data (as the REST endpoint gives
    it, base64, when at most VALUE_BYTES) and a short preview, or the error that kept it back."""
    from ..drops.spec import DataSpec
    from ..managers.errors import ApiError
    from ..managers.results import fetch

    wanted = [s for s in specs if isinstance(s, DataSpec) and s.persist and s.TRAITS.value][:VALUES_KEPT]
    out: dict[str, dict[str, Any]] = {}
    for spec in wanted:
        try:
            entry = fetch(client, session_id, spec.id, VALUE_BYTES)
        except ApiError as exc:
            entry = {"uid": spec.id, "codec": spec.effective_codec(), "error": exc.message}
        entry.pop("sessionId", None)
        entry["preview"] = _preview(entry)
        out[spec.id] = entry
    return out


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
    for uid, entry in list((summary.get("values") or {}).items())[:10]:
        print(f"  {uid} = {entry.get('preview')}")


def _journal_roots(client: Any, role: str) -> list[str]:
    """Where the manager's node managers keep journals (as they say)."""
    if role == "nm":
        rows = [client.info()]
    elif role == "mm":
        rows = [n for island in client.nodes() for n in island.get("nodes", [])]
    else:
        rows = client.nodes()
    return sorted({str(r["journal"]) for r in rows if isinstance(r, dict) and r.get("journal")})


def _resume_plan(
    client: Any, role: str, session_id: str, specs: list[DropSpec], journals: list[str]
) -> tuple[Any, Any]:
    """Plan the resume of ``session_id`` from its journals (and return them); clear the ended session from
    the manager."""
    from ..engine.journal import journal_dir, read
    from ..engine.resume import plan
    from ..managers.errors import NotFound

    roots = [os.path.abspath(d) for d in journals] or _journal_roots(client, role)
    if not roots:
        raise UsageError(f"the manager at {client.url} keeps no journals: give --journal DIR")
    dirs = [journal_dir(root, session_id) for root in roots]
    try:
        records = read(*dirs)
    except FileNotFoundError:
        raise UsageError(
            f"no journal of session {session_id!r} in {', '.join(roots)} (a session that FINISHED leaves "
            "none; give --journal DIR if it is elsewhere)"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the journal of {session_id!r}: {exc}") from None
    try:
        state = client.status(session_id)
    except NotFound:
        state = None
    if state is not None:
        if state not in ("FINISHED", "FAILED", "CANCELLED"):
            raise UsageError(
                f"session {session_id!r} is {state} at {client.url}: it can be resumed once it ended"
            )
        client.delete_session(session_id)  # its id is taken by the resumed run; its journal stays
    resumed = plan(specs, records)
    print(f"resuming session {session_id}: {resumed.describe()}", file=sys.stderr)
    return resumed, records


def _forget_old_nodes(records: Any, session_id: str, used: set[str]) -> None:
    """A resumed session FINISHED: what earlier runs left on nodes it did not use (a dead node's files, kept
    for the resume) is not needed any more."""
    import shutil

    for node, meta in records.nodes.items():
        workspace = meta.get("workspace") or ""
        if node not in used and os.path.basename(workspace) == session_id:
            shutil.rmtree(workspace, ignore_errors=True)


@command("submit", _submit_args)
def cmd_submit(args: argparse.Namespace) -> int:
    from ..engine.workspace import check_session_id
    from ..loading import read_graph_bytes
    from ..managers.errors import ApiError

    client = _client(args)
    data = read_graph_bytes(args.graph)
    info = client.info()
    role = info.get("role")
    specs = placed(client, role, data, params(args.param), args.algorithm)
    base = os.path.basename(args.graph).split(".")[0] if args.graph != "-" else "stdin"
    if args.resume and args.session_id and args.resume != args.session_id:
        raise UsageError("--resume names the session: leave --session-id out")
    session_id = (
        args.resume or args.session_id or f"{base}-{datetime.now():%Y%m%dT%H%M%S}-{os.urandom(2).hex()}"
    )
    try:
        check_session_id(session_id)
    except ValueError as exc:
        raise UsageError(f"--session-id: {exc}") from None
    plan, records = (
        _resume_plan(client, role, session_id, specs, args.journal) if args.resume else (None, None)
    )
    started = time.time()
    client.create_session(session_id)
    try:
        client.append(session_id, specs)
        if plan is not None:
            client.resume(session_id, plan)
        client.deploy(session_id)
    except ApiError as exc:
        if 400 <= exc.status < 500:
            # Refused: nothing ran. Leave no FAILED session behind, so the id is free to submit again.
            with contextlib.suppress(ApiError):
                client.delete_session(session_id)
        raise
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
    if summary.get("status") in ("FINISHED", "FAILED", "CANCELLED"):  # (a cancelled session keeps them too)
        summary["values"] = fetch_values(client, session_id, specs)
    if records is not None and summary.get("status") == "FINISHED":
        _forget_old_nodes(records, session_id, set(placement) | set(summary.get("nodes") or {}))
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
            "values": summary.get("values") or {},
            "resumed": None
            if plan is None
            else {"kept": len(plan.finished), "rerun": len(plan.rerun), "restored": len(plan.data)},
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
    # Like `dropflow slurm status`: 0 while it runs or once it FINISHED, 1 if it ended otherwise.
    return EXIT_FAILED if summary.get("status") in ("FAILED", "CANCELLED") else EXIT_OK


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
