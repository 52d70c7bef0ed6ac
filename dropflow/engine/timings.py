"""How long each app's code takes, as measured: what decides that a thread app is better run inline.

Theory of operation
-------------------
Handing an app to a pool thread and its outcome back costs two thread wake-ups -- tens of microseconds,
more on a loaded machine -- which dwarfs a function that computes ``x + 1``. So the owner keeps, per piece
of code (a Python function's ``module:function``, else the app's kind), how long its runs took
(:attr:`Outcome.seconds`, measured by ``execute`` where it ran), as a moving average. Code measured
``PROBES`` times whose average is under ``SHORT`` seconds is *trivially short*: apps of it that name no
executor then run inline in the owner, through the same ``Task`` and ``execute`` as in a thread, with the
same states. A slower run lifts the average and sends the code back to threads until runs there bring it
down; an inline run over ``LONG`` also restarts the probing, so a function that turns slow costs the owner
one slow call, then runs in threads for as long as it stays slow. (Run times exclude the garbage
collector's pauses, see ``drops.gcclock``: a collection is the process's, not the app's.) An app's own
``"executor"`` always wins: this applies only to the default.

Owner thread only: no lock.
"""

from __future__ import annotations

from ..drops.spec import AppSpec

__all__ = ["Timings"]


class Timings:
    """Per code key: runs measured, their moving average, and whether it may ever run inline."""

    #: Runs of a piece of code measured before it may run inline.
    PROBES = 8
    #: An average under this many seconds is trivially short (cheaper inline than a round trip to a thread).
    SHORT = 100e-6
    #: Weight of the newest run in the moving average.
    WEIGHT = 0.2
    #: An inline run over this many seconds sends its code back to threads to be probed again.
    LONG = 20e-3

    def __init__(self) -> None:
        self._runs: dict[str, list[float]] = {}  # key -> [runs measured, moving average]

    @staticmethod
    def key(spec: AppSpec) -> str:
        """A Python function's ``module:function`` (a kind name never contains a colon), else the kind."""
        func = getattr(spec, "func", None)
        return func if type(func) is str else spec.kind

    def record(self, spec: AppSpec, seconds: float, inline: bool = False) -> None:
        key = self.key(spec)
        runs = self._runs.get(key)
        if runs is None:
            self._runs[key] = [1, seconds]
        else:
            runs[0] += 1
            runs[1] += self.WEIGHT * (seconds - runs[1])
        if inline and seconds > self.LONG and runs is not None:
            runs[0] = 0  # probe again in threads

    def mean(self, spec: AppSpec) -> float | None:
        """The moving average of the code's measured runs, or None if it was never measured."""
        runs = self._runs.get(self.key(spec))
        return None if runs is None else runs[1]

    def short(self, spec: AppSpec) -> bool:
        key = self.key(spec)
        runs = self._runs.get(key)
        return runs is not None and runs[0] >= self.PROBES and runs[1] < self.SHORT
