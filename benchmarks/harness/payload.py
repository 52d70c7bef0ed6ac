"""The work of the numpy pipeline, shared by every system: make a deterministic array, checksum it.

The producer fills a ``uint64`` array of :data:`~workloads.NUMPY_BYTES` bytes with ``0, 1, 2, ...`` in
chunks (no temporary copy of the whole array); the consumer takes the CRC-32 of the bytes it received. The
harness compares that checksum with :func:`expected`, computed in a separate process, so that a system which
loses or corrupts data fails the row instead of winning it. Also here: the tasks of the warm shared-memory
floor of ``numpy-proc`` (:func:`fill_segment`, :func:`checksum_of_segment`), which attach to a named
``multiprocessing.shared_memory`` segment in a worker process.

Imported by dropflow apps (``payload:produce`` / ``payload:consume``), Dask workers, the floors and DALiuGE's
apps (``daliuge_apps``); it needs numpy only.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

CHUNK = 1 << 20  # elements filled at a time


def fill(a: np.ndarray) -> np.ndarray:
    """Fill ``a`` (1-d uint64) with its indices, chunk by chunk."""
    for start in range(0, a.size, CHUNK):
        stop = min(a.size, start + CHUNK)
        a[start:stop] = np.arange(start, stop, dtype=np.uint64)
    return a


def make_array(nbytes: int) -> np.ndarray:
    """A new array of ``nbytes`` bytes (rounded down to whole uint64s)."""
    return fill(np.empty(nbytes // 8, dtype=np.uint64))


def checksum(a: Any) -> int:
    """CRC-32 of an array's bytes (or of a bytes-like object)."""
    if isinstance(a, np.ndarray):
        a = np.ascontiguousarray(a).view(np.uint8)
    return zlib.crc32(a)


def expected(nbytes: int) -> int:
    return checksum(make_array(nbytes))


def _attach(name: str) -> Any:
    """Attach to a segment that another process owns (and will unlink).

    Python 3.13 can attach untracked; before, attaching registers the name with the resource tracker, which
    the floor starts before its workers so that they share it: the owner's unlink unregisters the name once.
    """
    from multiprocessing import shared_memory

    try:
        return shared_memory.SharedMemory(name=name, track=False)  # type: ignore[call-arg]
    except TypeError:
        return shared_memory.SharedMemory(name=name)


def fill_segment(name: str, nbytes: int) -> None:
    shm = _attach(name)
    try:
        fill(np.ndarray((nbytes // 8,), np.uint64, buffer=shm.buf))
    finally:
        shm.close()


def checksum_of_segment(name: str, nbytes: int) -> int:
    shm = _attach(name)
    try:
        return checksum(shm.buf[: nbytes // 8 * 8])
    finally:
        shm.close()


def warm(_: int) -> int:
    """A task that makes a worker process start (this module, and numpy, imported)."""
    return 0


# dropflow apps: the producer writes in place into its output drop (shared memory: no copy).
def produce(nbytes: int, out: Any) -> None:
    fill(out.array((nbytes // 8,), np.uint64))


def produce_value(nbytes: int) -> np.ndarray:
    """Producer that returns the array (for memory drops, which encode the value)."""
    return make_array(nbytes)


def consume(a: Any) -> int:
    return checksum(a)


def consume_checked(a: Any, expected: int) -> int:
    """A consumer that fails unless the data arrived intact (where the harness cannot read the value)."""
    got = checksum(a)
    if got != expected:
        raise ValueError(f"checksum {got} != expected {expected}: the data did not arrive intact")
    return got


if __name__ == "__main__":
    import sys

    print(expected(int(sys.argv[1])))
