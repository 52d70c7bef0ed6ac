"""DALiuGE's representation of the session API, served under ``/api`` for DALiuGE's own clients.

Theory of operation
-------------------
DALiuGE's clients (``dlg.clients``, ``dlg submit``, ``dlg map``, EAGLE's translator page) hard-code the
``/api`` prefix, send no header that names them (no ``Accept``, no ``User-Agent``), and read answers in
DALiuGE's shapes: states as integers, a node manager's status a bare integer and an island's
``{node: int}``, 200 for every success, members as ``host:port`` strings. So under ``/api`` the resources
DALiuGE defines answer DALiuGE's way, and dropflow's own representation lives under ``/api/v1``; the
resources DALiuGE does not have (health, wait, summary, ...) answer the same under both prefixes.

The resources here are thin views: each calls the same manager methods as dropflow's own resources and
converts the answer -- state names to DALiuGE's codes (:data:`SESSION_CODE`, :data:`DROP_CODE`,
:data:`APP_CODE`), node names to addresses -- then encodes it through the typed bodies of :mod:`.wire`. An
island's per-node routes and a master's nested status are the members' own DALiuGE views: asked of the
member in this process, or over REST at the member's ``/api``. Errors need nothing here: every error body
carries DALiuGE's ``type`` and ``args`` too (:mod:`.errors`).

Two pure pieces serve the managers themselves: :func:`find_member` lets an island accept a graph whose
``node`` names a host as ``dlg map`` writes it (``host``, ``host:port`` or ``host:port:events:rpc``), and
:func:`check_completed` checks the roots a client names in deploy's ``completed``.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import falcon
import msgspec

from ..drops.errors import GraphError, Problem
from ..drops.graph import decode_physical
from ..drops.spec import DropSpec, port_drops
from ..loading import decode_graph_bytes
from . import wire
from .errors import ApiError, BadGraph, Conflict, NotFound

__all__ = [
    "APP_CODE",
    "DROP_CODE",
    "SESSION_CODE",
    "address",
    "check_completed",
    "find_member",
    "parse_address",
    "resources",
    "roots",
]

SESSION_CODE = {
    "PRISTINE": 0,
    "BUILDING": 1,
    "DEPLOYING": 2,
    "RUNNING": 3,
    "FINISHED": 4,
    "CANCELLED": 5,
    "FAILED": 6,
    "LOST": 6,  # a member that was lost: its part failed
}
DROP_CODE = {
    "INITIALIZED": 0,
    "WRITING": 1,
    "COMPLETED": 2,
    "ERROR": 3,
    "EXPIRED": 4,
    "DELETED": 5,
    "CANCELLED": 6,
    "SKIPPED": 7,
}
APP_CODE = {"NOT_RUN": 0, "RUNNING": 1, "FINISHED": 2, "ERROR": 3, "CANCELLED": 4, "SKIPPED": 5}
#: An app's drop ``status`` in DALiuGE: INITIALIZED until it ends, then COMPLETED, ERROR, ...
APP_DROP_CODE = {"NOT_RUN": 0, "RUNNING": 0, "FINISHED": 2, "ERROR": 3, "CANCELLED": 6, "SKIPPED": 7}
#: DALiuGE's default REST port of a node manager, assumed when an address names none.
NODE_PORT = 8000


# -- addresses ----------------------------------------------------------------------------------------------


def address(url: str | None, name: str) -> str:
    """How DALiuGE names a member: ``host:port`` of its URL (its name when it has no URL: in process)."""
    if not url:
        return name
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or name
    return f"{host}:{parts.port}" if parts.port else host


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


def _host(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text if _HOSTNAME.match(text) else None


def _port(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def parse_address(ref: str) -> tuple[str, int | None] | None:
    """``host``, ``host:port`` or ``host:port:events:rpc`` (DALiuGE's ``Node``), or a URL -> (host, port);
    None if ``ref`` is none of these."""
    ref = ref.strip()
    if "://" in ref:
        try:
            parts = urllib.parse.urlsplit(ref)
            host, port = parts.hostname, parts.port
        except ValueError:
            return None
        found = _host(host) if host else None
        return (found, port) if found else None
    if ref.startswith("["):  # [v6]:port
        inside, _, rest = ref[1:].partition("]")
        v6 = _host(inside)
        number = _port(rest[1:].split(":")[0]) if rest.startswith(":") else None
        if v6 is None or (rest and number is None):
            return None
        return v6, number
    chunks = ref.split(":")
    name = _host(chunks[0])
    if name is None or len(chunks) > 4:
        return None
    if len(chunks) == 1:
        return name, None
    number = _port(chunks[1])
    return (name, number) if number is not None else None


def _same_host(a: str, b: str) -> bool:
    from .auth import same_endpoint

    return a == b or same_endpoint(f"http://{a}:1", f"http://{b}:1")


def find_member(ref: str, members: Mapping[str, str | None]) -> str | None:
    """The member (name -> URL) that ``ref`` names: its name, or its address as DALiuGE writes it. A host
    without a port names the member on that host if there is exactly one (else the one on port 8000)."""
    if ref in members:
        return ref
    parsed = parse_address(ref)
    if parsed is None:
        return None
    host, port = parsed
    located = {name: urllib.parse.urlsplit(url) for name, url in members.items() if url and "://" in url}
    on_host = [name for name, u in located.items() if u.hostname and _same_host(u.hostname, host)]
    if port is not None:
        matches = [name for name in on_host if located[name].port == port]
    elif len(on_host) == 1:
        matches = on_host
    else:
        matches = [name for name in on_host if located[name].port == NODE_PORT]
    return matches[0] if len(matches) == 1 else None


# -- deploy's ``completed`` ---------------------------------------------------------------------------------


def roots(specs: Iterable[DropSpec]) -> set[str]:
    """The drops a session starts with: data drops no app writes, apps that read nothing."""
    specs = list(specs)
    written = {
        uid
        for s in specs
        if s.CATEGORY == "app"
        for value in getattr(s, "outputs", {}).values()
        for uid in port_drops(value)
    }
    return {
        s.id
        for s in specs
        if (not getattr(s, "inputs", None) if s.CATEGORY == "app" else s.id not in written)
    }


def check_completed(specs: Iterable[DropSpec], completed: Iterable[str]) -> None:
    """DALiuGE triggers the roots a client names in ``completed``, and leaves the others waiting for someone
    to complete them from outside -- which dropflow has no way to do: it triggers every root. So the names
    must be the roots, all of them (``dlg submit`` and EAGLE send exactly those)."""
    specs = list(specs)
    named = {uid for uid in completed if uid}
    known = {s.id for s in specs}
    starts = roots(specs)
    problems = []
    unknown = sorted(named - known)
    if unknown:
        problems.append(Problem("completed", None, f"UIDs for completed drops not found: {unknown}"))
    produced = sorted((named & known) - starts)
    if produced:
        problems.append(
            Problem("completed", None, f"{produced} are not roots: apps of the graph write them (or read)")
        )
    left = sorted(starts - named)
    if left:
        shown = ", ".join(left[:10]) + (f" and {len(left) - 10} more" if len(left) > 10 else "")
        problems.append(
            Problem(
                "completed",
                None,
                f"roots {shown} are not in 'completed': dropflow triggers every root when a session starts, "
                "and nothing could complete these later. Name every root (dlg submit and EAGLE do), or "
                "leave 'completed' out",
            )
        )
    if problems:
        raise BadGraph.from_error(GraphError(problems, "deploy"))


# -- views --------------------------------------------------------------------------------------------------


def _is_manager(member: Any) -> bool:
    """A manager in this process (not a REST client of one)."""
    return getattr(member, "role", None) is not None


def _member_view(member: Any, path: str, view: Callable[[Any], Any]) -> Any:
    """A member's DALiuGE view: computed here for a manager in this process, else asked at its ``/api``."""
    if _is_manager(member):
        return view(member)
    return member.dlg_get(path)


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def status_view(m: Any, sid: str) -> Any:
    """A node manager's state as an integer; an island's ``{node: int}``; a master's
    ``{island: {node: int}}`` (once its islands hold parts; before, ``{island: int}``)."""
    if m.role == "nm":
        return SESSION_CODE[m.status(sid)]
    states = m.member_states(sid)
    if m.role == "dim" or not m.deployed(sid):
        return {m.member_address(name): SESSION_CODE.get(state, 6) for name, state in states.items()}
    out: dict[str, Any] = {}
    for name in states:
        where = m.member_address(name)
        try:
            out[where] = _member_view(
                m.member(name), f"/api/sessions/{_q(sid)}/status", lambda island: status_view(island, sid)
            )
        except ApiError:  # a lost island: its part failed
            out[where] = {where: SESSION_CODE["FAILED"]}
    return out


def graph_status_view(entries: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for uid, entry in entries.items():
        run = entry.get("execStatus")
        if run is not None:
            out[uid] = {"status": APP_DROP_CODE[run], "execStatus": APP_CODE[run]}
        else:
            out[uid] = {"status": DROP_CODE[entry["status"]]}
    return out


def placement_names(m: Any) -> tuple[dict[str, str], dict[str, str]]:
    """How DALiuGE names the nodes and islands a manager places drops on: name -> ``host:port``."""
    if m.role == "nm":
        return {}, {}
    members = {name: address(url, name) for name, url in m.member_urls().items()}
    if m.role == "dim":
        return members, {}
    return {name: address(url, name) for name, url in m.node_urls().items()}, members


def graph_view(
    data: bytes, nodes: Mapping[str, str] | None = None, islands: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """A session's drops as DALiuGE lists them: ``{oid: {oid, categoryType, node, island, links...}}``, the
    placements as DALiuGE names them (``nodes``, ``islands``: name -> address)."""
    nodes, islands = nodes or {}, islands or {}
    specs = decode_physical(data).drops
    consumers: dict[str, list[str]] = {}
    producers: dict[str, list[str]] = {}
    out: dict[str, dict[str, Any]] = {}
    for s in specs:
        entry: dict[str, Any] = {"oid": s.id, "name": s.name or s.id, "kind": s.kind}
        if s.node is not None:
            entry["node"] = nodes.get(s.node, s.node)
        if s.island is not None:
            entry["island"] = islands.get(s.island, s.island)
        if s.CATEGORY == "app":
            entry["categoryType"] = "Application"
            ins = getattr(s, "inputs", {})
            outs = getattr(s, "outputs", {})
            entry["inputs"] = [{u: port} for port, v in ins.items() for u in port_drops(v)]
            entry["outputs"] = [{u: port} for port, v in outs.items() for u in port_drops(v)]
            for _port, v in ins.items():
                for u in port_drops(v):
                    consumers.setdefault(u, []).append(s.id)
            for _port, v in outs.items():
                for u in port_drops(v):
                    producers.setdefault(u, []).append(s.id)
        else:
            entry["categoryType"] = "Data"
        out[s.id] = entry
    for uid, apps in consumers.items():
        if uid in out:
            out[uid]["consumers"] = apps
    for uid, apps in producers.items():
        if uid in out:
            out[uid]["producers"] = apps
    return out


def dir_view(m: Any, sid: str) -> dict[str, Any]:
    dirs = m.session_dirs(sid)
    first = next(iter(dirs.values()), "")
    return {"dir": first, "dirs": dirs} if m.role != "nm" else {"dir": first}


def session_view(m: Any, sid: str) -> dict[str, Any]:
    graph = graph_view(m.graph(sid), *placement_names(m))
    return {"status": status_view(m, sid), "graph": graph, "dir": dir_view(m, sid)}


def sessions_view(m: Any) -> list[dict[str, Any]]:
    out = []
    for info in m.sessions():
        sid = info["sessionId"]
        try:
            out.append({"sessionId": sid, "status": status_view(m, sid), "size": info.get("size") or 0})
        except NotFound:  # deleted meanwhile
            continue
    return out


def _time(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="milliseconds")


def log_text(m: Any, sid: str) -> str:
    """The session's log: one line per state change, as DALiuGE's session log file has one per record."""
    lines = []
    for e in m.events(sid):
        where = f" [{e['node']}]" if m.role != "nm" and e.get("node") else ""
        lines.append(
            f"{_time(e['time'])}{where} {e['uid']}: {e['from']} -> {e['to']} (cause: {e['cause']})\n"
        )
    return "".join(lines)


def drop_view(m: Any, sid: str, uid: str) -> dict[str, Any]:
    """DALiuGE's drop page data: the session's state and the drop's log records."""
    story = m.drop_log(sid, uid)
    logs = [
        {
            "Time": _time(e["time"]),
            "Level": "INFO",
            "Message": f"{e['from']} -> {e['to']} (cause: {e['cause']})",
        }
        for e in story.get("events", [])
    ]
    if story.get("error"):
        logs.append({"Time": logs[-1]["Time"] if logs else "", "Level": "ERROR", "Message": story["error"]})
    return {"session": sid, "status": SESSION_CODE[m.status(sid)], "oid": uid, "logs": logs}


def drop_data_view(m: Any, sid: str, uid: str) -> dict[str, str]:
    from .results import drop_data

    m.drop_log(sid, uid)  # NoDropException for a drop the session does not have
    try:
        answer = drop_data(m, sid, uid, content=False)
    except (Conflict, NotFound):  # an app, or data not (or no longer) there: DALiuGE names no path either
        return {"filepath": ""}
    return {"filepath": answer.get("path") or ""}


def info_view(m: Any) -> dict[str, Any]:
    if m.role == "nm":
        return {"sessions": sessions_view(m)}
    return {
        "hosts": [m.member_address(n) for n in m.node_names()],
        "sessionIds": [s["sessionId"] for s in m.sessions()],
    }


# -- resources ----------------------------------------------------------------------------------------------


def _send(resp: falcon.Response, value: Any, kind: Any) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = msgspec.json.encode(msgspec.convert(value, kind))


_SUCCESS = msgspec.json.encode(wire.DlgSuccess())


def _success(resp: falcon.Response) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = _SUCCESS


class _Resource:
    def __init__(self, manager: Any) -> None:
        self.m = manager


class Info(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send(resp, info_view(self.m), wire.DlgManagerInfo)


class SubmissionMethods(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # BROWSER: a page may deploy through this API; SERVER: a translator may.
        _send(resp, {"methods": ["BROWSER", "SERVER"]}, wire.DlgMethods)


class PastSessions(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ended = [
            s["sessionId"] for s in self.m.sessions() if s["status"] in ("FINISHED", "FAILED", "CANCELLED")
        ]
        _send(resp, [{"sessionId": sid} for sid in ended], list[wire.DlgPastSession])


class Sessions(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send(resp, sessions_view(self.m), list[wire.DlgSessionItem])

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = wire.decode_body(req.context.raw, wire.CreateSession, wire.CREATE_SESSION)
        self.m.create_session(body.sessionId)
        _send(resp, {"sessionId": body.sessionId}, wire.DlgCreated)


class Session(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _send(resp, session_view(self.m, sid), wire.DlgSession)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        self.m.delete_session(sid)
        _success(resp)


class Status(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _send(resp, status_view(self.m, sid), wire.DlgStatus)


class Append(_Resource):
    raw_body = True

    def before(self, sid: str) -> None:
        self.m.status(sid)  # 404 before reading a large body

    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        try:
            drops = decode_graph_bytes(req.context.raw, f"session {sid}")
        except GraphError as exc:
            raise BadGraph.from_error(exc) from None
        self.m.append(sid, drops)
        _success(resp)


def completed_param(req: falcon.Request, raw: bytes) -> list[str] | None:
    """The roots named in deploy's ``completed``: a form field (DALiuGE's client) or a query parameter."""
    values: list[str] = []
    found = False
    if raw:
        form = urllib.parse.parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        if "completed" in form:
            found = True
            values += form["completed"]
    query = req.get_param_as_list("completed")
    if query is not None:
        found = True
        values += query
    if not found:
        return None
    return [uid for value in values for uid in value.split(",") if uid]


class Deploy(_Resource):
    raw_body = True

    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        self.m.deploy(sid, completed=completed_param(req, req.context.raw))
        _success(resp)


class Cancel(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        self.m.cancel(sid)
        _success(resp)


class Graph(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _send(resp, graph_view(self.m.graph(sid), *placement_names(self.m)), dict[str, dict[str, Any]])


class GraphStatus(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _send(resp, graph_status_view(self.m.graph_status(sid)), dict[str, wire.DlgDropStatus])


class Logs(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.data = log_text(self.m, sid).encode()
        resp.downloadable_as = f"dlg_{sid}.log"


class Dir(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _send(resp, dir_view(self.m, sid), wire.DlgDir)


class DropStatus(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str, uid: str) -> None:
        _send(resp, drop_view(self.m, sid, uid), wire.DlgDropLogs)


class DropDataPath(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str, uid: str) -> None:
        _send(resp, drop_data_view(self.m, sid, uid), wire.DlgDropData)


# -- islands and masters ------------------------------------------------------------------------------------


class Nodes(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.m.role == "mm":  # DALiuGE's master lists every node of every island
            _send(resp, {"nodes": self.m.all_node_addresses()}, wire.DlgNodes)
        else:
            _send(resp, [self.m.member_address(n) for n in self.m.node_names()], list[str])


class Islands(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send(resp, {"islands": [self.m.member_address(n) for n in self.m.node_names()]}, wire.DlgIslands)


class Node(_Resource):
    """``POST /api/node/{host:port}``, no body: adopt the manager there; ``DELETE``: forget it."""

    raw_body = True

    def on_post(self, req: falcon.Request, resp: falcon.Response, node: str) -> None:
        self.m.add_node_address(node)
        _success(resp)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, node: str) -> None:
        self.m.remove_node(self.m.resolve_member(node))
        _success(resp)


def node_view(m: Any, node: str, what: str, sid: str = "") -> Any:
    """An island's (or master's) view of one node: its sessions, or its part of session ``sid`` (``what``:
    sessions, session, status, graph, graph_status) -- the node's own DALiuGE view. A master passes the
    question to the island that holds the node."""
    q = _q(sid)
    path, view = {
        "sessions": ("/api/sessions", sessions_view),
        "session": (f"/api/sessions/{q}", lambda x: session_view(x, sid)),
        "status": (f"/api/sessions/{q}/status", lambda x: status_view(x, sid)),
        "graph": (f"/api/sessions/{q}/graph", lambda x: graph_view(x.graph(sid), *placement_names(x))),
        "graph_status": (f"/api/sessions/{q}/graph/status", lambda x: graph_status_view(x.graph_status(sid))),
    }[what]
    name = find_member(node, m.member_urls())
    if name is not None:
        return _member_view(m.member(name), path, view)
    island = m.island_of(node) if m.role == "mm" else None
    if island is None:
        raise NotFound(f"{m.name!r} has no node {node!r}")
    suffix = path.removeprefix("/api")
    return _member_view(
        m.member(island), f"/api/node/{_q(node)}{suffix}", lambda isl: node_view(isl, node, what, sid)
    )


class NodeSessions(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, node: str) -> None:
        _send(resp, node_view(self.m, node, "sessions"), list[wire.DlgSessionItem])


class NodeSession(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, node: str, sid: str) -> None:
        _send(resp, node_view(self.m, node, "session", sid), wire.DlgSession)


class NodeStatus(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, node: str, sid: str) -> None:
        _send(resp, node_view(self.m, node, "status", sid), wire.DlgStatus)


class NodeGraph(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, node: str, sid: str) -> None:
        _send(resp, node_view(self.m, node, "graph", sid), dict[str, dict[str, Any]])


class NodeGraphStatus(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, node: str, sid: str) -> None:
        _send(resp, node_view(self.m, node, "graph_status", sid), dict[str, wire.DlgDropStatus])


def resources(manager: Any) -> dict[str, Any]:
    """Path -> resource of DALiuGE's representation, for this manager's role."""
    m = manager
    routes: dict[str, Any] = {
        "/api": Info(m),
        "/api/submission_method": SubmissionMethods(m),
        "/api/past_sessions": PastSessions(m),
        "/api/sessions": Sessions(m),
        "/api/sessions/{sid}": Session(m),
        "/api/sessions/{sid}/status": Status(m),
        "/api/sessions/{sid}/graph/append": Append(m),
        "/api/sessions/{sid}/deploy": Deploy(m),
        "/api/sessions/{sid}/cancel": Cancel(m),
        "/api/sessions/{sid}/graph": Graph(m),
        "/api/sessions/{sid}/graph/status": GraphStatus(m),
        "/api/sessions/{sid}/logs": Logs(m),
        "/api/sessions/{sid}/dir": Dir(m),
        "/api/sessions/{sid}/graph/drop/{uid}": DropStatus(m),
        "/api/sessions/{sid}/graph/drop/data/{uid}": DropDataPath(m),
    }
    if m.role != "nm":
        routes.update(
            {
                "/api/nodes": Nodes(m),
                "/api/node/{node}": Node(m),
                "/api/node/{node}/sessions": NodeSessions(m),
                "/api/node/{node}/sessions/{sid}": NodeSession(m),
                "/api/node/{node}/sessions/{sid}/status": NodeStatus(m),
                "/api/node/{node}/sessions/{sid}/graph": NodeGraph(m),
                "/api/node/{node}/sessions/{sid}/graph/status": NodeGraphStatus(m),
            }
        )
    if m.role == "mm":
        routes["/api/islands"] = Islands(m)
    return routes
