"""The REST API of every manager: a thin falcon app over the session API.

Theory of operation
-------------------
Each resource parses its request, calls one manager method and serialises the result. The resource shape
is DALiuGE's (``/api/sessions``, ``/graph/append``, ``/deploy``, ``/status``, ``/graph/status``, ...), so
its clients and habits carry over. Errors are exceptions that carry their HTTP status
(:mod:`dropflow.managers.errors`); one handler renders every error -- ours, falcon's, and unexpected ones --
as the same JSON shape, so a client never sees an HTML page or a traceback. A graph may be appended as a
native physical graph or a DALiuGE one, gzip-compressed or not. With a token configured, every request but
the health check must carry ``Authorization: Bearer <token>``; the OpenAPI document at
``/api/openapi.json`` describes all of it.
"""

from __future__ import annotations

import gzip
import hmac
import logging
import zlib
from typing import Any

import falcon
import msgspec

from ..drops.errors import GraphError
from ..loading import decode_graph_bytes
from . import web
from .errors import ApiError, BadGraph, BadRequest
from .heartbeat import LEASE
from .openapi import openapi

__all__ = ["MAX_BODY", "make_app"]

log = logging.getLogger(__name__)

MAX_BODY = 2 << 30  # 2 GiB of (decompressed) graph
WAIT_MAX = 60.0
LEASE_MAX = 3600.0


def _json(resp: falcon.Response, body: Any, status: str = falcon.HTTP_200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = msgspec.json.encode(body)


def _read_body(req: falcon.Request) -> bytes:
    length = req.content_length
    if length is not None and length > MAX_BODY:
        raise falcon.HTTPPayloadTooLarge(description=f"request body over {MAX_BODY} bytes")
    data = req.bounded_stream.read()
    encoding = (req.get_header("Content-Encoding") or "").lower()
    if encoding == "gzip":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise BadRequest(f"Content-Encoding is gzip but the body is not: {exc}") from None
    elif encoding not in ("", "identity"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r} (use gzip or none)")
    return data


def _json_body(req: falcon.Request) -> Any:
    data = _read_body(req)
    if not data:
        return None
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None


def _float_param(req: falcon.Request, name: str, default: float, low: float, high: float) -> float:
    raw = req.get_param(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be a number, not {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"query parameter {name!r} must be between {low:g} and {high:g}")
    return value


class _Health:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _json(resp, self.m.info())


class _OpenAPI:
    def __init__(self, manager: Any) -> None:
        self.doc = msgspec.json.encode(openapi(manager.role))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.doc


class _Sessions:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _json(resp, self.m.sessions())

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _json_body(req)
        if not isinstance(body, dict) or not isinstance(body.get("sessionId"), str):
            raise BadRequest('the body must be a JSON object with a string "sessionId"', field="sessionId")
        _json(resp, self.m.create_session(body["sessionId"]), falcon.HTTP_201)


class _Session:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _json(resp, self.m.session_info(sid))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        self.m.delete_session(sid)
        resp.status = falcon.HTTP_204


class _Status:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _json(resp, {"sessionId": sid, "status": self.m.status(sid)})


class _Append:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        self.m.session_info(sid)  # 404 before reading a large body
        data = _read_body(req)
        try:
            drops = decode_graph_bytes(data, f"session {sid}")
        except GraphError as exc:
            raise BadGraph.from_error(exc) from None
        _json(resp, {"sessionId": sid, "appended": self.m.append(sid, drops)})


class _Deploy:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        start = req.get_param_as_bool("start", default=True)
        # DALiuGE clients name the roots to trigger; dropflow triggers every root.
        completed = req.get_param_as_list("completed") or []
        info = self.m.deploy(sid, start=start)
        _json(resp, {**info, "completed": completed})


class _Start:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _json(resp, self.m.start_session(sid))


class _Peers:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        body = _json_body(req)
        if not isinstance(body, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in body.items()
        ):
            raise BadRequest("the body must be a JSON object mapping node names to bus addresses")
        self.m.set_peers(sid, body)
        _json(resp, {"sessionId": sid, "peers": sorted(body)})


class _Heartbeat:
    """An island's (or master's) heartbeat: renew leases, order cancels, answer the sessions' states."""

    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _json_body(req)
        if not isinstance(body, dict) or not isinstance(body.get("from"), str):
            raise BadRequest('the body must be a JSON object with the sender\'s name in "from"', field="from")
        lists = {}
        for key in ("renew", "cancel"):
            value = body.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise BadRequest(f"{key!r} must be a list of session ids", field=key)
            lists[key] = value
        lease = body.get("lease", LEASE)
        if isinstance(lease, bool) or not isinstance(lease, int | float) or not 0.1 <= lease <= LEASE_MAX:
            raise BadRequest(
                f"'lease' must be a number of seconds between 0.1 and {LEASE_MAX:g}", field="lease"
            )
        _json(resp, self.m.heartbeat(body["from"], lists["renew"], lists["cancel"], float(lease)))


class _Cancel:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        self.m.cancel(sid)
        _json(resp, {"sessionId": sid, "status": self.m.status(sid)})


class _Graph:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.m.graph(sid)


class _GraphSize:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _json(resp, self.m.graph_size(sid))


class _GraphStatus:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        states = set(req.get_param_as_list("state") or []) or None
        _json(resp, self.m.graph_status(sid, states))


class _Summary:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _json(resp, self.m.summary(sid))


class _Wait:
    """Long poll: answers when the session ends, or after ``timeout`` seconds with ``ended: false``."""

    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        timeout = _float_param(req, "timeout", 10.0, 0.0, WAIT_MAX)
        state = self.m.wait(sid, timeout)
        ended = state in ("FINISHED", "FAILED", "CANCELLED")
        _json(
            resp,
            {
                "sessionId": sid,
                "status": state,
                "ended": ended,
                "summary": self.m.summary(sid) if ended else None,
            },
        )


class _DropLog:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str, uid: str) -> None:
        _json(resp, self.m.drop_log(sid, uid))


class _Nodes:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _json(resp, self.m.nodes())


class _Node:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_post(self, req: falcon.Request, resp: falcon.Response, node: str) -> None:
        body = _json_body(req)
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            raise BadRequest('the body must be a JSON object with the node manager\'s "url"', field="url")
        _json(resp, self.m.add_node_url(node, body["url"]), falcon.HTTP_201)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, node: str) -> None:
        self.m.remove_node(node)
        resp.status = falcon.HTTP_204


