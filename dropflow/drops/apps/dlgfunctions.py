"""DALiuGE's built-in functions (``dlg.apps.simple_functions``), for graphs that name them in ``func_name``.

The translator maps ``dlg.apps.simple_functions.NAME`` onto ``dropflow.drops.apps.dlgfunctions:NAME``;
each function here takes the same arguments and returns what DALiuGE's does.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

__all__ = ["createMultiOut", "createRange", "getMax", "readLines", "string2json"]


def readLines(fileName: str) -> list[str]:
    """The whitespace-separated words of a file."""
    with open(fileName) as f:
        return f.read().split()


def createRange(low: int, high: int, step: int) -> range:
    return range(int(low), int(high), int(step))


def createMultiOut(v1: Any = 1, v2: Any = 7) -> tuple[Any, Any]:
    return v1, v2


def getMax(v1: float = 1.0, v2: float = 7.0) -> float:
    return max(v1, v2)


def string2json(string: str, pickle_flag: bool = False) -> Any:
    """The JSON value a string holds (an empty list if it holds none); pickled if ``pickle_flag``."""
    try:
        value = json.loads(string or '""')
    except json.JSONDecodeError:
        value = []
    return pickle.dumps(value) if pickle_flag else value
