"""Why is a session not finishing? Its frontier, and on a finished session, its critical path.

Theory of operation
-------------------
A dataflow session is stuck, or slow, at its *frontier*: the apps running now, and the apps that wait for
data those apps are writing. :func:`node_report` reads one node's part of a session (from another thread,
through snapshots) and names

- the apps running, longest first, with when they started (from the event log) and whether they are
  still fetching inputs from, or pushing outputs to, other nodes;
- the *blockers*: each input being written right now (WRITING) that some app here is waiting for, where
  its data lives, which apps produce it (and on which node), and how many apps wait for it -- grouped by
  input, so that a gather of 300,000 parts is one line, not 300,000;
- how many more apps wait further back, and the transfers in flight.

A session that was cancelled or lost a node stopped with its frontier frozen: every drop it settled by the
cancel is read in the state it had just before (the event log records that state), so the report still
says what it was waiting for when it stopped. On an ended session, :func:`critical_path` follows the
causes that the event log records -- an app started because its last input completed, a drop completed
because its producer finished -- backwards from the last drop to settle, giving the chain that decided the
session's length, each step with its wall-clock times. A chain that reaches a proxy continues on the node
that owns it; the island stitches the pieces (:func:`merge_reports`, :mod:`dropflow.managers.monitor`).

:func:`verdict` turns a (merged) report into the few sentences ``dropflow why`` prints first. Everything here
is a diagnostic asked for by a person: it costs a pass over the session's drops and its event log, and is
never on the engine's path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from ..drops.spec import AppSpec, DropSpec, port_drops
from ..drops.states import APP_SETTLED, DATA_SETTLED
from .census import group_key

if TYPE_CHECKING:
    from ..engine.graph import AppNode, DataNode
    from ..engine.session import Session

__all__ = ["LIMIT", "critical_path", "cross_producers", "merge_reports", "node_report", "verdict"]

#: Rows of each list a report gives in full (the rest are counted).
LIMIT = 20
_SETTLED = frozenset(map(str, APP_SETTLED | DATA_SETTLED))
_DONE = frozenset({"COMPLETED", "FINISHED", "ERROR", "SKIPPED"})
#: A raw event log record: (time, drop id, start state, end state, cause).
Record = tuple[float, str, str, str, str]
T: Final = 0
UID: Final = 1
START: Final = 2
END: Final = 3
CAUSE: Final = 4


def _pre_cancel(events: Iterable[Record]) -> dict[str, str]:
    """Drop id -> the state it was in when a cancel settled it."""
    return {e[UID]: e[START] for e in events if e[CAUSE] == "cancel" and e[END] == "CANCELLED"}


def _started(events: Sequence[Record], uids: set[str]) -> dict[str, float]:
    """When each of ``uids`` last became RUNNING, as far back as the log reaches (newest events first)."""
    found: dict[str, float] = {}
    if not uids:
        return found
    for e in reversed(events):
        if e[END] == "RUNNING" and e[UID] in uids and e[UID] not in found:
            found[e[UID]] = e[T]
            if len(found) == len(uids):
                break
    return found


def node_report(session: Session, node_name: str, limit: int = LIMIT) -> dict[str, Any]:
    """One node's view of a session's frontier (any thread). See the module's docstring."""
    now = time.time()
    done, size = session.progress()
    report: dict[str, Any] = {
        "sessionId": session.id,
        "status": str(session.state),
        "node": node_name,
        "settled": done,
        "size": size,
        "error": session.error,
        "running": [],
        "running_count": 0,
        "blockers": [],
        "waiting_count": 0,
        "behind_count": 0,
        "transfers": [],
        "stopped": False,
        "log_from": None,
    }
    graph, core = session.graph, session.core
    if graph is None or core is None:
        return report
    events = session.log.snapshot()
    if events:
        report["log_from"] = events[0][T]
    before = _pre_cancel(events) if core.cancelled else {}
    report["stopped"] = bool(before)
    # A stopped frontier is timed up to the stop, not up to now.
    until = next((e[T] for e in events if e[CAUSE] == "cancel"), now) if before else now

    def state(n: DataNode | AppNode) -> str:
        s = str(n.state)
        return before.get(n.spec.id, s) if s == "CANCELLED" else s

    def where(n: DataNode | AppNode) -> str:
        return n.peer if type(n.peer) is str else node_name

    # Running apps, and the apps waiting for data being written now.
    running: list[AppNode] = []
    blocking: dict[int, tuple[DataNode, list[AppNode]]] = {}
    behind = 0
    for app in list(graph.apps):
        if type(app.peer) is str:
            continue  # another node's app: its owner reports it
        s = state(app)
        if s == "RUNNING":
            running.append(app)
        elif s == "NOT_RUN":
            hit = False
            for data in app.inputs:
                if state(data) == "WRITING":
                    hit = True
                    entry = blocking.get(id(data))
                    if entry is None:
                        blocking[id(data)] = (data, [app])
                    else:
                        entry[1].append(app)
            if not hit:
                behind += 1
    held = session.transfers.waiting_apps()
    starts = _started(events, {a.spec.id for a in running})
    rows: list[dict[str, Any]] = []
    for app in running:
        since = starts.get(app.spec.id)
        rows.append(
            {
                "uid": app.spec.id,
                "name": app.spec.name,
                "kind": app.spec.kind,
                "group": group_key(app.spec),
                "node": node_name,
                "since": since,
                "seconds": None if since is None else round(until - since, 3),
                "transfer": id(app) in held,
            }
        )
    rows.sort(key=lambda r: (r["since"] is None, r["since"] or 0.0))
    report["running"] = rows[:limit]
    report["running_count"] = len(rows)

    # Who produces each blocking input: apps here, or proxies of apps elsewhere (whose node is known).
    producers: dict[int, list[AppNode]] = {}
    if blocking:
        for app in list(graph.apps):
            for data in app.outputs:
                if id(data) in blocking:
                    producers.setdefault(id(data), []).append(app)
    blockers: list[dict[str, Any]] = []
    for key, (data, apps) in blocking.items():
        makers = producers.get(key, [])
        maker_starts = _started(events, {m.spec.id for m in makers if type(m.peer) is not str})
        blockers.append(
            {
                "input": data.spec.id,
                "kind": data.spec.kind,
                "state": state(data),
                "node": where(data),
                "producers": [
                    {
                        "uid": m.spec.id,
                        "kind": m.spec.kind,
                        "node": where(m),
                        "state": state(m),
                        "since": maker_starts.get(m.spec.id),
                        "seconds": None
                        if m.spec.id not in maker_starts
                        else round(until - maker_starts[m.spec.id], 3),
                    }
                    for m in makers[:limit]
                ],
                "waiting": [a.spec.id for a in apps[:5]],
                "waiting_count": len(apps),
                "waiting_node": node_name,
            }
        )
    blockers.sort(key=lambda b: -int(b["waiting_count"]))
    report["blockers"] = blockers[:limit]
    report["blocker_count"] = len(blockers)
    report["waiting_count"] = sum(b["waiting_count"] for b in blockers)
    report["behind_count"] = behind
    report["transfers"] = [
        {"direction": d, "uid": uid, "peer": peer, "apps": apps[:5], "app_count": len(apps)}
        for d, uid, peer, apps in session.transfers.in_flight()[:limit]
    ]
    return report


