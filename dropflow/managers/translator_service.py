"""``dropflow translator``: DALiuGE's translator REST API, as EAGLE and its page use it, over dropflow.

Theory of operation
-------------------
EAGLE's "Translate" posts an HTML form (``lg_name``, ``json_data`` -- the logical graph --, ``algo``,
``num_par``, ``num_islands``, ...) to ``/gen_pgt``. The service reads the graph with dropflow's translator,
unrolls and partitions it (drops get ``node = "#<partition>"``), keeps the result under an id
(``<name><n>_pgt.graph``, as DALiuGE names it) and answers with a page that shows the translation and offers
to deploy it. The page and DALiuGE's tools then use:

- ``GET /pgt_jsonbody?pgt_name=ID``: the partitioned physical graph template;
- ``GET /gen_pg?pgt_id=ID&tpl_nodes_len=N``: the same graph as a physical graph; with ``dlg_mgr_url`` (or
  ``dlg_mgr_host``/``dlg_mgr_port``) mapped onto that manager's nodes, and with ``dlg_mgr_deploy`` also
  deployed there (session created, graph appended, deployed; answered with a redirect to the session);
- ``POST /gen_pg_spec`` (JSON ``{pgt_id, node_list, manager_host}``): ``{"pg_spec": ..., "root_uids": ...}``;
- ``GET /api/submission_method``: how graphs reach a manager -- this service deploys them (``SERVER``);
- the JSON API: ``POST /lg_fill``, ``/unroll``, ``/partition``, ``/unroll_and_partition``, ``/map`` (form
  fields as DALiuGE's; graphs in, dropflow physical graphs out).

Graphs kept for the page are bounded in number (the oldest go first) and every body in size, checked before
it is read. Deploying goes through :class:`~dropflow.managers.client.RestClient` with the service's token,
which is the managers' token: with one configured, every request needs it -- as ``Authorization: Bearer``,
or, for EAGLE, whose form posts cannot carry a header, as a ``token`` query parameter in its Translator URL;
the page then keeps it in a same-site cookie for its own links. Errors are JSON ``{"detail": ...}``.
"""

from __future__ import annotations

import hmac
import html
import itertools
import json
import logging
import string
import threading
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import falcon
import msgspec

from ..drops.errors import GraphError
from ..drops.graph import encode_physical
from ..drops.spec import AppSpec, DropSpec
from ..translator import ALGORITHMS, Read, place, read, translate
from .client import RestClient

__all__ = ["MAX_BODY", "TranslatorService", "make_translator_app"]

log = logging.getLogger(__name__)

MAX_BODY = 512 << 20  # a form or JSON body, before it is read
KEEP = 32  # translated graphs kept for the page
COOKIE = "dropflow_token"


