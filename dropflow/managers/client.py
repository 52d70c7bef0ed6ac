"""A REST client of a manager, with the same methods as the managers themselves.

Theory of operation
-------------------
:class:`RestClient` speaks the REST API over one pooled ``httpx.Client`` and turns every error answer back
into the :class:`~dropflow.managers.errors.ApiError` that the server raised, so code that drives a manager
works the same whether the manager is an object in this process or a daemon elsewhere. An island manager
uses it for its node managers, a master for its islands, and the CLI for whatever ``--to`` names.

It speaks dropflow's own representation, under ``/api/v1``; :meth:`RestClient.dlg_get` reads a resource
of DALiuGE's representation, under ``/api`` (a master nests its islands' DALiuGE status with it).

``watch`` follows a session with long polls (``/wait``): no polling loop with sleeps, and a dead daemon is
noticed as soon as its connection breaks; the watcher is then told the node is LOST.
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import msgspec

from ..drops.graph import encode_physical
from ..drops.spec import DropSpec
from .auth import check_proof, find_token, new_challenge, same_endpoint
from .errors import (
    ApiError,
    BadGraph,
    BadRequest,
    Conflict,
    NodeFailure,
    NoDrop,
    NoSession,
    NotFound,
    SessionExists,
    WrongState,
)
from .heartbeat import LEASE

__all__ = ["FIND", "RestClient", "Unproven", "adopt"]

log = logging.getLogger(__name__)

_BY_STATUS: dict[int, type[ApiError]] = {400: BadRequest, 404: NotFound, 409: Conflict, 502: NodeFailure}
#: Errors rebuilt by the DALiuGE type every error body names (see errors.py).
_BY_TYPE: dict[str, type[NoSession | SessionExists | WrongState]] = {
    "NoSessionException": NoSession,
    "SessionAlreadyExistsException": SessionExists,
    "InvalidSessionState": WrongState,
}
V1 = "/api/v1"
GZIP_ABOVE = 64 * 1024


#: ``RestClient(token=FIND)``: the token a client finds by itself (``$DROPFLOW_TOKEN``, the default file).
FIND = "<find the token>"


class RestClient:
    """Client of one manager at ``url`` (``http://host:port``). ``token``: the cluster's token; by default
    the one this user's daemons use (:func:`~dropflow.managers.auth.find_token`); None for none."""

    def __init__(
        self,
        url: str,
        name: str | None = None,
        token: str | None = FIND,
        timeout: float = 60.0,
        verify: Any = True,
    ) -> None:
        self.url = url.rstrip("/")
        if token is FIND:
            token = find_token()
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, verify=verify)
        self._closed = threading.Event()
        self._name = name

    @property
    def name(self) -> str:
        if self._name is None:
            self._name = str(self.info()["name"])
        return self._name

    def close(self) -> None:
        self._closed.set()
        self._http.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise NodeFailure(f"cannot reach {self.url}: {type(exc).__name__}: {exc}") from None
        if resp.status_code == 204:
            return None
        try:
            body = msgspec.json.decode(resp.content) if resp.content else None
        except msgspec.DecodeError:
            body = None
        if resp.is_success:
            return body
        error = body.get("error", {}) if isinstance(body, dict) else {}
        message = error.get("message") or f"{resp.status_code} {resp.reason_phrase} from {self.url}{path}"
        if resp.status_code == 400 and "problems" in error:
            raise BadGraph(message, problems=error["problems"])
        dlg_type = body.get("type") if isinstance(body, dict) else None
        args = body.get("args") if isinstance(body, dict) else None
        failure: ApiError
        if dlg_type in _BY_TYPE and isinstance(args, list) and args:
            failure = _BY_TYPE[dlg_type](message, str(args[0]))
        elif dlg_type == "NoDropException" and isinstance(args, list) and args:
            failure = NoDrop(message, str(args[0]))
        else:
            failure = _BY_STATUS.get(resp.status_code, ApiError)(message)
        failure.status = resp.status_code
        raise failure

    # -- the session API ------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return self._call("GET", f"{V1}/health")  # type: ignore[no-any-return]

    def heartbeat(
        self,
        sender: str,
        renew: Sequence[str],
        cancel: Sequence[str] = (),
        lease: float = LEASE,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One heartbeat (see :mod:`~dropflow.managers.heartbeat`), with its own, short, timeout."""
        body = {"from": sender, "renew": list(renew), "cancel": list(cancel), "lease": lease}
        kw: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        return self._call("POST", f"{V1}/heartbeat", json=body, **kw)  # type: ignore[no-any-return]

    def sessions(self) -> list[dict[str, Any]]:
        return self._call("GET", f"{V1}/sessions")  # type: ignore[no-any-return]

    def create_session(self, session_id: str) -> dict[str, Any]:
        return self._call("POST", f"{V1}/sessions", json={"sessionId": session_id})  # type: ignore[no-any-return]

    def session_info(self, session_id: str) -> dict[str, Any]:
        return self._call("GET", f"{V1}/sessions/{session_id}")  # type: ignore[no-any-return]

    def status(self, session_id: str) -> str:
        return str(self._call("GET", f"{V1}/sessions/{session_id}/status")["status"])

    def append(self, session_id: str, drops: list[DropSpec]) -> int:
        return self.append_bytes(session_id, encode_physical(drops))

    def append_bytes(self, session_id: str, data: bytes) -> int:
        headers = {"Content-Type": "application/json"}
        if len(data) > GZIP_ABOVE:
            data = gzip.compress(data, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        body = self._call("POST", f"{V1}/sessions/{session_id}/graph/append", content=data, headers=headers)
        return int(body["appended"])

    def set_peers(self, session_id: str, peers: dict[str, dict[str, str]]) -> None:
        self._call("POST", f"{V1}/sessions/{session_id}/peers", json=peers)

    def resume(self, session_id: str, plan: Any) -> None:
        """Before deploy: what a resumed session keeps (a :class:`~dropflow.engine.resume.ResumePlan`)."""
        self._call("POST", f"{V1}/sessions/{session_id}/resume", json=plan.to_dict())

    def discard_journal(self, session_id: str) -> None:
        self._call("DELETE", f"{V1}/sessions/{session_id}/journal")

    def deploy(
        self, session_id: str, start: bool = True, completed: list[str] | None = None
    ) -> dict[str, Any]:
        params = {"start": "true" if start else "false"}
        if completed is not None:
            params["completed"] = ",".join(completed)
        return self._call("POST", f"{V1}/sessions/{session_id}/deploy", params=params)  # type: ignore[no-any-return]

    def start_session(self, session_id: str) -> dict[str, Any]:
        return self._call("POST", f"{V1}/sessions/{session_id}/start")  # type: ignore[no-any-return]

    def cancel(self, session_id: str) -> None:
        self._call("POST", f"{V1}/sessions/{session_id}/cancel")

    def delete_session(self, session_id: str) -> None:
        self._call("DELETE", f"{V1}/sessions/{session_id}")

    def graph(self, session_id: str) -> bytes:
        try:
            resp = self._http.get(f"{V1}/sessions/{session_id}/graph")
        except httpx.HTTPError as exc:
            raise NodeFailure(f"cannot reach {self.url}: {exc}") from None
        if not resp.is_success:
            self._call("GET", f"{V1}/sessions/{session_id}/graph")  # raises the matching error
        return resp.content

    def graph_size(self, session_id: str) -> int:
        return int(self._call("GET", f"{V1}/sessions/{session_id}/graph/size"))

    def graph_status(self, session_id: str, states: set[str] | None = None) -> dict[str, dict[str, str]]:
        params = {"state": ",".join(sorted(states))} if states else None
        return self._call("GET", f"{V1}/sessions/{session_id}/graph/status", params=params)  # type: ignore[no-any-return]

    def summary(self, session_id: str) -> dict[str, Any]:
        return self._call("GET", f"{V1}/sessions/{session_id}/summary")  # type: ignore[no-any-return]

    def drop_log(self, session_id: str, uid: str) -> dict[str, Any]:
        return self._call("GET", f"{V1}/sessions/{session_id}/logs/{uid}")  # type: ignore[no-any-return]

    def session_dirs(self, session_id: str) -> dict[str, str]:
        return self._call("GET", f"{V1}/sessions/{session_id}/dir")["dirs"]  # type: ignore[no-any-return]

    def events(self, session_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"{V1}/sessions/{session_id}/events")  # type: ignore[no-any-return]

    def dlg_get(self, path: str) -> Any:
        """A resource of DALiuGE's representation (``path`` starts with ``/api``), as it answers."""
        return self._call("GET", path)

    def wait(self, session_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """One long poll: the session's state and, if it ended, its summary."""
        return self._call(  # type: ignore[no-any-return]
            "GET", f"{V1}/sessions/{session_id}/wait", params={"timeout": timeout}, timeout=timeout + 30
        )

    def nodes(self) -> list[dict[str, Any]]:
        return self._call("GET", f"{V1}/nodes")  # type: ignore[no-any-return]

    def add_node(self, name: str, url: str) -> dict[str, Any]:
        return self._call("POST", f"{V1}/node/{name}", json={"url": url})  # type: ignore[no-any-return]

    def watch(self, session_id: str, watcher: Callable[[dict[str, Any]], None], poll: float = 5.0) -> None:
        """Call ``watcher(summary)`` when the session ends, or with status LOST if the manager goes away."""

        def follow() -> None:
            while not self._closed.is_set():
                try:
                    answer = self.wait(session_id, poll)
                except NodeFailure as exc:
                    if not self._closed.is_set():
                        watcher({"status": "LOST", "error": exc.message})
                    return
                except ApiError as exc:
                    watcher({"status": "LOST", "error": f"{exc.status}: {exc.message}"})
                    return
                if answer.get("ended"):
                    watcher(answer["summary"])
                    return

        threading.Thread(target=follow, name=f"dropflow-watch-{session_id}", daemon=True).start()


class Unproven(ApiError):
    """A manager that did not prove it holds the token, or that is not who or where it should be."""

    status, title = 403, "Forbidden"


def adopt(
    url: str, token: str | None, name: str | None = None, verify: Any = True, timeout: float = 10.0
) -> RestClient:
    """A client of the manager at ``url`` -- once it has proved, by answering a fresh challenge, that it
    holds ``token``, is called ``name`` (if given) and is reached at ``url``. Nothing secret is sent before:
    the challenge goes without the token. With no token (a daemon started with --insecure-no-token, on
    loopback only), there is nothing to prove."""
    url = url.rstrip("/")
    challenge = new_challenge()
    try:
        resp = httpx.get(f"{url}/api/health", params={"challenge": challenge}, timeout=timeout, verify=verify)
        body = resp.json() if resp.is_success else None
    except (httpx.HTTPError, ValueError) as exc:
        raise NodeFailure(f"cannot reach {url}: {type(exc).__name__}: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise NodeFailure(f"{url} does not answer like a dropflow manager (HTTP {resp.status_code})")
    said, where = body["name"], str(body.get("url") or "")
    if token is not None:
        if not check_proof(token, challenge, said, where, body.get("proof")):
            raise Unproven(
                f"the manager at {url} did not prove that it holds this cluster's token; "
                "nothing was sent to it"
            )
        if not same_endpoint(where, url):
            raise Unproven(
                f"the manager at {url} says it is reached at {where or 'an unknown address'}: "
                "use that URL, or start it with --advertise HOST"
            )
    if name is not None and said != name:
        raise Unproven(f"the manager at {url} is named {said!r}, not {name!r}")
    return RestClient(url, name=said, token=token, verify=verify)
