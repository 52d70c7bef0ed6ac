"""The REST API of every manager: a thin falcon ASGI app over the session API.

Theory of operation
-------------------
Each resource parses its request, calls one manager method and serialises the result. The resource shape
is DALiuGE's (``/api/sessions``, ``/graph/append``, ``/deploy``, ``/status``, ``/graph/status``, ...), so
its clients and habits carry over. Errors are exceptions that carry their HTTP status
(:mod:`dropflow.managers.errors`); one handler renders every error -- ours, falcon's, and unexpected ones --
as the same JSON shape, so a client never sees an HTML page or a traceback.

The app is asynchronous so that what waits costs no thread: a client that sends half a request, or a long
poll (``/wait``, answered by the session's end through ``watch``), holds a coroutine, not one of the
request threads. A body is read on the event loop in chunks, with a deadline per chunk, and inflated as it
arrives with a bound on its inflated size and on its compression ratio: a decompression bomb is refused
(413) after a few megabytes, never held in memory. JSON nested too deep is a 400. The manager's methods,
which may block (an island calls its nodes), then run on a pool of ``threads`` threads; the cheap ones
(health, status) answer on the event loop itself, so a pool busy with slow requests never delays them.

Every request but the health check must carry ``Authorization: Bearer <token>`` (unless the daemon was
started with no token, on loopback only). The health check without the token says only ``ok`` -- no name,
no bus address -- but answers a ``challenge`` with a proof that this manager holds the token
(:mod:`.auth`), which is how an island checks a node before it sends it anything. The OpenAPI document at
``/api/openapi.json`` describes all of it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import re
import zlib
from collections.abc import Callable
from typing import Any

import falcon
import falcon.asgi
import msgspec

from ..drops.errors import GraphError
from ..loading import decode_graph_bytes
from .auth import bearer_ok, proof
from .errors import ApiError, BadGraph, BadRequest, NotFound
from .heartbeat import LEASE
from .openapi import openapi
from .results import PATH as DROP_DATA_PATH
from .results import DropData
from .resuming import JOURNAL_PATH, Journal, Resume
from .resuming import PATH as RESUME_PATH

__all__ = ["MAX_BODY", "RestApp", "make_app"]

log = logging.getLogger(__name__)

#: Largest body (after decompression) a manager accepts by default: ``dropflow nm --max-body`` changes it.
MAX_BODY = 1 << 30
#: A gzip body that inflates past this many bytes at a ratio over RATIO_MAX is a decompression bomb.
RATIO_FLOOR = 16 << 20
RATIO_MAX = 200
#: Seconds a client may pause while sending a body before the request is dropped (408).
READ_TIMEOUT = 30.0
CHUNK = 64 << 10
#: Most bytes inflated at once (so that a refused body never held much more than its limit).
STEP = 1 << 20
WAIT_MAX = 60.0
LEASE_MAX = 3600.0
_ENDED = ("FINISHED", "FAILED", "CANCELLED")
_CHALLENGE = re.compile(r"^[0-9a-f]{32}$")


def _json(resp: falcon.Response, body: Any, status: str = falcon.HTTP_200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = msgspec.json.encode(body)


def _too_large(what: str) -> falcon.HTTPError:
    return falcon.HTTPPayloadTooLarge(description=what)  # type: ignore[no-any-return]


def _inflate(state: zlib._Decompress, chunk: bytes, out: bytearray, limit: int, raw: int) -> zlib._Decompress:
    """Inflate ``chunk`` into ``out``, never past ``limit`` bytes, nor past RATIO_MAX times the ``raw`` bytes
    read so far (beyond RATIO_FLOOR); the decompressor for what follows."""
    cap = min(limit, max(RATIO_FLOOR, RATIO_MAX * raw))
    data = chunk
    while data:
        out += state.decompress(data, min(cap + 1 - len(out), STEP))
        if len(out) > cap:
            if cap == limit:
                raise _too_large(f"the body inflates to more than {limit} bytes")
            raise _too_large(
                f"the body inflates more than {RATIO_MAX} times (a decompression bomb?); send it uncompressed"
            )
        data = state.unconsumed_tail
        if state.eof and state.unused_data:  # another gzip member follows
            data, state = state.unused_data, zlib.decompressobj(16 + zlib.MAX_WBITS)
    return state


async def _read_body(req: falcon.asgi.Request, limit: int) -> bytes:
    """The body, inflated if gzip, bounded by ``limit`` bytes; each chunk must come within READ_TIMEOUT."""
    length = req.content_length
    if length is not None and length > limit:
        raise _too_large(f"request body over {limit} bytes")
    encoding = (req.get_header("Content-Encoding") or "").lower()
    if encoding not in ("", "identity", "gzip"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r} (use gzip or none)")
    state = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    out = bytearray()
    raw = 0
    while True:
        try:
            chunk = await asyncio.wait_for(req.stream.read(CHUNK), READ_TIMEOUT)
        except TimeoutError:
            raise falcon.HTTPError(
                falcon.HTTP_408, description=f"the body stopped arriving: nothing for {READ_TIMEOUT:g} s"
            ) from None
        if not chunk:
            break
        raw += len(chunk)
        if state is None:
            out += chunk
            if len(out) > limit:
                raise _too_large(f"request body over {limit} bytes")
            continue
        try:
            state = _inflate(state, chunk, out, limit, raw)
        except zlib.error as exc:
            raise BadRequest(f"Content-Encoding is gzip but the body is not: {exc}") from None
    if state is not None and not state.eof:
        raise BadRequest("Content-Encoding is gzip but the body is truncated")
    return bytes(out)


def _decode_json(data: bytes) -> Any:
    if not data:
        return None
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the body is JSON nested too deep") from None


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


def _raw(fn: Callable[..., None]) -> Callable[..., None]:
    """Mark a responder whose body is not JSON (a graph, decoded by the responder itself)."""
    fn.raw_body = True  # type: ignore[attr-defined]
    return fn


class _Health:
    """Liveness for anyone; identity and bus for the token's holders; a proof for a challenge."""

    def __init__(self, manager: Any, token: str | None, url: str) -> None:
        self.m, self.token, self.url = manager, token, url

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        trusted = self.token is None or bearer_ok(req.get_header("Authorization"), self.token)
        body: dict[str, Any] = dict(self.m.info()) if trusted else {"status": "ok"}
        challenge = req.get_param("challenge")
        if challenge is not None:
            if not _CHALLENGE.match(challenge):
                raise BadRequest("'challenge' must be 32 lowercase hex digits", field="challenge")
            name = str(self.m.name)
            body.update(name=name, url=self.url)
            if self.token is not None:
                body["proof"] = proof(self.token, challenge, name, self.url)
        _json(resp, body)


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
        body = req.context.body
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

    def before(self, sid: str) -> None:
        self.m.status(sid)  # 404 before reading a large body

    @_raw
    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        data = req.context.raw
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
        body = req.context.body
        if not isinstance(body, dict) or not all(
            isinstance(k, str)
            and isinstance(v, dict)
            and isinstance(v.get("bus"), str)
            and isinstance(v.get("key"), str)
            for k, v in body.items()
        ):
            raise BadRequest(
                'the body must be a JSON object mapping node names to {"bus": address, "key": public key}'
            )
        self.m.set_peers(sid, body)
        _json(resp, {"sessionId": sid, "peers": sorted(body)})


