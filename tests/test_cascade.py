"""The cascade on its own: the Core state machine driven by stimuli, with no threads, files or processes.

Graphs are drawn in the docstrings: ``d`` are data drops, ``a`` are apps.
"""

from __future__ import annotations

import functools
import sys

import pytest

from dropflow.drops import AppState, DropState, InvalidTransition, MemorySpec, NoopSpec, SessionState
from dropflow.drops.spec import DropSpec
from dropflow.engine import Core, EventLog, Workspace, build
from dropflow.engine.graph import AppNode

#: An app the test finishes or fails by hand: a no-op on a thread, which the core hands to the shell (a no-op
#: left inline the core settles by itself, see test_trivial_apps_settle_in_the_core).
App = functools.partial(NoopSpec, executor="thread")


def core_of(drops: list[DropSpec], tmp_path) -> Core:
    return Core(build(drops, Workspace(str(tmp_path), "t")), EventLog())


def run_all(core: Core, fail: dict[str, str] | None = None, skip: dict[str, list[str]] | None = None) -> None:
    """Start and finish every app the core asks for (failing those in ``fail``), as the owner loop would."""
    fail = fail or {}
    skip = skip or {}
    core.start()
    while core.ready:
        app = core.ready.popleft()
        if app.spec.id in fail:
            core.app_failed(app, fail[app.spec.id])
        else:
            core.app_finished(app, skip.get(app.spec.id, ()))


def state(core: Core, uid: str) -> str:
    return str(core.graph.by_id[uid].state)


def chain(n: int) -> list[DropSpec]:
    drops: list[DropSpec] = [MemorySpec(id="d0")]
    for i in range(1, n + 1):
        drops.append(App(id=f"a{i}", inputs={"i": f"d{i - 1}"}, outputs={"o": f"d{i}"}))
        drops.append(MemorySpec(id=f"d{i}"))
    return drops


def test_chain_completes_in_order(tmp_path):
    """d0 -> a1 -> d1 -> a2 -> d2: everything settles and the session FINISHES."""
    core = core_of(chain(2), tmp_path)
    run_all(core)
    assert core.outcome is SessionState.FINISHED
    assert [state(core, u) for u in ("d0", "a1", "d1", "a2", "d2")] == [
        "COMPLETED",
        "FINISHED",
        "COMPLETED",
        "FINISHED",
        "COMPLETED",
    ]
    # The log tells each drop's story with causes: d1 was written by a1 and completed because a1 finished.
    story = [(e.start, e.end, e.cause) for e in core.log.story("d1")]
    assert story == [("INITIALIZED", "WRITING", "a1"), ("WRITING", "COMPLETED", "a1")]


def test_million_drop_chain_does_not_recurse(tmp_path):
    """A chain far longer than the recursion limit cascades iteratively."""
    n = 150_000
    assert n > 100 * sys.getrecursionlimit()
    core = core_of(chain(n), tmp_path)
    run_all(core)
    assert core.outcome is SessionState.FINISHED
    assert state(core, f"d{n}") == "COMPLETED"


def test_error_propagates_downstream_and_fails_session(tmp_path):
    """
    d0 -> a1 -> d1 -> a2 -> d2        a1 fails: d1, a2, d2 are ERROR; the session FAILED.
      \\-> a3 -> d3                   a3 is independent and still finishes.
    """
    drops = [*chain(2), App(id="a3", inputs={"i": "d0"}, outputs={"o": "d3"}), MemorySpec(id="d3")]
    core = core_of(drops, tmp_path)
    run_all(core, fail={"a1": "ValueError: boom"})
    assert core.outcome is SessionState.FAILED
    assert [state(core, u) for u in ("a1", "d1", "a2", "d2")] == ["ERROR"] * 4
    assert state(core, "d3") == "COMPLETED"
    assert core.failures == [("a1", "ValueError: boom")]
    assert core.log.story("a2")[-1].cause == "d1"


