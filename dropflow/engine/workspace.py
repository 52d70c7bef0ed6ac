"""Session workspaces: where a session's files live, which paths a graph may use, and cleanup.

Theory of operation
-------------------
Each session owns ``<root>/<session id>/``. A file or directory drop with a relative path (or none: the drop
id, made filesystem-safe, is used) lives there and belongs to the session, so the lifecycle manager may
delete it. A path outside the workspace is refused unless it lies under one of the *allowed* directories
the operator granted (``--allow-path``); such external data is never deleted by dropflow. At the end of a
session the workspace is removed, except the paths of persisted drops, and so is every shared-memory segment
of the session's scope.

Paths are checked for real, not only as text. Below the workspace, no component of a drop's path may be a
symbolic link; a path under an allowed directory is taken as its real path (links resolved), which must
still lie under an allowed directory. :meth:`Workspace.resolve` checks this when the graph is validated, and
returns the *anchor* -- the workspace, or the allowed directory -- below which the stores open every path
without following links (:mod:`dropflow.drops.beneath`), so that a link made later, by an app of the same
graph, is refused when the path is opened.

From ``create`` (at deploy) to the end of ``cleanup``, the workspace holds its session's liveness lock
(:class:`~dropflow.engine.sweep.SessionLock`), which records the persisted paths that ``resolve`` met, so
that if the process dies, the next one to start on the root sweeps the rest away (:mod:`.sweep`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from ..drops import shm
from ..drops.spec import DataSpec
from .sweep import SessionLock, prune

__all__ = ["PathNotAllowed", "Resolved", "Workspace", "check_session_id", "default_root"]

_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class PathNotAllowed(ValueError):
    pass


class Resolved(NamedTuple):
    """Where a file or directory drop lives (what a store is made from: ``FileStore(*resolved)``)."""

    path: str
    #: The session owns it (it is in the workspace): the lifecycle manager may delete it.
    owned: bool
    #: The directory below which no component of ``path`` may be a symbolic link.
    anchor: str


def _link_below(anchor: str, path: str) -> str | None:
    """The first existing component of ``path`` below ``anchor`` that is a symbolic link, if any."""
    current = anchor
    for part in os.path.relpath(path, anchor).split(os.sep):
        current = os.path.join(current, part)
        try:
            if os.path.islink(current):
                return current
            if not os.path.isdir(current):
                return None  # missing (made later, by the stores, without links) or the file itself
        except OSError:
            return None
    return None


def check_session_id(session_id: str) -> str:
    """Return the id if it is usable as a directory name, else raise ValueError."""
    if not _SESSION_ID.match(session_id) or session_id in (".", ".."):
        raise ValueError(
            f"session id {session_id!r} must be 1-128 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return session_id


def default_root() -> str:
    return os.environ.get("DROPFLOW_WORKSPACE") or os.path.join(os.getcwd(), "dropflow-workspace")


def _safe_name(drop_id: str) -> str:
    safe = _UNSAFE.sub("_", drop_id)[:100]
    if safe != drop_id or safe in (".", ".."):
        safe += "-" + hashlib.blake2b(drop_id.encode(), digest_size=6).hexdigest()
    return safe


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


class Workspace:
    """The directory of one session, its path policy, and its liveness lock."""

    def __init__(self, root: str, session_id: str, allowed: Sequence[str] = ()) -> None:
        self.session_id = check_session_id(session_id)
        self.root = os.path.abspath(root)
        self.dir = os.path.join(self.root, session_id)
        #: The allowed directories as given (absolute) and as they really are (links resolved).
        self._given = tuple(os.path.abspath(a) for a in allowed)
        self.allowed = tuple(os.path.realpath(a) for a in allowed)
        #: Every shared-memory segment of the session is named under this scope (see drops.shm).
        self.shm_scope = shm.session_scope(self.root, session_id)
        self._made_root = False
        self._lock = SessionLock(self.root, session_id, self.shm_scope)
        self._persisted: set[str] = set()

    def resolve(self, spec: DataSpec, path: str | None, links: bool = True) -> Resolved:
        """Absolute path of a file/directory drop, whether the session owns (may delete) it, and its anchor.

        Raises :class:`PathNotAllowed` for a path outside the workspace and the allowed directories, one
        that passes through a symbolic link below the workspace or leads out of the allowed directories
        through one, and one that no filesystem accepts (a NUL character, nothing at all).

        With ``links`` False (when a store is made, after validation), links are not looked for: a link
        made since then is refused by the store when it opens the path, which fails the app that does so
        with the reason -- rather than the session, as an error here would.
        """
        if path is None:
            path = _safe_name(spec.id)
        if "\0" in path:
            raise PathNotAllowed(f"{path!r} contains a NUL character, which no file name may hold")
        if not path.strip():
            raise PathNotAllowed("is empty; name a file, or leave the path out for one in the workspace")
        full = os.path.normpath(path if os.path.isabs(path) else os.path.join(self.dir, path))
        if _under(full, self.dir) and full != self.dir:
            link = _link_below(self.dir, full) if links else None
            if link is not None:
                raise PathNotAllowed(
                    f"{path!r} passes through the symbolic link {link!r}; dropflow's apps follow no link "
                    "inside the workspace"
                )
            if spec.persist and full not in self._persisted:
                self._persisted.add(full)  # a sweep after a crash must keep it, as cleanup does
                self._lock.keep(full)
            return Resolved(full, True, self.dir)
        real = os.path.realpath(full)
        for top in self.allowed:
            if _under(real, top):
                return Resolved(real, False, top)
        if not links:
            # A link made since validation leads out: anchor the path as written below its allowed
            # directory, so that the store meets the link, and refuses it, when it opens the path.
            for given, top in zip(self._given, self.allowed, strict=True):
                if _under(full, given):
                    return Resolved(os.path.join(top, os.path.relpath(full, given)), False, top)
        through = f" (through symbolic links it leads to {real!r})" if real != full else ""
        raise PathNotAllowed(
            f"{path!r} is outside the session workspace{through}; allow its directory explicitly "
            "(dropflow run --allow-path DIR) to use it"
        )

    def keep_for(self, journal: str) -> None:
        """Before :meth:`create`: the session keeps a journal at ``journal``; should its process die, sweeps
        keep this workspace (a resume needs its files) for as long as that journal exists."""
        self._lock.extra["journal"] = journal

    def create(self) -> None:
        """Take the session's liveness lock and make its directory (at deploy)."""
        self._made_root = not os.path.isdir(self.root)
        self._lock.acquire(self._persisted)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)

    def cleanup(self, keep: Iterable[str] = ()) -> None:
        """Remove the workspace except the ``keep`` paths (and the directories leading to them), and every
        segment of the session's scope; then release the lock. Safe to call again."""
        prune(self.dir, keep)
        shm.unlink_scope(self.shm_scope)
        self.release()
        if self._made_root:
            with contextlib.suppress(OSError):  # only succeeds if no other session lives there
                os.rmdir(self.root)

    def release(self) -> None:
        """Drop the liveness lock without cleaning (idempotent): what is left is then the next sweep's."""
        self._lock.release()