class Fail(Exception):
    """An answer other than success: its HTTP status and what to say."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class Pgt:
    """A translated graph kept for the page: partitioned specs (``node = "#<partition>"``)."""

    id: str
    name: str
    specs: list[DropSpec]
    parts: int
    algorithm: str


def _algorithm(name: str, parts: int) -> str:
    """dropflow's partitioning algorithm for one of DALiuGE's names (mysarkar, pso, agl-1 ... -> metis)."""
    if parts <= 1:
        return "none"
    return name if name in ALGORITHMS and name != "none" else "metis"


def _int(form: dict[str, str], key: str, default: int, low: int = 0) -> int:
    raw = form.get(key)
    if raw in (None, "", "None", "null"):
        return default
    try:
        value = int(float(raw))
    except ValueError:
        raise Fail(falcon.HTTP_400, f"{key} must be an integer, not {raw!r}") from None
    if value < low:
        raise Fail(falcon.HTTP_400, f"{key} must be at least {low}, not {value}")
    return value


def roots(specs: list[DropSpec]) -> list[str]:
    """Drops nothing produces: data with no producer, apps with no input (DALiuGE's ``root_uids``)."""
    produced: set[str] = set()
    for s in specs:
        if isinstance(s, AppSpec):
            for v in s.outputs.values():
                produced.update([v] if isinstance(v, str) else v)
    return [s.id for s in specs if (not s.inputs if isinstance(s, AppSpec) else s.id not in produced)]


class TranslatorService:
    """Translated graphs by id, and deployment to managers; thread-safe, no I/O in the constructor."""

    def __init__(self, token: str | None = None, keep: int = KEEP, name: str = "translator") -> None:
        self.token = token
        self.name = name
        self.keep = keep
        self._pgts: OrderedDict[str, Pgt] = OrderedDict()
        self._lock = threading.Lock()
        self._count = itertools.count(1)

    def add(self, name: str, data: bytes, algo: str, parts: int, islands: int) -> Pgt:
        r = _read(data)
        algorithm = _algorithm(algo, parts)
        t = translate(r, algorithm=algorithm, parts=parts if algorithm != "none" else None)
        count = t.partitioning.count if t.partitioning is not None else 1
        base = name[: -len(".graph")] if name.endswith(".graph") else name
        pgt_id = f"{base or 'graph'}{next(self._count)}_pgt.graph"
        pgt = Pgt(pgt_id, base or "graph", t.specs, count, algorithm)
        with self._lock:
            self._pgts[pgt_id] = pgt
            while len(self._pgts) > self.keep:
                self._pgts.popitem(last=False)
        return pgt

    def get(self, pgt_id: str | None) -> Pgt:
        with self._lock:
            pgt = self._pgts.get(pgt_id or "")
        if pgt is None:
            raise Fail(falcon.HTTP_404, f"PGT(P) with id {pgt_id} not found")
        return pgt

    def manager(self, url: str) -> RestClient:
        return RestClient(url, token=self.token, timeout=30)

    def nodes_of(self, url: str) -> list[str]:
        """The node managers a graph sent to ``url`` is spread over: an island's nodes, or the node itself."""
        with self.manager(url) as client:
            info = client.info()
        nodes = info.get("nodes")
        if isinstance(nodes, list) and nodes:
            return [n if isinstance(n, str) else str(n.get("name")) for n in nodes]
        return [str(info["name"])]

    def deploy(self, pgt: Pgt, url: str) -> str:
        """Map ``pgt`` onto the manager's nodes, create a session there, append, deploy; the session id."""
        specs = place(pgt.specs, self.nodes_of(url), 0) if pgt.specs else []
        session = f"{pgt.name}_{datetime.now().strftime('%Y-%m-%dT%H-%M-%S.%f')}"
        with self.manager(url) as client:
            client.create_session(session)
            client.append(session, specs)
            client.deploy(session)
        return session


def _read(data: bytes) -> Read:
    try:
        return read(data)
    except GraphError as exc:
        raise Fail(falcon.HTTP_400, f"invalid graph: {exc}") from None


def _body(req: falcon.Request) -> bytes:
    length = req.content_length
    if length is not None and length > MAX_BODY:
        raise Fail(falcon.HTTP_413, f"request body over {MAX_BODY} bytes")
    data: bytes = req.bounded_stream.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise Fail(falcon.HTTP_413, f"request body over {MAX_BODY} bytes")
    return data


def _form(req: falcon.Request) -> dict[str, str]:
    """Form fields (urlencoded or multipart), each field's last value."""
    content_type = (req.content_type or "").lower()
    if content_type.startswith("multipart/form-data"):
        length = req.content_length
        if length is not None and length > MAX_BODY:
            raise Fail(falcon.HTTP_413, f"request body over {MAX_BODY} bytes")
        out: dict[str, str] = {}
        form: Any = req.get_media()
        for part in form:
            if part.name:
                out[part.name] = part.get_text() or ""
        return out
    text = _body(req).decode("utf-8", "replace")
    return {k: v[-1] for k, v in urllib.parse.parse_qs(text, keep_blank_values=True).items()}


def _json(resp: falcon.Response, body: Any) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = msgspec.json.encode(body)


def _graph(resp: falcon.Response, specs: list[DropSpec], name: str | None) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = encode_physical(specs, name)


def _page(pgt: Pgt, token: str | None) -> str:
    apps = sum(isinstance(s, AppSpec) for s in pgt.specs)
    q = urllib.parse.quote
    e = html.escape
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dropflow translator: {e(pgt.id)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}} code{{background:#eee}}</style></head>
<body>
<h1>Physical Graph Template</h1>
<p id="summary"><code>{e(pgt.id)}</code>: {len(pgt.specs)} drops ({apps} apps,
{len(pgt.specs) - apps} data) in {pgt.parts} partition(s), algorithm {e(pgt.algorithm)}.</p>
<p><a href="pgt_jsonbody?pgt_name={q(pgt.id)}">physical graph template (JSON)</a> &middot;
<a href="gen_pg?pgt_id={q(pgt.id)}&amp;tpl_nodes_len={pgt.parts}">physical graph (JSON)</a></p>
<h2>Deploy</h2>
<form method="get" action="gen_pg">
<input type="hidden" name="pgt_id" value="{e(pgt.id)}">
<input type="hidden" name="dlg_mgr_deploy" value="on">
<label>Manager URL <input name="dlg_mgr_url" size="40" value="http://127.0.0.1:8001"></label>
<button type="submit">Deploy</button>
</form>
<p>The graph is deployed by this service to the dropflow manager (island or node manager) at that URL{
        ", with this service's token" if token else ""
    }.</p>
</body></html>
"""


class _Auth:
    """The managers' token: a Bearer header, a ``token`` parameter (EAGLE's URL), or the page's cookie."""

    def __init__(self, token: str) -> None:
        self.token = token

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if (req.method == "HEAD" and req.path == "/") or req.path == "/api/health":
            return  # liveness probes, as DALiuGE's and the managers'
        given = req.get_header("Authorization") or ""
        candidates = [given[len("Bearer ") :]] if given.startswith("Bearer ") else []
        candidates += [req.get_param("token") or "", req.cookies.get(COOKIE, "")]
        if any(c and hmac.compare_digest(c.encode(), self.token.encode()) for c in candidates):
            return
        raise Fail(
            falcon.HTTP_401,
            "this translator requires the managers' token: 'Authorization: Bearer <token>', or "
            "?token=<token> in EAGLE's Translator URL",
        )


class _Routes:
    def __init__(self, service: TranslatorService) -> None:
        self.s = service

    # -- EAGLE's form and the page ----------------------------------------------------------------------

    def on_post_gen_pgt(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = _form(req)
        data = form.get("json_data")
        if not data:
            raise Fail(falcon.HTTP_400, "json_data (the logical graph) is missing")
        pgt = self.s.add(
            form.get("lg_name") or "graph.graph",
            data.encode(),
            form.get("algo") or "metis",
            _int(form, "num_par", 1, 1),
            _int(form, "num_islands", 0),
        )
        if self.s.token and req.get_param("token"):
            resp.set_cookie(COOKIE, self.s.token, secure=False, same_site="Strict", path="/")
        resp.content_type = falcon.MEDIA_HTML
        resp.text = _page(pgt, self.s.token)

    def on_get_pgt_jsonbody(self, req: falcon.Request, resp: falcon.Response) -> None:
        pgt = self.s.get(req.get_param("pgt_name"))
        _graph(resp, pgt.specs, pgt.name)

    def on_get_gen_pg(self, req: falcon.Request, resp: falcon.Response) -> None:
        pgt = self.s.get(req.get_param("pgt_id"))
        url = _manager_url(
            req.get_param("dlg_mgr_url"), req.get_param("dlg_mgr_host"), req.get_param("dlg_mgr_port")
        )
        if url is None:
            _graph(resp, pgt.specs, pgt.name)
            return
        if req.get_param("dlg_mgr_deploy") is None:
            _graph(resp, place(pgt.specs, self.s.nodes_of(url), 0), pgt.name)
            return
        session = self.s.deploy(pgt, url)
        raise falcon.HTTPSeeOther(f"{url}/api/v1/sessions/{urllib.parse.quote(session)}")

    def on_post_gen_pg_spec(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            body = json.loads(_body(req) or b"{}")
        except ValueError as exc:
            raise Fail(falcon.HTTP_400, f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise Fail(falcon.HTTP_400, "the body must be a JSON object {pgt_id, node_list, manager_host}")
        pgt = self.s.get(body.get("pgt_id"))
        nodes = [str(n) for n in body.get("node_list") or []]
        if not nodes and body.get("manager_host"):
            host = str(body["manager_host"])
            nodes = self.s.nodes_of(host if "://" in host else f"http://{host}")
        specs = place(pgt.specs, nodes, 0) if nodes else pgt.specs
        _json(resp, {"pg_spec": json.loads(encode_physical(specs, pgt.name)), "root_uids": roots(specs)})

    def on_get_submission_method(self, req: falcon.Request, resp: falcon.Response) -> None:
        # This service deploys graphs itself (with the managers' token): DALiuGE's SERVER method.
        _json(resp, {"methods": ["SERVER"]})

    def on_get_index(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.text = (
            "<!doctype html><title>dropflow translator</title><h1>dropflow translator</h1>"
            "<p>Point EAGLE's Translator URL at <code>/gen_pgt</code> of this service.</p>"
        )

    def on_head_index(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_200

    def on_get_health(self, req: falcon.Request, resp: falcon.Response) -> None:
        _json(resp, {"status": "ok", "role": "translator", "name": self.s.name})

    # -- the JSON API ----------------------------------------------------------------------------------------

    def on_post_lg_fill(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = _form(req)
        graph = _content(form, "lg_content")
        try:
            params = json.loads(form.get("parameters") or "{}")
        except ValueError:
            raise Fail(falcon.HTTP_400, "Parameter string is invalid") from None
        if not isinstance(params, dict):
            raise Fail(falcon.HTTP_400, "parameters must be a JSON object")
        _json(resp, _fill(graph, params))

    def on_post_unroll(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = _form(req)
        r = _read(_content(form, "lg_content"))
        _graph(resp, translate(r).specs, None)

    def on_post_partition(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._partition(req, resp, "pgt_content")

    def on_post_unroll_and_partition(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._partition(req, resp, "lg_content")

    def _partition(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        form = _form(req)
        r = _read(_content(form, key))
        parts = _int(form, "num_partitions", 1, 1)
        algorithm = _algorithm(form.get("algorithm") or "metis", parts)
        t = translate(r, algorithm=algorithm, parts=parts if algorithm != "none" else None)
        specs = t.specs
        if t.partitioning is None:  # one partition: every drop on "#0", as DALiuGE labels it
            specs = [msgspec.structs.replace(s, node="#0") for s in specs]
        _graph(resp, specs, None)

    def on_post_map(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = _form(req)
        r = _read(_content(form, "pgt_content"))
        nodes = [n.strip() for n in (form.get("nodes") or "").split(",") if n.strip()]
        if not nodes and form.get("host"):
            nodes = self.s.nodes_of(_manager_url(None, form["host"], form.get("port") or "8001") or "")
        islands = _int(form, "num_islands", 1)
        if len(nodes) <= islands:
            raise Fail(
                falcon.HTTP_400,
                f"#nodes ({len(nodes)}) should be larger than the number of islands ({islands})",
            )
        specs = r.specs if r.specs is not None else translate(r).specs
        if any(s.node is None for s in specs):
            specs = [msgspec.structs.replace(s, node="#0") for s in specs]
        try:
            _graph(resp, place(specs, nodes, islands), None)
        except GraphError as exc:
            raise Fail(falcon.HTTP_400, str(exc)) from None


def _content(form: dict[str, str], key: str) -> bytes:
    text = form.get(key)
    if not text:
        name = "lg_name" if key == "lg_content" else "pgt_name"
        if form.get(name):
            raise Fail(falcon.HTTP_400, f"this service keeps no graphs on disk: send the graph as {key}")
        raise Fail(falcon.HTTP_400, f"{key} is missing")
    return text.encode()


class _Placeholders(string.Template):
    """DALiuGE's graph parameters: ``~name`` or ``~{name}``, dotted names for nested values."""

    delimiter = "~"
    idpattern = r"[_a-z][_a-z0-9\.]*"


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        out[f"{prefix}{key}"] = value
    return out


def _fill(graph: bytes, params: dict[str, Any]) -> Any:
    """DALiuGE's ``lg_fill``: the graph text with its parameters substituted; unknown ones are left."""
    text = _Placeholders(graph.decode("utf-8", "replace")).safe_substitute(_flat(params))
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Fail(falcon.HTTP_400, f"LG content is malformed: {exc}") from None


def _manager_url(url: str | None, host: str | None, port: str | None) -> str | None:
    if url:
        return url.rstrip("/") if "://" in url else f"http://{url.rstrip('/')}"
    if host:
        return f"http://{host}:{port or 8001}"
    return None


def _error(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    # falcon's own HTTPError and HTTPStatus (the deploy redirect) keep their more specific handlers.
    if isinstance(ex, Fail):
        status, detail = ex.status, ex.detail
    elif isinstance(ex, GraphError):
        status, detail = falcon.HTTP_400, f"invalid graph: {ex}"
    else:
        from .errors import ApiError

        if isinstance(ex, ApiError):
            status, detail = falcon.HTTP_502, f"the manager answered: {ex.message}"
        else:
            log.exception("translator request %s %s failed", req.method, req.path)
            status, detail = falcon.HTTP_500, f"{type(ex).__name__}: {ex}"
    resp.status = status
    _json(resp, {"detail": detail})


def make_translator_app(service: TranslatorService) -> falcon.App[Any, Any]:
    """The falcon app of the translator service."""
    app = falcon.App(middleware=[_Auth(service.token)] if service.token else [])
    app.add_error_handler(Exception, _error)
    routes = _Routes(service)
    app.add_route("/", routes, suffix="index")
    for name in ("gen_pgt", "pgt_jsonbody", "gen_pg", "gen_pg_spec", "lg_fill", "unroll", "partition", "map"):
        app.add_route(f"/{name}", routes, suffix=name)
    app.add_route("/unroll_and_partition", routes, suffix="unroll_and_partition")
    app.add_route("/api/submission_method", routes, suffix="submission_method")
    app.add_route("/api/health", routes, suffix="health")
    return app
