"""The reference model on its own: the documented rules on small graphs drawn in the docstrings.

``d`` are data drops, ``a`` apps; a script says what each attempt of an app does. These pin the model's
reading of the rules, so that a disagreement with the engine in test_model_based.py is a question about the
engine, not about a model that drifted.
"""

from __future__ import annotations

from model import BLOCK, FALSE, FINISH, RAISE, TRUE, predict

from dropflow.drops import BranchSpec, MemorySpec, NoopSpec
from dropflow.drops.spec import DropSpec


def app(uid: str, ins: list[str], outs: list[str], **kw: object) -> NoopSpec:
    return NoopSpec(
        id=uid,
        inputs={f"i{k}": d for k, d in enumerate(ins)},
        outputs={f"o{k}": d for k, d in enumerate(outs)},
        **kw,
    )


def branch(uid: str, ins: list[str], true: list[str], false: list[str]) -> BranchSpec:
    return BranchSpec(id=uid, func="m:f", inputs={"i": ins}, outputs={"true": true, "false": false})


def data(*uids: str, **kw: object) -> list[DropSpec]:
    return [MemorySpec(id=u, **kw) for u in uids]


def states(prediction: object, *uids: str) -> list[str]:
    return ["/".join(sorted(prediction.states[u])) for u in uids]  # type: ignore[attr-defined]


def test_chain_finishes():
    """d0 -> a1 -> d1 -> a2 -> d2"""
    p = predict([*data("d0", "d1", "d2"), app("a1", ["d0"], ["d1"]), app("a2", ["d1"], ["d2"])], {})
    assert states(p, "d0", "a1", "d1", "a2", "d2") == ["COMPLETED", "FINISHED"] * 2 + ["COMPLETED"]
    assert p.outcome == "FINISHED" and p.before_cancel is None and p.attempts == {"a1": 1, "a2": 1}


def test_failure_propagates_and_is_a_root_cause_once():
    """
    d0 -> a1 (raises) -> d1 -> a2 -> d2      a1 is the failure; a2 never runs; a3 is independent.
      \\-> a3 -> d3
    """
    specs = [
        *data("d0", "d1", "d2", "d3"),
        app("a1", ["d0"], ["d1"]),
        app("a2", ["d1"], ["d2"]),
        app("a3", ["d0"], ["d3"]),
    ]
    p = predict(specs, {"a1": [RAISE]})
    assert states(p, "a1", "d1", "a2", "d2", "a3", "d3") == ["ERROR"] * 4 + ["FINISHED", "COMPLETED"]
    assert p.outcome == "FAILED" and p.failures == {"a1"} and p.attempts["a2"] == 0


def test_tolerance_counts_failed_inputs_per_link():
    """Four inputs (one drop read three times counts thrice), one failed: 0.25 runs the app, 0.2 does not."""
    specs = [*data("ok", "bad", "out"), app("p", [], ["bad"])]
    gather = ["ok", "ok", "ok", "bad"]
    p = predict([*specs, app("g", gather, ["out"], error_tolerance=0.25)], {"p": [RAISE]})
    assert states(p, "g", "out") == ["FINISHED", "COMPLETED"] and p.outcome == "FAILED"
    p = predict([*specs, app("g", gather, ["out"], error_tolerance=0.2)], {"p": [RAISE]})
    assert states(p, "g", "out") == ["ERROR", "ERROR"] and p.failures == {"p"}


def test_branch_skips_its_untaken_side_and_skipping_propagates():
    """
            /-true--> t -> at -> dt \\
    d0 -> br                          -> join -> out    br takes 'false': t, at, dt are SKIPPED, join runs.
            \\-false-> f -> af -> df /
    """
    specs = [
        *data("d0", "t", "f", "dt", "df", "out"),
        branch("br", ["d0"], ["t"], ["f"]),
        app("at", ["t"], ["dt"]),
        app("af", ["f"], ["df"]),
        app("join", ["dt", "df"], ["out"]),
    ]
    p = predict(specs, {"br": [FALSE]})
    assert states(p, "t", "at", "dt") == ["SKIPPED"] * 3
    assert states(p, "f", "af", "df", "join", "out") == [
        "COMPLETED",
        "FINISHED",
        "COMPLETED",
        "FINISHED",
        "COMPLETED",
    ]
    assert p.outcome == "FINISHED"


