"""Walltime: near the end of an allocation, apps that cannot finish in time are not started.

Theory of operation
-------------------
A batch job ends at a known time. Work started too close to it is lost -- killed half way, run again by the
resume -- and takes the place of work that would have finished. A :class:`Deadline` set on a session
(``session.deadline``, by a node manager started with ``--deadline``) is asked by the session, for each
ready app, whether the app can finish before it: an app's expected run time is its declared bound (the
``timeout`` of the kinds that have one), else what runs of the same code took here (the node's measured
averages, :mod:`.timings`, and those of this deadline, which also hears of process apps); code never
measured is assumed to fit. An app that cannot finish is *deferred*: it stays RUNNING without a task, and the
checkpoint that comes at the deadline (the job cancels the session, whose journal keeps what finished)
cancels it; a resume in the next allocation runs it.

Owner thread only.
"""

from __future__ import annotations

import time

from ..drops.spec import AppSpec
from .timings import Timings

__all__ = ["Deadline"]


class Deadline:
    """Apps expected to run past ``at`` (seconds since the epoch) are not started."""

    #: Weight of the newest run in the moving average of what this deadline measures itself.
    WEIGHT = 0.3

    def __init__(self, at: float, timings: Timings | None = None) -> None:
        self.at = at
        self._timings = timings
        self._runs: dict[str, float] = {}
        #: Apps deferred so far (for reports).
        self.deferred = 0

    def left(self) -> float:
        return self.at - time.time()

    def expected(self, spec: AppSpec) -> float | None:
        """Seconds the app is expected to take, or None when nothing says."""
        declared = getattr(spec, "timeout", None)
        if declared is not None:
            return float(declared)  # the graph's own word wins over averages of code that may differ
        measured = self._runs.get(Timings.key(spec))
        if measured is None and self._timings is not None:
            measured = self._timings.mean(spec)
        return measured

    def fits(self, spec: AppSpec) -> bool:
        expected = self.expected(spec)
        if expected is None or expected <= self.left():
            return True
        self.deferred += 1
        return False

    def ran(self, spec: AppSpec, seconds: float) -> None:
        """An app of this code ran for ``seconds`` (any executor)."""
        key = Timings.key(spec)
        mean = self._runs.get(key)
        self._runs[key] = seconds if mean is None else mean + self.WEIGHT * (seconds - mean)
