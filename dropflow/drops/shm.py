"""POSIX shared-memory segments for shared-memory drops.

Theory of operation
-------------------
A segment is a file in ``/dev/shm`` (what ``shm_open`` does on Linux), opened directly so that no resource
tracker can unlink it behind the engine's back when a worker process exits. Its name is
``dropflow.<scope>.<digest>``: the *scope* is a hash of the session's workspace root and session id, shared
by every segment of that session on that root, and the digest a hash of the session and drop ids -- never a
truncation of either, so long ids cannot collide. Names are computed once, by the session's owner, and
travel with the stores to worker processes; producers create, consumers map, the lifecycle manager
unlinks. The scope lets a sweep find every segment a dead session left (``unlink_scope``) without touching
another session's, even one with the same id under another root. Segments are created
``O_EXCL | O_NOFOLLOW`` with mode 0600: a name planted by someone else is an error, not a place to write into.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re

__all__ = [
    "SHM_DIR",
    "SHM_PREFIX",
    "create_segment",
    "map_segment",
    "root_scope",
    "segment_name",
    "session_scope",
    "unlink_scope",
    "unlink_segment",
]

SHM_DIR = "/dev/shm"
SHM_PREFIX = "dropflow."


_SCOPE = re.compile(r"^[0-9a-f]{16}$")


def root_scope(root: str) -> str:
    """The first 8 hex digits of every scope under a workspace root: what a root's segments start with."""
    return hashlib.blake2b(os.path.realpath(root).encode(), digest_size=4).hexdigest()


def session_scope(root: str, session_id: str) -> str:
    """The scope of a session's segments: 16 hex digits, 8 from its real workspace root (so that all of a
    root's segments can be found) and 8 from the root and its id."""
    key = f"{os.path.realpath(root)}\0{session_id}".encode()
    return root_scope(root) + hashlib.blake2b(key, digest_size=4).hexdigest()


def segment_name(scope: str, session_id: str, drop_id: str) -> str:
    """Deterministic, collision-resistant segment name for a drop of a session, under the session's scope."""
    if not _SCOPE.match(scope):
        raise ValueError(f"segment scope {scope!r} is not 16 hex digits")
    digest = hashlib.blake2b(f"{session_id}\0{drop_id}".encode(), digest_size=20).hexdigest()
    return f"{SHM_PREFIX}{scope}.{digest}"


def _path(name: str) -> str:
    return os.path.join(SHM_DIR, name)


def create_segment(name: str, size: int = 0) -> int:
    """Create a new segment of ``size`` bytes and return an open read/write file descriptor."""
    fd = os.open(_path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    if size:
        try:
            os.ftruncate(fd, size)
        except OSError:
            os.close(fd)
            unlink_segment(name)
            raise
    return fd


def map_segment(name: str, writable: bool = True) -> mmap.mmap | None:
    """Map a segment in full; ``None`` if it is empty or absent. The mapping outlives the name."""
    flags = os.O_RDWR if writable else os.O_RDONLY
    try:
        fd = os.open(_path(name), flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # nothing was ever written
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return None
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        return mmap.mmap(fd, size, access=access)
    finally:
        os.close(fd)


def unlink_segment(name: str) -> bool:
    """Remove a segment's name; mappings that exist stay valid. True if it existed."""
    try:
        os.unlink(_path(name))
    except FileNotFoundError:
        return False
    return True


def unlink_scope(scope: str) -> list[str]:
    """Remove every segment of a scope (what a session, or a dead one, left); the names removed."""
    if not _SCOPE.match(scope):
        raise ValueError(f"segment scope {scope!r} is not 16 hex digits")
    prefix = f"{SHM_PREFIX}{scope}."
    try:
        names = [n for n in os.listdir(SHM_DIR) if n.startswith(prefix)]
    except FileNotFoundError:
        return []
    return [n for n in names if unlink_segment(n)]
