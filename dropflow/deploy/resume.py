"""Resuming sessions: the driver's side (``dropflow run``, ``dropflow submit``, the Slurm bootstrap).

Theory of operation
-------------------
The engine records what finished (:mod:`dropflow.engine.journal`) and plans what a resume keeps
(:mod:`dropflow.engine.resume`); this module is what drivers need around that. When a session that may be
resumed starts, :func:`start_journal` creates its journal directory and writes in it what running it again
takes: a copy of the graph as submitted (``graph.*``) and ``run.json`` -- the session id, the graph's original
path, its parameters, where its Python apps import from, the allowed paths, and anything else the driver
wants back (``extra``). A session id that already has a journal is refused: the session did not finish, and
starting it afresh would mix two runs' records. :func:`load_run` reads that back, :func:`check_same_graph`
refuses a graph that is not the one the session ran (a resume keeps finished work only for the same graph),
and :func:`plan_resume` merges every node's journal and plans. Whoever resumed a session :func:`finish` es
it: once it FINISHED, its journal (and what a killed run left in workspaces) is discarded.

A session still running in another process holds its liveness lock (see :mod:`dropflow.engine.sweep`);
:func:`session_alive` tells, so that nobody resumes a session that is not over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..drops.spec import DropSpec
from ..engine.journal import JOURNAL_DIR, Records, discard, journal_dir, read, read_meta
from ..engine.resume import ResumePlan, plan
from ..engine.sweep import LOCK_DIR

__all__ = [
    "RUN_FILE",
    "ResumeError",
    "RunRecord",
    "check_same_graph",
    "finish",
    "journal_root",
    "load_run",
    "plan_resume",
    "session_alive",
    "start_journal",
]

RUN_FILE = "run.json"


class ResumeError(Exception):
    """A session cannot be resumed (or journaled) as asked; the message says why and what to do."""


@dataclass(slots=True)
class RunRecord:
    session_id: str
    #: The copy of the graph in the journal directory (what a resume runs).
    graph: str
    #: The graph file as the user named it (``-``: standard input).
    source: str
    params: dict[str, str] = field(default_factory=dict)
    pythonpath: list[str] = field(default_factory=list)
    allow_paths: list[str] = field(default_factory=list)
    created: float = 0.0
    #: Whatever else the driver needs back (e.g. the Slurm job that ran it).
    extra: dict[str, Any] = field(default_factory=dict)


def journal_root(workspace_root: str) -> str:
    """Where sessions run under ``workspace_root`` keep their journals."""
    return os.path.join(os.path.abspath(workspace_root), JOURNAL_DIR)


def _extension(path: str) -> str:
    name = os.path.basename(path)
    return name[name.index(".") :] if "." in name.lstrip(".") else ".json"


def check_new_journal(directory: str, session_id: str) -> None:
    """Refuse (ResumeError) to start a session whose journal exists already; makes nothing."""
    if os.path.exists(os.path.join(directory, RUN_FILE)):
        raise ResumeError(
            f"session {session_id!r} has a journal already ({directory}): an earlier run did not finish. "
            f"Resume it with --resume {session_id}, or choose another session id"
        )


def start_journal(
    directory: str,
    session_id: str,
    source: str,
    data: bytes | None,
    params: dict[str, str] | None = None,
    pythonpath: Sequence[str] = (),
    allow_paths: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> RunRecord:
    """Make a new session's journal directory: the graph (``data``, or a copy of the file ``source``) and
    ``run.json``. Refuses an existing one."""
    check_new_journal(directory, session_id)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    graph = os.path.join(directory, "graph" + (_extension(source) if source != "-" else ".json"))
    if data is None:
        shutil.copyfile(source, graph)  # (the kernel copies; the graph may be large)
    else:
        with open(graph, "wb") as f:
            f.write(data)
    record = RunRecord(
        session_id,
        graph,
        os.path.abspath(source) if source != "-" else "-",
        dict(params or {}),
        [os.path.abspath(p) for p in pythonpath],
        [os.path.abspath(p) for p in allow_paths],
        time.time(),
        dict(extra or {}),
    )
    path = os.path.join(directory, RUN_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(asdict(record), f, indent=1)
    os.replace(path + ".tmp", path)
    return record


def load_run(directory: str, session_id: str | None = None) -> RunRecord:
    """What a session's journal says about how it ran; ResumeError if there is no journal."""
    path = os.path.join(directory, RUN_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        what = f"session {session_id!r}" if session_id else "this session"
        raise ResumeError(
            f"no journal of {what} at {directory} (a session that FINISHED leaves none; a session run with "
            "--no-journal cannot be resumed)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ResumeError(f"cannot read {path}: {exc}") from None
    try:
        return RunRecord(**raw)
    except TypeError as exc:
        raise ResumeError(f"{path} is not a dropflow run record: {exc}") from None


def check_same_graph(record: RunRecord, data: bytes | None, params: dict[str, str] | None) -> None:
    """Refuse a graph (or parameters) other than the ones the session ran with."""
    if data is not None:
        with open(record.graph, "rb") as f:
            if f.read() != data:
                raise ResumeError(
                    f"the graph is not the one session {record.session_id!r} ran ({record.source}): a resume "
                    "keeps finished work only for the same graph. Leave the graph out to run the session's "
                    f"own copy ({record.graph})"
                )
    if params and params != record.params:
        raise ResumeError(
            f"--param differs from the session's own ({record.params}): a resume runs the same graph"
        )


def plan_resume(directory: str, specs: Sequence[DropSpec]) -> tuple[ResumePlan, Records]:
    """Merge every node's journal of the session and plan what its resume keeps."""
    try:
        records = read(directory)
    except FileNotFoundError:
        return ResumePlan(), Records()
    except (OSError, ValueError) as exc:
        raise ResumeError(f"cannot read the journal {directory}: {exc}") from None
    return plan(specs, records), records


def workspaces(records: Records) -> list[str]:
    """The session directories that the journaled runs used, on every node."""
    return sorted({meta["workspace"] for meta in records.nodes.values() if meta.get("workspace")})


def finish(directory: str, state: str, keep_workspaces: Iterable[str] = ()) -> bool:
    """A resumable session ended: once it FINISHED, discard its journal and the session directories its
    earlier runs left (except ``keep_workspaces``, in use). True if discarded."""
    if state != "FINISHED":
        return False
    try:
        nodes = read_meta(directory)
    except (OSError, ValueError):
        nodes = {}
    keep = {os.path.abspath(w) for w in keep_workspaces}
    used = {meta["workspace"] for meta in nodes.values() if meta.get("workspace")}
    discard(directory, [w for w in sorted(used) if os.path.abspath(w) not in keep])
    return True


def session_alive(workspace_root: str, session_id: str) -> bool:
    """Whether a process still holds the session's liveness lock under ``workspace_root``."""
    path = os.path.join(workspace_root, LOCK_DIR, session_id + ".lock")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EACCES)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing releases a lock we took
    return False


__all__ += ["journal_dir", "workspaces"]