def test_error_surfaces_before_slow_inputs(tmp_path):
    """
    d0 -> slow ----> d1 \\
                        -> join -> d3      'fast' fails: join is in ERROR at once, while 'slow' still runs.
    d0 -> fast ----> d2 /
    """
    drops: list[DropSpec] = [
        MemorySpec(id="d0"),
        App(id="slow", inputs={"i": "d0"}, outputs={"o": "d1"}),
        MemorySpec(id="d1"),
        App(id="fast", inputs={"i": "d0"}, outputs={"o": "d2"}),
        MemorySpec(id="d2"),
        App(id="join", inputs={"a": "d1", "b": "d2"}, outputs={"o": "d3"}),
        MemorySpec(id="d3"),
    ]
    core = core_of(drops, tmp_path)
    core.start()
    by = {a.spec.id: a for a in core.ready}
    core.ready.clear()
    core.app_failed(by["fast"], "no")
    assert state(core, "join") == "ERROR" and state(core, "d3") == "ERROR"
    assert state(core, "slow") == "RUNNING" and core.outcome is None
    core.app_finished(by["slow"])
    assert core.outcome is SessionState.FAILED


def test_error_tolerance_lets_an_app_run(tmp_path):
    """Four inputs, one failed: an app tolerating 25% runs and finishes; the session still reports FAILED."""
    drops: list[DropSpec] = [MemorySpec(id="src")]
    for i in range(4):
        drops += [App(id=f"p{i}", inputs={"i": "src"}, outputs={"o": f"d{i}"}), MemorySpec(id=f"d{i}")]
    drops += [
        App(
            id="gather",
            inputs={"xs": [f"d{i}" for i in range(4)]},
            outputs={"o": "out"},
            error_tolerance=0.25,
        ),
        MemorySpec(id="out"),
    ]
    core = core_of(drops, tmp_path)
    run_all(core, fail={"p2": "x"})
    assert state(core, "gather") == "FINISHED" and state(core, "out") == "COMPLETED"
    assert core.outcome is SessionState.FAILED

    strict = [
        d
        if d.id != "gather"
        else App(
            id="gather", inputs={"xs": [f"d{i}" for i in range(4)]}, outputs={"o": "out"}, error_tolerance=0.2
        )
        for d in drops
    ]
    core = core_of(strict, tmp_path)
    run_all(core, fail={"p2": "x"})
    assert state(core, "gather") == "ERROR" and state(core, "out") == "ERROR"


def test_branch_skips_untaken_side_and_finishes(tmp_path):
    """
            /-true--> t -> at -> dt      the branch takes 'true'; f, af, df are SKIPPED
    d0 -> br                            and 'join', whose inputs are dt and df, still runs.
            \\-false-> f -> af -> df
    """
    drops: list[DropSpec] = [
        MemorySpec(id="d0"),
        App(id="br", inputs={"i": "d0"}, outputs={"true": "t", "false": "f"}),
        MemorySpec(id="t"),
        MemorySpec(id="f"),
        App(id="at", inputs={"i": "t"}, outputs={"o": "dt"}),
        MemorySpec(id="dt"),
        App(id="af", inputs={"i": "f"}, outputs={"o": "df"}),
        MemorySpec(id="df"),
        App(id="join", inputs={"a": "dt", "b": "df"}, outputs={"o": "out"}),
        MemorySpec(id="out"),
    ]
    core = core_of(drops, tmp_path)
    run_all(core, skip={"br": ["false"]})
    assert [state(core, u) for u in ("t", "at", "dt")] == ["COMPLETED", "FINISHED", "COMPLETED"]
    assert [state(core, u) for u in ("f", "af", "df")] == ["SKIPPED"] * 3
    assert state(core, "join") == "FINISHED"
    assert core.outcome is SessionState.FINISHED


def test_retries_rerun_a_failed_app(tmp_path):
    core = core_of(
        [
            MemorySpec(id="d0"),
            App(id="a", inputs={"i": "d0"}, outputs={"o": "d1"}, retries=2),
            MemorySpec(id="d1"),
        ],
        tmp_path,
    )
    core.start()
    app = core.ready.popleft()
    core.app_failed(app, "first")
    assert core.ready and core.ready[0] is app and app.state is AppState.RUNNING
    core.app_failed(core.ready.popleft(), "second")
    core.app_finished(core.ready.popleft())
    assert core.outcome is SessionState.FINISHED
    assert [e.end for e in core.log.story("a")] == [
        "RUNNING",
        "NOT_RUN",
        "RUNNING",
        "NOT_RUN",
        "RUNNING",
        "FINISHED",
    ]


