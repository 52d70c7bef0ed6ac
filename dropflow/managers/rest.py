"""The REST API of every manager: a thin falcon ASGI app over the session API, in two representations.

Theory of operation
-------------------
Each resource parses its request, calls one manager method and serialises the result. Bodies are decoded
into, and answers converted through, the typed structures of :mod:`.wire`, from which :mod:`.openapi`
generates the OpenAPI document. Errors are exceptions that carry their HTTP status
(:mod:`dropflow.managers.errors`); one handler renders every error -- ours, falcon's, and unexpected ones --
as the same JSON shape, which both kinds of client read, so a client never sees an HTML page or a traceback.

The same session API is served twice. Under ``/api/v1`` is dropflow's own representation: states by name,
summaries, drop logs, members with their identity. Under ``/api`` is DALiuGE's (:mod:`.dlgcompat`), because
DALiuGE's clients hard-code that prefix and send nothing that would let a server tell them apart: states
as integers, 200 for every success, members as ``host:port``. The resources DALiuGE does not have (health,
wait, summary, start, peers, heartbeat, drop logs and data, events, resume, journal) answer the same
under both prefixes.

The app is asynchronous so that what waits costs no thread: a client that sends half a request, or a long
poll (``/wait``, answered by the session's end through ``watch``), holds a coroutine, not one of the
request threads. A body is read on the event loop in chunks (with or without a Content-Length: DALiuGE's
client sends every body chunked), with a deadline per chunk, and inflated as it arrives -- gzip, or the zlib
stream that DALiuGE's client labels gzip -- with a bound on its inflated size and on its compression ratio:
a decompression bomb is refused (413) after a few megabytes, never held in memory. JSON nested too deep is
a 400. The manager's methods, which may block (an island calls its nodes), then run on a pool of
``threads`` threads; the cheap ones (health, status) answer on the event loop itself, so a pool busy with
slow requests never delays them.

Every request but the health check must carry the token: ``Authorization: Bearer <token>``, or HTTP basic
authentication with the token as the password (what ``http://user:TOKEN@host`` URLs give most clients),
unless the daemon was started with no token, on loopback only. With ``trust_local_user``, a request with
no credential from a process of the daemon's own user on this machine is admitted too
(:mod:`.localuser`): that is how DALiuGE's clients, which cannot send a credential, reach a daemon. The
health check without the token says only ``ok`` -- no name, no bus address -- but answers a
``challenge`` with a proof that this manager holds the token (:mod:`.auth`), which is how an island checks
a node before it sends it anything. The OpenAPI document at ``/api/openapi.json`` describes all of it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import functools
import hmac
import logging
import re
import weakref
import zlib
from collections.abc import Callable
from typing import Any

import falcon
import falcon.asgi
import msgspec

from ..drops.errors import GraphError
from ..loading import decode_graph_bytes
from . import dlgcompat, web, wire
from .auth import bearer_ok, proof
from .errors import ApiError, BadGraph, BadRequest, NotFound, _SessionError
from .localuser import local_user_request
from .openapi import openapi
from .results import PATH as DROP_DATA_PATH
from .results import DropData
from .resuming import JOURNAL_PATH, Journal, Resume
from .resuming import PATH as RESUME_PATH

__all__ = ["MAX_BODY", "V1", "RestApp", "make_app"]

log = logging.getLogger(__name__)

#: The prefix of dropflow's own representation (``/api`` is DALiuGE's).
V1 = "/api/v1"
#: Largest body (after decompression) a manager accepts by default: ``dropflow nm --max-body`` changes it.
MAX_BODY = 1 << 30
#: A compressed body that inflates past this many bytes at a ratio over RATIO_MAX is a decompression bomb.
RATIO_FLOOR = 16 << 20
RATIO_MAX = 200
#: Seconds a client may pause while sending a body before the request is dropped (408).
READ_TIMEOUT = 30.0
CHUNK = 64 << 10
#: Most bytes inflated at once (so that a refused body never held much more than its limit).
STEP = 1 << 20
WAIT_MAX = 60.0
_ENDED = ("FINISHED", "FAILED", "CANCELLED")
_CHALLENGE = re.compile(r"^[0-9a-f]{32}$")
#: zlib's window bits that accept both a gzip and a zlib header: DALiuGE's client sends zlib as "gzip".
_GZIP_OR_ZLIB = 32 + zlib.MAX_WBITS


def _send(resp: falcon.Response, value: Any, kind: Any, status: str = falcon.HTTP_200) -> None:
    """Answer ``value`` as JSON, checked against the type the OpenAPI document gives it."""
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = wire.encode(value, kind)


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
            data, state = state.unused_data, zlib.decompressobj(_GZIP_OR_ZLIB)
    return state


async def _read_body(req: falcon.asgi.Request, limit: int) -> bytes:
    """The body -- with a Content-Length or chunked -- inflated if compressed (gzip or zlib, whatever the
    label says), bounded by ``limit`` bytes; each chunk must come within READ_TIMEOUT."""
    length = req.content_length
    if length is not None and length > limit:
        raise _too_large(f"request body over {limit} bytes")
    encoding = (req.get_header("Content-Encoding") or "").lower()
    if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r} (use gzip or none)")
    state = zlib.decompressobj(_GZIP_OR_ZLIB) if encoding not in ("", "identity") else None
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
            raise BadRequest(
                f"Content-Encoding is {encoding} but the body is not gzip (nor zlib): {exc}"
            ) from None
    if state is not None and not state.eof:
        raise BadRequest(f"Content-Encoding is {encoding} but the body is truncated")
    return bytes(out)


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


# -- dropflow's representation ------------------------------------------------------------------------------


class _Resource:
    def __init__(self, manager: Any) -> None:
        self.m = manager


class _Health:
    """Liveness for anyone; identity and bus for the token's holders; a proof for a challenge."""

    def __init__(self, manager: Any, token: str | None, url: str) -> None:
        self.m, self.token, self.url = manager, token, url

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        trusted = self.token is None or _token_ok(req.get_header("Authorization"), self.token)
        body: dict[str, Any] = dict(self.m.info()) if trusted else {"status": "ok"}
        challenge = req.get_param("challenge")
        if challenge is not None:
            if not _CHALLENGE.match(challenge):
                raise BadRequest("'challenge' must be 32 lowercase hex digits", field="challenge")
            name = str(self.m.name)
            body.update(name=name, url=self.url)
            if self.token is not None:
                body["proof"] = proof(self.token, challenge, name, self.url)
        _send(resp, body, wire.Health)


