"""The engine side of the model-based cascade test: run a drawn case on a cluster and compare with the model.

Theory of operation
-------------------
A :class:`Cluster` is three node managers joined by the in-process bus, and an island over them, started
once for the whole test: examples only create and delete sessions. A case placed on one node runs as a plain
session of the first node manager; a case placed on several runs through the island, which splits it and
starts every part.

:meth:`Cluster.check` runs one case. When the model says some app blocks, it polls until the engine shows the
model's states before the cancel and every app has made its attempts (a drop settled in a state the model
rules out fails at once, without waiting), then cancels, waits for the blocked apps to be CANCELLED, and only
then opens the gate that lets blocked threads return, so that no blocked app can finish first. It compares
final states, outcome, attempts, root-cause failures and session errors (the only error allowed is the
documented abandonment of cancelled apps that did not stop in time); runs ``Session.validate`` on every
part; deletes the session; checks that no shared-memory segment (by the session's scope) and no workspace of
it is left and that its Session and Core objects are freed. Failures say what the model expected, what the
engine did and the stories of the drops that differ.
"""

from __future__ import annotations

import gc
import itertools
import os
import re
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import modelfuncs
from model import Prediction
from model_cases import NODES, Case

from dropflow.drops.shm import SHM_DIR, SHM_PREFIX, session_scope
from dropflow.drops.states import APP_SETTLED, DATA_SETTLED
from dropflow.engine.bus import InProcBus
from dropflow.engine.session import Session
from dropflow.managers.island import DataIslandManager
from dropflow.managers.node_manager import NodeManager

__all__ = ["TIMEOUT", "Cluster", "Run"]

#: Seconds an example may take to reach a state (the quiescent one, the end) before it fails.
TIMEOUT = float(os.environ.get("DROPFLOW_MODEL_TIMEOUT") or 15)
SETTLED = frozenset(str(s) for s in (*DATA_SETTLED, *APP_SETTLED))
#: The one session error a correct run may show: after a cancel, the engine gives up on apps (and
#: transfers) that have not stopped within ``Session.ABANDON_AFTER`` seconds -- documented behaviour. A
#: blocked thread app returns only when the test opens its gate, which on a loaded machine may be later.
ABANDONED = re.compile(r"abandoned \d+ cancelled app\(s\) and \d+ transfer\(s\) that did not stop")


class Run:
    """One example's session, on one node manager or on the island."""

    def __init__(self, cluster: Cluster, case: Case, sid: str) -> None:
        self.cluster = cluster
        self.case = case
        self.sid = sid
        self.counters = os.path.join(cluster.root, "counters", sid)
        self.island = case.nodes > 1
        self.created = False
        #: The session objects of every part, to check that deleting the session frees them.
        self.refs: list[weakref.ref[Any]] = []

    @property
    def members(self) -> list[NodeManager]:
        """The node managers holding a part of the session."""
        if not self.island:
            return [self.cluster.nms[0]]
        names = self.cluster.dim.session_info(self.sid)["nodes"]
        return [nm for nm in self.cluster.nms if nm.name in names]

    def sessions(self) -> dict[str, Session]:
        return {nm.name: nm.node.sessions[self.sid] for nm in self.members}

    def deploy(self) -> None:
        os.makedirs(self.counters)
        modelfuncs.add_gate(self.sid)
        api: Any = self.cluster.dim if self.island else self.cluster.nms[0]
        api.create_session(self.sid)
        self.created = True
        api.append(self.sid, self.case.specs(self.counters, self.sid))
        api.deploy(self.sid)
        self.refs = [weakref.ref(x) for s in self.sessions().values() for x in (s, s.core)]

    def states(self) -> dict[str, str]:
        """Every drop's state, from the node that owns it."""
        out: dict[str, str] = {}
        for nm in self.members:
            out.update({uid: s["status"] for uid, s in nm.graph_status(self.sid).items()})
        return out

    def attempts(self) -> dict[str, int]:
        """How many attempts each app with a function has started."""
        started = modelfuncs.attempts(self.counters)
        return {a.id: started.get(a.id, 0) for a in self.case.apps if a.kind != "noop"}

    def cancel(self) -> None:
        if self.island:
            self.cluster.dim.cancel(self.sid)
        else:
            self.cluster.nms[0].cancel(self.sid)

    def wait(self, timeout: float) -> str:
        api: Any = self.cluster.dim if self.island else self.cluster.nms[0]
        return str(api.wait(self.sid, timeout))

    def delete(self) -> None:
        if self.island:
            self.cluster.dim.delete_session(self.sid)
        else:
            self.cluster.nms[0].delete_session(self.sid)

    def story(self, uids: list[str]) -> str:
        """What happened to these drops, on every node that logged something about them."""
        lines = []
        for name, session in self.sessions().items():
            for uid in uids:
                lines += [
                    f"      [{name}] {e.uid}: {e.start} -> {e.end} (cause {e.cause})"
                    for e in session.story(uid)
                ]
        return "\n".join(lines[-60:])


