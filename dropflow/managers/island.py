"""The data island manager: one session API over several node managers.

Theory of operation
-------------------
An island manager holds a set of node clients -- anything with the node manager's methods: the
:class:`~dropflow.managers.node_manager.NodeManager` itself in one process, a REST client across processes.
It keeps the specs appended to a session until deploy, then:

1. checks what no single node can see (duplicate ids, dangling links, cycles across nodes) and that every
   drop is placed on one of its nodes;
2. splits the graph by node (each part carries proxies of its remote neighbours), and on every node that
   holds a part -- in parallel -- creates the session, appends the part, registers the bus addresses of the
   other nodes (the cross-node relations), and deploys without starting;
3. starts every node only when all are deployed, so no event reaches a node that is not ready.

A watcher per node reports when the node's part ends. The island session ends when every part has: FAILED
if any part failed or a node was lost, CANCELLED if it was cancelled, FINISHED otherwise. A lost node fails
the session at once, naming the node, and the other nodes are cancelled so that they stop and clean their
parts; no session stays RUNNING forever. A node is lost when its daemon dies (its watcher's connection
breaks), or when it stops answering heartbeats (:mod:`.heartbeat`): from deploy to the end, a monitor
thread checks every node holding a part every second, renewing the leases of distributed parts; a node
silent for a few seconds is lost, and is then sent the order to cancel with every heartbeat until it
answers, so that a node that was only stopped (SIGSTOP, a hung host) stops its part when it comes back.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec

from .. import __version__
from ..drops.errors import GraphError, Problem
from ..drops.graph import decode_physical, encode_physical
from ..drops.spec import DropSpec, port_drops
from ..drops.states import SESSION_ENDED, SESSION_TRANSITIONS, SessionState, check_transition
from ..engine.heap import give_back
from ..engine.resume import ResumePlan
from ..engine.workspace import check_session_id
from .dlgcompat import NODE_PORT, address, check_completed, find_member, parse_address
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
from .heartbeat import LEASE, HeartbeatPolicy, Monitor
from .logs import session_event
from .node_manager import _batch_job, _log_end
from .split import check_whole, split_by_node
from .why import cross_producers

__all__ = ["DataIslandManager", "NodeClient", "bus_peer"]

log = logging.getLogger(__name__)
_S = SessionState


class NodeClient(Protocol):
    """What an island needs of a node manager (or a master of an island)."""

    @property
    def name(self) -> str: ...

    def info(self) -> dict[str, Any]: ...
    def heartbeat(
        self,
        sender: str,
        renew: Sequence[str],
        cancel: Sequence[str] = (),
        lease: float = LEASE,
        timeout: float | None = None,
    ) -> dict[str, Any]: ...
    def create_session(self, session_id: str) -> dict[str, Any]: ...
    def append(self, session_id: str, drops: list[DropSpec]) -> int: ...
    def set_peers(self, session_id: str, peers: dict[str, dict[str, str]]) -> None: ...
    def resume(self, session_id: str, plan: ResumePlan) -> None: ...
    def discard_journal(self, session_id: str) -> None: ...
    def deploy(
        self, session_id: str, start: bool = True, completed: list[str] | None = None
    ) -> dict[str, Any]: ...
    def start_session(self, session_id: str) -> dict[str, Any]: ...
    def cancel(self, session_id: str) -> None: ...
    def status(self, session_id: str) -> str: ...
    def summary(self, session_id: str) -> dict[str, Any]: ...
    def graph_status(self, session_id: str, states: set[str] | None = None) -> dict[str, dict[str, str]]: ...
    def graph(self, session_id: str) -> bytes: ...
    def drop_log(self, session_id: str, uid: str) -> dict[str, Any]: ...
    def session_dirs(self, session_id: str) -> dict[str, str]: ...
    def events(self, session_id: str) -> list[dict[str, Any]]: ...
    def delete_session(self, session_id: str) -> None: ...
    def watch(self, session_id: str, watcher: Callable[[dict[str, Any]], None]) -> None: ...
    def nodes(self) -> list[dict[str, Any]]:
        """The members of an island (only island clients, for a master)."""
        ...


def bus_peer(info: dict[str, Any]) -> dict[str, str]:
    """A node's entry in a session's peers, from its (authenticated) info: bus address and public key."""
    return {"bus": str(info["bus"]), "key": str(info.get("bus_key") or "")}


class _IslandSession:
    def __init__(self, session_id: str) -> None:
        self.id = session_id
        self.state = _S.PRISTINE
        self.specs: list[DropSpec] = []
        self.placement: dict[str, str] = {}
        self.nodes: list[str] = []
        self.reports: dict[str, dict[str, Any]] = {}
        self.lost: dict[str, str] = {}
        self.cancelled = False
        #: Bus addresses and keys of nodes in other islands (set by a master): drops there are neighbours.
        self.external_peers: dict[str, dict[str, str]] = {}
        #: Producers of the drops linked across members, kept from deploy for ``why`` (see managers.why).
        self.producers: dict[str, list[tuple[str, str | None]]] = {}
        #: What a resumed session keeps from its earlier runs, split among the members at deploy.
        self.resume: ResumePlan | None = None
        self.watchers: list[Callable[[dict[str, Any]], None]] = []
        self.error: str | None = None
        self.ended = threading.Event()
        self.times: dict[str, float] = {"created": time.time()}
        self.lock = threading.Lock()

    def to(self, end: SessionState) -> None:
        check_transition(SESSION_TRANSITIONS, f"session {self.id!r}", self.state, end)
        self.state = end


class DataIslandManager:
    """The session API over a set of node managers (or, as :class:`MasterManager`, of island managers)."""

    role = "dim"
    #: The placement field that says which member runs a drop.
    member_key = "node"
    #: How long a node that withdrew its announcement may go on answering before it is kept after all.
    VANISH_GRACE = 10.0

    def __init__(
        self,
        name: str = "island",
        nodes: Iterable[NodeClient] = (),
        fanout: int = 16,
        heartbeat: HeartbeatPolicy | None = None,
        token: str | None = None,
        verify: Any = True,
    ) -> None:
        self.name = name
        #: The cluster's token (None: no auth, loopback only) and how to check members' TLS certificates.
        self._token, self._verify = token, verify
        self.started = time.time()
        self._nodes: dict[str, NodeClient] = {n.name: n for n in nodes}
        self._lost: dict[str, str] = {}
        self._sessions: dict[str, _IslandSession] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(fanout, thread_name_prefix="dropflow-island")
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._monitor = Monitor(
            name, self._heartbeat_targets, self._client, self._heartbeat_lost, heartbeat or HeartbeatPolicy()
        )

    def close(self) -> None:
        self._closed.set()
        self._monitor.close()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def info(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "role": self.role,
            "name": self.name,
            "version": __version__,
            "nodes": sorted(self._nodes),
            "sessions": len(self._sessions),
            "uptime_seconds": round(time.time() - self.started, 3),
            **_batch_job(),
        }

    # -- nodes ----------------------------------------------------------------------------------------------

    def add_node(self, client: NodeClient) -> None:
        with self._lock:
            self._nodes[client.name] = client
            self._lost.pop(client.name, None)

    def add_node_url(self, name: str, url: str) -> dict[str, Any]:
        """Adopt the manager at ``url`` under ``name``, once it proved it holds the token (and its name)."""
        from .client import adopt

        if not url.startswith(("http://", "https://")):
            raise BadRequest(f"node URL {url!r} must start with http:// or https://", field="url")
        with self._lock:
            if name in self._nodes:
                raise Conflict(f"island {self.name!r} already has a node {name!r}")
        try:
            client = adopt(url, self._token, name, self._verify)
        except ApiError as exc:
            # The request named a manager that does not answer, or not as it must: the request is wrong.
            raise BadRequest(f"cannot add node {name!r}: {exc.message}", field="url") from None
        try:
            info = client.info()
        except ApiError as exc:
            client.close()
            raise BadRequest(f"cannot add node {name!r}: {exc.message}", field="url") from None
        with self._lock:
            if name in self._nodes:  # adopted meanwhile: an adopted node is never replaced
                client.close()
                raise Conflict(f"island {self.name!r} already has a node {name!r}")
            self._nodes[name] = client
            self._lost.pop(name, None)
        return {"name": name, "url": url, "reachable": True, **info}

    def discovered(self, name: str, url: str) -> None:
        """A node manager announced itself: adopt it if it proves it holds the token. An announcement
        never replaces a node already adopted (whoever sends it)."""
        with self._lock:
            if name in self._nodes:
                log.info("announcement of %s at %s ignored: %s is already a member", name, url, name)
                return
        try:
            self.add_node_url(name, url)
            log.info("adopted node %s at %s", name, url)
        except ApiError as exc:
            log.warning("announced node %s at %s not adopted: %s", name, url, exc.message)

    def vanished(self, name: str) -> concurrent.futures.Future[None] | None:
        """A node manager's announcement was withdrawn: forget it once it no longer answers at its URL --
        and keep it if it still proves itself there after ``VANISH_GRACE`` seconds (a forged goodbye must
        not take a working node away). A stopping node says goodbye before its REST server closes, so the
        first check often finds it still up; the checks run on the island's pool, never on zeroconf's
        thread (the future says when they are over)."""
        with self._lock:
            client = self._nodes.get(name)
        if client is None or getattr(client, "url", None) is None:
            return None
        try:
            return self._pool.submit(self._confirm_vanished, name, client)
        except RuntimeError:  # the island is closing
            return None

    def _confirm_vanished(self, name: str, client: Any) -> None:
        from .client import adopt

        url = client.url
        deadline = time.monotonic() + self.VANISH_GRACE
        while True:
            try:
                adopt(url, self._token, name, self._verify, timeout=3.0).close()
            except ApiError:
                with self._lock:
                    if self._nodes.get(name) is client:
                        del self._nodes[name]
                log.info(
                    "node %s at %s withdrew its announcement and no longer answers: forgotten", name, url
                )
                return
            if time.monotonic() >= deadline or self._closed.wait(0.5):
                break
        log.warning("node %s withdrew its announcement but still answers at %s: kept", name, url)

    def remove_node(self, name: str) -> None:
        with self._lock:
            if self._nodes.pop(name, None) is None:
                raise NotFound(f"island {self.name!r} has no node {name!r}")

    def node_names(self) -> list[str]:
        with self._lock:
            return sorted(self._nodes)

    def nodes(self) -> list[dict[str, Any]]:
        """Every node with its info, or the reason it cannot be reached."""
        with self._lock:
            clients = dict(self._nodes)
        futures = {name: self._pool.submit(client.info) for name, client in clients.items()}
        out = []
        for name, fut in sorted(futures.items()):
            url = getattr(clients[name], "url", None)
            where = {"url": url} if url else {}
            try:
                out.append({"name": name, "reachable": True, **fut.result(), **where})
            except Exception as exc:  # a node that cannot answer is listed as such, not raised
                out.append({"name": name, "reachable": False, "error": str(exc), **where})
        return out

    # -- DALiuGE's view of members: addresses ---------------------------------------------------------------

    def member_urls(self) -> dict[str, str | None]:
        """Each member's REST URL (None for a manager in this process)."""
        with self._lock:
            return {name: getattr(client, "url", None) for name, client in self._nodes.items()}

    def member_address(self, name: str) -> str:
        """How DALiuGE names a member: ``host:port``."""
        return address(self.member_urls().get(name), name)

    def resolve_member(self, ref: str) -> str:
        """The member that ``ref`` names: by name, or by address as DALiuGE writes it."""
        name = find_member(ref, self.member_urls())
        if name is None:
            raise NotFound(f"island {self.name!r} has no node {ref!r}")
        return name

    def member(self, name: str) -> NodeClient:
        return self._client(name)

    def add_node_address(self, ref: str) -> dict[str, Any]:
        """DALiuGE's ``POST /api/node/{host:port}``: adopt the manager there under the name it proves."""
        from .client import adopt

        parsed = parse_address(ref)
        if parsed is None:
            raise BadRequest(f"{ref!r} is not a host[:port] address", field="node")
        host, port = parsed
        if find_member(ref, self.member_urls()) is not None:
            raise Conflict(f"island {self.name!r} already has a node at {ref!r}")
        scheme = "https" if any(u and u.startswith("https:") for u in self.member_urls().values()) else "http"
        host = f"[{host}]" if ":" in host else host
        url = f"{scheme}://{host}:{port or (NODE_PORT if self.role == 'dim' else NODE_PORT + 1)}"
        try:
            client = adopt(url, self._token, None, self._verify)
        except ApiError as exc:
            raise BadRequest(f"cannot add node {ref!r}: {exc.message}", field="node") from None
        name = client.name
        client.close()
        return self.add_node_url(name, url)

    def node_urls(self) -> dict[str, str | None]:
        """Every node manager under this manager, with its URL (an island's members)."""
        return self.member_urls()

    def all_node_addresses(self) -> list[str]:
        return sorted(address(url, name) for name, url in self.node_urls().items())

    def _place(self, specs: list[DropSpec]) -> list[DropSpec]:
        """The specs with placements written as DALiuGE writes them (``dlg map``: ``host``, ``host:port``,
        ``host:port:events:rpc``) replaced by member names; a null drop with no placement (what DALiuGE's
        direct links between apps become) goes with the app that writes it."""
        keys = {self.member_key: self.member_urls()}
        if self.member_key != "node" and any(s.node is not None for s in specs):
            keys["node"] = self.node_urls()
        placed = []
        for spec in specs:
            changes = {}
            for key, members in keys.items():
                ref = getattr(spec, key)
                if ref is not None and ref not in members:
                    name = find_member(ref, members)
                    if name is not None:
                        changes[key] = name
            placed.append(msgspec.structs.replace(spec, **changes) if changes else spec)
        by_id = {spec.id: spec for spec in placed}
        writer: dict[str, DropSpec] = {}
        for spec in placed:
            for value in getattr(spec, "outputs", {}).values():
                for uid in port_drops(value):
                    writer.setdefault(uid, spec)
        for i, spec in enumerate(placed):
            if spec.kind == "null" and getattr(spec, self.member_key) is None and spec.id in writer:
                app = by_id[writer[spec.id].id]
                placed[i] = msgspec.structs.replace(spec, node=app.node, island=app.island)
        return placed

    def member_states(self, session_id: str) -> dict[str, str]:
        """The state of each member's part of a session: before deploy, every member's is the session's."""
        s = self._session(session_id)
        with s.lock:
            if not s.nodes:
                return {name: str(s.state) for name in self.node_names()}
            return {
                name: str(s.reports[name].get("status") or s.state) if name in s.reports else str(s.state)
                for name in s.nodes
            }

    def deployed(self, session_id: str) -> bool:
        return bool(self._session(session_id).nodes)

    def session_dirs(self, session_id: str) -> dict[str, str]:
        """Where each node keeps the session's files."""
        s = self._session(session_id)
        dirs: dict[str, str] = {}
        for _name, result in self._fan(s.nodes, lambda c: c.session_dirs(s.id)).items():
            if not isinstance(result, Exception):
                dirs.update(result)
        return dirs

    def events(self, session_id: str) -> list[dict[str, Any]]:
        """Every node's logged state changes of the session, in time order."""
        s = self._session(session_id)
        merged: list[dict[str, Any]] = []
        for name, result in self._fan(s.nodes, lambda c: c.events(s.id)).items():
            if not isinstance(result, Exception):
                merged += [{**e, "node": e.get("node") or name} for e in result]
        merged.sort(key=lambda e: e["time"])
        return merged

    def _client(self, name: str) -> NodeClient:
        with self._lock:
            client = self._nodes.get(name)
        if client is None:
            raise NodeFailure(f"node {name!r} is no longer part of island {self.name!r}")
        return client

    # -- sessions -------------------------------------------------------------------------------------------

    def _session(self, session_id: str) -> _IslandSession:
        session = self._sessions.get(session_id)
        if session is None:
            raise NoSession(f"island {self.name!r} has no session {session_id!r}", session_id)
        return session

    def create_session(self, session_id: str) -> dict[str, Any]:
        try:
            check_session_id(session_id)
        except ValueError as exc:
            raise BadRequest(str(exc), field="sessionId") from None
        with self._lock:
            if session_id in self._sessions:
                raise SessionExists(
                    f"session {session_id!r} already exists on island {self.name!r}", session_id
                )
            self._sessions[session_id] = _IslandSession(session_id)
        session_event("created", session_id, f"session {session_id} created on {self.role} {self.name}")
        return self.session_info(session_id)

    def sessions(self) -> list[dict[str, Any]]:
        return [self.session_info(sid) for sid in list(self._sessions)]

    def session_info(self, session_id: str) -> dict[str, Any]:
        s = self._session(session_id)
        return {
            "sessionId": s.id,
            "status": str(s.state),
            "size": len(s.placement) or len(s.specs),
            "nodes": list(s.nodes),
            "error": s.error,
            "created": s.times["created"],
            **_batch_job(),
        }

    def status(self, session_id: str) -> str:
        return str(self._session(session_id).state)

    def append(self, session_id: str, drops: list[DropSpec]) -> int:
        s = self._session(session_id)
        with s.lock:
            if s.state is _S.PRISTINE:
                s.to(_S.BUILDING)
            elif s.state is not _S.BUILDING:
                raise WrongState(
                    f"session {session_id!r} is {s.state}; graphs can only be added before deploy"
                )
            s.specs.extend(drops)
        return len(drops)

    def set_peers(self, session_id: str, peers: dict[str, dict[str, str]]) -> None:
        """Bus addresses of the nodes of other islands that hold neighbours of this island's drops."""
        s = self._session(session_id)
        with s.lock:
            if s.state not in (_S.PRISTINE, _S.BUILDING):
                raise WrongState(f"session {session_id!r} is {s.state}; peers are set before deploying")
            s.external_peers.update(peers)

    def resume(self, session_id: str, plan: ResumePlan) -> None:
        """Before deploy: what the session keeps from its earlier runs; each member gets its part."""
        s = self._session(session_id)
        with s.lock:
            if s.state not in (_S.PRISTINE, _S.BUILDING):
                raise WrongState(f"session {session_id!r} is {s.state}; a resume is given before deploy")
            s.resume = plan

    def discard_journal(self, session_id: str) -> None:
        """Forget the journals of the session's parts (members that cannot be reached keep theirs)."""
        s = self._session(session_id)
        if not s.ended.is_set():
            raise WrongState(f"session {session_id!r} is {s.state}; its journal is still being written")
        self._fan([n for n in s.nodes if n not in s.lost], lambda c: c.discard_journal(s.id))

    def _fan(self, nodes: Sequence[str], call: Callable[[NodeClient], Any]) -> dict[str, Any]:
        """Call every node in parallel; node -> result, or the exception it raised.

        A node that stops answering heartbeats meanwhile is given up on (its call is left to time out on
        its own): a hung node must not hang the island's REST answers with it.
        """

        def on(name: str) -> Any:
            return call(self._client(name))

        results: dict[str, Any] = {}
        policy = self._monitor.policy
        pending = {}
        for name in nodes:
            silent = self._monitor.silent_for(name)
            if silent is not None and silent > policy.lost_after:
                results[name] = NodeFailure(f"node {name!r} stopped answering heartbeats for {silent:.1f} s")
            else:
                pending[name] = self._pool.submit(on, name)
        while pending:
            concurrent.futures.wait(
                pending.values(), timeout=policy.interval, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for name, fut in list(pending.items()):
                if fut.done():
                    del pending[name]
                    try:
                        results[name] = fut.result()
                    except Exception as exc:  # collected: the caller decides what a node's failure means
                        results[name] = exc
                elif (silent := self._monitor.silent_for(name)) is not None and silent > policy.lost_after:
                    del pending[name]
                    results[name] = NodeFailure(
                        f"node {name!r} stopped answering heartbeats for {silent:.1f} s"
                    )
        return results

    def deploy(
        self, session_id: str, start: bool = True, completed: list[str] | None = None
    ) -> dict[str, Any]:
        """Check, split and deploy the graph on the nodes; start it unless ``start`` is False.
        ``completed``: the roots a DALiuGE client names (:func:`~.dlgcompat.check_completed`)."""
        s = self._session(session_id)
        with s.lock:
            if s.state is _S.PRISTINE:
                s.to(_S.BUILDING)
            if s.state is not _S.BUILDING:
                raise WrongState(
                    f"session {session_id!r} is {s.state}; it can be deployed once, while BUILDING"
                )
            if completed is not None:
                check_completed(s.specs, completed)
            own = set(self.node_names())
            s.specs = self._place(s.specs)
            foreign = bool(s.external_peers)
            elsewhere = {spec.node for spec in s.specs if spec.node not in own} if foreign else set()
            try:
                check_whole(s.specs, elsewhere)  # type: ignore[arg-type]
                parts = split_by_node(s.specs, own, key=self.member_key, foreign=foreign)
            except GraphError as exc:
                raise BadGraph.from_error(exc) from None
            s.times["deploy"] = time.time()
            s.to(_S.DEPLOYING)
            s.nodes = sorted(parts)
            s.placement = {
                spec.id: member for spec in s.specs if (member := getattr(spec, self.member_key)) in parts
            }
            s.producers = cross_producers(s.specs, self.member_key)
            s.specs = []
        self._monitor.wake()  # heartbeats renew the parts' leases while the other parts deploy
        try:
            self._deploy_parts(s, parts)
        except ApiError as exc:
            with s.lock:
                s.to(_S.FAILED)
                s.ended.set()
            session_event(
                "deploy_failed", session_id, f"session {session_id} failed to deploy: {exc}", logging.ERROR
            )
            raise
        session_event(
            "deployed",
            session_id,
            f"session {session_id} deployed: {len(s.placement)} drops on {len(s.nodes)} {self.member_key}(s) "
            f"{', '.join(s.nodes)}",
            drops=len(s.placement),
            nodes=",".join(s.nodes),
        )
        if start:
            self.start_session(session_id)
        return self.session_info(session_id)

    def _peers(self, s: _IslandSession, parts: dict[str, list[DropSpec]]) -> dict[str, dict[str, str]]:
        """Bus address and key of every node holding a part, when the session spans more than one node."""
        if len(parts) < 2 and not s.external_peers:
            return {}
        peers = dict(s.external_peers)
        for name, info in self._fan(s.nodes, lambda c: c.info()).items():
            if isinstance(info, Exception) or not info.get("bus"):
                reason = info if isinstance(info, Exception) else "it has no bus"
                raise NodeFailure(f"node {name!r} cannot join a distributed session: {reason}")
            peers[name] = bus_peer(info)
        return peers

    def _deploy_parts(self, s: _IslandSession, parts: dict[str, list[DropSpec]]) -> None:
        peers = self._peers(s, parts)

        def prepare(client: NodeClient) -> None:
            client.create_session(s.id)
            client.append(s.id, parts[client.name])
            if s.resume is not None:
                mine = [uid for uid, member in s.placement.items() if member == client.name]
                client.resume(s.id, s.resume.part(mine))
            if peers:
                client.set_peers(s.id, peers)
            client.deploy(s.id, start=False)

        results = self._fan(s.nodes, prepare)
        failed = {name: exc for name, exc in results.items() if isinstance(exc, Exception)}
        if failed:
            self._fan([n for n in s.nodes], lambda c: c.delete_session(s.id))
            problems: list[Problem] = []
            for name, exc in sorted(failed.items()):
                if isinstance(exc, BadGraph):
                    problems += [
                        Problem(f"node {name}: {p['where']}", p["field"], p["message"])
                        for p in exc.extra.get("problems", [])
                    ]
                else:
                    problems.append(Problem(f"node {name}", None, str(exc)))
            if all(isinstance(exc, BadGraph) for exc in failed.values()):
                raise BadGraph.from_error(GraphError(problems))
            raise NodeFailure("; ".join(str(p) for p in problems))

    def start_session(self, session_id: str) -> dict[str, Any]:
        s = self._session(session_id)
        with s.lock:
            if s.state is not _S.DEPLOYING:
                raise WrongState(f"session {session_id!r} is {s.state}; only a deployed session can start")
            s.to(_S.RUNNING)
            s.times["run"] = time.time()
        for name in s.nodes:
            self._watch(s, name)
        session_event("started", session_id, f"session {session_id} started on {', '.join(s.nodes)}")
        results = self._fan(s.nodes, lambda c: c.start_session(s.id))
        for name, result in results.items():
            if isinstance(result, Exception):
                self._node_lost(s, name, f"could not start: {result}")
        return self.session_info(session_id)

    def _watch(self, s: _IslandSession, name: str) -> None:
        client = self._client(name)

        def ended(summary: dict[str, Any]) -> None:
            if summary.get("status") == "LOST":
                self._node_lost(s, name, summary.get("error") or "unreachable")
            else:
                self._part_ended(s, name, summary)

        client.watch(s.id, ended)

    def _part_ended(self, s: _IslandSession, name: str, summary: dict[str, Any]) -> None:
        with s.lock:
            s.reports[name] = summary
            self._maybe_end(s)

    def _node_lost(self, s: _IslandSession, name: str, error: str) -> None:
        with s.lock:
            if name in s.reports or s.state in SESSION_ENDED:
                return
            session_event(
                "node_lost",
                s.id,
                f"session {s.id}: {self.member_key} {name} lost: {error}",
                logging.ERROR,
                node=name,
                reason=error,
            )
            s.lost[name] = error
            s.reports[name] = {"status": "LOST", "error": error}
            s.error = s.error or f"node {name} lost: {error}"
            others = [n for n in s.nodes if n not in s.reports]
            self._maybe_end(s)
        # The other nodes would wait forever for the lost node's events: stop them and let them clean up. If
        # the lost node comes back (it was stopped, not dead), it must not go on with its part either. The
        # orders go with the heartbeats, repeated until each node answers: none of them can hang this thread.
        for node in (name, *others):
            self._monitor.cancel_until_answered(node, s.id)

    # -- heartbeats -----------------------------------------------------------------------------------------

    def _heartbeat_targets(self) -> dict[str, dict[str, bool]]:
        """Every node holding a part of a deploying or running session: {node: {session: started}}."""
        targets: dict[str, dict[str, bool]] = {}
        for s in list(self._sessions.values()):
            state = s.state
            if state is _S.DEPLOYING or state is _S.RUNNING:
                for name in s.nodes:
                    if name not in s.reports:
                        targets.setdefault(name, {})[s.id] = state is _S.RUNNING
        return targets

    def _heartbeat_lost(self, name: str, session_id: str, reason: str) -> None:
        s = self._sessions.get(session_id)
        if s is not None:
            self._node_lost(s, name, reason)

    def heartbeat(
        self,
        sender: str,
        renew: Sequence[str],
        cancel: Sequence[str] = (),
        lease: float = LEASE,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """A master's heartbeat: the state of each session (None: unknown here); ``cancel`` ones are
        cancelled (in the background: the answer must stay quick). An island holds no lease: its node
        managers do, renewed by this island's own heartbeats."""
        states: dict[str, str | None] = {}
        for sid in [*cancel, *renew]:
            s = self._sessions.get(sid)
            states[sid] = None if s is None else str(s.state)
            if s is not None and sid in cancel:
                self._pool.submit(self.cancel, sid)
        return {"name": self.name, "sessions": states}

    def _maybe_end(self, s: _IslandSession) -> None:
        """Called with the session's lock held."""
        if len(s.reports) < len(s.nodes) or s.state in SESSION_ENDED:
            return
        states = {r.get("status") for r in s.reports.values()}
        # A part cancelled without our asking ended because its node did (a shutdown): that is a failure.
        unasked = [n for n, r in s.reports.items() if r.get("status") == "CANCELLED" and not s.cancelled]
        for name in unasked:
            s.error = (
                s.error or f"node {name} stopped its part: {s.reports[name].get('error') or 'cancelled'}"
            )
        if s.lost or unasked or "FAILED" in states:
            end = _S.FAILED
        elif s.cancelled or "CANCELLED" in states:
            end = _S.CANCELLED
        else:
            end = _S.FINISHED
        if s.state is _S.DEPLOYING:
            s.to(_S.RUNNING)
        s.to(end)
        s.times["end"] = time.time()
        s.ended.set()
        by_state: Counter[str] = Counter()
        failures: list[dict[str, Any]] = []
        for name, report in sorted(s.reports.items()):
            by_state.update(report.get("by_state", {}))
            failures += [{**f, "node": name} for f in report.get("failures", [])]
        _log_end(
            {
                "sessionId": s.id,
                "status": str(end),
                "drops": sum(by_state.values()) or len(s.placement),
                "by_state": dict(sorted(by_state.items())),
                "failures": failures,
                "error": s.error,
                "run_seconds": s.times["end"] - s.times["run"] if "run" in s.times else None,
            },
            f"{self.role} {self.name}",
            lost=",".join(sorted(s.lost)) or None,
        )
        if end is _S.FINISHED and not s.external_peers:
            # The whole session finished (not only this island's part of a master's): no resume needs its
            # journals any more.
            self._pool.submit(self._fan, list(s.nodes), lambda c: c.discard_journal(s.id))
        if s.watchers:
            watchers, s.watchers = s.watchers, []
            self._pool.submit(self._notify, s.id, watchers)

    def cancel(self, session_id: str) -> None:
        s = self._session(session_id)
        with s.lock:
            if s.state in SESSION_ENDED:
                return
            s.cancelled = True
            session_event("cancel", session_id, f"session {session_id}: cancel requested")
            if s.state in (_S.PRISTINE, _S.BUILDING):
                s.to(_S.CANCELLED)
                s.ended.set()
                return
            nodes = [n for n in s.nodes if n not in s.reports]
        self._fan(nodes, lambda c: c.cancel(s.id))

    def watch(self, session_id: str, watcher: Callable[[dict[str, Any]], None]) -> None:
        """Call ``watcher(summary)`` once, when the session ends (at once if it has): for a master above."""
        s = self._session(session_id)
        with s.lock:
            if not s.ended.is_set():
                s.watchers.append(watcher)
                return
        self._notify(session_id, [watcher])

    def _notify(self, session_id: str, watchers: list[Callable[[dict[str, Any]], None]]) -> None:
        summary = self.summary(session_id)
        for watcher in watchers:
            try:
                watcher(summary)
            except Exception:  # one broken watcher must not stop the others
                log.exception("session end watcher failed")

    def wait(self, session_id: str, timeout: float | None = None) -> str:
        s = self._session(session_id)
        s.ended.wait(timeout)
        return str(s.state)

    def delete_session(self, session_id: str) -> None:
        s = self._session(session_id)
        if s.state not in SESSION_ENDED:
            self.cancel(session_id)
            s.ended.wait(30)
        # Lost nodes too: one that came back still holds its (cancelled) part. One still silent is skipped
        # at once by _fan, and one that is dead refuses the connection; either way nothing is waited for.
        self._fan(s.nodes, lambda c: c.delete_session(session_id))
        with self._lock:
            self._sessions.pop(session_id, None)
        del s
        give_back()  # the session's specs and partition, to the system

    # -- views ----------------------------------------------------------------------------------------------

    def graph(self, session_id: str) -> bytes:
        """The session's drops as a native physical graph (gathered from the nodes once deployed)."""
        s = self._session(session_id)
        if not s.nodes:
            return encode_physical(s.specs, session_id)
        drops: dict[str, DropSpec] = {}
        for name, result in self._fan(s.nodes, lambda c: c.graph(s.id)).items():
            if isinstance(result, Exception):
                raise NodeFailure(f"node {name!r}: {result}")
            for spec in decode_physical(result).drops:
                if spec.node == name or spec.id not in drops:
                    drops[spec.id] = spec
        return encode_physical(list(drops.values()), session_id)

    def graph_size(self, session_id: str) -> int:
        s = self._session(session_id)
        return len(s.placement) or len(s.specs)

    def graph_status(self, session_id: str, states: set[str] | None = None) -> dict[str, dict[str, str]]:
        s = self._session(session_id)
        merged: dict[str, dict[str, str]] = {}
        live = [n for n in s.nodes if n not in s.lost]
        for name, result in self._fan(live, lambda c: c.graph_status(s.id, states)).items():
            if isinstance(result, Exception):
                raise NodeFailure(f"node {name!r}: {result}")
            merged.update(result)
        return merged

    def summary(self, session_id: str) -> dict[str, Any]:
        s = self._session(session_id)
        live = [n for n in s.nodes if n not in s.lost and n not in s.reports]
        per_node = dict(s.reports)
        for name, result in self._fan(live, lambda c: c.summary(s.id)).items():
            per_node[name] = (
                {"status": "LOST", "error": str(result)} if isinstance(result, Exception) else result
            )
        by_state: Counter[str] = Counter()
        failures = []
        for name, summary in sorted(per_node.items()):
            by_state.update(summary.get("by_state", {}))
            failures += [{**f, "node": name} for f in summary.get("failures", [])]
        t = s.times
        return {
            "sessionId": s.id,
            "status": str(s.state),
            "drops": sum(by_state.values()) or len(s.placement),
            "by_state": dict(sorted(by_state.items())),
            "failures": failures,
            "error": s.error,
            "nodes": {name: summary.get("status") for name, summary in per_node.items()},
            "lost_nodes": dict(s.lost),
            "deploy_seconds": t["run"] - t["deploy"] if "run" in t and "deploy" in t else None,
            "run_seconds": (t.get("end", time.time()) - t["run"]) if "run" in t else None,
            **_batch_job(),
        }

    def drop_log(self, session_id: str, uid: str) -> dict[str, Any]:
        s = self._session(session_id)
        node = s.placement.get(uid)
        if node is None:
            raise NoDrop(f"session {session_id!r} has no drop {uid!r}", uid)
        return {"node": node, **self._client(node).drop_log(session_id, uid)}
