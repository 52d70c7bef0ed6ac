"""Stores: where the bytes of each kind of data drop live, and how they are written, read and deleted.

Theory of operation
-------------------
A store is a small picklable handle. The owner loop creates one when a drop's producer is dispatched, hands
it to the app runner (a thread, or a worker process that gets a pickled copy), and later asks it for size,
checksum or deletion. File, directory and shared-memory stores name storage that every process on the node
sees, so a worker writes it in place; a memory store carries its bytes, so a worker process sends them back
in its result. Writes stream through a :class:`Writer` that counts the size as chunks pass (``put`` writes a
value encoded in a few chunks at once; a memory store then keeps an immutable chunk as it is); checksums
are computed when asked for (``checksum()``), not on every write. Reads stream in chunks, or return the
whole content as a buffer that is a view of the storage where the storage allows (memory, a mapped segment,
a mapped file). ``array`` allocates an .npy-encoded array *inside*
the store so that a producer can fill it in place and consumers see it without a copy.

File and directory stores never follow a symbolic link below their *anchor* (the workspace, or the allowed
directory that holds them): every open, mkdir and delete goes through :mod:`.beneath`, so that a link that an
app of the graph planted in a drop's path -- after the graph was validated -- cannot send a write, a
truncation or a deletion outside.
"""

from __future__ import annotations

import mmap
import os
import stat
import zlib
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from . import beneath, shm
from .codecs import BytesLike, CodecError, npy_header, npy_view

__all__ = [
    "DirectoryStore",
    "FileStore",
    "MemoryStore",
    "NullStore",
    "SharedMemoryStore",
    "Store",
    "Writer",
]

CHUNK = 1 << 20


class Writer:
    """Streams chunks into a store, counting their size."""

    __slots__ = ("_sink", "size")

    def __init__(self, sink: Any) -> None:
        self._sink = sink
        self.size = 0

    def write(self, chunk: BytesLike) -> None:
        view = memoryview(chunk).cast("B")
        self.size += len(view)
        self._sink(view)

    def close(self) -> None:
        """Subclasses flush and release their storage here."""