def test_cancel_settles_everything_and_kills_running(tmp_path):
    core = core_of(chain(3), tmp_path)
    core.start()
    running = core.ready.popleft()
    core.cancel()
    assert list(core.to_kill) == [running]
    assert core.outcome is SessionState.CANCELLED
    assert state(core, "a1") == "CANCELLED" and state(core, "d3") == "CANCELLED"
    core.app_finished(running)  # a late result of a cancelled app is ignored
    assert state(core, "a1") == "CANCELLED"


def test_a_cancel_does_not_hide_an_earlier_failure(tmp_path):
    """d0 -> bad (fails) -> d1;  d0 -> slow (still running) -> d2: cancelled after bad failed, the session is
    FAILED, not CANCELLED (a failure is never hidden)."""
    drops: list[DropSpec] = [
        MemorySpec(id="d0"),
        App(id="bad", inputs={"i": "d0"}, outputs={"o": "d1"}),
        MemorySpec(id="d1"),
        App(id="slow", inputs={"i": "d0"}, outputs={"o": "d2"}),
        MemorySpec(id="d2"),
    ]
    core = core_of(drops, tmp_path)
    core.start()
    apps = {app.spec.id: app for app in core.ready}
    core.app_failed(apps["bad"], "boom")
    core.cancel()
    assert state(core, "slow") == "CANCELLED" and state(core, "d1") == "ERROR"
    assert core.outcome is SessionState.FAILED


def test_expire_after_use_deletes_as_soon_as_consumers_finish(tmp_path):
    """d0 (expire after use) -> a1, a2: d0 expires when the second consumer finishes, not before."""
    drops: list[DropSpec] = [
        MemorySpec(id="d0", expire_after_use=True),
        App(id="a1", inputs={"i": "d0"}),
        App(id="a2", inputs={"i": "d0"}),
    ]
    core = core_of(drops, tmp_path)
    core.start()
    a1, a2 = core.ready.popleft(), core.ready.popleft()
    core.app_finished(a1)
    assert state(core, "d0") == "COMPLETED" and not core.to_delete
    core.app_finished(a2)
    assert state(core, "d0") == "EXPIRED" and list(core.to_delete) == [core.graph.by_id["d0"]]
    core.deleted(core.to_delete.popleft())
    assert state(core, "d0") == "DELETED"


def test_lifespan_waits_for_running_consumers(tmp_path):
    drops: list[DropSpec] = [MemorySpec(id="d0", lifespan=5.0), App(id="a", inputs={"i": "d0"})]
    core = core_of(drops, tmp_path)
    core.start()
    assert [d.spec.id for d in core.to_time] == ["d0"]
    app = core.ready.popleft()
    core.lifespan_over(core.graph.by_id["d0"])  # the consumer still runs: expiry waits for it
    assert state(core, "d0") == "COMPLETED"
    core.app_finished(app)
    assert state(core, "d0") == "EXPIRED"


def test_invalid_transition_raises(tmp_path):
    core = core_of(chain(1), tmp_path)
    app = core.graph.by_id["a1"]
    assert isinstance(app, AppNode)
    with pytest.raises(InvalidTransition, match="NOT_RUN -> FINISHED"):
        core._to(app, AppState.FINISHED, "test")
    data = core.graph.by_id["d0"]
    with pytest.raises(InvalidTransition):
        core._to(data, DropState.DELETED, "test")


def test_every_app_goes_through_the_shell_whatever_its_kind(tmp_path):
    """No app is settled by a shortcut: an inline no-op is handed to the shell like any app, and its output
    goes through WRITING, so a drop's history does not depend on its producer's kind or executor."""
    drops: list[DropSpec] = [MemorySpec(id="d0")]
    for i in (1, 2):
        drops += [
            NoopSpec(id=f"n{i}", inputs={"i": f"d{i - 1}"}, outputs={"o": f"d{i}"}),
            MemorySpec(id=f"d{i}"),
        ]
    core = core_of(drops, tmp_path)
    core.start()
    assert [a.spec.id for a in core.ready] == ["n1"] and core.outcome is None
    run_all_ready(core)
    assert core.outcome is SessionState.FINISHED
    assert [e.end for e in core.log.story("n1")] == ["RUNNING", "FINISHED"]
    assert [e.end for e in core.log.story("d1")] == ["WRITING", "COMPLETED"]
    core.validate()


