"""Session workspaces: where a session's files live, which paths a graph may use, and cleanup.

Theory of operation
-------------------
Each session owns ``<root>/<session id>/``. A file or directory drop with a relative path (or none: the drop
id, made filesystem-safe, is used) lives there and belongs to the session, so the lifecycle manager may
delete it. A path outside the workspace is refused unless it lies under one of the *allowed* directories
the operator granted (``--allow-path``); such external data is never deleted by dropflow. At the end of a
session the workspace is removed, except the paths of persisted drops.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from collections.abc import Iterable, Sequence

from ..drops.spec import DataSpec

__all__ = ["PathNotAllowed", "Workspace", "check_session_id", "default_root"]

_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class PathNotAllowed(ValueError):
    pass


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
    """The directory of one session and its path policy."""

    def __init__(self, root: str, session_id: str, allowed: Sequence[str] = ()) -> None:
        self.session_id = check_session_id(session_id)
        self.root = os.path.abspath(root)
        self.dir = os.path.join(self.root, session_id)
        self.allowed = tuple(os.path.realpath(a) for a in allowed)
        self._made_root = False

    def resolve(self, spec: DataSpec, path: str | None) -> tuple[str, bool]:
        """Absolute path of a file/directory drop and whether the session owns (may delete) it."""
        if path is None:
            path = _safe_name(spec.id)
        full = os.path.normpath(path if os.path.isabs(path) else os.path.join(self.dir, path))
        if _under(full, self.dir) and full != self.dir:
            return full, True
        if any(_under(full, top) for top in self.allowed):
            return full, False
        raise PathNotAllowed(
            f"{path!r} is outside the session workspace; allow its directory explicitly "
            "(dropflow run --allow-path DIR) to use it"
        )

    def create(self) -> None:
        self._made_root = not os.path.isdir(self.root)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)

    def cleanup(self, keep: Iterable[str] = ()) -> None:
        """Remove the workspace except the ``keep`` paths (and the directories leading to them)."""
        kept = {os.path.normpath(p) for p in keep if _under(os.path.normpath(p), self.dir)}
        if not os.path.isdir(self.dir):
            return
        if not kept:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            self._prune(self.dir, kept)
        if self._made_root:
            with contextlib.suppress(OSError):  # only succeeds if no other session lives there
                os.rmdir(self.root)

    def _prune(self, top: str, kept: set[str]) -> bool:
        """Delete what is under ``top`` and not kept; True if ``top`` is left empty."""
        empty = True
        with os.scandir(top) as entries:
            for entry in entries:
                path = entry.path
                if path in kept:
                    empty = False
                elif entry.is_dir(follow_symlinks=False):
                    if any(_under(k, path) for k in kept) and not self._prune(path, kept):
                        empty = False
                        continue
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
        if empty and top != self.dir:
            os.rmdir(top)
        return empty