class _OpenAPI:
    def __init__(self, manager: Any) -> None:
        self.doc = msgspec.json.encode(openapi(manager.role))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.doc


class _Sessions(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send(resp, self.m.sessions(), list[wire.SessionInfo])

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = wire.decode_body(req.context.raw, wire.CreateSession, wire.CREATE_SESSION)
        _send(resp, self.m.create_session(body.sessionId), wire.SessionInfo, falcon.HTTP_201)


class _Session(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _send(resp, self.m.session_info(sid), wire.SessionInfo)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        self.m.delete_session(sid)
        resp.status = falcon.HTTP_204


class _Status(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _send(resp, {"sessionId": sid, "status": self.m.status(sid)}, wire.Status)


class _Append(_Resource):
    def before(self, sid: str) -> None:
        self.m.status(sid)  # 404 before reading a large body

    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        try:
            drops = decode_graph_bytes(req.context.raw, f"session {sid}")
        except GraphError as exc:
            raise BadGraph.from_error(exc) from None
        _send(resp, {"sessionId": sid, "appended": self.m.append(sid, drops)}, wire.Appended)


class _Deploy(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        start = req.get_param_as_bool("start", default=True)
        completed = dlgcompat.completed_param(req, req.context.raw)
        info = self.m.deploy(sid, start=start, completed=completed)
        _send(resp, {**info, "completed": completed}, wire.SessionInfo)


class _Start(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _send(resp, self.m.start_session(sid), wire.SessionInfo)


class _Peers(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        peers = wire.decode_body(
            req.context.raw,
            dict[str, wire.Peer],
            'a JSON object mapping node names to {"bus": address, "key": public key}',
        )
        self.m.set_peers(sid, msgspec.to_builtins(peers))
        _send(resp, {"sessionId": sid, "peers": sorted(peers)}, wire.PeersAnswer)


class _Heartbeat(_Resource):
    """An island's (or master's) heartbeat: renew leases, order cancels, answer the sessions' states."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        beat = wire.decode_body(
            req.context.raw, wire.Heartbeat, 'a JSON object with the sender\'s name in "from"'
        )
        _send(resp, self.m.heartbeat(beat.from_, beat.renew, beat.cancel, beat.lease), wire.HeartbeatAnswer)


class _Cancel(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        self.m.cancel(sid)
        _send(resp, {"sessionId": sid, "status": self.m.status(sid)}, wire.Status)


class _Graph(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.m.graph(sid)


class _GraphSize(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _send(resp, self.m.graph_size(sid), int)


class _GraphStatus(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        states = set(req.get_param_as_list("state") or []) or None
        _send(resp, self.m.graph_status(sid, states), dict[str, wire.DropStatus])


class _Summary(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _send(resp, self.m.summary(sid), wire.Summary)


class _DropLog(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str, uid: str) -> None:
        _send(resp, self.m.drop_log(sid, uid), wire.DropLog)


class _Dirs(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _send(resp, {"sessionId": sid, "dirs": self.m.session_dirs(sid)}, wire.SessionDirs)


class _Events(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _send(resp, self.m.events(sid), list[wire.Event])


class _Nodes(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send(resp, self.m.nodes(), list[wire.Node])


class _Node(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, node: str) -> None:
        body = wire.decode_body(req.context.raw, wire.AddNode, 'a JSON object with the node manager\'s "url"')
        _send(resp, self.m.add_node_url(node, body.url), wire.Node, falcon.HTTP_201)

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
        _send(resp, {"sessionId": sid, "status": state, "ended": ended, "summary": summary}, wire.Wait)


# -- authentication -----------------------------------------------------------------------------------------


def _token_ok(header: str | None, token: str) -> bool:
    """Does an ``Authorization`` header carry ``token``: as a bearer token, or as the password of HTTP basic
    authentication (any user name)? Compared in constant time."""
    if header is None:
        return False
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(decoded.partition(":")[2].encode(), token.encode())
    return bearer_ok(header, token)


_HEALTH = ("/api/health", f"{V1}/health")


class _Auth:
    """The token on every request except the health probe; with ``trust_local_user``, also a request with
    no credential at all from a process of the daemon's own user on this machine (:mod:`.localuser`)."""

    def __init__(self, token: str, trust_local_user: bool) -> None:
        self.token, self.trust_local_user = token, trust_local_user

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if req.path in _HEALTH or web.is_public(req.path):
            return
        header = req.get_header("Authorization")
        if _token_ok(header, self.token):
            return
        if header is None and self.trust_local_user:
            scope = req.scope
            if local_user_request(scope.get("client"), scope.get("server"), dict(req.headers)):
                return
        raise falcon.HTTPUnauthorized(
            title="Unauthorized",
            description="this manager requires its token: 'Authorization: Bearer <token>', or HTTP basic "
            "authentication with the token as the password. The token is in the file the daemon printed "
            "at start (by default ~/.config/dropflow/token of its user). DALiuGE's clients, which cannot "
            "send it, are admitted from the daemon's own user on its machine when the daemon runs with "
            "--trust-local-user",
            challenges=["Bearer", 'Basic realm="dropflow"'],
        )


# -- plumbing -----------------------------------------------------------------------------------------------


class _Route:
    """An ASGI resource over a synchronous one: the body is read on the event loop, then the responder
    runs on the pool -- or on the loop itself, for the cheap ones."""

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
        async def respond(req: falcon.asgi.Request, resp: falcon.asgi.Response, **params: Any) -> None:
            req.context.raw = b""
            if has_body:
                if before is not None:
                    before(**params)
                req.context.raw = await _read_body(req, limit)
            if inline:
                responder(req, resp, **params)
            else:
                await asyncio.get_running_loop().run_in_executor(
                    pool, functools.partial(responder, req, resp, **params)
                )

        return respond


def _error_body(status: int, title: str, message: str) -> dict[str, Any]:
    return {
        "error": {"status": status, "title": title, "message": message},
        "type": "DaliugeException",
        "args": [message],
    }


async def _render_api_error(req: falcon.Request, resp: falcon.Response, exc: ApiError, params: Any) -> None:
    if isinstance(exc, _SessionError) and exc.session_id is None:
        exc.session_id = (params or {}).get("sid")  # DALiuGE's session errors name the session
    _send(resp, exc.body(), wire.Error, falcon.code_to_http_status(exc.status))


def _render_http_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = msgspec.json.encode(
        _error_body(exc.status_code, exc.title or "", str(exc.description or exc.title))
    )


async def _render_unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any) -> None:
    if isinstance(exc, falcon.HTTPError):
        raise exc
    log.exception("unexpected error in %s %s", req.method, req.path)
    _send(
        resp,
        _error_body(500, "Internal Server Error", f"{type(exc).__name__}: {exc}"),
        wire.Error,
        falcon.HTTP_500,
    )


class RestApp(falcon.asgi.App):  # type: ignore[type-arg]
    """The falcon ASGI app of a manager, with the pool its requests run on (``close()`` stops it).
    ``routes``: every path it serves (the OpenAPI document must describe each)."""

    def __init__(self, pool: concurrent.futures.ThreadPoolExecutor, **kw: Any) -> None:
        super().__init__(**kw)
        self.pool = pool
        self.routes: list[str] = []

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _native(manager: Any, token: str | None, url: str, pool: concurrent.futures.Executor) -> dict[str, Any]:
    """dropflow's own resources, by path under the prefix."""
    m = manager
    routes: dict[str, Any] = {
        "/health": _Health(m, token, url),
        "/openapi.json": _OpenAPI(m),
        "/heartbeat": _Heartbeat(m),
        "/sessions": _Sessions(m),
        "/sessions/{sid}": _Session(m),
        "/sessions/{sid}/status": _Status(m),
        "/sessions/{sid}/graph/append": _Append(m),
        "/sessions/{sid}/deploy": _Deploy(m),
        "/sessions/{sid}/start": _Start(m),
        "/sessions/{sid}/cancel": _Cancel(m),
        "/sessions/{sid}/graph": _Graph(m),
        "/sessions/{sid}/graph/size": _GraphSize(m),
        "/sessions/{sid}/graph/status": _GraphStatus(m),
        "/sessions/{sid}/summary": _Summary(m),
        "/sessions/{sid}/wait": _Wait(m, pool),
        "/sessions/{sid}/logs/{uid}": _DropLog(m),
        "/sessions/{sid}/dir": _Dirs(m),
        "/sessions/{sid}/events": _Events(m),
        "/sessions/{sid}/peers": _Peers(m),
        DROP_DATA_PATH.removeprefix("/api"): DropData(m),
        RESUME_PATH: Resume(m),
        JOURNAL_PATH: Journal(m),
    }
    if m.role != "nm":
        routes["/nodes"] = _Nodes(m)
        routes["/node/{node}"] = _Node(m)
    return routes


#: Resources answered on the event loop: cheap, and must not wait behind slow requests.
_INLINE = {"/health", "/openapi.json", "/sessions/{sid}/status"}
#: dropflow's resources with no DALiuGE counterpart: also served under ``/api``.
SHARED = (
    "/health",
    "/openapi.json",
    "/heartbeat",
    "/sessions/{sid}/start",
    "/sessions/{sid}/graph/size",
    "/sessions/{sid}/summary",
    "/sessions/{sid}/wait",
    "/sessions/{sid}/logs/{uid}",
    "/sessions/{sid}/events",
    "/sessions/{sid}/peers",
    DROP_DATA_PATH.removeprefix("/api"),
    RESUME_PATH,
    JOURNAL_PATH,
)


def make_app(
    manager: Any,
    token: str | None = None,
    *,
    url: str = "",
    max_body: int = MAX_BODY,
    threads: int = 16,
    trust_local_user: bool = False,
) -> RestApp:
    """The ASGI app of a node, island or master manager reached at ``url``; ``token`` None: no auth.
    ``trust_local_user``: admit requests with no credential from the daemon's own user on this machine."""
    pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="dropflow-rest")
    app = RestApp(pool, middleware=[_Auth(token, trust_local_user)] if token else [])
    # An app dropped without close() (a test's client) still lets its request threads go.
    weakref.finalize(app, pool.shutdown, False)
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(_render_http_error)
    app.add_error_handler(Exception, _render_unexpected)
    app.add_error_handler(ApiError, _render_api_error)

    def route(path: str, resource: Any, inline: bool = False) -> None:
        if isinstance(resource, _Wait):  # asynchronous already
            app.add_route(path, resource)
        else:
            app.add_route(path, _Route(resource, pool, max_body, inline))
        app.routes.append(path)

    native = _native(manager, token, url, pool)
    for path, resource in native.items():
        route(V1 + path, resource, path in _INLINE)
    for path in SHARED:
        route("/api" + path, native[path], path in _INLINE)
    for path, resource in dlgcompat.resources(manager).items():
        route(path, resource, path == "/api/sessions/{sid}/status" and manager.role == "nm")
    web.add_routes(route, manager)  # the monitor's page and JSON, and /metrics
    return app
