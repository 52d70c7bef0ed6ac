"""The web monitor of every manager: a page, its assets, and the JSON it polls.

Theory of operation
-------------------
``GET /`` serves one static page (``static/index.html`` with plain JavaScript and CSS, shipped in the
package: clusters often have no internet, and nothing is built). The page and its assets are public -- they
hold no data -- and everything else the page shows comes from JSON endpoints under ``/api`` that take the
same bearer token as the rest of the API. The page asks for the token once (a login form, or ``?token=``
in the first URL, which it removes from the address bar), keeps it in the tab's ``sessionStorage`` and
sends it as ``Authorization: Bearer`` with every request. No cookie is involved, so no other site can make
the browser act with it (no CSRF), and the token is forgotten when the tab closes.

The JSON endpoints are thin: each parses its parameters, asks the manager's monitor
(:mod:`dropflow.managers.monitor`) one question and serialises the answer. The page polls
``/api/sessions/{sid}/monitor`` -- a few kilobytes whatever the session's size, because drops are counted
by logical-graph node, not listed -- and backs off when an answer was slow; lists of drops come a page at a
time. :func:`add_routes` registers all of it, and ``/metrics`` (:mod:`dropflow.managers.metrics`), on a
manager's falcon app; :func:`is_public` tells the authentication which paths need no token.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

import falcon
import msgspec

from .. import metrics
from ..census import STATES
from ..errors import BadRequest
from ..monitor import PAGE_MAX, monitor_for

__all__ = ["add_routes", "is_public", "openapi_paths"]

#: Asset name -> content type. Only these are served.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


def is_public(path: str) -> bool:
    """Paths served without a token: the page and its assets (they hold no data)."""
    return path == "/" or path.startswith("/static/")


def _json(resp: falcon.Response, body: Any) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = msgspec.json.encode(body)


def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


class _Page:
    def __init__(self, manager: Any) -> None:
        self.page = _asset("index.html")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = ASSETS["index.html"]
        resp.cache_control = ["no-cache"]
        resp.data = self.page


class _Static:
    def __init__(self) -> None:
        self.assets = {name: _asset(name) for name in ASSETS}

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        if name not in self.assets:
            raise falcon.HTTPNotFound(description=f"no asset {name!r}")
        resp.content_type = ASSETS[name]
        resp.cache_control = ["no-cache"]
        resp.data = self.assets[name]


class _Resource:
    def __init__(self, manager: Any) -> None:
        self.manager = manager

    @property
    def monitor(self) -> Any:
        return monitor_for(self.manager)


class _Overview(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _json(resp, self.monitor.overview())


class _SessionView(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _json(resp, self.monitor.session(sid))


class _Drops(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        state = req.get_param("state")
        if state is not None and state not in STATES:
            raise BadRequest(f"unknown state {state!r}; one of {', '.join(STATES)}", field="state")
        offset = req.get_param_as_int("offset", min_value=0, default=0)
        limit = req.get_param_as_int("limit", min_value=0, max_value=PAGE_MAX, default=100)
        _json(
            resp,
            self.monitor.drops(sid, req.get_param("group"), state, req.get_param("node"), offset, limit),
        )


class _Drop(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        uid = req.get_param("uid", required=True)
        _json(resp, self.monitor.drop(sid, uid))


class _Timings(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _json(resp, self.monitor.timings(sid))


class _Why(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        _json(resp, self.monitor.why(sid, req.get_param("from")))


def add_routes(route: Callable[..., None], manager: Any) -> None:
    """The monitor's page, assets and JSON, and ``/metrics``, through the manager app's ``route(path,
    resource, inline=False)`` (its resources are plain falcon resources; the app runs them on its pool, or
    inline for the static ones, which do no I/O)."""
    route("/", _Page(manager), inline=True)
    route("/static/{name}", _Static(), inline=True)
    route("/api/monitor", _Overview(manager))
    route("/api/sessions/{sid}/monitor", _SessionView(manager))
    route("/api/sessions/{sid}/monitor/drops", _Drops(manager))
    route("/api/sessions/{sid}/monitor/drop", _Drop(manager))
    route("/api/sessions/{sid}/monitor/timings", _Timings(manager))
    route("/api/sessions/{sid}/why", _Why(manager))
    route("/metrics", metrics.MetricsResource(manager))


def openapi_paths(role: str) -> dict[str, Any]:
    """The monitor's endpoints for the manager's OpenAPI document."""
    sid = {"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}
    obj = {"type": "object"}
    err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    e404 = {
        "401": {"description": "Missing or wrong bearer token", **err},
        "404": {"description": "No such session or drop", **err},
    }

    def ok(schema: dict[str, Any], what: str) -> dict[str, Any]:
        return {"200": {"description": what, "content": {"application/json": {"schema": schema}}}}

    def query(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "schema": schema, "description": text}

    return {
        "/api/monitor": {
            "get": {
                "summary": "The monitor's overview: sessions with their progress, members with their state",
                "responses": {**ok(obj, "Overview"), "401": e404["401"]},
            }
        },
        "/api/sessions/{sid}/monitor": {
            "parameters": [sid],
            "get": {
                "summary": "A session for the monitor: drops by logical-graph node, by node; failures",
                "responses": {
                    **ok(obj, "Session view"),
                    **e404,
                    "502": {"description": "A member failed", **err},
                },
            },
        },
        "/api/sessions/{sid}/monitor/drops": {
            "parameters": [
                sid,
                query("group", {"type": "string"}, "logical-graph node (group key)"),
                query("state", {"enum": list(STATES)}, "only drops in this state"),
                query("node", {"type": "string"}, "only drops on this node"),
                query("offset", {"type": "integer", "minimum": 0}, "first row"),
                query("limit", {"type": "integer", "minimum": 0, "maximum": PAGE_MAX}, "rows"),
            ],
            "get": {
                "summary": "A page of a session's drops, by group, state or node",
                "responses": {
                    **ok(obj, "Drops"),
                    "400": {"description": "Bad parameter", **err},
                    **e404,
                    "502": {"description": "A member failed", **err},
                },
            },
        },
        "/api/sessions/{sid}/monitor/drop": {
            "parameters": [sid, {**query("uid", {"type": "string"}, "the drop's id"), "required": True}],
            "get": {
                "summary": "One drop: its log with wall-clock times, output tails, timing and links",
                "responses": {
                    **ok(obj, "Drop"),
                    "400": {"description": "Bad parameter", **err},
                    **e404,
                    "502": {"description": "A member failed", **err},
                },
            },
        },
        "/api/sessions/{sid}/monitor/timings": {
            "parameters": [sid],
            "get": {
                "summary": "Slowest apps and app durations by logical-graph node",
                "responses": {**ok(obj, "Timings"), **e404, "502": {"description": "A member failed", **err}},
            },
        },
        "/api/sessions/{sid}/why": {
            "parameters": [sid, query("from", {"type": "string"}, "critical path backwards from this drop")],
            "get": {
                "summary": "Why is the session not finishing: its frontier (or its critical path)",
                "responses": {
                    **ok(obj, "Report"),
                    **e404,
                    "502": {"description": "A member failed", **err},
                },
            },
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": e404["401"],
                },
            }
        },
    }
