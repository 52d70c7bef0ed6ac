"""The node manager: the session API of one node, over the engine's owner loop.

Theory of operation
-------------------
A :class:`NodeManager` owns an engine :class:`~dropflow.engine.Node` and, when it is part of a cluster, the
bus that connects it to the other node managers. Its methods are the session API that the REST layer,
the island manager and tests call; they take and return plain data, and raise
:class:`~dropflow.managers.errors.ApiError` subclasses that carry their HTTP status. A session lives
through DALiuGE's states: created empty (PRISTINE), graph appended (BUILDING), deployed (DEPLOYING ->
RUNNING), ended (FINISHED, FAILED, CANCELLED).

A session becomes *distributed* when an island manager registers the addresses of the other nodes that
hold parts of it (``set_peers``): drops placed elsewhere are then proxies, and their state changes arrive
over the bus. ``watch`` lets an island manager hear when a session ends here, with its summary.

A distributed session holds a lease (:class:`~dropflow.managers.heartbeat.Leases`) that the island's
heartbeats renew; if they stop -- the island lost this node, or died -- the session is cancelled here and
cleans up by itself. A heartbeat may also order sessions cancelled: an island that gave this node up tells it
so as soon as it answers again. Sessions submitted directly to a node manager hold no lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__
from ..drops.errors import GraphError
from ..drops.graph import encode_physical
from ..drops.spec import DropSpec
from ..drops.states import SESSION_ENDED, SessionState
from ..engine import Node, Session
from ..engine.bus import Bus
from ..engine.heap import give_back
from ..engine.journal import Journal, discard, journal_dir
from ..engine.resume import ResumePlan
from ..engine.walltime import Deadline
from ..engine.workspace import check_session_id
from .dlgcompat import check_completed
from .errors import BadGraph, BadRequest, Conflict, NoDrop, NoSession, SessionExists, WrongState
from .heartbeat import LEASE, Leases
from .logs import first_failure, session_event

__all__ = ["NodeManager", "summary_dict"]

log = logging.getLogger(__name__)

Watcher = Callable[[dict[str, Any]], None]


def _batch_job() -> dict[str, str]:
    """The batch job this daemon runs in, if any (Slurm sets these in every task of a job)."""
    job = os.environ.get("SLURM_JOB_ID")
    return {"slurm_job_id": job, "slurm_job_name": os.environ.get("SLURM_JOB_NAME", "")} if job else {}


def summary_dict(session: Session) -> dict[str, Any]:
    s = session.summary()
    return {
        "sessionId": s.session_id,
        "status": s.state,
        "drops": s.drops,
        "by_state": s.by_state,
        "failures": [{"uid": f.uid, "kind": f.kind, "message": f.message} for f in s.failures],
        "deploy_seconds": s.deploy_seconds,
        "run_seconds": s.run_seconds,
        "persisted": s.persisted,
        "error": session.error,
        **_batch_job(),
    }


class NodeManager:
    """The session API of one node."""

    role = "nm"
    #: Seconds after its deadline when a session still running stops by itself.
    STOP_AFTER_DEADLINE = 5.0

    def __init__(
        self,
        name: str | None = None,
        *,
        workspace_root: str | None = None,
        allowed_paths: Sequence[str] = (),
        threads: int = 32,
        processes: int | None = None,
        bus: Bus | None = None,
        executor: str | None = None,
        journal: str | None = None,
        deadline: float | None = None,
        shutdown_timeout: float = 30.0,
    ) -> None:
        self.name = name or socket.gethostname()
        #: Where sessions keep their journals (``<journal>/<session id>/<node>.db``); None: no journal.
        self.journal = os.path.abspath(journal) if journal else None
        #: Seconds since the epoch after which no app that cannot finish starts, and sessions still running
        #: a little later are stopped (see engine/walltime.py): the end of the batch job, less a margin.
        self.deadline = deadline
        self.shutdown_timeout = shutdown_timeout
        self.node = Node(
            self.name,
            workspace_root=workspace_root,
            allowed_paths=allowed_paths,
            threads=threads,
            processes=processes,
            executor=executor,
        )
        self.node.bus = bus
        self.started = time.time()
        self._watchers: dict[str, list[Watcher]] = {}
        self._lock = threading.Lock()
        self._leases = Leases(self._lease_expired)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> NodeManager:
        self.node.start()
        return self

    def close(self) -> None:
        self._leases.close()
        self.node.close(self.shutdown_timeout)

    @property
    def bus(self) -> Bus | None:
        return self.node.bus

    def info(self) -> dict[str, Any]:
        bus = self.node.bus
        endpoint = bus.address(self.name) if bus is not None else None
        return {
            "status": "ok",
            "role": self.role,
            "name": self.name,
            "version": __version__,
            "bus": endpoint,
            "bus_key": getattr(bus, "public_key", None),
            "sessions": len(self.node.sessions),
            "uptime_seconds": round(time.time() - self.started, 3),
            "journal": self.journal,
            **_batch_job(),
        }

    def nodes(self) -> list[dict[str, Any]]:
        """A node manager's only member is itself."""
        return [{"name": self.name, "reachable": True, **self.info()}]

    # -- sessions -------------------------------------------------------------------------------------------

    def _session(self, session_id: str) -> Session:
        session = self.node.sessions.get(session_id)
        if session is None:
            raise NoSession(f"node {self.name!r} has no session {session_id!r}", session_id)
        return session

    def create_session(self, session_id: str) -> dict[str, Any]:
        try:
            check_session_id(session_id)
        except ValueError as exc:
            raise BadRequest(str(exc), field="sessionId") from None
        try:
            session = self.node.create_session(session_id)
        except KeyError:
            raise SessionExists(
                f"session {session_id!r} already exists on node {self.name!r}", session_id
            ) from None
        if self.journal is not None:
            session.journal = Journal(journal_dir(self.journal, session_id), self.name, tags=_batch_job())
        if self.deadline is not None:
            session.deadline = Deadline(self.deadline, self.node.timings)
            # Normally the job stops the session at its deadline; should nobody do so, it stops by itself.
            delay = max(0.0, self.deadline - time.time()) + self.STOP_AFTER_DEADLINE
            reason = "the batch job's time was up: stopped (its journal lets it resume)"
            self.node.post(lambda: self.node.add_timer(delay, self._stop, session, reason, session=session))
        session.node.post(session.on_end, self._ended)
        session_event(
            "created", session_id, f"session {session_id} created on node {self.name}", node=self.name
        )
        return self.session_info(session_id)

    def sessions(self) -> list[dict[str, Any]]:
        return [self.session_info(sid) for sid in list(self.node.sessions)]

    def session_info(self, session_id: str) -> dict[str, Any]:
        session = self._session(session_id)
        done, total = session.progress()
        return {
            "sessionId": session.id,
            "status": str(session.state),
            "size": total,
            "settled": done,
            "node": self.name,
            "created": session.times.get("created"),
            **_batch_job(),
        }

    def status(self, session_id: str) -> str:
        return str(self._session(session_id).state)

    def wait(self, session_id: str, timeout: float | None = None) -> str:
        """Wait until the session ends or ``timeout`` passes; its state."""
        return str(self._session(session_id).wait(timeout))

    def delete_session(self, session_id: str) -> None:
        self._session(session_id)
        self._leases.drop(session_id)
        self.node.delete_session(session_id)
        session_event(
            "deleted", session_id, f"session {session_id} deleted from node {self.name}", node=self.name
        )
        with self._lock:
            self._watchers.pop(session_id, None)
        give_back()  # the session's memory, to the system (a long-running daemon ends where it began)

    # -- graphs ---------------------------------------------------------------------------------------------

    def append(self, session_id: str, drops: list[DropSpec]) -> int:
        session = self._session(session_id)
        try:
            session.add(drops)
        except RuntimeError as exc:
            raise WrongState(str(exc), session_id) from None
        return len(drops)

    def resume(self, session_id: str, plan: ResumePlan) -> None:
        """Before deploy: what the session keeps from its earlier runs (see engine/resume.py)."""
        session = self._session(session_id)
        if session.journal is None:
            raise Conflict(
                f"node {self.name!r} keeps no journal (started with --no-journal): it cannot resume"
            )
        self.node.call(self._resume, session, plan)

    def _resume(self, session: Session, plan: ResumePlan) -> None:
        if session.state not in (SessionState.PRISTINE, SessionState.BUILDING):
            raise WrongState(
                f"session {session.id!r} is {session.state}; a resume is given before deploy", session.id
            )
        assert session.journal is not None
        session.journal.plan = plan

    def discard_journal(self, session_id: str) -> None:
        """Forget a session's journal, and what it kept for a resume (the whole session FINISHED)."""
        session = self.node.sessions.get(session_id)
        if session is not None and not session.ended:
            raise WrongState(
                f"session {session_id!r} is {session.state}; its journal is still being written", session_id
            )
        if self.journal is not None:
            discard(journal_dir(self.journal, session_id))

    def set_peers(self, session_id: str, peers: dict[str, dict[str, str]]) -> None:
        """Make a session distributed: drops placed on ``peers`` are proxies here. Each peer is
        ``{"bus": address, "key": public key}``: the bus talks to it only if it holds that key's secret."""
        session = self._session(session_id)
        connect = getattr(self.node.bus, "connect", None)
        if self.node.bus is None:
            raise WrongState(f"node {self.name!r} has no bus; it cannot join a distributed session")
        if connect is not None:
            for name, peer in peers.items():
                if name != self.name:
                    try:
                        connect(name, peer["bus"], peer["key"])
                    except (KeyError, TypeError, ValueError) as exc:
                        raise BadRequest(f"peer {name!r}: {exc}", field=name) from None
        self.node.call(self._make_distributed, session)
        # Until the island's first heartbeat: it stops here by itself if the island never sends one.
        self._leases.grant(session_id, LEASE)

    def _make_distributed(self, session: Session) -> None:
        if session.state not in (SessionState.PRISTINE, SessionState.BUILDING):
            raise WrongState(f"session {session.id!r} is {session.state}; peers are set before deploying")
        session.local = self.name

    def deploy(
        self, session_id: str, start: bool = True, completed: list[str] | None = None
    ) -> dict[str, Any]:
        """Build and (unless ``start`` is False) start the graph. ``completed``: the roots a DALiuGE client
        names to trigger -- checked to be every root (dropflow triggers them all), so a mismatch is refused
        here, before anything is built."""
        session = self._session(session_id)
        if completed is not None and session.state in (SessionState.PRISTINE, SessionState.BUILDING):
            check_completed(list(session._specs), completed)  # (a later deploy is refused as such below)
        try:
            session.deploy(source=f"session {session_id}", start=start)
        except GraphError as exc:
            raise BadGraph.from_error(exc) from None
        except RuntimeError as exc:
            raise WrongState(str(exc), session_id) from None
        info = self.session_info(session_id)
        session_event(
            "deployed",
            session_id,
            f"session {session_id} deployed on node {self.name}: {info['size']} drops",
            node=self.name,
            drops=info["size"],
        )
        if start:
            session_event(
                "started", session_id, f"session {session_id} started on node {self.name}", node=self.name
            )
        return info

    def start_session(self, session_id: str) -> dict[str, Any]:
        try:
            self._session(session_id).start()
        except RuntimeError as exc:
            raise WrongState(str(exc), session_id) from None
        session_event(
            "started", session_id, f"session {session_id} started on node {self.name}", node=self.name
        )
        return self.session_info(session_id)

    def cancel(self, session_id: str) -> None:
        self._session(session_id).cancel()
        session_event(
            "cancel",
            session_id,
            f"session {session_id}: cancel requested on node {self.name}",
            node=self.name,
        )

    def graph(self, session_id: str) -> bytes:
        session = self._session(session_id)
        graph = session.graph
        specs = [n.spec for n in graph.by_id.values()] if graph is not None else list(session._specs)
        return encode_physical(specs, session_id)

    def session_dirs(self, session_id: str) -> dict[str, str]:
        """Where the session's files are, by node (here: one)."""
        return {self.name: self._session(session_id).workspace.dir}

    def events(self, session_id: str) -> list[dict[str, Any]]:
        """The session's logged state changes, oldest first (bounded: the last ``log_size`` only)."""
        session = self._session(session_id)
        return [
            {"time": e.time, "uid": e.uid, "from": e.start, "to": e.end, "cause": e.cause, "node": self.name}
            for e in session.log.events()
        ]

    def graph_size(self, session_id: str) -> int:
        return self._session(session_id).progress()[1]

    def graph_status(self, session_id: str, states: set[str] | None = None) -> dict[str, dict[str, str]]:
        """DALiuGE's shape: ``{uid: {"status": ..., "execStatus": ...}}`` (apps have execStatus)."""
        session = self._session(session_id)
        graph = session.graph
        out: dict[str, dict[str, str]] = {}
        if graph is None:
            return out
        for uid, node in graph.by_id.items():
            if type(node.peer) is str:
                continue  # another node's drop
            state = str(node.state)
            if states and state not in states:
                continue
            entry = {"status": state}
            if node.spec.CATEGORY == "app":
                entry["execStatus"] = state
            out[uid] = entry
        return out

    def summary(self, session_id: str) -> dict[str, Any]:
        return summary_dict(self._session(session_id))

    def drop_log(self, session_id: str, uid: str) -> dict[str, Any]:
        session = self._session(session_id)
        try:
            state = session.drop_state(uid)
        except KeyError:
            raise NoDrop(f"session {session_id!r} has no drop {uid!r}", uid) from None
        failure = next((f.message for f in session.failures() if f.uid == uid), None)
        return {
            "uid": uid,
            "status": state,
            "error": failure,
            "events": [
                {"time": e.time, "from": e.start, "to": e.end, "cause": e.cause} for e in session.story(uid)
            ],
        }

    # -- heartbeats -----------------------------------------------------------------------------------------

    def heartbeat(
        self,
        sender: str,
        renew: Sequence[str],
        cancel: Sequence[str] = (),
        lease: float = LEASE,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """An island's heartbeat: renew the leases of ``renew``, stop ``cancel``; the state of each (None:
        no such session here). Answered on the caller's thread, never through the owner, so that a busy owner
        does not look like a dead node."""
        states: dict[str, str | None] = {}
        for sid in cancel:
            session = self.node.sessions.get(sid)
            states[sid] = None if session is None else str(session.state)
            if session is not None:
                self._leases.drop(sid)
                self._stop(session, f"cancelled by {sender}, which had lost this node")
        for sid in renew:
            session = self.node.sessions.get(sid)
            states[sid] = None if session is None else str(session.state)
            if session is not None and not session.ended:
                self._leases.renew(sid, lease, sender)
        return {"name": self.name, "sessions": states}

    def _lease_expired(self, session_id: str, holder: str) -> None:
        session = self.node.sessions.get(session_id)
        if session is not None:
            session_event(
                "lease_expired",
                session_id,
                f"session {session_id}: {holder} stopped renewing its lease; cancelling it",
                logging.ERROR,
                node=self.name,
                holder=holder,
            )
            self._stop(session, f"{holder} stopped renewing the session's lease (it lost this node, or died)")

    def _stop(self, session: Session, reason: str) -> None:
        def stop() -> None:
            if not session.ended:
                session.error = session.error or reason
                session.cancel()

        self.node.post(stop)

    # -- watching -------------------------------------------------------------------------------------------

    def watch(self, session_id: str, watcher: Watcher) -> None:
        """Call ``watcher(summary)`` once, when the session ends (at once if it has)."""
        session = self._session(session_id)
        with self._lock:
            self._watchers.setdefault(session_id, []).append(watcher)
        if session.state in SESSION_ENDED:
            self._ended(session)

    def _ended(self, session: Session) -> None:
        self._leases.drop(session.id)
        if session.journal is not None and session.local is None and session.state is SessionState.FINISHED:
            # All of it ran here and finished: no resume will need the journal (an island that ran a
            # distributed session forgets its parts' journals once the whole of it FINISHED).
            discard(session.journal.directory)
        with self._lock:
            watchers = self._watchers.pop(session.id, [])
        summary = summary_dict(session)
        _log_end(summary, f"node {self.name}", node=self.name)
        for watcher in watchers:
            try:
                watcher(summary)
            except Exception:  # one broken watcher must not stop the others
                log.exception("session end watcher failed")


def _log_end(summary: dict[str, Any], where: str, **fields: Any) -> None:
    """The last line of a session's life: its state, drop counts, time, and what failed first."""
    sid, state = summary["sessionId"], summary["status"]
    by_state = summary.get("by_state") or {}
    counts = ", ".join(f"{k} {v}" for k, v in by_state.items())
    run = summary.get("run_seconds")
    first = first_failure(summary.get("failures") or [])
    message = f"session {sid} {state} on {where}: {summary.get('drops')} drops ({counts})"
    if run is not None:
        message += f" in {run:.2f} s"
    if first:
        message += f"; first failure: {first}"
    if summary.get("error"):
        message += f"; {summary['error']}"
    session_event(
        "ended",
        sid,
        message,
        logging.INFO if state == "FINISHED" else logging.WARNING,
        state=state,
        drops=summary.get("drops"),
        failed=len(summary.get("failures") or []),
        first_failure=(summary.get("failures") or [{}])[0].get("uid"),
        run_seconds=None if run is None else round(run, 3),
        **fields,
    )
