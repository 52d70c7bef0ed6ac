"""Known engine bugs that the model-based cascade test can steer around, for runs while they are fixed.

Theory of operation
-------------------
Each bug the test found has a name, a one-line description and a predicate over a drawn case saying whether
the case would run into it. ``DROPFLOW_MODEL_AVOID=name,name`` makes the test discard (``assume``) the cases
that hit the named bugs, or relax the check they break, so that a run can look past bugs already reported.
The default, no name, is the strict test: a correct engine passes it with nothing avoided.

TODO(issue 9): delete each entry, its predicate and its relaxation once the engine no longer has the bug;
none may stay for good. Reproducers are in the report of issue 9.
"""

from __future__ import annotations

import os

from model import Prediction
from model_cases import AppPlan, Case

__all__ = ["AVOID", "KNOWN_BUGS", "avoided", "relaxed"]

#: Known engine bugs, by name, that a run may steer around while the engine is being fixed
#: (``DROPFLOW_MODEL_AVOID=name,name``). The default, no name, is the strict test a correct engine passes.
#: TODO(issue 9): delete each entry once the engine no longer has the bug; none may stay for good.
KNOWN_BUGS = {
    "frozen-session": "a deleted Session is never freed: it is in a cycle that bulk_allocation froze",
    "cancel-hides-failure": "a cancelled session with a drop in ERROR ends CANCELLED, not FAILED",
    "remote-branch": "a branch's FINISHED event reaching a node that lacks its outputs raises StopIteration",
    "remote-expiry": "an expiring drop with a neighbour on another node is expired or deleted twice"
    " (DELETED -> DELETED, DELETED -> EXPIRED): the node fails internally; its peers may wait forever",
    "timer-pins-session": "a pending timer (a lifespan, or abandoning cancelled apps after 10 s) holds"
    " a deleted session until it fires, and the owner loop's locals hold the last timer fired after that",
    "unwritten-memory-pickle": "an unwritten MemoryStore loses its data slot through pickle (__getstate__"
    " returns None, so __setstate__ is skipped): in a worker process, reading an unwritten memory input or"
    " sending back an unwritten memory output raises AttributeError",
    "remote-fetch-race": "an app reading a drop owned by another node, written by an app on a third node, may"
    " fetch it before its owner has it COMPLETED (LookupError: ... is WRITING)",
    "late-push-after-cancel": "a cancelled app's late result is still pushed to the node owning its output,"
    " after that node cleaned up: a file output leaves the session's workspace behind there",
    "inline-recursion": "inline Python apps recurse (dispatch -> _done -> pump -> dispatch): a chain of a few"
    " hundred fails the session with RecursionError",
    "expiry-after-early-error": "an expire_after_use drop never expires when a consumer settled in ERROR"
    " (too many failed inputs) before the drop completed",
    "expiry-on-cancel": "consumers settled by a cancel do not expire a COMPLETED expire_after_use drop"
    " (reading 3 of model.py: they should)",
}
AVOID = frozenset(filter(None, os.environ.get("DROPFLOW_MODEL_AVOID", "").split(",")))
assert KNOWN_BUGS.keys() >= AVOID, (
    f"unknown names in DROPFLOW_MODEL_AVOID: {sorted(AVOID - KNOWN_BUGS.keys())}"
)


def avoided(case: Case, prediction: Prediction) -> str | None:
    """The known bug (of those in AVOID) that this case would run into, if any."""
    where = {d.id: d.node for d in case.data}
    crossing = [
        a for a in case.apps if any(where[d] != a.node for d in (*a.inputs, *(d for _, d in a.outputs)))
    ]
    expiring = {d.id for d in case.data if d.expire}
    plans = {d.id: d for d in case.data}
    kinds = {d.id: d.kind for d in case.data}
    producers: dict[str, list[AppPlan]] = {}
    for a in case.apps:
        for _, d in a.outputs:
            producers.setdefault(d, []).append(a)
    hits = {
        "cancel-hides-failure": prediction.before_cancel is not None and prediction.outcome == "FAILED",
        "remote-branch": any(a.kind == "branch" for a in crossing),
        "remote-expiry": any(
            where[d] != a.node and (plans[d].expire or plans[d].lifespan)
            for a in case.apps
            for d in (*a.inputs, *(d for _, d in a.outputs))
        ),
        "unwritten-memory-pickle": case.uses_processes()
        and any(
            a.kind in ("branch", "noop") and kinds[d] == "memory" for d, ps in producers.items() for a in ps
        ),
        "remote-fetch-race": any(
            where[d] != a.node and any(p.node != where[d] for p in producers.get(d, ()))
            for a in case.apps
            for d in a.inputs
        ),
        "late-push-after-cancel": any(
            a.id in prediction.blocked and any(where[d] != a.node for _, d in a.outputs) for a in case.apps
        ),
        "inline-recursion": len(case) > 60
        and any(a.executor == "inline" and a.kind != "noop" for a in case.apps),
        "expiry-after-early-error": any(
            prediction.states[a.id] == {"ERROR"}
            and not prediction.attempts[a.id]
            and any(d in expiring for d in a.inputs)
            for a in case.apps
        ),
        "expiry-on-cancel": prediction.before_cancel is not None and any(d.expire for d in case.data),
    }
    return next((name for name, hit in hits.items() if hit and name in AVOID), None)


def relaxed(name: str) -> bool:
    """Whether the check that bug ``name`` breaks is relaxed in this run."""
    return name in AVOID
