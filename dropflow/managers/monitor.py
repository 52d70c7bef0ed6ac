"""What the web monitor and ``dropflow why`` read of a manager, asked alike of nodes, islands and masters.

Theory of operation
-------------------
Each manager gets one monitor (:func:`monitor_for`) whose methods answer the monitor's questions with plain
JSON-ready dicts: ``overview`` (sessions and members), ``session`` (drops by group and state, by node,
failures, times), ``drops`` (the drops of a group, state or node, a page at a time), ``drop`` (one drop's
log, output tails and timings), ``timings`` (slowest apps, durations by group) and ``why`` (the frontier, or
the critical path).

:class:`NodeMonitor` reads its engine directly: the :class:`~dropflow.managers.census.Census` of each
session, the event log, the output tails; all through snapshots, from the REST thread, never through the
owner loop, so a busy or stuck owner cannot hang the page that is meant to explain it.

:class:`IslandMonitor` asks the monitors of its members -- a manager in the same process directly, a daemon
through :class:`RemoteMonitor` over its REST API -- in parallel, with short timeouts, and merges what they
answer. A member that does not answer is shown as such (silent, lost, unreachable) rather than holding the
page: the island's heartbeats say which members are silent, and the island's fan-out gives up on them. A
master is an island of islands: the same code, one level up, with the members' per-node maps flattened.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..drops.states import SESSION_ENDED
from .census import STATES, Census, group_key
from .errors import ApiError, BadRequest, NotFound
from .why import LIMIT, critical_path, merge_reports, node_report, verdict

if TYPE_CHECKING:
    from ..engine.session import Session
    from .island import DataIslandManager
    from .node_manager import NodeManager

__all__ = ["IslandMonitor", "NodeMonitor", "RemoteMonitor", "monitor_for"]

#: Failures a session view lists in full.
FAILURES = 50
#: Links of a drop listed in its detail (a gather may have 300,000 inputs).
LINKS = 50
#: Longest page of drops.
PAGE_MAX = 1000
_ENDED = frozenset(map(str, SESSION_ENDED))
#: Sessions whose critical path is worth a look (a cancelled one's says little).
_PATHS = frozenset({"FINISHED", "FAILED"})


_SETTLED = frozenset({"COMPLETED", "FINISHED", "SKIPPED", "ERROR", "CANCELLED", "EXPIRED", "DELETED"})


def _settled(totals: dict[str, int]) -> int:
    return sum(n for state, n in totals.items() if state in _SETTLED)


def _page(offset: int, limit: int) -> tuple[int, int]:
    if offset < 0 or not 0 <= limit <= PAGE_MAX:
        raise BadRequest(f"offset must be >= 0 and limit between 0 and {PAGE_MAX}")
    return offset, limit


class NodeMonitor:
    """The monitor of one node manager."""

    def __init__(self, nm: NodeManager) -> None:
        self.nm = nm
        self.name = nm.name
        self._census: dict[str, Census] = {}
        self._lock = threading.Lock()

    def _session(self, sid: str) -> Session:
        session = self.nm.node.sessions.get(sid)
        if session is None:
            raise NotFound(f"node {self.name!r} has no session {sid!r}")
        return session

    def census(self, session: Session) -> Census:
        with self._lock:
            live = self.nm.node.sessions
            for sid in [sid for sid in self._census if sid not in live]:
                del self._census[sid]  # deleted sessions: their census goes with them
            census = self._census.get(session.id)
            if census is None or census._session() is not session:
                census = self._census[session.id] = Census(session)
            return census

    # -- the questions -------------------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        sessions: list[dict[str, Any]] = []
        for sid, s in list(self.nm.node.sessions.items()):
            # Counted without the proxies of other nodes' drops (their owners count them).
            counts = self.census(s).counts()
            sessions.append(
                {
                    "sessionId": sid,
                    "status": str(s.state),
                    "size": counts["drops"],
                    "settled": _settled(counts["totals"]),
                    "created": s.times.get("created"),
                    "ended": s.times.get("end"),
                    "error": s.error,
                    "nodes": [self.name],
                }
            )
        sessions.sort(key=lambda r: -float(r["created"] or 0))
        info = self.nm.info()
        member = {"name": self.name, "status": "ok", "sessions": len(sessions), "load": self.nm.node.load()}
        return {"manager": info, "sessions": sessions, "members": [member]}

    def session(self, sid: str) -> dict[str, Any]:
        s = self._session(sid)
        counts = self.census(s).counts()
        failures = s.failures(FAILURES)  # a million failures must not make every poll copy them all
        return {
            "sessionId": sid,
            "role": "nm",
            "status": str(s.state),
            "size": counts["drops"],
            "settled": _settled(counts["totals"]),
            "error": s.error,
            "times": dict(s.times),
            "states": list(STATES),
            "groups": counts["groups"],
            "totals": counts["totals"],
            "nodes": {
                self.name: {"status": str(s.state), "totals": counts["totals"], "load": self.nm.node.load()}
            },
            "failures": [
                {"uid": f.uid, "kind": f.kind, "message": f.message, "node": self.name} for f in failures
            ],
            "failure_count": s.failure_count(),
            "census": {"age": counts["age"], "cost": counts["cost"]},
            "unreachable": {},
        }

    def drops(
        self,
        sid: str,
        group: str | None = None,
        state: str | None = None,
        node: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        offset, limit = _page(offset, limit)
        s = self._session(sid)
        if node is not None and node != self.name:
            return {"total": 0, "offset": offset, "drops": []}
        total, rows = self.census(s).drops(group, state, offset, limit)
        for row in rows:
            row["node"] = self.name
        return {"total": total, "offset": offset, "drops": rows}

    def drop(self, sid: str, uid: str) -> dict[str, Any]:
        s = self._session(sid)
        graph = s.graph
        n = graph.by_id.get(uid) if graph is not None else None
        if n is None:
            raise NotFound(f"session {sid!r} has no drop {uid!r} on node {self.name!r}")
        spec = n.spec
        events = s.story(uid)
        core = s.core
        error = next((m for u, m in (core.failures[:] if core else ()) if u == uid), None)
        tails = s.outputs.get(uid)

        def link(d: Any) -> dict[str, Any]:
            return {
                "uid": d.spec.id,
                "kind": d.spec.kind,
                "state": str(d.state),
                "node": d.peer if type(d.peer) is str else self.name,
            }

        out: dict[str, Any] = {
            "uid": uid,
            "name": spec.name,
            "kind": spec.kind,
            "category": spec.CATEGORY,
            "group": group_key(spec),
            "node": n.peer if type(n.peer) is str else self.name,
            "proxy": type(n.peer) is str,
            "state": str(n.state),
            "error": error,
            "events": [{"time": e.time, "from": e.start, "to": e.end, "cause": e.cause} for e in events],
            "stdout": tails[0] if tails else None,
            "stderr": tails[1] if tails else None,
        }
        runs = [e for e in events if e.end == "RUNNING"]
        ends = [e for e in events if e.end in ("FINISHED", "ERROR", "COMPLETED", "CANCELLED", "SKIPPED")]
        timing: dict[str, Any] = {"first": events[0].time if events else None}
        if runs:
            timing["started"] = runs[-1].time
            timing["attempts"] = len(runs)
        if ends:
            timing["settled"] = ends[-1].time
        if runs and ends and ends[-1].time >= runs[-1].time:
            timing["seconds"] = round(ends[-1].time - runs[-1].time, 6)
        elif runs and str(n.state) == "RUNNING":
            timing["running_for"] = round(time.time() - runs[-1].time, 3)
        out["timing"] = timing
        if spec.CATEGORY == "app":
            app: Any = n
            out["inputs"] = [link(d) for d in app.inputs[:LINKS]]
            out["input_count"] = len(app.inputs)
            out["outputs"] = [link(d) for d in app.outputs[:LINKS]]
            out["output_count"] = len(app.outputs)
        else:
            consumers = list(getattr(n, "consumers", None) or ())
            out["consumers"] = [link(a) for a in consumers[:LINKS]]
            out["consumer_count"] = len(consumers)
            # Producers are not linked from a data drop; the log names them as the causes of its changes.
            makers = {e.cause for e in events if e.end in ("WRITING", "COMPLETED", "ERROR", "SKIPPED")}
            out["producers"] = [link(graph.by_id[m]) for m in sorted(makers) if graph and m in graph.by_id]
        return out

    def timings(self, sid: str) -> dict[str, Any]:
        s = self._session(sid)
        graph = s.graph
        events = s.log.snapshot()  # (time, uid, start, end, cause)
        started: dict[str, float] = {}
        runs: list[tuple[float, str, float]] = []
        for t, uid, _start, end, _cause in events:
            if end == "RUNNING":
                started[uid] = t
            elif (end == "FINISHED" or end == "ERROR") and uid in started:
                runs.append((t - started.pop(uid), uid, t))
        by_group: dict[str, dict[str, Any]] = {}
        specs = graph.by_id if graph is not None else {}
        proxies = {uid for uid, n in specs.items() if type(n.peer) is str} if graph is not None else set()
        runs = [r for r in runs if r[1] not in proxies]  # other nodes' apps: their owners time them
        for seconds, uid, _end in runs:
            n = specs.get(uid)
            key = group_key(n.spec) if n is not None else "?"
            g = by_group.setdefault(key, {"count": 0, "sum": 0.0, "max": 0.0})
            g["count"] += 1
            g["sum"] += seconds
            g["max"] = max(g["max"], seconds)
        runs.sort(reverse=True)
        slowest = [
            {"uid": uid, "node": self.name, "seconds": round(sec, 6), "end": end}
            for sec, uid, end in runs[:LIMIT]
        ]
        return {
            "sessionId": sid,
            "times": dict(s.times),
            "slowest": slowest,
            "by_group": by_group,
            "log_from": events[0][0] if events else None,
            "log_full": len(events) >= self.nm.node.log_size,
        }

    def why(self, sid: str, start: str | None = None) -> dict[str, Any]:
        s = self._session(sid)
        if start is not None:
            return {"sessionId": sid, "critical_path": critical_path(s, self.name, start)}
        report = node_report(s, self.name)
        counts = self.census(s).counts()  # without proxies, unlike the session's own progress
        report["size"], report["settled"] = counts["drops"], _settled(counts["totals"])
        report["nodes"] = {self.name: {"status": str(s.state), "error": s.error}}
        report["critical_path"] = critical_path(s, self.name) if str(s.state) in _PATHS else None
        report["verdict"] = verdict(report)
        return report


class RemoteMonitor:
    """The monitor of a manager that runs as a daemon, through its REST API."""

    #: Seconds to wait for an answer: a member that takes longer is shown as not answering.
    TIMEOUT = 5.0
    #: The frontier and timings take a pass over the session's drops and log: a little longer.
    SLOW_TIMEOUT = 8.0

    def __init__(self, client: Any) -> None:
        self.client = client

    def _get(self, path: str, params: dict[str, Any] | None = None, slow: bool = False) -> Any:
        # RestClient._call turns error answers back into the ApiError the daemon raised.
        timeout = self.SLOW_TIMEOUT if slow else self.TIMEOUT
        return self.client._call("GET", path, params=params, timeout=timeout)

    def overview(self) -> dict[str, Any]:
        return self._get("/api/monitor")  # type: ignore[no-any-return]

    def session(self, sid: str) -> dict[str, Any]:
        return self._get(f"/api/sessions/{sid}/monitor")  # type: ignore[no-any-return]

    def drops(
        self,
        sid: str,
        group: str | None = None,
        state: str | None = None,
        node: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        params = {"group": group, "state": state, "node": node, "offset": offset, "limit": limit}
        return self._get(  # type: ignore[no-any-return]
            f"/api/sessions/{sid}/monitor/drops", {k: v for k, v in params.items() if v is not None}
        )

    def drop(self, sid: str, uid: str) -> dict[str, Any]:
        return self._get(f"/api/sessions/{sid}/monitor/drop", {"uid": uid})  # type: ignore[no-any-return]

    def timings(self, sid: str) -> dict[str, Any]:
        return self._get(f"/api/sessions/{sid}/monitor/timings", slow=True)  # type: ignore[no-any-return]

    def why(self, sid: str, start: str | None = None) -> dict[str, Any]:
        return self._get(  # type: ignore[no-any-return]
            f"/api/sessions/{sid}/why", {"from": start} if start is not None else None, slow=True
        )


class IslandMonitor:
    """The monitor of an island (or master) manager: its members' monitors, merged."""

    #: A member that has not answered heartbeats for this long is shown as silent.
    SILENT_AFTER = 3.0

    def __init__(self, island: DataIslandManager) -> None:
        self.m = island
        self.name = island.name

    # -- members --------------------------------------------------------------------------------------------

    def _ask(self, names: list[str], question: Callable[[Any], Any]) -> dict[str, Any]:
        """Ask each member's monitor in parallel (the island's fan-out gives up on silent members)."""
        return self.m._fan(names, lambda client: question(_member_monitor(client)))

    def _ask_each(self, names: list[str], question: Callable[[str, Any], Any]) -> dict[str, Any]:
        """As :meth:`_ask`, with a question that depends on the member (given its name)."""
        return self.m._fan(names, lambda client: question(client.name, _member_monitor(client)))

    def _state_of(self, name: str, lost: dict[str, str]) -> dict[str, Any]:
        silent = self.m._monitor.silent_for(name)
        if name in lost:
            return {"status": "LOST", "error": lost[name], "silent_for": silent}
        if silent is not None and silent > self.SILENT_AFTER:
            return {"status": "SILENT", "silent_for": round(silent, 1)}
        return {"status": "ok", "silent_for": None if silent is None else round(silent, 1)}

    def _island_session(self, sid: str) -> Any:
        return self.m._session(sid)  # raises NotFound

    # -- the questions -------------------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        names = self.m.node_names()
        answers = self._ask(names, lambda mon: mon.overview())
        settled: dict[str, int] = {}
        members = []
        for name in names:
            a = answers.get(name)
            row: dict[str, Any] = {"name": name, **self._state_of(name, {})}
            if isinstance(a, Exception) or a is None:
                row["status"] = "UNREACHABLE" if row["status"] == "ok" else row["status"]
                row["error"] = str(a)
            else:
                row["sessions"] = len(a.get("sessions", []))
                sub = a.get("members", [])
                row["load"] = sub[0].get("load") if len(sub) == 1 else None
                row["members"] = sub if self.m.role == "mm" else None
                for s in a.get("sessions", []):
                    settled[s["sessionId"]] = settled.get(s["sessionId"], 0) + (s.get("settled") or 0)
            members.append(row)
        sessions = []
        for info in self.m.sessions():
            sid = info["sessionId"]
            s = self.m._sessions.get(sid)
            ended = info["status"] in _ENDED
            sessions.append(
                {
                    **info,
                    "settled": settled.get(sid, 0) if not ended or sid in settled else info.get("size", 0),
                    "ended": s.times.get("end") if s is not None else None,
                }
            )
        sessions.sort(key=lambda r: -(r.get("created") or 0))
        return {"manager": self.m.info(), "sessions": sessions, "members": members}

    def session(self, sid: str) -> dict[str, Any]:
        s = self._island_session(sid)
        info = self.m.session_info(sid)
        live = [n for n in s.nodes if n not in s.lost]
        answers = self._ask(live, lambda mon: mon.session(sid))
        groups: dict[str, dict[str, Any]] = {}
        totals: dict[str, int] = {}
        nodes: dict[str, Any] = {}
        failures: list[dict[str, Any]] = []
        failure_count = settled = 0
        unreachable = {}
        for name in s.nodes:
            a = answers.get(name)
            if name in s.lost:
                nodes[name] = {**self._state_of(name, s.lost), "totals": {}}
                continue
            if isinstance(a, Exception) or a is None:
                unreachable[name] = str(a)
                nodes[name] = {**self._state_of(name, s.lost), "totals": {}, "error": str(a)}
                if nodes[name]["status"] == "ok":
                    nodes[name]["status"] = "UNREACHABLE"
                continue
            for g in a.get("groups", []):
                into = groups.setdefault(g["key"], {**g, "counts": {}})
                for state, n in g["counts"].items():
                    into["counts"][state] = into["counts"].get(state, 0) + n
            for state, n in a.get("totals", {}).items():
                totals[state] = totals.get(state, 0) + n
            if self.m.role == "mm":
                for node, row in a.get("nodes", {}).items():
                    nodes[node] = {**row, "island": name}
                unreachable.update(a.get("unreachable", {}))
            else:
                nodes[name] = {**a["nodes"].get(name, {}), **self._state_of(name, s.lost)}
                nodes[name]["status"] = a.get("status")
            failures += a.get("failures", [])
            failure_count += a.get("failure_count", 0)
            settled += a.get("settled", 0)
        return {
            "sessionId": sid,
            "role": self.m.role,
            "status": info["status"],
            "size": info.get("size", 0),
            "settled": settled,
            "error": s.error,
            "times": dict(s.times),
            "states": list(STATES),
            "groups": list(groups.values()),
            "totals": totals,
            "nodes": nodes,
            "failures": failures[:FAILURES],
            "failure_count": failure_count,
            "unreachable": unreachable,
        }

    def drops(
        self,
        sid: str,
        group: str | None = None,
        state: str | None = None,
        node: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        offset, limit = _page(offset, limit)
        s = self._island_session(sid)
        members = [n for n in s.nodes if n not in s.lost]
        if node is not None and self.m.role != "mm":
            members = [n for n in members if n == node]
        # Two rounds: how many each member has, then the page, cut across members in name order.
        counts = self._ask(members, lambda mon: mon.drops(sid, group, state, node, 0, 0))
        wanted: dict[str, tuple[int, int]] = {}
        total = 0
        for name in sorted(members):
            c = counts.get(name)
            n = c["total"] if isinstance(c, dict) else 0
            lo, hi = max(offset, total), min(offset + limit, total + n)
            if hi > lo:
                wanted[name] = (lo - total, hi - lo)
            total += n
        pages = self._ask_each(
            list(wanted), lambda name, mon: mon.drops(sid, group, state, node, *wanted[name])
        )
        rows: list[dict[str, Any]] = []
        for name in sorted(wanted):
            page = pages.get(name)
            if isinstance(page, dict):
                rows += page["drops"]
        return {"total": total, "offset": offset, "drops": rows}

    def drop(self, sid: str, uid: str) -> dict[str, Any]:
        s = self._island_session(sid)
        member = s.placement.get(uid)
        if member is None:
            raise NotFound(f"session {sid!r} has no drop {uid!r}")
        answer = self._ask([member], lambda mon: mon.drop(sid, uid)).get(member)
        if isinstance(answer, ApiError):
            raise answer
        if isinstance(answer, Exception) or answer is None:
            raise NotFound(f"drop {uid!r} is on {member!r}, which does not answer: {answer}")
        return answer  # type: ignore[no-any-return]

    def timings(self, sid: str) -> dict[str, Any]:
        s = self._island_session(sid)
        answers = self._ask([n for n in s.nodes if n not in s.lost], lambda mon: mon.timings(sid))
        slowest: list[dict[str, Any]] = []
        by_group: dict[str, dict[str, Any]] = {}
        log_from: float | None = None
        full = False
        for a in answers.values():
            if not isinstance(a, dict):
                continue
            slowest += a.get("slowest", [])
            for key, g in a.get("by_group", {}).items():
                into = by_group.setdefault(key, {"count": 0, "sum": 0.0, "max": 0.0})
                into["count"] += g["count"]
                into["sum"] += g["sum"]
                into["max"] = max(into["max"], g["max"])
            if a.get("log_from") is not None:
                log_from = max(log_from or 0.0, a["log_from"])
            full = full or bool(a.get("log_full"))
        slowest.sort(key=lambda r: -r["seconds"])
        return {
            "sessionId": sid,
            "times": dict(s.times),
            "slowest": slowest[:LIMIT],
            "by_group": by_group,
            "log_from": log_from,
            "log_full": full,
        }

    def why(self, sid: str, start: str | None = None) -> dict[str, Any]:
        s = self._island_session(sid)
        if start is not None:
            member = s.placement.get(start)
            if member is None:
                raise NotFound(f"session {sid!r} has no drop {start!r}")
            answer = self._ask([member], lambda mon: mon.why(sid, start)).get(member)
            if not isinstance(answer, dict):
                return {"sessionId": sid, "critical_path": None}
            return answer
        live = [n for n in s.nodes if n not in s.lost]
        answers = self._ask(live, lambda mon: mon.why(sid))
        reports = {n: a for n, a in answers.items() if isinstance(a, dict)}
        merged = merge_reports(reports)
        nodes = merged["nodes"]
        for name in s.nodes:
            if self.m.role == "mm" and name in reports:
                continue  # an island: its own map of its nodes is in
            state = self._state_of(name, s.lost)
            if name in reports:
                nodes[name] = {**nodes.get(name, {}), **state, "status": reports[name].get("status")}
                if state["status"] != "ok":
                    nodes[name]["status"] = state["status"]
            else:
                error = answers.get(name)
                nodes[name] = {**state, "error": state.get("error") or (str(error) if error else None)}
                if state["status"] == "ok":
                    nodes[name]["status"] = "UNREACHABLE"
        # Producers of inputs that live on members which did not answer: the island knows them from deploy.
        producers = getattr(s, "producers", {})
        for b in merged["blockers"]:
            if not b["producers"] and b["input"] in producers:
                b["producers"] = [
                    {"uid": uid, "node": node, "state": None, "since": None, "seconds": None}
                    for uid, node in producers[b["input"]][:LIMIT]
                ]
                running = {row["uid"]: row for row in merged["running"]}
                for p in b["producers"]:
                    row = running.get(p["uid"])
                    if row is not None:
                        p.update(state="RUNNING", since=row.get("since"), seconds=row.get("seconds"))
        info = self.m.session_info(sid)
        merged.update(
            sessionId=sid,
            status=info["status"],
            size=info.get("size", merged["size"]),
            error=s.error,
            critical_path=self._critical(s, reports) if info["status"] in _PATHS else None,
        )
        merged["verdict"] = verdict(merged)
        return merged

    def _critical(self, s: Any, reports: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        """The members' critical paths stitched: start with the one that ended last and follow it back
        across members through the drops where each piece continues."""
        best: dict[str, Any] | None = None
        for r in reports.values():
            path = r.get("critical_path")
            if (
                path
                and path.get("steps")
                and (
                    best is None or (path["steps"][-1].get("end") or 0) > (best["steps"][-1].get("end") or 0)
                )
            ):
                best = path
        if best is None:
            return None
        steps = list(best["steps"])
        here = best
        for _ in range(50):
            cont = here.get("continues")
            if not cont:
                break
            member = s.placement.get(cont["uid"])
            if member is None:
                break
            answer = self._ask([member], _why_from(s.id, cont["uid"])).get(member)
            if not isinstance(answer, dict) or not answer.get("critical_path"):
                break
            here = answer["critical_path"]
            steps = here["steps"] + steps
        return {**best, "steps": steps, "continues": here.get("continues"), "complete": here.get("complete")}


def _why_from(sid: str, uid: str) -> Callable[[Any], Any]:
    return lambda mon: mon.why(sid, uid)


_monitors: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_monitors_lock = threading.Lock()


def monitor_for(manager: Any) -> NodeMonitor | IslandMonitor:
    """The monitor of a node, island or master manager (one per manager, made on first use)."""
    with _monitors_lock:
        found = _monitors.get(manager)
        if found is None:
            found = NodeMonitor(manager) if manager.role == "nm" else IslandMonitor(manager)
            _monitors[manager] = found
        return found


def _member_monitor(client: Any) -> Any:
    """A member's monitor: the manager itself in this process, else its daemon's REST API."""
    if hasattr(client, "role"):  # a NodeManager or an island manager, not a client of one
        return monitor_for(client)
    return RemoteMonitor(client)
