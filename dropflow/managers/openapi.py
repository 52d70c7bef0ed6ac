"""The OpenAPI 3.1 document of the managers' REST API, per role (nm, dim, mm), generated.

Theory of operation
-------------------
Nothing here is a hand-written schema. :data:`OPERATIONS` lists each operation once -- its path (relative
to the prefix), method, the typed structures (:mod:`.wire`) of its request and answer, its query
parameters and the errors it may answer -- and :func:`openapi` turns the structures into JSON Schema with
``msgspec`` and lays out the document: dropflow's representation under ``/api/v1``, DALiuGE's under
``/api``, and the resources without a DALiuGE counterpart under both. The REST layer decodes requests into
and converts answers through the same structures, so the document describes what the code does.

Kept true by ``tests/managers/test_openapi.py`` (schemathesis generates requests from the document against
the real app and checks every answer against it) and by a test that every route the app serves is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from .. import __version__
from . import results, resuming, web, wire

__all__ = ["OPERATIONS", "Op", "openapi"]

V1 = "/api/v1"


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Op:
    """One operation of the API."""

    path: str
    method: str
    summary: str
    #: The answer's type (None: no body), its status, and its media type.
    answer: Any = None
    status: int = 200
    media: str = "application/json"
    #: The request body's type, or a raw schema for bodies that are not typed structures (graphs, forms).
    body: Any = None
    body_schema: dict[str, Any] | None = None
    body_media: str = "application/json"
    body_required: bool = True
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = (401,)
    #: Which representation: "v1" (dropflow's, under /api/v1), "dlg" (DALiuGE's, under /api), "both".
    where: str = "v1"
    #: The roles that serve it.
    roles: tuple[str, ...] = ("nm", "dim", "mm")


_ERRORS = {
    400: "Bad request or bad graph",
    401: "Missing or wrong token",
    404: "No such session, drop or member",
    408: "The body stopped arriving",
    409: "Conflict: duplicate session, or a session in the wrong state",
    413: "Body too large",
    502: "A node or island failed to do its part",
}
GRAPH_BODY = {
    "type": ["object", "array"],
    "description": "A native physical graph (docs/physical-graph.md) or a DALiuGE physical graph (a list). "
    "The body may be sent chunked; Content-Encoding gzip (or zlib labelled gzip, as DALiuGE's client "
    "sends it) is accepted.",
}
COMPLETED = Param(
    "completed",
    {"type": "string"},
    "DALiuGE's roots to trigger (uid,uid,...): checked to be every root, which dropflow triggers",
)
ISLANDS = ("dim", "mm")
_S, _G, _N = "/sessions/{sid}", "/sessions/{sid}/graph", "/node/{node}"

OPERATIONS: tuple[Op, ...] = (
    # -- the same under both prefixes ---------------------------------------------------------------------
    Op(
        "/health",
        "get",
        "Liveness (no token needed); identity and bus only with the token",
        wire.Health,
        query=(
            Param(
                "challenge",
                {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "32 hex digits: the answer carries the manager's name, URL and proof "
                "HMAC-SHA256(token, 'dropflow-proof-v1\\n' challenge '\\n' name '\\n' url)",
            ),
        ),
        errors=(400,),
        where="both",
    ),
    Op("/openapi.json", "get", "This document", dict[str, Any], where="both"),
    Op(
        "/heartbeat",
        "post",
        "Heartbeat from an island (or master): renew session leases, order cancels",
        wire.HeartbeatAnswer,
        body=wire.Heartbeat,
        errors=(400, 401, 413),
        where="both",
    ),
    Op(
        f"{_S}/start",
        "post",
        "Start a session deployed with start=false",
        wire.SessionInfo,
        errors=(401, 404, 409),
        where="both",
    ),
    Op(f"{_G}/size", "get", "Number of drops", int, errors=(401, 404), where="both"),
    Op(
        f"{_S}/summary",
        "get",
        "Drops by state, failures with causes, timings",
        wire.Summary,
        errors=(401, 404),
        where="both",
    ),
    Op(
        f"{_S}/wait",
        "get",
        "Long poll: answers when the session ends or the timeout passes",
        wire.Wait,
        query=(Param("timeout", {"type": "number", "minimum": 0, "maximum": 60}),),
        errors=(400, 401, 404),
        where="both",
    ),
    Op(
        f"{_S}/logs/{{uid}}",
        "get",
        "What happened to a drop: its events and error",
        wire.DropLog,
        errors=(401, 404, 502),
        where="both",
    ),
    Op(
        f"{_S}/events",
        "get",
        "Every logged state change of the session, oldest first",
        list[wire.Event],
        errors=(401, 404),
        where="both",
    ),
    Op(
        f"{_S}/peers",
        "post",
        "Bus addresses and keys of the nodes holding other parts of a distributed session",
        wire.PeersAnswer,
        body=dict[str, wire.Peer],
        errors=(400, 401, 404, 409, 413),
        where="both",
    ),
    Op(
        results.PATH.removeprefix("/api"),
        "get",
        "A finished drop's data (base64, at most max_bytes) or, for files, also its path",
        wire.DropData,
        query=(
            Param("max_bytes", {"type": "integer", "minimum": 0, "maximum": results.MAX_LIMIT}),
            Param("content", {"type": "boolean"}),
        ),
        errors=(400, 401, 404, 409, 413, 502),
        where="both",
    ),
    Op(
        resuming.PATH,
        "post",
        "Before deploy: what a resumed session keeps from its earlier runs",
        wire.Resumed,
        body=wire.ResumePlan,
        errors=(400, 401, 404, 409, 413),
        where="both",
    ),
    Op(
        resuming.JOURNAL_PATH,
        "delete",
        "Forget the session's journal and what it kept for a resume",
        None,
        204,
        errors=(401, 404, 409, 502),
        where="both",
    ),
    # -- dropflow's representation ------------------------------------------------------------------------
    Op("/sessions", "get", "List sessions", list[wire.SessionInfo]),
    Op(
        "/sessions",
        "post",
        "Create an empty session",
        wire.SessionInfo,
        201,
        body=wire.CreateSession,
        errors=(400, 401, 409, 413),
    ),
    Op(_S, "get", "A session", wire.SessionInfo, errors=(401, 404)),
    Op(_S, "delete", "Cancel if running, then forget a session", None, 204, errors=(401, 404, 502)),
    Op(f"{_S}/status", "get", "State of a session", wire.Status, errors=(401, 404)),
    Op(
        f"{_G}/append",
        "post",
        "Append drops to a session that is not deployed",
        wire.Appended,
        body_schema=GRAPH_BODY,
        errors=(400, 401, 404, 409, 413),
    ),
    Op(
        f"{_S}/deploy",
        "post",
        "Check, build and (unless start=false) start the graph",
        wire.SessionInfo,
        query=(Param("start", {"type": "boolean"}, "start at once (default) or wait for /start"), COMPLETED),
        errors=(400, 401, 404, 409, 502),
    ),
    Op(
        f"{_S}/cancel",
        "post",
        "Cancel a session: running apps are stopped, everything is cleaned",
        wire.Status,
        errors=(401, 404, 502),
    ),
    Op(_G, "get", "The session's drops as a native physical graph", dict[str, Any], errors=(401, 404)),
    Op(
        f"{_G}/status",
        "get",
        "State of every drop",
        dict[str, wire.DropStatus],
        query=(Param("state", {"type": "string"}, "only drops in these states (comma-separated)"),),
        errors=(401, 404, 502),
    ),
    Op(f"{_S}/dir", "get", "Where each node keeps the session's files", wire.SessionDirs, errors=(401, 404)),
    Op("/nodes", "get", "Every member, reachable or not", list[wire.Node], roles=ISLANDS),
    Op(
        _N,
        "post",
        "Add a member by URL (it must prove it holds the token)",
        wire.Node,
        201,
        body=wire.AddNode,
        errors=(400, 401, 409, 413, 502),
        roles=ISLANDS,
    ),
    Op(_N, "delete", "Forget a member", None, 204, errors=(401, 404), roles=ISLANDS),
    # -- DALiuGE's representation -------------------------------------------------------------------------
    Op(
        "",
        "get",
        "The manager: a node's sessions; an island's (master's) members and session ids",
        wire.DlgManagerInfo,
        where="dlg",
    ),
    Op("/submission_method", "get", "How graphs may reach this manager", wire.DlgMethods, where="dlg"),
    Op("/past_sessions", "get", "Sessions that have ended", list[wire.DlgPastSession], where="dlg"),
    Op("/sessions", "get", "List sessions (states as integers)", list[wire.DlgSessionItem], where="dlg"),
    Op(
        "/sessions",
        "post",
        "Create an empty session",
        wire.DlgCreated,
        body=wire.CreateSession,
        errors=(400, 401, 409, 413),
        where="dlg",
    ),
    Op(
        _S,
        "get",
        "A session: its state, drops and directory",
        wire.DlgSession,
        errors=(401, 404, 502),
        where="dlg",
    ),
    Op(
        _S,
        "delete",
        "Cancel if running, then forget a session",
        wire.DlgSuccess,
        errors=(401, 404, 502),
        where="dlg",
    ),
    Op(
        f"{_S}/status",
        "get",
        "State of a session: an integer (node), {node: int} (island), {island: {node: int}} (master)",
        wire.DlgStatus,
        errors=(401, 404, 502),
        where="dlg",
    ),
    Op(
        f"{_G}/append",
        "post",
        "Append drops to a session that is not deployed",
        wire.DlgSuccess,
        body_schema=GRAPH_BODY,
        errors=(400, 401, 404, 409, 413),
        where="dlg",
    ),
    Op(
        f"{_S}/deploy",
        "post",
        "Check, build and start the graph",
        wire.DlgSuccess,
        body_schema={"type": "object", "properties": {"completed": {"type": "string"}}},
        body_media="application/x-www-form-urlencoded",
        body_required=False,
        query=(COMPLETED,),
        errors=(400, 401, 404, 409, 413, 502),
        where="dlg",
    ),
    Op(f"{_S}/cancel", "post", "Cancel a session", wire.DlgSuccess, errors=(401, 404, 502), where="dlg"),
    Op(
        _G,
        "get",
        "The session's drops by oid, with their links",
        dict[str, dict[str, Any]],
        errors=(401, 404, 502),
        where="dlg",
    ),
    Op(
        f"{_G}/status",
        "get",
        "State of every drop as integers",
        dict[str, wire.DlgDropStatus],
        errors=(401, 404, 502),
        where="dlg",
    ),
    Op(
        f"{_S}/logs",
        "get",
        "The session's log: one line per state change",
        str,
        media="text/plain",
        errors=(401, 404),
        where="dlg",
    ),
    Op(f"{_S}/dir", "get", "Where the session keeps its files", wire.DlgDir, errors=(401, 404), where="dlg"),
    Op(
        f"{_G}/drop/{{uid}}",
        "get",
        "A drop's log records",
        wire.DlgDropLogs,
        errors=(401, 404, 502),
        where="dlg",
    ),
    Op(
        f"{_G}/drop/data/{{uid}}",
        "get",
        "A drop's file path (empty if it has none)",
        wire.DlgDropData,
        errors=(401, 404, 502),
        where="dlg",
    ),
    Op("/nodes", "get", "Every member as host:port", list[str], where="dlg", roles=("dim",)),
    Op(
        "/nodes", "get", "Every node of every island, as host:port", wire.DlgNodes, where="dlg", roles=("mm",)
    ),
    Op("/islands", "get", "Every island as host:port", wire.DlgIslands, where="dlg", roles=("mm",)),
    Op(
        _N,
        "post",
        "Adopt the manager at host[:port] (it must prove it holds the token); no body",
        wire.DlgSuccess,
        body_schema={},
        body_required=False,
        errors=(400, 401, 409, 413),
        where="dlg",
        roles=ISLANDS,
    ),
    Op(
        _N,
        "delete",
        "Forget the member at host[:port] (or of that name)",
        wire.DlgSuccess,
        errors=(401, 404),
        where="dlg",
        roles=ISLANDS,
    ),
    Op(
        f"{_N}/sessions",
        "get",
        "A member's sessions",
        list[wire.DlgSessionItem],
        errors=(401, 404, 502),
        where="dlg",
        roles=ISLANDS,
    ),
    Op(
        f"{_N}{_S}",
        "get",
        "A member's part of a session",
        wire.DlgSession,
        errors=(401, 404, 502),
        where="dlg",
        roles=ISLANDS,
    ),
    Op(
        f"{_N}{_S}/status",
        "get",
        "A member's state of a session",
        wire.DlgStatus,
        errors=(401, 404, 502),
        where="dlg",
        roles=ISLANDS,
    ),
    Op(
        f"{_N}{_G}",
        "get",
        "A member's drops of a session",
        dict[str, dict[str, Any]],
        errors=(401, 404, 502),
        where="dlg",
        roles=ISLANDS,
    ),
    Op(
        f"{_N}{_G}/status",
        "get",
        "State of a member's drops",
        dict[str, wire.DlgDropStatus],
        errors=(401, 404, 502),
        where="dlg",
        roles=ISLANDS,
    ),
)


def _prefixes(op: Op) -> tuple[str, ...]:
    return {"v1": (V1,), "dlg": ("/api",), "both": (V1, "/api")}[op.where]


def _types(ops: list[Op]) -> list[Any]:
    kinds: list[Any] = [wire.Error]
    for op in ops:
        for kind in (op.answer, op.body):
            if kind is not None and kind is not str and kind not in kinds:
                kinds.append(kind)
    return kinds


def _path_params(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]


def _operation(op: Op, schemas: dict[Any, dict[str, Any]], error: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": op.summary}
    if op.answer is str:
        answer["content"] = {op.media: {"schema": {"type": "string"}}}
    elif op.answer is not None:
        answer["content"] = {op.media: {"schema": schemas[op.answer]}}
    responses = {str(op.status): answer}
    for code in op.errors:
        responses[str(code)] = {
            "description": _ERRORS[code],
            "content": {"application/json": {"schema": error}},
        }
    out: dict[str, Any] = {"summary": op.summary, "responses": responses}
    body = schemas[op.body] if op.body is not None else op.body_schema
    if body is not None:
        out["requestBody"] = {"required": op.body_required, "content": {op.body_media: {"schema": body}}}
    if op.query:
        out["parameters"] = [
            {"name": p.name, "in": "query", "required": False, "schema": p.schema}
            | ({"description": p.description} if p.description else {})
            for p in op.query
        ]
    if op.path == "/health":
        out["security"] = [{}]
    return out


def openapi(role: str) -> dict[str, Any]:
    """The document of a manager of ``role``."""
    ops = [op for op in OPERATIONS if role in op.roles]
    kinds = _types(ops)
    found, components = msgspec.json.schema_components(kinds, ref_template="#/components/schemas/{name}")
    schemas = dict(zip(kinds, found, strict=True))
    paths: dict[str, Any] = {}
    for op in ops:
        for prefix in _prefixes(op):
            path = prefix + op.path
            entry = paths.setdefault(path, {})
            if "parameters" not in entry and "{" in path:
                entry["parameters"] = _path_params(path)
            entry[op.method] = _operation(op, schemas, schemas[wire.Error])
    paths.update(web.openapi_paths(role))  # the monitor's JSON (its own module keeps its document)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"dropflow {role} API",
            "version": __version__,
            "description": "The session API of a dropflow manager: dropflow's representation under /api/v1, "
            "DALiuGE's under /api (docs/managers.md, docs/daliuge.md).",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
        "security": [{"bearer": []}, {"basic": []}, {}],
    }