def critical_path(session: Session, node_name: str, start: str | None = None) -> dict[str, Any]:
    """The chain of causes that ended last, backwards from ``start`` (default: the local drop that settled
    last), as far as this node and its log know it. ``continues`` names the node and drop where the chain
    goes on (a proxy's owner), or is None.

    One backward pass over the log: a drop's cause settled before the drop's own change was recorded, so
    each step's events lie before the previous step's.
    """
    graph = session.graph
    out: dict[str, Any] = {"steps": [], "continues": None, "complete": False, "node": node_name}
    if graph is None:
        return out
    events = session.log.snapshot()
    by_id = graph.by_id
    i = len(events) - 1
    uid = start
    if uid is None:
        while i >= 0:
            e = events[i]
            n = by_id.get(e[UID])
            if n is not None and type(n.peer) is not str and e[END] in _DONE:
                uid = e[UID]
                break
            i -= 1
    steps: list[dict[str, Any]] = []
    seen: set[str] = set()
    while uid is not None and uid not in seen:
        seen.add(uid)
        n = by_id.get(uid)
        if n is None:
            break
        if type(n.peer) is str:
            out["continues"] = {"node": n.peer, "uid": uid}
            break
        is_app = n.spec.CATEGORY == "app"
        settled: Record | None = None
        last_run: Record | None = None
        attempts = 0
        cause: str | None = None
        while i >= 0:
            e = events[i]
            i -= 1
            if e[UID] != uid:
                continue
            if settled is None and e[END] in _DONE:
                settled = e
                if not is_app:
                    cause = e[CAUSE]
                    break
            elif is_app and e[END] == "RUNNING":
                attempts += 1
                last_run = last_run or e
                if e[CAUSE] != "retry":
                    cause = e[CAUSE]
                    break
        step: dict[str, Any] = {
            "uid": uid,
            "kind": n.spec.kind,
            "category": n.spec.CATEGORY,
            "group": group_key(n.spec),
            "node": node_name,
            "end": settled[T] if settled else None,
            "state": str(n.state),
        }
        if is_app:
            step["start"] = last_run[T] if last_run else None
            step["seconds"] = round(settled[T] - last_run[T], 6) if settled and last_run else None
            step["attempts"] = attempts
        steps.append(step)
        if cause is None:
            out["truncated"] = i < 0  # the bounded log does not reach back to the start
            break
        if cause in ("trigger", "cancel", "lifespan", "collector", "unused"):
            out["complete"] = True
            break
        if cause.startswith("node "):
            out["continues"] = {"node": cause[5:], "uid": uid}
            break
        uid = cause
    steps.reverse()
    out["steps"] = steps
    return out


