"""Heartbeats between a manager and its members, and the leases they renew.

Theory of operation
-------------------
An island (or a master) must learn within seconds that a member stopped answering -- its daemon hung, was
SIGSTOPped, or its host vanished -- and the member must learn that its island lost it or died, so that
neither runs a distributed session for ever.

Island side, :class:`Monitor`: one thread wakes every ``interval`` while some session is deploying or
running, and sends each member that holds a part of one a *heartbeat* -- one small authenticated request
with a short timeout, on a pool of its own, never on the threads that serve REST, at most one in flight per
member. The heartbeat names the sessions to renew and the sessions to cancel there; the answer gives their
states. A member that has not answered for ``lost_after`` seconds is *lost* for every started session it
holds (``on_lost``); so is one that answers but no longer knows a started session (it restarted). From then
on the member's sessions are sent as *cancel* orders with every heartbeat to it, until it answers once:
a member that comes back (SIGCONT) stops its part at once.

Member side, :class:`Leases`: a session that an island made distributed holds a lease. Every heartbeat
renews it for ``lease`` seconds; when it runs out -- the island lost us, or died -- ``on_expire`` stops
the session, which then cleans its workspace and shared memory like any cancelled session. Sessions given
directly to a node manager hold no lease. Time is ``time.monotonic``: it keeps running while a process is
stopped, so a member woken by SIGCONT finds its leases expired at once.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["LEASE", "HeartbeatPolicy", "Leases", "Monitor"]

log = logging.getLogger(__name__)

#: Seconds a lease lasts unless renewed (the default a heartbeat renews for, and a new lease's first term).
LEASE = 15.0


@dataclass(frozen=True, slots=True)
class HeartbeatPolicy:
    """How often an island checks its members, and when it gives up on one."""

    #: Seconds between heartbeats to a member.
    interval: float = 1.0
    #: Seconds a heartbeat may take before it counts as missed.
    timeout: float = 3.0
    #: A member silent this long is lost (about five missed heartbeats).
    lost_after: float = 5.0
    #: Seconds each heartbeat renews a member's leases for (well over ``lost_after``: the island decides).
    lease: float = LEASE


#: (member name) -> its client; raises if the member is no longer known.
ClientOf = Callable[[str], Any]
#: () -> {member: {session id: started}} for every deploying or running session part.
Targets = Callable[[], dict[str, dict[str, bool]]]
#: (member, session id, reason) -- called on the monitor's pool.
OnLost = Callable[[str, str, str], None]


class Monitor:
    """The island side: heartbeats to every member holding a live session part; cancel orders to lost ones."""

    def __init__(
        self, sender: str, targets: Targets, client: ClientOf, on_lost: OnLost, policy: HeartbeatPolicy
    ) -> None:
        self.sender = sender
        self.policy = policy
        self._targets = targets
        self._client = client
        self._on_lost = on_lost
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        #: member -> when it last answered (or when it was first watched)
        self._answered: dict[str, float] = {}
        self._inflight: set[str] = set()
        #: member -> sessions to cancel there, sent until the member answers
        self._cancel: dict[str, set[str]] = {}
        self._reported: set[tuple[str, str]] = set()

    def wake(self) -> None:
        """Start (once) or wake the monitor: a session started deploying, or a member was lost."""
        with self._cond:
            if self._closed:
                return
            if self._thread is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    16, thread_name_prefix="dropflow-heartbeat"
                )
                self._thread = threading.Thread(target=self._loop, name="dropflow-heartbeats", daemon=True)
                self._thread.start()
            self._cond.notify()

    def cancel_until_answered(self, member: str, session_id: str) -> None:
        """Send a cancel of ``session_id`` with every heartbeat to ``member`` until it answers one."""
        with self._cond:
            self._cancel.setdefault(member, set()).add(session_id)
        self.wake()

    def silent_for(self, member: str) -> float | None:
        """Seconds since a watched member last answered a heartbeat; None if it is not being watched."""
        with self._cond:
            since = self._answered.get(member)
        return None if since is None else time.monotonic() - since

    def pending_cancels(self) -> dict[str, list[str]]:
        with self._cond:
            return {m: sorted(s) for m, s in self._cancel.items() if s}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread, pool = self._thread, self._pool
        if thread is not None:
            thread.join()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    # -- the loop -------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
            try:
                busy = self._tick()
            except Exception:  # the monitor must outlive any bug in one round
                log.exception("heartbeat round failed")
                busy = True
            with self._cond:
                if self._closed:
                    return
                # Idle (nothing to watch, nothing to cancel): sleep until woken; else until the next round.
                self._cond.wait(self.policy.interval if busy else None)

    def _tick(self) -> bool:
        targets = self._targets()
        now = time.monotonic()
        with self._cond:
            self._reported &= {(m, sid) for m, sessions in targets.items() for sid in sessions}
            cancels = {m: set(s) for m, s in self._cancel.items() if s}
            watched = set(targets) | set(cancels)
            for member in list(self._answered):
                if member not in watched:
                    del self._answered[member]  # watched afresh (with a fresh grace) next time
            lost: list[tuple[str, str, float]] = []
            for member in watched:
                since = self._answered.setdefault(member, now)
                if now - since > self.policy.lost_after:
                    sessions = targets.get(member, {})
                    lost += [(member, sid, now - since) for sid, started in sessions.items() if started]
            to_beat = [m for m in watched if m not in self._inflight]
            self._inflight.update(to_beat)
        pool = self._pool
        assert pool is not None
        for member, sid, silent in lost:
            self._lose(member, sid, f"stopped answering heartbeats for {silent:.1f} s")
        for member in to_beat:
            pool.submit(self._beat, member, targets.get(member, {}), sorted(cancels.get(member, ())))
        return bool(targets or cancels)

    def _lose(self, member: str, session_id: str, reason: str) -> None:
        with self._cond:
            if (member, session_id) in self._reported:
                return
            self._reported.add((member, session_id))
        pool = self._pool
        assert pool is not None
        pool.submit(self._report_lost, member, session_id, reason)

    def _report_lost(self, member: str, session_id: str, reason: str) -> None:
        try:
            self._on_lost(member, session_id, reason)
        except Exception:
            log.exception("handling the loss of %s for session %s failed", member, session_id)

    def _beat(self, member: str, sessions: dict[str, bool], cancel: list[str]) -> None:
        try:
            try:
                client = self._client(member)
                answer = client.heartbeat(
                    self.sender, sorted(sessions), cancel, self.policy.lease, timeout=self.policy.timeout
                )
            except Exception as exc:  # a miss: counted by time, in _tick
                log.debug("heartbeat to %s missed: %s", member, exc)
                return
            states: dict[str, Any] = answer.get("sessions", {}) if isinstance(answer, dict) else {}
            with self._cond:
                self._answered[member] = time.monotonic()
                if cancel:
                    left = self._cancel.get(member, set()) - set(cancel)
                    if left:
                        self._cancel[member] = left
                    else:
                        self._cancel.pop(member, None)
                    log.warning("node %s took the order to cancel %s", member, ", ".join(cancel))
            for sid, started in sessions.items():
                if started and sid in states and states[sid] is None:
                    self._lose(member, sid, f"it no longer has session {sid} (did it restart?)")
        finally:
            with self._cond:
                self._inflight.discard(member)


class Leases:
    """The member side: sessions that stop by themselves unless a heartbeat renews them in time."""

    def __init__(self, on_expire: Callable[[str, str], None]) -> None:
        self._on_expire = on_expire
        self._deadlines: dict[str, float] = {}
        self._holders: dict[str, str] = {}
        self._heap: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def grant(self, session_id: str, seconds: float, holder: str = "its island") -> None:
        """Give (or extend) a session's lease."""
        with self._cond:
            if self._closed:
                return
            deadline = time.monotonic() + seconds
            self._deadlines[session_id] = deadline
            self._holders[session_id] = holder
            heapq.heappush(self._heap, (deadline, session_id))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="dropflow-leases", daemon=True)
                self._thread.start()
            self._cond.notify()

    def renew(self, session_id: str, seconds: float, holder: str) -> bool:
        """Extend a lease that exists; False if the session holds none."""
        with self._cond:
            if session_id not in self._deadlines:
                return False
        self.grant(session_id, seconds, holder)
        return True

    def drop(self, session_id: str) -> None:
        with self._cond:
            self._deadlines.pop(session_id, None)
            self._holders.pop(session_id, None)

    def held(self) -> list[str]:
        with self._cond:
            return sorted(self._deadlines)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _loop(self) -> None:
        while True:
            expired: list[tuple[str, str]] = []
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                heap = self._heap
                while heap and heap[0][0] <= now:
                    deadline, sid = heapq.heappop(heap)
                    if self._deadlines.get(sid) == deadline:  # else renewed (or dropped) since
                        del self._deadlines[sid]
                        expired.append((sid, self._holders.pop(sid, "its island")))
                if not expired:
                    self._cond.wait(heap[0][0] - now if heap else None)
                    continue
            for sid, holder in expired:
                try:
                    self._on_expire(sid, holder)
                except Exception:
                    log.exception("stopping session %s after its lease ran out failed", sid)