class Store:
    """Storage of one data drop."""

    __slots__ = ()
    KIND: ClassVar[str] = ""
    #: The storage belongs to the session and may be deleted by the lifecycle manager.
    owned: bool = True

    def writer(self) -> Writer:
        raise NotImplementedError

    def put(self, chunks: list[BytesLike]) -> None:
        """Write a whole value, already encoded in ``chunks``."""
        w = self.writer()
        try:
            for chunk in chunks:
                w.write(chunk)
        finally:
            w.close()

    def buffer(self) -> BytesLike:
        """The whole content, as a view of the storage where possible."""
        raise NotImplementedError

    def chunks(self, size: int = CHUNK) -> Iterator[BytesLike]:
        view = memoryview(self.buffer())
        for start in range(0, len(view), size):
            yield view[start : start + size]

    def array(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray[Any, Any]:
        """Allocate an .npy-encoded array in the store and return a writable view of it."""
        raise CodecError(f"{self.KIND} drops cannot hold an array in place")

    def fspath(self) -> str | None:
        return None

    def prepare(self, directory: bool) -> None:
        """Make what a program needs to open this output by its path: the directory (``directory``), or the
        directory that will hold the file. Nothing for storage without a path."""
        path = self.fspath()
        if path is not None:
            os.makedirs(path if directory else os.path.dirname(path), exist_ok=True)

    def exists(self) -> bool:
        return True

    def size(self) -> int:
        return len(memoryview(self.buffer()))

    def checksum(self) -> int:
        return zlib.crc32(self.buffer())

    def delete(self) -> None:
        raise NotImplementedError


class NullStore(Store):
    __slots__ = ()
    KIND = "null"

    def writer(self) -> Writer:
        return Writer(lambda _chunk: None)

    def buffer(self) -> BytesLike:
        return b""

    def delete(self) -> None:
        pass


class _MemoryWriter(Writer):
    """Keeps immutable chunks (``bytes``) by reference and copies the others: a writer may reuse its buffer
    (a ``bytearray`` refilled for every chunk, a numpy array) as soon as ``write`` returns."""

    __slots__ = ("_chunks", "_store")

    def __init__(self, store: MemoryStore) -> None:
        self._chunks: list[memoryview | bytes] = []
        self._store = store
        super().__init__(self._keep)

    def _keep(self, view: memoryview) -> None:
        self._chunks.append(view if type(view.obj) is bytes and view.readonly else bytes(view))

    def close(self) -> None:
        chunks = self._chunks
        only = chunks[0] if len(chunks) == 1 else None
        if isinstance(only, memoryview) and type(only.obj) is bytes and only.nbytes == len(only.obj):
            self._store.data = only.obj  # the writer's own immutable bytes: not copied
        elif type(only) is bytes:
            self._store.data = only
        else:
            self._store.data = b"".join(chunks)
        self._chunks = []


class MemoryStore(Store):
    """Bytes in the owner's memory. A pickled copy carries its bytes."""

    __slots__ = ("data",)
    KIND = "memory"

    def __init__(self, data: BytesLike | None = None) -> None:
        self.data = data

    def __getstate__(self) -> tuple[BytesLike | None]:
        # A view of an array cannot be pickled; its bytes can. The state is a tuple: pickle skips
        # __setstate__ for a state of None, which would leave an unwritten store without its slot.
        return (bytes(self.data) if isinstance(self.data, memoryview) else self.data,)

    def __setstate__(self, state: tuple[BytesLike | None]) -> None:
        (self.data,) = state

    def writer(self) -> Writer:
        return _MemoryWriter(self)

    def put(self, chunks: list[BytesLike]) -> None:
        if len(chunks) == 1 and type(chunks[0]) is bytes:
            self.data = chunks[0]  # immutable: kept as it is, no copy
        else:
            super().put(chunks)

    def buffer(self) -> BytesLike:
        return b"" if self.data is None else self.data

    def array(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray[Any, Any]:
        dt = np.dtype(dtype)
        header = npy_header(tuple(shape), dt)
        data = bytearray(len(header) + int(np.prod(shape, dtype=np.int64)) * dt.itemsize)
        data[: len(header)] = header
        self.data = data
        return npy_view(data)

    def delete(self) -> None:
        self.data = None


class _FdWriter(Writer):
    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd
        super().__init__(self._write_all)

    def _write_all(self, view: memoryview) -> None:
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class SharedMemoryStore(Store):
    """A POSIX shared-memory segment named from the session and drop ids."""

    __slots__ = ("_map", "name")
    KIND = "shm"

    def __init__(self, name: str) -> None:
        self.name = name
        self._map: mmap.mmap | None = None

    def __getstate__(self) -> str:
        return self.name

    def __setstate__(self, state: str) -> None:
        self.name = state
        self._map = None

    def writer(self) -> Writer:
        self._map = None
        return _FdWriter(shm.create_segment(self.name))

    def buffer(self) -> BytesLike:
        if self._map is None:
            self._map = shm.map_segment(self.name)
        return b"" if self._map is None else self._map

    def array(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray[Any, Any]:
        dt = np.dtype(dtype)
        header = npy_header(tuple(shape), dt)
        total = len(header) + int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        fd = shm.create_segment(self.name, total)
        try:
            os.write(fd, header)
            self._map = mmap.mmap(fd, total, access=mmap.ACCESS_WRITE)
        finally:
            os.close(fd)
        return npy_view(self._map)

    def fspath(self) -> str:
        return os.path.join(shm.SHM_DIR, self.name)

    def exists(self) -> bool:
        return os.path.exists(self.fspath())

    def size(self) -> int:
        try:
            return os.stat(self.fspath()).st_size
        except FileNotFoundError:
            return 0

    def delete(self) -> None:
        # Mappings (and arrays viewing them) stay valid; the memory is freed when the last one goes.
        self._map = None
        shm.unlink_segment(self.name)


class FileStore(Store):
    """A file; ``owned`` files (inside the session workspace) may be garbage-collected.

    ``anchor`` is the directory below which no component of ``path`` may be a symbolic link (see
    :mod:`.beneath`); by default the file's own directory, which is then made as an ordinary directory.
    """

    __slots__ = ("_implicit", "anchor", "owned", "path")
    KIND = "file"

    def __init__(self, path: str, owned: bool = True, anchor: str | None = None) -> None:
        self.path = path
        self.owned = owned
        self._implicit = anchor is None
        self.anchor = os.path.dirname(path) if anchor is None else anchor

    def __getstate__(self) -> tuple[str, bool, str | None]:
        return (self.path, self.owned, None if self._implicit else self.anchor)

    def __setstate__(self, state: tuple[str, bool, str | None]) -> None:
        path, owned, anchor = state
        self.path, self.owned, self._implicit = path, owned, anchor is None
        self.anchor = os.path.dirname(path) if anchor is None else anchor

    def _open(self, flags: int, make_dirs: bool = False) -> int:
        if make_dirs and self._implicit:
            os.makedirs(self.anchor, exist_ok=True)
        return beneath.open_file(self.anchor, self.path, flags, 0o644, make_dirs)

    def prepare(self, directory: bool) -> None:
        if self._implicit:
            os.makedirs(self.anchor, exist_ok=True)
        else:
            beneath.makedirs(self.anchor, os.path.dirname(self.path))

    def writer(self) -> Writer:
        return _FdWriter(self._open(os.O_WRONLY | os.O_CREAT | os.O_TRUNC, make_dirs=True))

    def buffer(self) -> BytesLike:
        fd = self._open(os.O_RDONLY)
        try:
            if os.fstat(fd).st_size == 0:
                return b""
            return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)

    def chunks(self, size: int = CHUNK) -> Iterator[BytesLike]:
        with os.fdopen(self._open(os.O_RDONLY), "rb") as f:
            while chunk := f.read(size):
                yield chunk

    def array(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray[Any, Any]:
        dt = np.dtype(dtype)
        header = npy_header(tuple(shape), dt)
        total = len(header) + int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        fd = self._open(os.O_RDWR | os.O_CREAT | os.O_TRUNC, make_dirs=True)
        try:
            os.ftruncate(fd, total)
            os.pwrite(fd, header, 0)
            view = mmap.mmap(fd, total, access=mmap.ACCESS_WRITE)
        finally:
            os.close(fd)
        return npy_view(view)

    def fspath(self) -> str:
        return self.path

    def exists(self) -> bool:
        try:
            mode = beneath.stat_path(self.anchor, self.path).st_mode
        except (OSError, ValueError):
            return False
        # A device (/dev/urandom, in an allowed directory) is there for programs to read through its path
        # (dropflow's own readers open regular files only). Only a privileged process makes one, unlike a
        # FIFO, which an app could plant to block readers: a FIFO is not a file that exists.
        return stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)

    def size(self) -> int:
        return beneath.stat_path(self.anchor, self.path).st_size

    def checksum(self) -> int:
        crc = 0
        for chunk in self.chunks():
            crc = zlib.crc32(chunk, crc)
        return crc

    def delete(self) -> None:
        if self.owned:
            beneath.unlink(self.anchor, self.path)


class DirectoryStore(FileStore):
    """A directory that its producer fills; only its path is passed around."""

    __slots__ = ()
    KIND = "directory"

    def _make(self) -> None:
        if self._implicit:
            os.makedirs(self.path, exist_ok=True)
        else:
            beneath.makedirs(self.anchor, self.path)

    def prepare(self, directory: bool) -> None:
        self._make()

    def writer(self) -> Writer:
        self._make()

        def refuse(_chunk: memoryview) -> None:
            raise CodecError("a directory drop is written through its path, not as a byte stream")

        return Writer(refuse)

    def buffer(self) -> BytesLike:
        raise CodecError("a directory drop has no single byte content; read it through its path")

    def array(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray[Any, Any]:
        raise CodecError("a directory drop cannot hold an array in place")

    def _files(self) -> list[tuple[str, int]]:
        """(relative path, size) of its regular files, in name order; links inside are not followed."""
        try:
            return sorted(beneath.listdir_files(self.anchor, self.path))
        except FileNotFoundError:
            return []

    def exists(self) -> bool:
        try:
            return stat.S_ISDIR(beneath.stat_path(self.anchor, self.path).st_mode)
        except (OSError, ValueError):
            return False

    def size(self) -> int:
        return sum(size for _name, size in self._files())

    def checksum(self) -> int:
        crc = 0
        for name, _size in self._files():
            crc = zlib.crc32(name.encode(), crc)
            path = os.path.join(self.path, name)
            with os.fdopen(beneath.open_file(self.anchor, path, os.O_RDONLY), "rb") as f:
                while chunk := f.read(CHUNK):
                    crc = zlib.crc32(chunk, crc)
        return crc

    def delete(self) -> None:
        if self.owned:
            beneath.rmtree(self.anchor, self.path)