class _Auth:
    """Bearer-token check on every request except the health probe."""

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}".encode()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path == "/api/health" or web.is_public(req.path):
            return
        given = (req.get_header("Authorization") or "").encode()
        if not hmac.compare_digest(given, self.expected):
            raise falcon.HTTPUnauthorized(
                title="Unauthorized",
                description="this manager requires 'Authorization: Bearer <token>'",
                challenges=["Bearer"],
            )


def _render_api_error(req: falcon.Request, resp: falcon.Response, exc: ApiError, params: Any) -> None:
    _json(resp, exc.body(), falcon.code_to_http_status(exc.status))


def _render_http_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = msgspec.json.encode(
        {"error": {"status": exc.status_code, "title": exc.title, "message": exc.description or exc.title}}
    )


def _render_unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any) -> None:
    if isinstance(exc, falcon.HTTPError):
        raise exc
    log.exception("unexpected error in %s %s", req.method, req.path)
    _json(
        resp,
        {
            "error": {
                "status": 500,
                "title": "Internal Server Error",
                "message": f"{type(exc).__name__}: {exc}",
            }
        },
        falcon.HTTP_500,
    )


def make_app(manager: Any, token: str | None = None) -> falcon.App[Any, Any]:
    """The falcon WSGI app of a node, island or master manager."""
    app = falcon.App(middleware=[_Auth(token)] if token else [])
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(_render_http_error)
    app.add_error_handler(Exception, _render_unexpected)
    app.add_error_handler(ApiError, _render_api_error)
    app.add_route("/api/health", _Health(manager))
    app.add_route("/api/openapi.json", _OpenAPI(manager))
    app.add_route("/api/heartbeat", _Heartbeat(manager))
    app.add_route("/api/sessions", _Sessions(manager))
    app.add_route("/api/sessions/{sid}", _Session(manager))
    app.add_route("/api/sessions/{sid}/status", _Status(manager))
    app.add_route("/api/sessions/{sid}/graph/append", _Append(manager))
    app.add_route("/api/sessions/{sid}/deploy", _Deploy(manager))
    app.add_route("/api/sessions/{sid}/start", _Start(manager))
    app.add_route("/api/sessions/{sid}/cancel", _Cancel(manager))
    app.add_route("/api/sessions/{sid}/graph", _Graph(manager))
    app.add_route("/api/sessions/{sid}/graph/size", _GraphSize(manager))
    app.add_route("/api/sessions/{sid}/graph/status", _GraphStatus(manager))
    app.add_route("/api/sessions/{sid}/summary", _Summary(manager))
    app.add_route("/api/sessions/{sid}/wait", _Wait(manager))
    app.add_route("/api/sessions/{sid}/logs/{uid}", _DropLog(manager))
    app.add_route("/api/sessions/{sid}/peers", _Peers(manager))
    if manager.role != "nm":
        app.add_route("/api/nodes", _Nodes(manager))
        app.add_route("/api/node/{node}", _Node(manager))
    web.add_routes(app, manager)  # the monitor's page and JSON, and /metrics

    return app
