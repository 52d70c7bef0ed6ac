"""Live-session locks, and the sweep of what dead sessions left in a workspace root and in /dev/shm.

Theory of operation
-------------------
Several processes may share one workspace root: two ``dropflow run`` in the same folder, a node manager and
a ``dropflow run``, a node manager restarted after a crash. A process that dies (SIGKILL, a segfault, a
power-cut of the daemon) cleans nothing: its sessions' directories and shared-memory segments stay. The next
process that starts on the root *sweeps* them, and must never touch a session that is still alive elsewhere.

Liveness is an ``flock`` that the kernel releases when its holder dies. From deploy to cleanup, every session
holds a *shared* lock on ``<root>/.locks/<session id>.lock`` (:class:`SessionLock`), and the file records
what a sweep needs: the session's host, its segment scope (see :mod:`dropflow.drops.shm`) and the paths of
its persisted drops. A sweep (:func:`sweep`) takes each lock file *exclusively* without waiting: if that
succeeds nobody holds it, so the session's process is gone; the sweep then removes the session directory
(keeping persisted paths), unlinks every segment of the scope, and last the lock file. A lock held by anyone
is skipped. Session ids cannot start with a dot, so ``.locks`` never clashes with a session directory.

Races are settled by the lock itself: a holder takes its lock before it records anything or makes its
directory, and checks after locking that the file it locked is still the one at the path (a sweep or a
finished session may have just unlinked it); a sweep checks the same before it removes anything. A session
that finds its own id's lock file left by a dead holder reaps that predecessor first. Lock files written on
another host (a workspace on a shared filesystem, where /dev/shm is not shared) are left alone. Where the
filesystem has no ``flock``, sessions run unprotected and sweeps leave everything: a leak, never a loss.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import socket
import threading
from collections.abc import Iterable
from typing import Any

from ..drops import shm

__all__ = ["LOCK_DIR", "SessionLock", "prune", "sweep"]

log = logging.getLogger(__name__)

LOCK_DIR = ".locks"
_SUFFIX = ".lock"
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: flock errors that mean "this filesystem cannot lock", not "someone holds it".
_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def prune(top: str, keep: Iterable[str] = ()) -> None:
    """Remove the directory ``top`` but the ``keep`` paths under it (and the directories leading to them)."""
    kept = {os.path.normpath(p) for p in keep if _under(os.path.normpath(p), top)}
    if os.path.islink(top) or not os.path.isdir(top):
        return  # never follow a link planted in place of a session directory
    if not kept:
        shutil.rmtree(top, ignore_errors=True)
    else:
        _prune(top, top, kept)


def _prune(top: str, root: str, kept: set[str]) -> bool:
    """Delete what is under ``top`` and not kept; True if ``top`` is left empty."""
    empty = True
    with os.scandir(top) as entries:
        for entry in entries:
            path = entry.path
            if path in kept:
                empty = False
            elif entry.is_dir(follow_symlinks=False):
                if any(_under(k, path) for k in kept) and not _prune(path, root, kept):
                    empty = False
                    continue
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
    if empty and top != root:
        os.rmdir(top)
    return empty


def _same_file(fd: int, path: str) -> bool:
    """Whether ``fd`` is still the file at ``path`` (a sweep or a finished session may have unlinked it)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _read_record(fd: int) -> dict[str, Any]:
    """The header of a lock file (host, scope, ...) with ``keep``: every persisted path recorded."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    header: dict[str, Any] = {}
    keep: list[str] = []
    for line in b"".join(chunks).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by the death of its writer
        if not isinstance(entry, dict):
            continue
        if "keep" in entry and isinstance(entry["keep"], str):
            keep.append(entry["keep"])
        elif not header and "session" in entry:
            header = entry
    return {**header, "keep": keep}


def _remove_leftovers(root: str, session_id: str, record: dict[str, Any]) -> bool:
    """Remove a dead session's directory (but its persisted paths) and its segments. A session that keeps a
    journal keeps its directory while the journal exists (a resume needs its files); False then."""
    journal = record.get("journal")
    resumable = isinstance(journal, str) and os.path.isdir(journal)
    if not resumable:
        prune(os.path.join(root, session_id), record.get("keep", ()))
    scope = record.get("scope")
    if isinstance(scope, str):
        with contextlib.suppress(ValueError):
            removed = shm.unlink_scope(scope)
            if removed:
                log.info("swept %d shared-memory segment(s) of dead session %s", len(removed), session_id)
    return not resumable


class SessionLock:
    """The lock a live session holds on ``<root>/.locks/<id>.lock``, from deploy to the end of its cleanup."""

    def __init__(self, root: str, session_id: str, scope: str) -> None:
        self.root = root
        self.session_id = session_id
        self.scope = scope
        self.path = os.path.join(root, LOCK_DIR, session_id + _SUFFIX)
        self._fd = -1
        self._kept: set[str] = set()
        #: More of the record's header (``journal``: see :func:`_remove_leftovers`).
        self.extra: dict[str, Any] = {}
        # resolve() -- hence keep() -- also runs on bus threads: the fd must not be closed under a write.
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def acquire(self, keep: Iterable[str] = ()) -> None:
        """Take the lock and record this session (and ``keep``, its persisted paths so far)."""
        with self._mutex:
            self._acquire(keep)

    def _acquire(self, keep: Iterable[str]) -> None:
        if self._fd >= 0:
            return
        for _attempt in range(1000):  # each retry means a sweep or a release just unlinked the file
            fd = self._open()
            if fd is None:
                continue
            try:
                if self._lock(fd, keep):
                    self._fd = fd
                    return
            except OSError as exc:
                os.close(fd)
                if exc.errno not in _NO_LOCKS:
                    raise
                log.warning(
                    "no flock on %s (%s): session %s runs unlocked; if this process dies, its files stay",
                    self.root,
                    exc,
                    self.session_id,
                )
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                return
            os.close(fd)
        raise RuntimeError(f"could not lock {self.path}: it keeps being replaced")

    def _open(self) -> int | None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        try:
            return os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
            )
        except FileNotFoundError:
            return None  # a release removed the empty .locks directory in between

    def _lock(self, fd: int, keep: Iterable[str]) -> bool:
        """Lock ``fd`` shared and write the record; False if the file was unlinked meanwhile (retry)."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Someone holds it: another live process with this session id on this root (it shares the
            # directory -- a conflict we can only report), a sweep, or a holder that is still writing.
            fcntl.flock(fd, fcntl.LOCK_SH)
            if not _same_file(fd, self.path):
                return False
            log.warning("session %s is also live in another process on %s", self.session_id, self.root)
        else:
            if not _same_file(fd, self.path):
                return False
            previous = _read_record(fd)
            if previous.get("session"):
                # Our id's lock file, left by a holder that died: reap what it left before we start.
                if previous.get("host") == socket.gethostname():
                    _remove_leftovers(self.root, self.session_id, previous)
                os.ftruncate(fd, 0)
            self._write(
                {
                    "session": self.session_id,
                    "scope": self.scope,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    **self.extra,
                },
                fd,
            )
            # Shared from now on: a sweep must fail to take it, and nothing else needs to wait.
            fcntl.flock(fd, fcntl.LOCK_SH)
            if not _same_file(fd, self.path):
                return False
        for path in keep:
            self.keep(path, fd)
        return True

    @staticmethod
    def _write(entry: dict[str, Any], fd: int) -> None:
        # One O_APPEND write per line: lines of several writers never interleave.
        os.write(fd, json.dumps(entry).encode() + b"\n")

    def keep(self, path: str, fd: int | None = None) -> None:
        """Record a persisted path, which a sweep must not remove."""
        if fd is not None:  # while acquiring, under the mutex
            self._kept.add(path)
            self._write({"keep": path}, fd)
            return
        with self._mutex:
            if self._fd >= 0 and path not in self._kept:
                self._kept.add(path)
                self._write({"keep": path}, self._fd)

    def release(self) -> None:
        """Unlink the lock file and drop the lock (idempotent)."""
        with self._mutex:
            fd, self._fd = self._fd, -1
            if fd < 0:
                return
            try:
                if _same_file(fd, self.path):
                    os.unlink(self.path)
            finally:
                os.close(fd)
        with contextlib.suppress(OSError):  # only succeeds when no other session of the root is live
            os.rmdir(os.path.dirname(self.path))