class _Heartbeat:
    """An island's (or master's) heartbeat: renew leases, order cancels, answer the sessions' states."""

    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.context.body
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
        body = req.context.body
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            raise BadRequest('the body must be a JSON object with the node manager\'s "url"', field="url")
        _json(resp, self.m.add_node_url(node, body["url"]), falcon.HTTP_201)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, node: str) -> None:
        self.m.remove_node(node)
        resp.status = falcon.HTTP_204


class _Wait:
    """Long poll: answers when the session ends, or after ``timeout`` seconds with ``ended: false``. The
    wait holds no thread: one watcher per session sets an event that every poll of it awaits."""

    def __init__(self, manager: Any, pool: concurrent.futures.Executor) -> None:
        self.m, self.pool = manager, pool
        self.ended: dict[str, asyncio.Event] = {}

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, sid: str) -> None:
        timeout = _float_param(req, "timeout", 10.0, 0.0, WAIT_MAX)
        loop = asyncio.get_running_loop()
        try:
            state = self.m.status(sid)
            if state not in _ENDED and timeout > 0:
                event = self.ended.get(sid)
                if event is None:
                    event = self.ended[sid] = asyncio.Event()
                    on_end: Callable[[Any], object] = lambda _summary: loop.call_soon_threadsafe(event.set)  # noqa: E731
                    await loop.run_in_executor(self.pool, self.m.watch, sid, on_end)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout)
                state = self.m.status(sid)
            ended = state in _ENDED
            summary = await loop.run_in_executor(self.pool, self.m.summary, sid) if ended else None
        except NotFound:
            self.ended.pop(sid, None)
            raise
        if ended:
            self.ended.pop(sid, None)
        _json(resp, {"sessionId": sid, "status": state, "ended": ended, "summary": summary})


