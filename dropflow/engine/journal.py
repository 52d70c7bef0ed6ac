"""The session journal: what a resume needs, in an embedded database beside the workspaces.

Theory of operation
-------------------
A session that may have to be resumed -- after a walltime, a cancel, a lost node, a killed process -- keeps a
*journal*: one SQLite database per node and session, ``<journal root>/<session id>/<node>.db``, in WAL mode on
the workspace filesystem (no server, readable from any node that shares the filesystem). Each node writes only
its own file, so no lock is ever shared between hosts; a resume reads them all.

What is recorded is what a resume needs, and nothing of the hot path's own work: the local apps that FINISHED
(with the output ports a branch skipped), and for each data drop that COMPLETED here where its bytes live --
the path of a file or directory, or the bytes themselves for small in-memory values (``INLINE`` bytes, more
for persisted ones). Shared memory and large in-memory values are not durable: a killed process loses them,
and a resume runs their producers again. The engine hands these facts over through :meth:`Core.observe
<dropflow.engine.core.Core.observe>` (wrapped effects, so sessions without a journal pay nothing); the
journal appends them to lists, and a timer on the owner loop (``FLUSH_AFTER`` seconds after the first new
fact, or at once when ``FLUSH_COUNT`` have piled up) writes them as one msgpack blob in one autocommitted
insert. A process killed outright loses at most the last fraction of a second of facts: their apps run again.

The lifecycle of a journaled session keeps what a resume needs. A drop that expires while one of its
consumers did not finish (it failed, or was cancelled) keeps its bytes (``keep``); when the session ends other
than FINISHED, :meth:`Journal.checkpoint` *spills* the frontier -- every completed drop with a consumer that
did not finish -- out of the workspace, which is then removed as usual: files are moved into
``<session journal>/spill/<node>/``, in-memory and shared-memory bytes are written there, and their new places
are recorded. A workspace left by a killed process is kept by the next sweep for as long as its journal exists
(the liveness lock records the journal, see :mod:`.sweep`), with its files where the journal says they are.

Resuming: :func:`read` merges every node's records; :func:`dropflow.engine.resume.plan` decides which
finished apps need not run again (those whose outputs still exist where a consumer or a persisted result
needs them) and where each needed drop's bytes are; a :class:`Journal` given that plan restores it when its
session deploys (:meth:`attach`): it names the finished apps to the core (:meth:`Core.restore
<dropflow.engine.core.Core.restore>`) and gives each needed local drop its store -- moving a file into the
place the drop has now (another node, another workspace), or loading spilled bytes back into memory. The
resumed session appends to the same journal. Whoever ran the session discards the journal once the session
FINISHED (:func:`discard`).

Owner thread only, except :func:`read` and :func:`discard`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from ..drops.states import AppState, DropState, SessionState
from ..drops.stores import DirectoryStore, FileStore, MemoryStore, NullStore, SharedMemoryStore, Store
from .graph import AppNode, DataNode

if TYPE_CHECKING:
    from .resume import ResumePlan
    from .session import Session

__all__ = [
    "FORMAT",
    "JOURNAL_DIR",
    "Journal",
    "Location",
    "Records",
    "discard",
    "exists",
    "journal_dir",
    "read",
    "read_meta",
]

log = logging.getLogger(__name__)

FORMAT = "dropflow/journal-1"
#: Where ``dropflow run`` and node managers keep journals, under their workspace root by default.
JOURNAL_DIR = ".journal"
SPILL_DIR = "spill"

COMPLETED, EXPIRED = DropState.COMPLETED, DropState.EXPIRED
FINISHED, A_SKIPPED = AppState.FINISHED, AppState.SKIPPED

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS records(seq INTEGER PRIMARY KEY AUTOINCREMENT, run INTEGER NOT NULL, "
    "time REAL NOT NULL, body BLOB NOT NULL)",
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _safe(name: str) -> str:
    """A file name for a node or drop id: readable, and distinct for distinct ids."""
    safe = _UNSAFE.sub("_", name)[:80]
    if safe != name or safe in (".", ".."):
        safe += "-" + hashlib.blake2b(name.encode(), digest_size=6).hexdigest()
    return safe


def journal_dir(root: str, session_id: str) -> str:
    """The journal of a session whose journals live under ``root`` (e.g. ``<workspace>/.journal``)."""
    return os.path.join(os.path.abspath(root), session_id)


@dataclass(frozen=True, slots=True)
class Location:
    """Where a completed drop's bytes are: a path (a file or directory drop's own, or spilled bytes), or the
    bytes themselves."""

    path: str | None = None
    value: bytes | None = None


def exists(location: Location) -> bool:
    """Whether the bytes are still there (a value always is)."""
    return location.value is not None or (location.path is not None and os.path.exists(location.path))


class Journal:
    """One node's journal of one session (owner thread only)."""

    #: In-memory values up to this size are recorded with their bytes (a killed run keeps them).
    INLINE = 4096
    #: ... and persisted ones (results) up to this size.
    PERSIST_INLINE = 1 << 20
    #: Seconds between a first unrecorded fact and the write that records it.
    FLUSH_AFTER = 0.1
    #: Facts that force a write at once (a long cascade inside one event must not pile them up).
    FLUSH_COUNT = 20_000

    def __init__(
        self,
        directory: str,
        node: str,
        plan: ResumePlan | None = None,
        tags: dict[str, str] | None = None,
        prepare: Callable[[], object] | None = None,
    ) -> None:
        self.directory = os.path.abspath(directory)
        self.node = node
        #: Called at attach, before anything is written: the driver's own files (``dropflow run``'s record of
        #: how it ran the session). At attach, not before: a graph that does not build leaves nothing.
        self.prepare = prepare
        #: Written into the journal's meta with each run (e.g. the batch job that ran it).
        self.tags = dict(tags or {})
        self.path = os.path.join(self.directory, _safe(node) + ".db")
        self.plan = plan
        self._db: sqlite3.Connection | None = None
        self._session: Session | None = None
        self._run = 0
        self._armed = False
        # Facts not yet written, in parallel lists of objects that exist already: no tuple per fact, so
        # the cyclic collector has nothing more to track while a large cascade runs.
        self._finished: list[str] = []
        self._skipped: list[tuple[str, list[str]]] = []
        self._path_ids: list[str] = []
        self._paths: list[str] = []
        self._value_ids: list[str] = []
        self._values: list[bytes] = []
        #: Persisted in-memory results recorded with their bytes: (id, codec), for reports of killed runs.
        self._results: list[tuple[str, str]] = []
        #: Identities of drops that expired with a consumer unfinished: their bytes are kept.
        self._kept: set[int] = set()
        #: Facts recorded so far by this run (for tests and reports).
        self.written = 0
        self.error: str | None = None

    # -- the session's hooks --------------------------------------------------------------------------------

    def attach(self, session: Session) -> None:
        """At deploy, once the session has its core: open the database, start observing, restore a plan."""
        core, graph = session.core, session.graph
        assert core is not None and graph is not None
        self._session = session
        if self.prepare is not None:
            self.prepare()
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        if self.plan is None:
            # Not a resume: an earlier run's records under this id (a session id used again) are not ours.
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path + suffix)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # Commits append to the WAL without fsync (a killed process loses nothing written); the WAL is
            # copied into the database (with fsyncs) only when the journal closes, off the run's path.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.execute("BEGIN IMMEDIATE")  # schema and meta at once: a reader never sees half of them
            for statement in _SCHEMA:
                db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE key = 'runs'").fetchone()
            self._run = int(row[0]) + 1 if row else 1
            self._meta(
                db,
                format=FORMAT,
                session=session.id,
                node=self.node,
                host=socket.gethostname(),
                workspace=session.workspace.dir,
                runs=self._run,
                state=str(SessionState.RUNNING),
                started=time.time(),
                by_state="{}",
                **self.tags,
            )
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        self._db = db
        # A sweep after a crash keeps the workspace while this journal exists (see engine/sweep.py).
        session.workspace.keep_for(self.directory)
        core.observe(*self._hooks(), self._keep)
        if self.plan is not None:
            self._restore(session)

    def _meta(self, db: sqlite3.Connection, **values: Any) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", [(k, str(v)) for k, v in values.items()]
        )

    def _hooks(
        self,
    ) -> tuple[Callable[[AppNode, tuple[str, ...]], None], Callable[[DataNode], None]]:
        """What the core calls for every app that finishes and every drop that completes: closures over the
        lists' bound methods (they run once per drop: every attribute lookup saved counts)."""
        finished, finished_ids = self._finished.append, self._finished
        value_ids, values, results = self._value_ids.append, self._values.append, self._results.append
        path_ids, paths = self._path_ids.append, self._paths.append
        skipped = self._skipped.append
        flush, arm, limit = self.flush, self._arm, self.FLUSH_COUNT
        inline, persist_inline = self.INLINE, self.PERSIST_INLINE
        me = self

        def on_finished(app: AppNode, skips: tuple[str, ...]) -> None:
            if skips:
                skipped((app.spec.id, list(skips)))
            else:
                finished(app.spec.id)
                if len(finished_ids) >= limit:
                    flush()
                    return
            if not me._armed:
                arm()

        def on_completed(data: DataNode) -> None:
            store = data.store
            kind = type(store)
            if kind is MemoryStore:
                value = store.data  # type: ignore[union-attr]
                spec = data.spec
                if value is not None and len(value) <= (persist_inline if spec.persist else inline):
                    value_ids(spec.id)
                    values(value if type(value) is bytes else bytes(value))
                    if spec.persist:
                        results((spec.id, spec.effective_codec()))
            elif kind is FileStore or kind is DirectoryStore:
                path_ids(data.spec.id)
                paths(store.path)  # type: ignore[union-attr]
            elif store is None or kind is NullStore or kind is SharedMemoryStore:
                return  # nothing durable (a null drop needs no bytes)
            else:
                path = store.fspath()  # another kind with a path (a plugin's)
                if path is None:
                    return
                path_ids(data.spec.id)
                paths(path)
            if not me._armed:
                arm()

        return on_finished, on_completed

    def _path(self, uid: str, path: str) -> None:
        self._path_ids.append(uid)
        self._paths.append(path)

    def _value(self, uid: str, value: bytes) -> None:
        self._value_ids.append(uid)
        self._values.append(value)

    def _keep(self, data: DataNode) -> bool:
        """A drop expires: keep its bytes if one of its consumers did not finish (a resume runs it)."""
        for app in data.consumers or ():
            state = app.state
            if state is not FINISHED and state is not A_SKIPPED:
                self._kept.add(id(data))
                return True
        return False

    def _arm(self) -> None:
        session = self._session
        if session is None or self._db is None:
            return
        self._armed = True
        session.node.add_timer(self.FLUSH_AFTER, self.flush, session=session)

    def flush(self) -> None:
        """Write the facts gathered since the last write, in one insert (owner thread). Never raises: a
        journal that cannot be written is given up, with the reason logged and kept in ``error``."""
        self._armed = False
        db = self._db
        if db is None or not (self._finished or self._skipped or self._paths or self._values):
            return
        facts: list[list[Any]] = [
            self._finished,
            self._skipped,
            self._path_ids,
            self._paths,
            self._value_ids,
            self._values,
            self._results,
        ]
        body = msgspec.msgpack.encode(facts)
        count = len(self._finished) + len(self._skipped) + len(self._paths) + len(self._values)
        for written in facts:
            written.clear()  # in place: the core's hooks hold these lists' bound methods
        try:
            db.execute(
                "INSERT INTO records(run, time, body) VALUES (?, ?, ?)", (self._run, time.time(), body)
            )
        except sqlite3.Error as exc:
            self._give_up(f"cannot write the journal {self.path}: {exc}")
            return
        self.written += count

    def _give_up(self, why: str) -> None:
        log.error("%s; this session will not be resumable", why)
        self.error = why
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    def checkpoint(self, session: Session) -> None:
        """The session is about to clean up: spill what a resume needs out of the workspace (owner thread).

        The frontier is every completed local drop (or one kept when it expired) with a consumer that did not
        finish. A FINISHED session alone has none; one part of a distributed session may (a remote consumer
        failed or was cancelled), so those are looked at.
        """
        core, graph = session.core, session.graph
        if self._db is None or core is None or graph is None:
            return
        if core.outcome is SessionState.FINISHED and session.local is None:
            self.flush()
            return
        kept = self._kept
        for data in graph.data:
            store = data.store
            if store is None or type(data.peer) is str or data.spec.persist:
                continue
            if data.state is not COMPLETED and not (data.state is EXPIRED and id(data) in kept):
                continue
            consumers = data.consumers or ()
            if all(c.state is FINISHED or c.state is A_SKIPPED for c in consumers):
                continue
            try:
                self._spill(data, store)
            except OSError as exc:
                log.error("session %s: cannot keep drop %s for a resume: %s", session.id, data.spec.id, exc)
        self.flush()

    def spill_path(self, uid: str) -> str:
        return os.path.join(self.directory, SPILL_DIR, _safe(self.node), _safe(uid))

    def _spill(self, data: DataNode, store: Store) -> None:
        """Put a frontier drop's bytes where the session's cleanup leaves them, and record that place."""
        uid = data.spec.id
        if isinstance(store, FileStore):
            if not store.owned or not os.path.exists(store.path):
                return  # outside the workspace (an allowed path): it stays, as recorded at completion
            target = self.spill_path(uid)
            os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
            _move(store.path, target)
            self._path(uid, target)
            return
        if type(store) is MemoryStore:
            value = store.data
            if value is None or len(value) <= (self.PERSIST_INLINE if data.spec.persist else self.INLINE):
                return  # recorded with its bytes when it completed
        elif type(store) is NullStore:
            return
        target = self.spill_path(uid)
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        with open(target + ".tmp", "wb") as f:
            for chunk in store.chunks():
                f.write(chunk)
        os.replace(target + ".tmp", target)
        self._path(uid, target)

    def end(self, session: Session) -> None:
        """The session ended (owner thread): write what is left and its end state, close. Never raises."""
        if self._db is None:
            return
        self.flush()
        db, self._db = self._db, None
        if db is None:
            return
        graph = session.graph
        by_state: dict[str, int] = {}
        for node in graph.by_id.values() if graph is not None else ():
            if type(node.peer) is not str:  # proxies are counted by their owners
                state = str(node.state)
                by_state[state] = by_state.get(state, 0) + 1
        try:
            # What this node did, for a report written after the process is gone (a killed job's).
            self._meta(db, state=str(session.state), ended=time.time(), by_state=json.dumps(by_state))
        except sqlite3.Error as exc:
            log.error("cannot write the end of the journal %s: %s", self.path, exc)
        finally:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        self._session = None

    # -- restoring ------------------------------------------------------------------------------------------

    def _restore(self, session: Session) -> None:
        """Give the core the finished apps and each needed local drop its bytes (at deploy)."""
        plan = self.plan
        core, graph = session.core, session.graph
        assert plan is not None and core is not None and graph is not None
        by_id = graph.by_id
        core.restore({uid: skips for uid, skips in plan.finished.items() if type(by_id.get(uid)) is AppNode})
        for uid, location in plan.data.items():
            node = by_id.get(uid)
            if type(node) is not DataNode or type(node.peer) is str:
                continue
            try:
                node.store = self._restored(session, node, location)
            except OSError as exc:
                raise RuntimeError(
                    f"cannot restore drop {uid!r} from {location.path or 'the journal'}: {exc}"
                ) from None
        self.flush()  # where restored bytes are now (a file may have moved) is on disk before anything runs

    def _restored(self, session: Session, node: DataNode, location: Location) -> Store:
        store = session.new_store(node)
        if location.value is not None:
            store.put([location.value])
            self._value(node.spec.id, location.value)
            return store
        path = location.path
        assert path is not None
        if isinstance(store, FileStore):
            if store.path != path:
                if store.owned:
                    os.makedirs(os.path.dirname(store.path), exist_ok=True)
                    _move(path, store.path)  # into the place the drop has now (another node or workspace)
                else:
                    store = type(store)(path, False)
            self._path(node.spec.id, store.path)
            return store
        with open(path, "rb") as f:  # spilled bytes of an in-memory or shared-memory drop
            store.put([f.read()])
        self._path(node.spec.id, path)
        return store