def test_a_drop_is_skipped_only_if_every_producer_skipped_it():
    """br (true) skips f; a2 also writes f, so f completes. br skips g alone: g is SKIPPED."""
    specs = [*data("d0", "t", "f", "g"), branch("br", ["d0"], ["t"], ["f", "g"]), app("a2", ["d0"], ["f"])]
    p = predict(specs, {"br": [TRUE]})
    assert states(p, "t", "f", "g") == ["COMPLETED", "COMPLETED", "SKIPPED"]


def test_retries_rerun_until_an_attempt_succeeds():
    specs = [*data("d0", "d1"), app("a", ["d0"], ["d1"], retries=2)]
    p = predict(specs, {"a": [RAISE, RAISE, FINISH]})
    assert states(p, "a", "d1") == ["FINISHED", "COMPLETED"] and p.attempts["a"] == 3 and not p.failures
    p = predict(specs, {"a": [RAISE]})
    assert states(p, "a") == ["ERROR"] and p.attempts["a"] == 3 and p.failures == {"a"}


def test_a_blocked_app_is_cancelled_with_all_that_waits_on_it():
    """
    d0 -> slow (blocks) -> d1 -> a2 -> d2      before the cancel: slow RUNNING, d1/a2/d2 waiting, fast done;
      \\-> fast -> d3                           after: the waiting ones CANCELLED, fast untouched.
    """
    specs = [
        *data("d0", "d1", "d2", "d3"),
        app("slow", ["d0"], ["d1"]),
        app("a2", ["d1"], ["d2"]),
        app("fast", ["d0"], ["d3"]),
    ]
    p = predict(specs, {"slow": [BLOCK]})
    assert p.before_cancel is not None and p.blocked == {"slow"}
    assert [sorted(p.before_cancel[u]) for u in ("slow", "d1", "a2", "fast")] == [
        ["RUNNING"],
        ["INITIALIZED", "WRITING"],
        ["NOT_RUN"],
        ["FINISHED"],
    ]
    assert states(p, "slow", "d1", "a2", "d2", "fast", "d3") == ["CANCELLED"] * 4 + ["FINISHED", "COMPLETED"]
    assert p.outcome == "CANCELLED"


def test_a_failure_is_not_hidden_by_a_cancel():
    specs = [*data("d0", "d1", "d2"), app("slow", ["d0"], ["d1"]), app("bad", ["d0"], ["d2"])]
    assert predict(specs, {"slow": [BLOCK], "bad": [RAISE]}).outcome == "FAILED"


def test_expire_after_use_waits_for_every_consumer_however_it_settles():
    """
    d0 -> p (raises) -> d1 --\\
    d0 -> q -> d2 (expire) ---> c      c fails at once (d1 failed); d2 still expires once c and r settled.
                           \\--> r
    """
    specs = [
        *data("d0", "d1"),
        MemorySpec(id="d2", expire_after_use=True),
        app("p", ["d0"], ["d1"]),
        app("q", ["d0"], ["d2"]),
        app("c", ["d1", "d2"], []),
        app("r", ["d2"], []),
    ]
    p = predict(specs, {"p": [RAISE]})
    assert states(p, "c", "r", "d2") == ["ERROR", "FINISHED", "DELETED"]
    p = predict(specs, {"p": [RAISE], "r": [BLOCK]})
    assert p.before_cancel is not None and sorted(p.before_cancel["d2"]) == ["COMPLETED"]
    assert states(p, "r", "d2") == ["CANCELLED", "DELETED"]  # reading 3: cancelled consumers have settled


def test_lifespans_may_or_may_not_run_out_before_the_end():
    specs = [
        MemorySpec(id="short", lifespan=0.001),
        MemorySpec(id="long", lifespan=3600.0),
        app("a", ["short", "long"], []),
    ]
    p = predict(specs, {})
    assert states(p, "short", "long") == ["COMPLETED/DELETED", "COMPLETED"]


def test_apps_without_inputs_run_and_all_skipped_inputs_skip():
    """An app with no input runs (reading 1); an app whose only input is SKIPPED is SKIPPED."""
    specs = [*data("t", "f"), branch("br", [], ["t"], ["f"]), app("a", ["f"], [])]
    p = predict(specs, {"br": [TRUE]})
    assert states(p, "br", "f", "a") == ["FINISHED", "SKIPPED", "SKIPPED"]
