"""Seconds this process has spent in the cyclic garbage collector, so that measured run times exclude it.

Theory of operation
-------------------
A collection stops every thread, so it lands in whatever run time is being measured -- a full collection of a
large graph can take tens of milliseconds, and would make ``x + 1`` look slow. One callback in
``gc.callbacks`` (installed on import, once per process) adds up the time between each collection's start
and stop; a measurement subtracts what was added while it ran. It changes nothing about when or how the
collector runs.
"""

from __future__ import annotations

import gc
from time import perf_counter
from typing import Any

__all__ = ["gc_seconds"]

_total = 0.0
_started = 0.0


def _callback(phase: str, info: dict[str, Any]) -> None:
    global _total, _started
    if phase == "start":
        _started = perf_counter()
    else:
        _total += perf_counter() - _started


def gc_seconds() -> float:
    """Seconds spent in collections so far (in this process)."""
    return _total


if _callback not in gc.callbacks:
    gc.callbacks.append(_callback)