class _Auth:
    """Bearer-token check on every request except the health probe."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if req.path == "/api/health":
            return
        if not bearer_ok(req.get_header("Authorization"), self.token):
            raise falcon.HTTPUnauthorized(
                title="Unauthorized",
                description="this manager requires 'Authorization: Bearer <token>'; the token is in the file "
                "the daemon printed at start (by default ~/.config/dropflow/token of its user)",
                challenges=["Bearer"],
            )


class _Route:
    """An ASGI resource over a synchronous one: the body is read (and parsed, for JSON) on the event loop,
    then the responder runs on the pool -- or on the loop itself, for the cheap ones."""

    def __init__(
        self, resource: Any, pool: concurrent.futures.Executor, limit: int, inline: bool = False
    ) -> None:
        for method in ("get", "post", "delete"):
            responder = getattr(resource, f"on_{method}", None)
            if responder is not None:
                before = getattr(resource, "before", None)
                setattr(
                    self, f"on_{method}", self._wrap(responder, before, pool, limit, inline, method == "post")
                )

    @staticmethod
    def _wrap(
        responder: Callable[..., None],
        before: Callable[..., None] | None,
        pool: concurrent.futures.Executor,
        limit: int,
        inline: bool,
        has_body: bool,
    ) -> Callable[..., Any]:
        raw_body = getattr(responder, "raw_body", False)

        async def respond(req: falcon.asgi.Request, resp: falcon.asgi.Response, **params: Any) -> None:
            if has_body:
                if before is not None:
                    before(**params)
                data = await _read_body(req, limit)
                req.context.raw = data
                req.context.body = None if raw_body else _decode_json(data)
            if inline:
                responder(req, resp, **params)
            else:
                await asyncio.get_running_loop().run_in_executor(
                    pool, functools.partial(responder, req, resp, **params)
                )

        return respond


async def _render_api_error(req: falcon.Request, resp: falcon.Response, exc: ApiError, params: Any) -> None:
    _json(resp, exc.body(), falcon.code_to_http_status(exc.status))


def _render_http_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = msgspec.json.encode(
        {"error": {"status": exc.status_code, "title": exc.title, "message": exc.description or exc.title}}
    )


async def _render_unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any) -> None:
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


class RestApp(falcon.asgi.App):  # type: ignore[type-arg]
    """The falcon ASGI app of a manager, with the pool its requests run on (``close()`` stops it)."""

    def __init__(self, pool: concurrent.futures.ThreadPoolExecutor, **kw: Any) -> None:
        super().__init__(**kw)
        self.pool = pool

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def make_app(
    manager: Any,
    token: str | None = None,
    *,
    url: str = "",
    max_body: int = MAX_BODY,
    threads: int = 16,
) -> RestApp:
    """The ASGI app of a node, island or master manager reached at ``url``; ``token`` None: no auth."""
    pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="dropflow-rest")
    app = RestApp(pool, middleware=[_Auth(token)] if token else [])
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(_render_http_error)
    app.add_error_handler(Exception, _render_unexpected)
    app.add_error_handler(ApiError, _render_api_error)

    def route(path: str, resource: Any, inline: bool = False) -> None:
        app.add_route(path, _Route(resource, pool, max_body, inline))

    route("/api/health", _Health(manager, token, url), inline=True)
    route("/api/openapi.json", _OpenAPI(manager), inline=True)
    route("/api/heartbeat", _Heartbeat(manager))
    route("/api/sessions", _Sessions(manager))
    route("/api/sessions/{sid}", _Session(manager))
    route("/api/sessions/{sid}/status", _Status(manager), inline=True)
    route("/api/sessions/{sid}/graph/append", _Append(manager))
    route("/api/sessions/{sid}/deploy", _Deploy(manager))
    route("/api/sessions/{sid}/start", _Start(manager))
    route("/api/sessions/{sid}/cancel", _Cancel(manager))
    route("/api/sessions/{sid}/graph", _Graph(manager))
    route("/api/sessions/{sid}/graph/size", _GraphSize(manager))
    route("/api/sessions/{sid}/graph/status", _GraphStatus(manager))
    route("/api/sessions/{sid}/summary", _Summary(manager))
    app.add_route("/api/sessions/{sid}/wait", _Wait(manager, pool))
    route("/api/sessions/{sid}/logs/{uid}", _DropLog(manager))
    route("/api/sessions/{sid}/peers", _Peers(manager))
    route(DROP_DATA_PATH, DropData(manager))
    route(RESUME_PATH, Resume(manager))
    route(JOURNAL_PATH, Journal(manager))
    if manager.role != "nm":
        route("/api/nodes", _Nodes(manager))
        route("/api/node/{node}", _Node(manager))
    return app