def cross_producers(specs: Iterable[DropSpec], key: str = "node") -> dict[str, list[tuple[str, str | None]]]:
    """For every data drop linked to an app on another member (by ``key``): its producers, as (app id, its
    node). An island keeps this from deploy, so that ``why`` can name who writes an input even when the
    member that runs the producer does not answer. Linear in the links; only crossing drops are kept.

    >>> from dropflow.drops import MemorySpec, NoopSpec
    >>> specs = [NoopSpec(id="p", outputs={"o": "d"}, node="n0"), MemorySpec(id="d", node="n0"),
    ...          NoopSpec(id="c", inputs={"i": "d"}, node="n1")]
    >>> cross_producers(specs)
    {'d': [('p', 'n0')]}
    """
    where: dict[str, str | None] = {}
    apps: list[AppSpec] = []
    for spec in specs:
        where[spec.id] = getattr(spec, key)
        if isinstance(spec, AppSpec):
            apps.append(spec)
    crossing: set[str] = set()
    for app in apps:
        here = getattr(app, key)
        for ports in (app.inputs, app.outputs):
            for value in ports.values():
                crossing.update(uid for uid in port_drops(value) if where.get(uid, here) != here)
    out: dict[str, list[tuple[str, str | None]]] = {}
    for app in apps:
        for value in app.outputs.values():
            for uid in port_drops(value):
                if uid in crossing:
                    out.setdefault(uid, []).append((app.id, app.node))
    return out


