"""Opening, making and deleting paths *beneath* a directory without following any symbolic link below it.

Theory of operation
-------------------
A file or directory drop lives beneath an *anchor*: the session's workspace, or the allowed directory that
holds it. Above the anchor, links are the operator's business (``/scratch -> /lustre/scratch``); below it,
everything was made by the session's own apps, and a link there is how a graph would send a built-in app's
writes out of bounds (an earlier app makes ``sub/link -> /home/victim``, a later one writes
``sub/link/x``). Checking the path when the graph is validated is not enough: the link can appear after it.

So every open walks the path from a descriptor of the anchor, one component at a time, with ``O_NOFOLLOW``
(``openat`` relative to the previous directory's descriptor): a link met anywhere is refused, whenever it was
made, and no name is looked up twice (there is no window between a check and the use). This is what
``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` does in one call, in the portable system calls Python
exposes. Missing directories are made on the way with ``mkdirat``. Files are opened ``O_NONBLOCK`` and must be
regular files: a FIFO or a device planted at a drop's path would otherwise block or never end a read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator

__all__ = [
    "LinkRefused",
    "listdir_files",
    "makedirs",
    "open_file",
    "relative",
    "rmtree",
    "stat_path",
    "unlink",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Opens without reading (no FIFO blocks, no permission needed) where the platform has it.
_PATH_FLAG = getattr(os, "O_PATH", os.O_RDONLY | os.O_NONBLOCK)


class LinkRefused(PermissionError):
    """A component of a drop's path below its anchor is a symbolic link (or not what it must be)."""


def relative(anchor: str, path: str) -> list[str]:
    """The components of ``path`` below ``anchor``; ValueError if it is not below it."""
    rel = os.path.relpath(path, anchor)
    if rel == os.curdir:
        return []
    parts = rel.split(os.sep)
    if parts[0] == os.pardir or os.path.isabs(rel):
        raise ValueError(f"{path!r} is not under {anchor!r}")
    return parts


def _refused(anchor: str, parts: list[str], upto: int, dir_fd: int, exc: OSError) -> OSError:
    """The error for a component that could not be opened: LinkRefused if it is a link."""
    name = parts[upto]
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return exc
    where = os.path.join(anchor, *parts[: upto + 1])
    if stat.S_ISLNK(st.st_mode):
        return LinkRefused(
            errno.ELOOP,
            f"{where} is a symbolic link; dropflow's apps do not follow links under {anchor}",
        )
    if exc.errno == errno.ENOTDIR:
        return LinkRefused(errno.ENOTDIR, f"{where} is not a directory")
    return exc


def _walk(anchor: str, parts: list[str], make: bool) -> int:
    """A descriptor of the directory ``anchor/parts...``, every component opened without following links."""
    fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # above the anchor: links allowed
    try:
        for i, name in enumerate(parts):
            try:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not make:
                    raise
                with contextlib.suppress(FileExistsError):  # made meanwhile: the open below decides
                    os.mkdir(name, 0o777, dir_fd=fd)
                try:
                    nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise _refused(anchor, parts, i, fd, exc) from None
            except OSError as exc:
                raise _refused(anchor, parts, i, fd, exc) from None
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(anchor: str, path: str, flags: int, mode: int = 0o644, make_dirs: bool = False) -> int:
    """A descriptor of the regular file ``path`` beneath ``anchor``, opened with ``flags``.

    Raises :class:`LinkRefused` if any component below the anchor is a symbolic link, or if the file is not
    a regular file (a FIFO, a device, a directory).
    """
    parts = relative(anchor, path)
    if not parts:
        raise LinkRefused(errno.EISDIR, f"{path} is the directory {anchor}, not a file in it")
    dir_fd = _walk(anchor, parts[:-1], make_dirs)
    try:
        try:
            fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR):
                raise _refused(anchor, parts, len(parts) - 1, dir_fd, exc) from None
            raise
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LinkRefused(errno.EINVAL, f"{path} is not a regular file")
    return fd


def stat_path(anchor: str, path: str) -> os.stat_result:
    """``lstat`` of ``path`` reached beneath ``anchor`` (FileNotFoundError if it or a parent is missing)."""
    parts = relative(anchor, path)
    if not parts:
        return os.stat(anchor)
    dir_fd = _walk(anchor, parts[:-1], False)
    try:
        return os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
    finally:
        os.close(dir_fd)


def makedirs(anchor: str, path: str) -> None:
    """Make the directory ``path`` and its parents beneath ``anchor``, refusing links."""
    os.close(_walk(anchor, relative(anchor, path), True))


def unlink(anchor: str, path: str) -> None:
    """Remove the file (or link) ``path``; a missing path or a link on the way leaves everything as it is."""
    parts = relative(anchor, path)
    if not parts:
        return
    try:
        dir_fd = _walk(anchor, parts[:-1], False)
    except (FileNotFoundError, LinkRefused):
        return
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(parts[-1], dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def rmtree(anchor: str, path: str) -> None:
    """Remove the directory tree ``path`` beneath ``anchor``; links inside are removed, never followed."""
    parts = relative(anchor, path)
    if not parts:
        return
    try:
        dir_fd = _walk(anchor, parts[:-1], False)
    except (FileNotFoundError, LinkRefused):
        return
    try:
        # With dir_fd, rmtree works from descriptors and refuses a link at the top (ignored: nothing of ours).
        shutil.rmtree(parts[-1], ignore_errors=True, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def listdir_files(anchor: str, path: str) -> Iterator[tuple[str, int]]:
    """(path relative to ``path``, size) of every regular file in the tree ``path``, links not followed."""
    parts = relative(anchor, path)
    top = _walk(anchor, parts, False)
    try:
        for root, _dirs, files, root_fd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
            for name in files:
                try:
                    st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield os.path.normpath(os.path.join(root, name)), st.st_size
    finally:
        os.close(top)