def _move(source: str, target: str) -> None:
    """Rename (the same filesystem, nearly always), else copy and remove."""
    try:
        os.replace(source, target)
    except OSError:
        if os.path.isdir(source):
            shutil.copytree(source, target, dirs_exist_ok=True)
            shutil.rmtree(source, ignore_errors=True)
        else:
            shutil.copyfile(source, target)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(source)


# -- reading ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Records:
    """Every node's records of one session, merged."""

    session_id: str | None = None
    #: App id -> the output ports it skipped.
    finished: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Data id -> its known places, oldest first (a drop moved by a resume has several).
    locations: dict[str, list[Location]] = field(default_factory=dict)
    #: Node -> its journal's meta (workspace, host, runs, state, ...).
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Persisted in-memory results recorded with their bytes: id -> codec.
    results: dict[str, str] = field(default_factory=dict)

    def location(self, uid: str) -> Location | None:
        """The newest place of a drop's bytes that still exists (None: no longer anywhere)."""
        for place in reversed(self.locations.get(uid, ())):
            if exists(place):
                return place
        return None


def read(*directories: str) -> Records:
    """Merge the journals of every node of a session, from one directory or several (nodes that keep their
    journals apart). Any thread; the session may still be running. FileNotFoundError if none exists."""
    records = Records()
    files = []
    for directory in directories:
        with contextlib.suppress(FileNotFoundError):
            files += [os.path.join(directory, n) for n in sorted(os.listdir(directory)) if n.endswith(".db")]
    if not files and not any(os.path.isdir(d) for d in directories):
        raise FileNotFoundError(f"no journal at {', '.join(directories)}")
    batches: list[tuple[float, int, bytes]] = []
    for path in files:
        directory, name = os.path.split(path)
        db = sqlite3.connect(path, timeout=30)
        try:
            try:
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            except sqlite3.OperationalError:
                continue  # being created this instant: nothing in it yet
            if not meta:
                continue
            if meta.get("format") != FORMAT:
                raise ValueError(f"{directory}/{name} is not a {FORMAT} journal")
            records.nodes[meta.get("node", name[:-3])] = meta
            records.session_id = records.session_id or meta.get("session")
            batches += db.execute("SELECT time, seq, body FROM records").fetchall()
        finally:
            db.close()
    batches.sort(key=lambda b: (b[0], b[1]))
    for _time, _seq, body in batches:
        finished, skipped, path_ids, paths, value_ids, values, results = msgspec.msgpack.decode(body)
        for uid in finished:
            records.finished[uid] = ()
        for uid, ports in skipped:
            records.finished[uid] = tuple(ports)
        for uid, path in zip(path_ids, paths, strict=True):
            records.locations.setdefault(uid, []).append(Location(path=path))
        for uid, value in zip(value_ids, values, strict=True):
            records.locations.setdefault(uid, []).append(Location(value=value))
        for uid, codec in results:
            records.results[uid] = codec
    return records


def read_meta(directory: str) -> dict[str, dict[str, str]]:
    """Every node's meta of a session's journal (node -> workspace, host, runs, state, ...): cheap, records
    are not read."""
    nodes: dict[str, dict[str, str]] = {}
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir(directory)):
            if not name.endswith(".db"):
                continue
            db = sqlite3.connect(os.path.join(directory, name), timeout=30)
            try:
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            except sqlite3.OperationalError:
                continue
            finally:
                db.close()
            if meta.get("format") == FORMAT:
                nodes[meta.get("node", name[:-3])] = meta
    return nodes


def discard(directory: str, workspaces: Iterable[str] = ()) -> None:
    """Forget a session's journal (it FINISHED, or the user gave it up): its spilled bytes go, and so do the
    ``workspaces`` a killed run left (the sweep keeps those only while the journal exists)."""
    shutil.rmtree(directory, ignore_errors=True)
    for workspace in workspaces:
        shutil.rmtree(workspace, ignore_errors=True)