def diff(expected: Mapping[str, frozenset[str]], actual: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Drops whose actual state is not one the model allows: uid -> (allowed, actual)."""
    return {
        uid: ("/".join(sorted(expected.get(uid, ()))) or "absent", actual.get(uid, "absent"))
        for uid in sorted(set(expected) | set(actual))
        if actual.get(uid) not in expected.get(uid, ())
    }


def settled_elsewhere(allowed: frozenset[str], actual: str) -> bool:
    """The engine has settled a drop in a state the model does not allow, and can no longer reach one it
    does (a COMPLETED drop may still expire, an EXPIRED one still be deleted)."""
    if actual in ("COMPLETED", "EXPIRED") and "DELETED" in allowed:
        return False
    return actual in SETTLED and actual not in allowed


class Cluster:
    """Three node managers on one in-process bus and an island over them, kept for the whole test."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.bus = InProcBus()
        self.nms = [
            NodeManager(name, workspace_root=os.path.join(root, name), threads=8, processes=2).start()
            for name in NODES
        ]
        for nm in self.nms:
            self.bus.add(nm.node)
        self.dim = DataIslandManager("model", self.nms)
        self._ids = itertools.count()

    def close(self) -> None:
        self.dim.close()
        for nm in self.nms:
            nm.close()

    def check(self, case: Case, prediction: Prediction) -> None:
        """Run one example and compare it with the model's prediction."""
        run = Run(self, case, f"model-{os.getpid()}-{next(self._ids)}")
        try:
            run.deploy()
            if prediction.before_cancel is not None:
                self._cancel_when_quiescent(run, prediction)
            ended = run.wait(TIMEOUT * 2)
            assert ended in ("FINISHED", "FAILED", "CANCELLED"), self._report(run, prediction, "no end")
            self._compare(run, prediction, ended)
        finally:
            self._dispose(run)
        self._check_nothing_left(run)
        self._check_freed(run.refs)

    def _cancel_when_quiescent(self, run: Run, prediction: Prediction) -> None:
        expected = prediction.before_cancel
        assert expected is not None
        want = {a.id: prediction.attempts[a.id] for a in run.case.apps if a.kind != "noop"}

        def quiescent() -> bool:
            states = run.states()
            wrong = diff(expected, states)
            if any(settled_elsewhere(expected[uid], states[uid]) for uid in wrong if uid in states):
                raise AssertionError(
                    self._report(run, prediction, "settled wrongly before the cancel", expected)
                )
            return not wrong and run.attempts() == want

        wait_for(quiescent, TIMEOUT, lambda: self._report(run, prediction, "never quiescent", expected))
        self._validate(run)
        run.cancel()

        def blocked_settled() -> bool:
            states = run.states()
            return all(states.get(uid) in SETTLED for uid in prediction.blocked)

        try:
            wait_for(blocked_settled, TIMEOUT, lambda: self._report(run, prediction, "cancel not taken"))
        finally:
            modelfuncs.open_gate(run.sid)

    def _compare(self, run: Run, prediction: Prediction, ended: str) -> None:
        states = run.states()
        assert not diff(prediction.states, states), self._report(run, prediction, "final states differ")
        assert ended == prediction.outcome, self._report(run, prediction, f"session {ended}")
        attempts = run.attempts()
        want = {a.id: prediction.attempts[a.id] for a in run.case.apps if a.kind != "noop"}
        assert attempts == want, self._report(run, prediction, f"attempts {attempts} != {want}")
        failures = {f.uid for s in run.sessions().values() for f in s.failures()}
        assert failures == prediction.failures, self._report(run, prediction, f"failures {sorted(failures)}")
        errors = {
            name: s.error
            for name, s in run.sessions().items()
            if s.error and not (prediction.blocked and ABANDONED.fullmatch(s.error))
        }
        assert not errors, self._report(run, prediction, f"session errors {errors}")
        self._validate(run)

    def _validate(self, run: Run) -> None:
        """The invariant checks of every part (``Session.validate``, which runs ``Core.validate``)."""
        for session in run.sessions().values():
            session.node.call(session.validate)

    def _dispose(self, run: Run) -> None:
        """Whatever happened: end the session (cancelling if need be), delete it and the example's files."""
        try:
            if run.created:
                if run.wait(0) not in ("FINISHED", "FAILED", "CANCELLED"):
                    run.cancel()
                modelfuncs.open_gate(run.sid)
                run.wait(TIMEOUT)
                run.delete()
        finally:
            modelfuncs.forget_gate(run.sid)
            shutil.rmtree(run.counters, ignore_errors=True)

    def _check_nothing_left(self, run: Run) -> None:
        """No segment, no workspace, and the session objects are freed once deleted."""
        # Every segment of a session, local copies of other nodes' drops included, carries its scope.
        prefixes = tuple(SHM_PREFIX + session_scope(nm.node.workspace_root, run.sid) for nm in self.nms)
        left = [name for name in os.listdir(SHM_DIR) if name.startswith(prefixes)]
        assert not left, f"shared memory left by {run.sid}: {left}"
        workspaces = [
            p for nm in self.nms if os.path.exists(p := os.path.join(nm.node.workspace_root, run.sid))
        ]
        assert not workspaces, f"workspaces left: {workspaces}"
        assert all(run.sid not in nm.node.sessions for nm in self.nms)

    def _check_freed(self, refs: list[weakref.ref[Any]]) -> None:
        deadline = time.monotonic() + 5
        while any(r() is not None for r in refs):
            gc.collect()
            if time.monotonic() > deadline:
                alive = [r() for r in refs if r() is not None]
                holders = [type(h).__name__ for obj in alive for h in gc.get_referrers(obj)]
                raise AssertionError(f"not freed after deletion: {alive}; held by {holders}")
            threading.Event().wait(0.01)

    def _report(
        self,
        run: Run,
        prediction: Prediction,
        what: str,
        expected: Mapping[str, frozenset[str]] | None = None,
    ) -> str:
        """What the model said, what the engine did, and the stories of the drops that differ."""
        expected = prediction.states if expected is None else expected
        try:
            wrong = diff(expected, run.states())
            stories = run.story(list(wrong)[:8])
            failures = {f.uid: f.message[-300:] for s in run.sessions().values() for f in s.failures()}
            counted = run.attempts()
            attempts = {
                u: (prediction.attempts[u], n) for u, n in counted.items() if prediction.attempts[u] != n
            }
        except Exception as exc:  # the report must not hide the failure it reports
            wrong, stories, failures, attempts = {}, f"cannot read states: {exc}", {}, {}
        phase = "final" if expected is prediction.states else "before the cancel"
        return "\n".join(
            [
                what,
                f"  case: {run.case!r}",
                f"  model: outcome {prediction.outcome}, blocked {sorted(prediction.blocked)},"
                f" failures {sorted(prediction.failures)}",
                f"  {phase}, model vs engine: "
                + ", ".join(f"{uid}: {want} != {got}" for uid, (want, got) in wrong.items()),
                f"  attempts, model vs engine: {attempts}",
                f"  engine failures: {failures}",
                "  stories:",
                stories,
            ]
        )


def wait_for(predicate: Callable[[], Any], timeout: float, report: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        started = time.monotonic()
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(report())
        # Rest at least as long as a poll took, so that polling a big graph does not starve the engine.
        pause.wait(max(0.002, time.monotonic() - started))
