"""The tiny functions both dropflow and the floors run (importable by worker processes)."""

from __future__ import annotations

import zlib

import numpy as np


def inc(x: int) -> int:
    return x + 1


def fill(nbytes: int, out) -> None:  # type: ignore[no-untyped-def]
    """dropflow producer: an array allocated inside the output drop, filled in place."""
    arr = out.array((nbytes // 8,), np.uint64)
    arr[:] = np.arange(nbytes // 8, dtype=np.uint64)


def crc(arr: np.ndarray) -> int:  # type: ignore[type-arg]
    return zlib.crc32(memoryview(arr).cast("B"))
