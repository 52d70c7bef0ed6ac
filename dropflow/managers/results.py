"""Results back: the data of a finished drop, over REST, bounded in size.

Theory of operation
-------------------
``GET /api/sessions/{sid}/graph/drop/{uid}/data`` answers one JSON document: the drop's kind, codec, state,
size, path (for files and directories) and its bytes in base64 -- refused with 413 when they are more than
``max_bytes`` (default 1 MiB, at most 64 MiB), so that nobody fetches a terabyte through a manager by
mistake; with ``content=false``, without the bytes. Only a COMPLETED drop has data (409 otherwise), and only
while its store exists: a drop that expired, or was not kept when its session ended, is 409 too, with what
to do. A directory has no single content; it answers its path only.

A node manager reads the drop from its own session. An island (or master) manager finds the node that holds
the drop from its placement and asks it, in process or over REST, so the same request works at every level.
The resource's code lives here rather than in :mod:`.rest`, which only registers the route; the clients'
side is :func:`fetch` (a REST client) and :func:`decode_value`.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import falcon
import msgspec

from ..drops.codecs import decode
from .errors import ApiError, Conflict, NotFound

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "DropData",
    "TooLarge",
    "decode_value",
    "drop_data",
    "fetch",
    "openapi_paths",
]

DEFAULT_LIMIT = 1 << 20
MAX_LIMIT = 64 << 20
PATH = "/api/sessions/{sid}/graph/drop/{uid}/data"


class TooLarge(ApiError):
    status, title = 413, "Content Too Large"


def _local(manager: Any, sid: str, uid: str, limit: int, content: bool) -> dict[str, Any]:
    from ..engine.graph import DataNode

    session = manager.node.sessions.get(sid)
    if session is None:
        raise NotFound(f"node {manager.name!r} has no session {sid!r}")
    graph = session.graph
    node = graph.by_id.get(uid) if graph is not None else None
    if node is None or type(node.peer) is str:
        raise NotFound(f"session {sid!r} has no drop {uid!r} on node {manager.name!r}")
    if not isinstance(node, DataNode):
        raise NotFound(f"{uid!r} is an app drop; only data drops have data")
    spec, state = node.spec, str(node.state)
    if state != "COMPLETED":
        raise Conflict(f"drop {uid!r} is {state}: only a COMPLETED drop has data")
    store = node.store
    if store is None or (session.ended and not spec.persist):  # the end cleaned what was not kept
        raise Conflict(
            f"the data of drop {uid!r} is gone (it expired, or its session ended and it was not kept: "
            "mark it persist to keep it)"
        )
    answer: dict[str, Any] = {
        "sessionId": sid,
        "uid": uid,
        "kind": spec.kind,
        "codec": spec.effective_codec(),
        "status": state,
        "node": manager.name,
        "path": store.fspath() if spec.TRAITS.mountable else None,
        "size": None,
        "data": None,
    }
    if spec.TRAITS.directory or not content:
        return answer  # a directory has no single content: its path is the answer
    try:
        size = store.size()
        if size > limit:
            raise TooLarge(
                f"drop {uid!r} holds {size} bytes, more than max_bytes={limit}"
                + (f"; read it at {answer['path']}" if answer["path"] else "")
            )
        data = bytes(store.buffer())
    except (OSError, ValueError) as exc:
        raise Conflict(f"the data of drop {uid!r} cannot be read now: {exc}") from None
    answer["size"] = len(data)
    answer["data"] = base64.b64encode(data).decode("ascii")
    return answer


def drop_data(
    manager: Any, sid: str, uid: str, limit: int = DEFAULT_LIMIT, content: bool = True
) -> dict[str, Any]:
    """The data of drop ``uid`` of session ``sid``, from whichever node of ``manager`` holds it; without
    ``content``, only what describes it (its kind, state and path)."""
    if manager.role == "nm":
        return _local(manager, sid, uid, limit, content)
    holder = manager._session(sid).placement.get(uid)  # raises NotFound for an unknown session
    if holder is None:
        raise NotFound(f"session {sid!r} has no drop {uid!r}")
    member = manager._client(holder)
    if getattr(member, "role", None) is not None:
        return drop_data(member, sid, uid, limit, content)  # a manager in this process
    return fetch(member, sid, uid, limit, content)


def fetch(
    client: Any, sid: str, uid: str, limit: int = DEFAULT_LIMIT, content: bool = True
) -> dict[str, Any]:
    """Ask a manager over REST (a :class:`~dropflow.managers.client.RestClient`) for a drop's data."""
    params = {"max_bytes": limit, "content": "true" if content else "false"}
    # Drop ids hold '#' (copy numbers), which would end a URL's path: quote them.
    path = PATH.format(sid=quote(sid, safe=""), uid=quote(uid, safe=""))
    answer: dict[str, Any] = client._call("GET", path, params=params)
    return answer


class DropData:
    """The falcon resource of :data:`PATH`."""

    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str, uid: str) -> None:
        limit = req.get_param_as_int("max_bytes", min_value=0, max_value=MAX_LIMIT, default=DEFAULT_LIMIT)
        content = req.get_param_as_bool("content", default=True)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = msgspec.json.encode(drop_data(self.m, sid, uid, limit, content))


def decode_value(answer: dict[str, Any], allow_pickle: bool = False) -> Any:
    """The value an answer of :data:`PATH` holds: decoded by its codec, or its path for files without one.

    Pickle is decoded only with ``allow_pickle`` (the caller built the graph that asked for it)."""
    if answer.get("data") is None:
        return answer.get("path")
    codec = answer.get("codec") or "bytes"
    if codec == "pickle" and not allow_pickle:
        raise ValueError(
            f"drop {answer.get('uid')!r} holds a pickle, which is decoded only for its own pipeline"
        )
    raw = base64.b64decode(answer["data"])
    if codec == "path":
        return answer.get("path")
    return decode(codec, raw)


DROP_DATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["sessionId", "uid", "kind", "codec", "status"],
    "properties": {
        "sessionId": {"type": "string"},
        "uid": {"type": "string"},
        "kind": {"type": "string"},
        "codec": {"type": "string"},
        "status": {"type": "string"},
        "node": {"type": "string"},
        "path": {"type": ["string", "null"]},
        "size": {"type": ["integer", "null"]},
        "data": {"type": ["string", "null"], "contentEncoding": "base64"},
    },
}


def openapi_paths(errors: Any, ok: Any, sid: dict[str, Any], uid: dict[str, Any]) -> dict[str, Any]:
    """This resource's entry in the OpenAPI document (the document's helpers are passed in)."""
    limit = {
        "name": "max_bytes",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
    }
    content = {"name": "content", "in": "query", "required": False, "schema": {"type": "boolean"}}
    return {
        PATH: {
            "parameters": [sid, uid, limit, content],
            "get": {
                "summary": "A finished drop's data (base64, at most max_bytes) or, for files, also its path",
                "responses": {**ok(DROP_DATA_SCHEMA), **errors(400, 401, 404, 409, 413, 502)},
            },
        }
    }