def merge_reports(reports: dict[str, dict[str, Any]], limit: int = LIMIT) -> dict[str, Any]:
    """One report from the reports of several nodes (or islands): lists joined and re-ranked, counts
    summed. ``reports`` maps a member to its report; members' own ``nodes`` maps are flattened."""
    merged: dict[str, Any] = {
        "running": [],
        "running_count": 0,
        "blockers": [],
        "blocker_count": 0,
        "waiting_count": 0,
        "behind_count": 0,
        "transfers": [],
        "stopped": False,
        "settled": 0,
        "size": 0,
        "nodes": {},
    }
    for member, r in sorted(reports.items()):
        for key in ("running_count", "blocker_count", "waiting_count", "behind_count", "settled", "size"):
            merged[key] += r.get(key) or 0
        merged["running"] += r.get("running", [])
        merged["blockers"] += r.get("blockers", [])
        merged["transfers"] += r.get("transfers", [])
        merged["stopped"] = merged["stopped"] or bool(r.get("stopped"))
        if "nodes" in r:
            merged["nodes"].update(r["nodes"])
        else:
            merged["nodes"][member] = {"status": r.get("status"), "error": r.get("error")}
    running = {row["uid"]: row for row in merged["running"]}
    for b in merged["blockers"]:
        for p in b["producers"]:
            row = running.get(p["uid"])
            if row is not None and p.get("since") is None:
                p.update(state="RUNNING", since=row.get("since"), seconds=row.get("seconds"))
    merged["running"].sort(key=lambda row: (row.get("since") is None, row.get("since") or 0.0))
    merged["running"] = merged["running"][:limit]
    # The same input may block apps on several nodes: one line, with every node's waiting apps.
    joined: dict[str, dict[str, Any]] = {}
    for b in merged["blockers"]:
        seen = joined.get(b["input"])
        if seen is None:
            joined[b["input"]] = {**b, "waiting_nodes": {b.get("waiting_node"): b["waiting_count"]}}
            continue
        seen["waiting_count"] += b["waiting_count"]
        seen["waiting"] = (seen["waiting"] + b["waiting"])[:5]
        seen["waiting_nodes"][b.get("waiting_node")] = b["waiting_count"]
        known = {p["uid"] for p in seen["producers"]}
        seen["producers"] += [p for p in b["producers"] if p["uid"] not in known]
    merged["blockers"] = sorted(joined.values(), key=lambda b: -b["waiting_count"])[:limit]
    merged["transfers"] = merged["transfers"][:limit]
    return merged


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "since before the log begins"
    if seconds < 120:
        return f"for {seconds:.1f} s"
    if seconds < 7200:
        return f"for {seconds / 60:.1f} min"
    return f"for {seconds / 3600:.1f} h"


def _producer_text(p: dict[str, Any], report: dict[str, Any]) -> str:
    node = p.get("node")
    state = (report.get("nodes") or {}).get(node, {})
    text = f"{p['uid']} on {node}"
    if p.get("state") == "RUNNING":
        text += f", running {_ago(p.get('seconds'))}"
    elif p.get("state"):
        text += f" ({p['state']})"
    if state.get("status") in ("LOST", "SILENT", "UNREACHABLE"):
        text += f" -- node {node} {_node_problem(state)}"
    return text


def _makers(b: dict[str, Any], report: dict[str, Any], nodes: dict[str, Any]) -> str:
    makers = b.get("producers") or []
    if makers:
        return "; ".join(_producer_text(p, report) for p in makers[:3])
    owner = nodes.get(str(b.get("node")), {})
    text = f"an app on node {b.get('node')}"
    if owner.get("status") in ("LOST", "SILENT", "UNREACHABLE"):
        text += f" -- node {b.get('node')} {_node_problem(owner)}"
    return text


def _node_problem(state: dict[str, Any]) -> str:
    status = state.get("status")
    if status == "LOST":
        return f"was lost: {state.get('error') or 'no reason given'}"
    silent = state.get("silent_for")
    if status == "SILENT":
        return f"has not answered heartbeats for {silent:.1f} s" if silent else "does not answer"
    return f"does not answer ({state.get('error') or 'unreachable'})"


