"""Small functions that the Python API's constructs put in graphs (imported by name where they run)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["constant", "items", "split"]


def constant(value: Any) -> Any:
    """A constant as a data drop (a graph gives constants to apps as arguments; a drop needs a producer)."""
    return value


def items(values: Any) -> list[Any]:
    """Scatter one item per copy: the output port has one drop per copy, and gets one item each."""
    return list(values)


def split(value: Any, parts: int) -> list[Any]:
    """Scatter a value in ``parts`` nearly equal pieces: arrays along their first axis, sequences in runs.

    >>> split([1, 2, 3, 4, 5], 2)
    [[1, 2, 3], [4, 5]]
    """
    if isinstance(value, np.ndarray):
        return np.array_split(value, parts, axis=0)
    seq = list(value)
    size, extra = divmod(len(seq), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(seq[start:end])
        start = end
    return out
