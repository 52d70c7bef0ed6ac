"""A reference model of the cascade, written from the documented rules only, to check the engine against.

Theory of operation
-------------------
The model reads the same drop specs as the engine, plus a *script* for each app: what each of its attempts
does. It does not simulate events. The cascade's rules are monotone -- a settled drop never changes again --
so with scripted outcomes the states the engine must reach do not depend on the order things happen in, and
one pass over the graph in topological order computes them: every drop's state follows from the states of
its predecessors.

The rules, as read from ``engine/core.py``'s module docstring, docs/engine.md, docs/physical-graph.md
("Execution rules"), docs/states.md and DESIGN.md "The drop model":

- A root data drop (no producer) completes when the session starts.
- A data drop is in ERROR as soon as one of its producers is in ERROR. Otherwise, once every producer has
  settled, it is SKIPPED if every producer skipped it and COMPLETED if any finished without skipping it.
  A producer skips a drop when the producer is SKIPPED, or when it is a branch that FINISHED and the drop
  is on the port it did not take.
- An app with ``n`` inputs (counted per link: a drop listed twice counts twice) is in ERROR at once, without
  waiting for its other inputs, when more than ``error_tolerance * n`` of them are in ERROR. Otherwise, once
  every input has settled, it is SKIPPED if all ``n`` are SKIPPED, and else it runs.
- A run is a sequence of attempts; attempt ``k`` does ``script[min(k, len(script) - 1)]``: ``finish``,
  ``raise``, ``true``/``false`` (a branch taking that side), or ``block`` (it never returns by itself). An
  attempt that raises is retried while attempts remain (``retries + 1`` in all); the last one that raises
  puts the app in ERROR, and the app is then a *root-cause failure*. An app in ERROR that never ran (too
  many failed inputs) is not one.
- Cancelling settles every unsettled drop as CANCELLED.
- A COMPLETED data drop with ``expire_after_use`` expires, then is deleted, once every one of its consumers
  has settled (FINISHED, ERROR, SKIPPED or CANCELLED).
- A COMPLETED data drop with a ``lifespan`` expires when its lifespan is over and every consumer has
  settled. The timer may fire before or after the session ends, so such a drop may end COMPLETED or
  DELETED; a lifespan longer than ``timer_horizon`` is taken never to end during a test session.
- A session is FAILED if any drop is in ERROR, else CANCELLED if it was cancelled, else FINISHED.

Readings of points the documents leave open (each is a choice, listed in the report of issue 9):

1. An app with no inputs runs at the start: "all inputs skipped" is not vacuously true.
2. ``expire_after_use`` on a drop with no consumers: "every consumer settled" is vacuously true, so it
   expires as soon as it completes.
3. Consumers CANCELLED by a cancel count as settled, so a COMPLETED ``expire_after_use`` drop whose last
   unsettled consumers were cancelled is deleted (DELETED), not left COMPLETED.
4. An expired drop always ends DELETED: the session deletes expired data before it ends.
5. ``error_tolerance`` is compared as ``failed > tolerance * n`` in floating point; tests use tolerances that
   are exact binary fractions, so that "a fraction of the inputs" has only one meaning.

When an app blocks, the session can end only by being cancelled. The model then also gives the *quiescent*
states just before the cancel: everything that does not depend on a blocked app has settled, the blocked
apps are RUNNING, and whatever waits on them is unsettled. A test waits for those states, cancels, and
compares the final states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dropflow.drops.spec import AppSpec, DataSpec, DropSpec, port_drops

__all__ = ["BLOCK", "FALSE", "FINISH", "RAISE", "TRUE", "Prediction", "predict"]

FINISH, RAISE, TRUE, FALSE, BLOCK = "finish", "raise", "true", "false", "block"

# Drop and app states by name, as the engine reports them.
INITIALIZED, WRITING, COMPLETED, ERROR = "INITIALIZED", "WRITING", "COMPLETED", "ERROR"
SKIPPED, CANCELLED, DELETED = "SKIPPED", "CANCELLED", "DELETED"
NOT_RUN, RUNNING, FINISHED = "NOT_RUN", "RUNNING", "FINISHED"

_SETTLED = frozenset({COMPLETED, ERROR, SKIPPED, CANCELLED, FINISHED, DELETED})
#: What an unsettled data drop may show: its producers may or may not have started writing.
_WAITING_DATA = frozenset({INITIALIZED, WRITING})


@dataclass(frozen=True)
class Prediction:
    #: Drop id -> the states it may end in (one, except for lifespans that may or may not run out).
    states: Mapping[str, frozenset[str]]
    #: FINISHED, FAILED or CANCELLED.
    outcome: str
    #: Drop id -> states just before the cancel, when some app blocks; None when nothing blocks.
    before_cancel: Mapping[str, frozenset[str]] | None
    #: App id -> how many attempts started (0 for an app that never ran).
    attempts: Mapping[str, int]
    #: Apps in ERROR because their own last attempt failed.
    failures: frozenset[str]
    #: Apps blocked when the session is cancelled.
    blocked: frozenset[str]


class _App:
    __slots__ = ("attempts", "failed_itself", "inputs", "outputs", "spec", "state", "taken")

    def __init__(self, spec: AppSpec) -> None:
        self.spec = spec
        self.inputs: list[str] = [d for v in spec.inputs.values() for d in port_drops(v)]
        self.outputs: list[tuple[str, str]] = [(p, d) for p, v in spec.outputs.items() for d in port_drops(v)]
        self.state = NOT_RUN
        self.taken: str | None = None  # for a branch that finished: the port it took
        self.attempts = 0
        self.failed_itself = False


def _order(data: Mapping[str, DataSpec], apps: Mapping[str, _App]) -> list[str]:
    """Drop ids in a topological order (Kahn's algorithm); the graph must be acyclic."""
    before: dict[str, int] = {uid: 0 for uid in (*data, *apps)}
    after: dict[str, list[str]] = {uid: [] for uid in before}
    for uid, app in apps.items():
        for d in app.inputs:
            after[d].append(uid)
            before[uid] += 1
        for _, d in app.outputs:
            after[uid].append(d)
            before[d] += 1
    ready = [uid for uid, n in before.items() if n == 0]
    order: list[str] = []
    while ready:
        uid = ready.pop()
        order.append(uid)
        for nxt in after[uid]:
            before[nxt] -= 1
            if before[nxt] == 0:
                ready.append(nxt)
    if len(order) != len(before):
        raise ValueError("the graph has a cycle")
    return order


def _run(app: _App, script: Sequence[str]) -> None:
    """Play an app's attempts from its script."""
    is_branch = app.spec.kind == "branch"
    for k in range(app.spec.retries + 1):
        what = script[min(k, len(script) - 1)]
        app.attempts = k + 1
        if what == RAISE:
            continue
        if what == BLOCK:
            app.state = RUNNING
            return
        if what not in ((TRUE, FALSE) if is_branch else (FINISH,)):
            raise ValueError(f"app {app.spec.id!r} ({app.spec.kind}) cannot {what!r}")
        app.state, app.taken = FINISHED, (what if is_branch else None)
        return
    app.state, app.failed_itself = ERROR, True


def _app_state(app: _App, states: Mapping[str, str], script: Sequence[str]) -> None:
    n = len(app.inputs)
    failed = sum(states[d] == ERROR for d in app.inputs)
    if failed > app.spec.error_tolerance * n:
        app.state = ERROR
    elif any(states[d] not in _SETTLED for d in app.inputs):
        app.state = NOT_RUN
    elif n and all(states[d] == SKIPPED for d in app.inputs):
        app.state = SKIPPED
    else:
        _run(app, script)


def _data_state(producers: Sequence[tuple[_App, str]]) -> str:
    if not producers:
        return COMPLETED
    if any(app.state == ERROR for app, _ in producers):
        return ERROR
    if any(app.state not in _SETTLED for app, _ in producers):
        return INITIALIZED  # stands for "not settled": INITIALIZED or WRITING

    def skips(app: _App, port: str) -> bool:
        return app.state == SKIPPED or (app.taken is not None and port != app.taken)

    return SKIPPED if all(skips(app, port) for app, port in producers) else COMPLETED


def predict(
    specs: Sequence[DropSpec], scripts: Mapping[str, Sequence[str]], timer_horizon: float = 60.0
) -> Prediction:
    """The states a correct engine ends in for these drops and app scripts (apps not in ``scripts`` finish;
    a branch's script must say which side it takes)."""
    data = {s.id: s for s in specs if isinstance(s, DataSpec)}
    apps = {s.id: _App(s) for s in specs if isinstance(s, AppSpec)}
    producers: dict[str, list[tuple[_App, str]]] = {uid: [] for uid in data}
    consumers: dict[str, set[str]] = {uid: set() for uid in data}
    for uid, app in apps.items():
        for d in app.inputs:
            consumers[d].add(uid)
        for port, d in app.outputs:
            producers[d].append((app, port))

    states: dict[str, str] = {}
    for uid in _order(data, apps):
        if uid in apps:
            app = apps[uid]
            _app_state(app, states, scripts.get(uid, (FINISH,)))
            states[uid] = app.state
        else:
            states[uid] = _data_state(producers[uid])
    blocked = frozenset(uid for uid, app in apps.items() if app.state == RUNNING)

    def view(uid: str, states: Mapping[str, str]) -> frozenset[str]:
        """The states a drop may show, given every drop's cascade state (expiry and lifespans have their
        say on COMPLETED data once its consumers have settled)."""
        state = states[uid]
        if uid not in data or state != COMPLETED:
            return _WAITING_DATA if state == INITIALIZED else frozenset({state})
        spec = data[uid]
        if not all(states[c] in _SETTLED for c in consumers[uid]):
            return frozenset({COMPLETED})
        if spec.expire_after_use:
            return frozenset({DELETED})
        if spec.lifespan is not None and spec.lifespan < timer_horizon:
            return frozenset({COMPLETED, DELETED})
        return frozenset({COMPLETED})

    before_cancel = None
    if blocked:
        before_cancel = {uid: view(uid, states) for uid in states}
        states = {uid: (s if s in _SETTLED else CANCELLED) for uid, s in states.items()}
    final = {uid: view(uid, states) for uid in states}
    outcome = "FAILED" if ERROR in states.values() else "CANCELLED" if blocked else "FINISHED"
    return Prediction(
        states=final,
        outcome=outcome,
        before_cancel=before_cancel,
        attempts={uid: app.attempts for uid, app in apps.items()},
        failures=frozenset(uid for uid, app in apps.items() if app.failed_itself),
        blocked=blocked,
    )