def verdict(report: dict[str, Any], now: float | None = None) -> list[str]:
    """The few lines that answer "why is it not finishing?" first (or, if it has, what took the time)."""
    now = time.time() if now is None else now
    lines: list[str] = []
    status = report.get("status")
    size, settled = report.get("size") or 0, report.get("settled") or 0
    head = f"session {report.get('sessionId')} is {status}: {settled} of {size} drops settled"
    lines.append(head)
    nodes = report.get("nodes") or {}
    for name, state in sorted(nodes.items()):
        if state.get("status") in ("LOST", "SILENT", "UNREACHABLE"):
            lines.append(f"node {name} {_node_problem(state)}")
    if report.get("error"):
        lines.append(f"error: {report['error']}")
    if status in ("PRISTINE", "BUILDING"):
        lines.append("it has not been deployed yet: nothing runs before deploy")
        return lines
    if report.get("stopped"):
        lines.append("it stopped (cancelled or a node was lost); this is where it stood then:")
    blockers = report.get("blockers") or []
    # Inputs that the same apps wait for (the parts of one gather) make one line, not one each.
    by_waiting: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for b in blockers:
        by_waiting.setdefault(tuple(b.get("waiting") or ()), []).append(b)
    for waiting, group in list(by_waiting.items())[:5]:
        count = max(b["waiting_count"] for b in group)
        who = ", ".join(waiting[:3]) + (f" and {count - 3} more" if count > 3 else "")
        inputs = len(group)
        if len(by_waiting) == 1:  # the report's list was cut: the rest wait for the same apps too
            inputs += int(report.get("blocker_count") or len(blockers)) - len(blockers)
        if inputs == 1:
            b = group[0]
            lines.append(
                f"{count} app(s) ({who}) wait for input {b['input']} (on {b.get('node')}), "
                f"being written by {_makers(b, report, nodes)}"
            )
            continue
        shown = "; ".join(f"{b['input']} by {_makers(b, report, nodes)}" for b in group[:3])
        rest = inputs - min(3, len(group))
        lines.append(
            f"{count} app(s) ({who}) wait for {inputs} inputs being written: {shown}"
            + (f"; and {rest} more" if rest else "")
        )
    running = report.get("running") or []
    if running:
        longest = running[0]
        extra = " (moving data between nodes)" if longest.get("transfer") else ""
        lines.append(
            f"{report.get('running_count', len(running))} app(s) running; the longest is {longest['uid']} "
            f"on {longest.get('node')}, {_ago(longest.get('seconds'))}{extra}"
        )
    transfers = report.get("transfers") or []
    if transfers:
        lines.append(f"{len(transfers)} transfer(s) between nodes in flight")
    behind = report.get("behind_count") or 0
    if behind:
        lines.append(f"{behind} more app(s) wait further back")
    if status == "RUNNING" and not running and not blockers and not transfers:
        lines.append(
            "no app is running and none is waiting for data being written: the remaining drops "
            "wait for other nodes' news, or the session is about to end"
        )
    path = report.get("critical_path")
    if path and path.get("steps"):
        steps = path["steps"]
        apps = [s for s in steps if s.get("category") == "app" and s.get("seconds") is not None]
        total = sum(s["seconds"] for s in apps)
        first, last = steps[0], steps[-1]
        span = (last.get("end") or 0) - (first.get("start") or first.get("end") or 0)
        lines.append(
            f"critical path: {len(apps)} app(s) in a chain, {total:.2f} s of running over {span:.2f} s"
            + ("" if path.get("complete") else " (as far back as the logs reach)")
        )
        for s in sorted(apps, key=lambda s: -s["seconds"])[:3]:
            lines.append(f"  {s['uid']} on {s.get('node')}: {s['seconds']:.2f} s")
    return lines