def _reap(root: str, lock_dir: str, name: str) -> bool:
    """Sweep one lock file if its holder is dead; True if it was."""
    path = os.path.join(lock_dir, name)
    session_id = name[: -len(_SUFFIX)]
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False  # gone already, or not ours to open
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # alive (or no locks on this filesystem: leave everything)
        if not _same_file(fd, path):
            return False
        record = _read_record(fd)
        if record.get("session") and record.get("host") != socket.gethostname():
            return False  # another host's session on a shared filesystem: its /dev/shm is not ours
        # No header: the holder died between creating the file and writing it, before making anything.
        if record.get("session") and not _remove_leftovers(root, session_id, record):
            return False  # kept for a resume: the lock file stays, so a later sweep looks again
        os.unlink(path)
        return bool(record.get("session"))
    finally:
        os.close(fd)


def sweep(root: str) -> list[str]:
    """Remove what dead sessions left under ``root`` and in /dev/shm; the ids of the sessions swept.

    Never raises: a sweep that cannot do something logs it and leaves it for the next one.
    """
    lock_dir = os.path.join(root, LOCK_DIR)
    try:
        names = sorted(os.listdir(lock_dir))
    except OSError:
        return []
    swept = []
    for name in names:
        if not name.endswith(_SUFFIX) or not _SESSION_ID.match(name[: -len(_SUFFIX)]):
            continue
        try:
            if _reap(root, lock_dir, name):
                swept.append(name[: -len(_SUFFIX)])
        except OSError as exc:
            log.warning("sweep of %s: cannot reap %s: %s", root, name, exc)
    if swept:
        log.warning(
            "swept %d session(s) left by dead processes in %s: %s", len(swept), root, ", ".join(swept)
        )
    with contextlib.suppress(OSError):
        os.rmdir(lock_dir)
    return swept