def run_all_ready(core: Core) -> None:
    while core.ready:
        core.app_finished(core.ready.popleft())


def test_expire_after_use_when_a_consumer_settled_before_its_input_completed(tmp_path):
    """
    x (fails) -> bad -> y(ERROR) \
                                  c (tolerance 0: ERROR at once when y fails)
    d0 (expire after use) -------/     d0 completes after c has settled
    d0 -> other
    d0 has two consumers; c settled (ERROR) before d0 completed, so only ``other`` still reads it: d0 must
    expire when ``other`` finishes, not be held until the session ends.
    """
    drops: list[DropSpec] = [
        MemorySpec(id="x"),
        App(id="bad", inputs={"i": "x"}, outputs={"o": "y"}),
        MemorySpec(id="y"),
        App(id="slow", outputs={"o": "d0"}),
        MemorySpec(id="d0", expire_after_use=True),
        App(id="c", inputs={"a": "y", "b": "d0"}),
        App(id="other", inputs={"i": "d0"}),
    ]
    core = core_of(drops, tmp_path)
    core.start()
    ready = {a.spec.id: a for a in core.ready}
    core.ready.clear()
    core.app_failed(ready["bad"], "boom")
    assert state(core, "c") == "ERROR"
    core.app_finished(ready["slow"])
    assert state(core, "d0") == "COMPLETED"
    other = core.ready.popleft()
    core.validate()
    core.app_finished(other)
    assert state(core, "d0") == "EXPIRED"
    core.validate()


def test_expire_after_use_with_no_consumer_left_expires_at_once(tmp_path):
    """d0 (expire after use) -> c, where c is already in ERROR (its other input failed): nobody will read d0,
    so it expires as soon as it completes."""
    drops: list[DropSpec] = [
        MemorySpec(id="x"),
        App(id="bad", inputs={"i": "x"}, outputs={"o": "y"}),
        MemorySpec(id="y"),
        App(id="slow", outputs={"o": "d0"}),
        MemorySpec(id="d0", expire_after_use=True),
        App(id="c", inputs={"a": "y", "b": "d0"}),
    ]
    core = core_of(drops, tmp_path)
    core.start()
    ready = {a.spec.id: a for a in core.ready}
    core.ready.clear()
    core.app_failed(ready["bad"], "boom")
    core.app_finished(ready["slow"])
    assert state(core, "d0") == "EXPIRED" and [d.spec.id for d in core.to_delete] == ["d0"]
    core.deleted(core.to_delete.popleft())
    assert core.outcome is SessionState.FAILED
    core.validate()


def test_validate_catches_a_wrong_counter(tmp_path):
    """The invariant check is not vacuous: a counter off by one is reported."""
    from dropflow.engine.core import InvariantError

    core = core_of(chain(2), tmp_path)
    core.start()
    core.validate()
    core.graph.by_id["a2"].waiting += 1  # type: ignore[union-attr]
    with pytest.raises(InvariantError, match="a2"):
        core.validate()


def test_a_runaway_cascade_is_stopped(tmp_path):
    """A loop in the engine (simulated: an app retried for ever behind the core's back) exhausts the budget
    of transitions and raises instead of spinning."""
    from dropflow.engine.core import RunawayCascade

    core = core_of(chain(1), tmp_path)
    core.start()
    app = core.ready.popleft()
    with pytest.raises(RunawayCascade):
        for _ in range(10_000):
            app.attempt = -1  # the bug: the retry count never runs out
            core.app_failed(app, "again")
            core.ready.clear()


def test_a_remote_branch_skips_the_untaken_outputs_held_here(tmp_path):
    """
    node a:  br -true--> t        br runs on node a and takes 'true'. Node c's part of the graph has br
    node c:     \\-false-> f       and f, not t: c's proxy of br links f alone, and c still skips f.
    """
    drops: list[DropSpec] = [
        App(id="br", outputs={"true": "t", "false": "f"}, node="a"),
        MemorySpec(id="f", node="c"),
    ]
    core = Core(build(drops, Workspace(str(tmp_path), "t"), local="c"), EventLog())
    core.start()
    br = core.graph.by_id["br"]
    core.remote_state(br, "RUNNING")
    core.remote_state(br, "FINISHED", ("false",))
    assert state(core, "f") == "SKIPPED"
    core.validate()
