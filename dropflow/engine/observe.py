"""What the engine keeps for its monitor: app durations by bucket, and the output tails of apps.

Theory of operation
-------------------
The monitor reads, it does not instrument: metrics are collected when someone scrapes them, from counters
the engine keeps anyway. Two things exist nowhere else, so the owner loop records them as each app's outcome
comes back (once per app, never per state change): :class:`AppStats` counts apps into fixed duration
buckets (Prometheus' histogram shape: a bisect and two additions), and :class:`OutputTails` keeps the end
of what each app wrote to standard output and error, bounded in characters per session so that a million
chatty apps cost a few megabytes, not gigabytes. Both are written by the owner thread only; other threads
read single list items or take a snapshot of a dict with one C call.
"""

from __future__ import annotations

from bisect import bisect_left

__all__ = ["BUCKETS", "AppStats", "OutputTails"]

#: Upper bounds (seconds) of the app duration buckets; the last bucket is +Inf.
BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
)  # fmt: skip


class AppStats:
    """Apps that returned on this node: how many, how long they took, how many failed (owner thread)."""

    __slots__ = ("counts", "failed", "sum")

    def __init__(self) -> None:
        #: One count per bucket of BUCKETS, then one for slower apps.
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.failed = 0

    def record(self, seconds: float | None, ok: bool) -> None:
        if seconds is None:
            return
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds
        if not ok:
            self.failed += 1


class OutputTails:
    """Standard output and error tails of a session's apps, by drop id, within a budget of characters:
    the oldest are forgotten first (owner thread writes, any thread reads with :meth:`get`)."""

    __slots__ = ("_chars", "_tails", "budget")

    def __init__(self, budget: int = 4_000_000) -> None:
        self.budget = budget
        self._tails: dict[str, tuple[str, str]] = {}
        self._chars = 0

    def keep(self, uid: str, stdout: str, stderr: str) -> None:
        old = self._tails.pop(uid, None)
        if old is not None:
            self._chars -= len(old[0]) + len(old[1])
        self._tails[uid] = (stdout, stderr)
        self._chars += len(stdout) + len(stderr)
        while self._chars > self.budget and self._tails:
            first = next(iter(self._tails))
            out, err = self._tails.pop(first)
            self._chars -= len(out) + len(err)

    def get(self, uid: str) -> tuple[str, str] | None:
        return self._tails.get(uid)

    def texts(self, limit: int = 1000) -> dict[str, str]:
        """The first ``limit`` apps' output, standard output then error, as one text each (any thread)."""
        out: dict[str, str] = {}
        for uid, (stdout, stderr) in list(self._tails.items())[:limit]:
            out[uid] = "\n".join(t for t in (stdout.rstrip(), stderr.rstrip()) if t)
        return out

    def __len__(self) -> int:
        return len(self._tails)
