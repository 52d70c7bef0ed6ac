"""Thread apps measured trivially short run inline in the owner; nothing else does.

Handing an app to a pool thread and back costs two thread wake-ups, far more than ``x + 1``. Apps that name no
executor and whose code was measured short (``Timings``) run inline, through the same task and states.
"""

from __future__ import annotations

from dropflow.drops import MemorySpec, PythonSpec
from dropflow.drops.spec import DropSpec
from dropflow.engine.timings import Timings

from conftest import run


def chain(n: int, func: str, **app: object) -> list[DropSpec]:
    """x0 -> f -> x1 -> f -> ... ; every output persists, so the test can read where each app ran."""
    drops: list[DropSpec] = [MemorySpec(id="x0", data=0, codec="json")]
    for i in range(1, n + 1):
        drops.append(
            PythonSpec(id=f"a{i}", func=func, inputs={"x": f"x{i - 1}"}, outputs={"out": f"x{i}"}, **app)  # type: ignore[arg-type]
        )
        drops.append(MemorySpec(id=f"x{i}", persist=True))
    return drops


def test_short_functions_move_inline_after_being_measured(node):
    s = run(node, chain(40, "testfuncs:thread_name"))
    assert s.state == "FINISHED", s.failures()
    where = [s.value(f"x{i}") for i in range(1, 41)]
    assert all(w.startswith("dropflow-app") for w in where[: Timings.PROBES]), where
    assert where[-1].startswith("dropflow-owner"), where
    # Same states as in a thread: RUNNING then FINISHED, outputs through WRITING.
    assert [e.end for e in s.story("a40")] == ["RUNNING", "FINISHED"]
    assert [e.end for e in s.story("x40")] == ["WRITING", "COMPLETED"]


def test_an_explicit_executor_is_never_changed(node):
    s = run(node, chain(30, "testfuncs:thread_name", executor="thread"))
    assert s.state == "FINISHED"
    assert all(s.value(f"x{i}").startswith("dropflow-app") for i in range(1, 31))


def test_slow_functions_stay_in_threads(node):
    """A function taking milliseconds never runs inline: the owner never blocks on it."""
    s = run(node, chain(15, "testfuncs:nap"))
    assert s.state == "FINISHED"
    assert all(s.value(f"x{i}").startswith("dropflow-app") for i in range(1, 16))


def test_an_inline_run_that_turns_slow_goes_back_to_threads():
    """The unit of the rule: measured short -> inline; an inline run over LONG -> probed again in threads,
    and kept there while the average says slow."""
    spec = PythonSpec(id="f", func="m:f")
    t = Timings()
    for _ in range(Timings.PROBES):
        t.record(spec, 1e-6)
    assert t.short(spec)
    t.record(spec, 2 * Timings.LONG, inline=True)
    assert not t.short(spec)
    for _ in range(Timings.PROBES):
        t.record(spec, 1e-6)
    assert not t.short(spec)  # the slow run still weighs on the average
    for _ in range(40):
        t.record(spec, 1e-6)
    assert t.short(spec)


def test_garbage_collection_is_not_counted_as_the_apps_time():
    """A full collection during a run (here forced by the app) does not make the app look slow."""
    import gc

    from dropflow.drops.gcclock import gc_seconds

    junk = [[i] for i in range(300_000)]  # something for the collector to walk
    before = gc_seconds()
    gc.collect()
    assert gc_seconds() > before
    del junk
