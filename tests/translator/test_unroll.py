"""Unrolling constructs: each test draws its logical graph and checks the drops and links it unrolls to,
then reruns with renamed, reordered node ids to show the result does not depend on them."""

from __future__ import annotations

import time

from lgtools import app, assert_id_independent, construct, data, doc, edges, into, out, specs_of

from dropflow.translator import read, translate


def test_scatter_feeds_every_copy_and_gather_takes_width_at_a_time() -> None:
    """
    src --> [x] ==scatter s (4)==> work#i --> y#i ==> gather g (width 2) ==> join#k --> z#k

        +-- s ------------+      +-- g --------+
        | work --> y      | ---> | join --> z  |
        +-----------------+      +-------------+
    """
    d = doc(
        [
            app("src", outputs=["o"]),
            data("x"),
            construct("s", "scatter", copies=4),
            app("work", ["i"], ["o"], parent="s"),
            data("y", parent="s"),
            construct("g", "gather", width=2),
            app("join", ["items"], ["o"], parent="g"),
            data("z", parent="g"),
        ],
        [
            out("src", "o", "x"),
            into("x", "work", "i"),
            out("work", "o", "y"),
            into("y", "join", "items"),
            out("join", "o", "z"),
        ],
    )
    ids, es = assert_id_independent(d)
    assert {f"work#{i}" for i in range(4)} <= ids and {"join#0", "join#1", "z#0", "z#1"} <= ids
    assert {("work#2", "in", "i", "x")} <= es
    assert {a for a in es if a[0] == "join#1" and a[1] == "in"} == {
        ("join#1", "in", "items", "y#2"),
        ("join#1", "in", "items", "y#3"),
    }
    join = next(s for s in specs_of(d) if s.id == "join#0")
    assert join.inputs == {"items": ["y#0", "y#1"]}  # a gather port is a list, in scatter order


def test_nested_scatters_give_one_index_per_construct() -> None:
    """
    +-- outer (2) ------------------+
    |  +-- inner (3) ------------+  |
    |  |  a --> d                |  |
    |  +-------------------------+  |
    +-------------------------------+
    """
    d = doc(
        [
            construct("outer", "scatter", copies=2),
            construct("inner", "scatter", copies=3, parent="outer"),
            app("a", outputs=["o"], parent="inner"),
            data("d", parent="inner"),
        ],
        [out("a", "o", "d")],
    )
    ids, es = assert_id_independent(d)
    assert ids == {f"{n}#{i}.{j}" for n in "ad" for i in range(2) for j in range(3)}
    assert ("a#1.2", "out", "o", "d#1.2") in es


def test_groupby_is_a_corner_turn() -> None:
    """
    +-- outer (2) ---------------+
    | +-- inner (3) -----------+ |        +-- by ------------+
    | |  make --> v            | | =====> |  group --> w     |
    | +------------------------+ |        +------------------+
    +----------------------------+

    v#i.j goes to group#j: one group-by instance per inner index, one item per outer index.
    """
    d = doc(
        [
            construct("outer", "scatter", copies=2),
            construct("inner", "scatter", copies=3, parent="outer"),
            app("make", outputs=["o"], parent="inner"),
            data("v", parent="inner"),
            construct("by", "groupby"),
            app("group", ["items"], ["o"], parent="by"),
            data("w", parent="by"),
        ],
        [out("make", "o", "v"), into("v", "group", "items"), out("group", "o", "w")],
    )
    _ids, es = assert_id_independent(d)
    got = {j: sorted(x for a, d_, _p, x in es if a == f"group#{j}" and d_ == "in") for j in range(3)}
    assert got == {j: [f"v#0.{j}", f"v#1.{j}"] for j in range(3)}


def test_loop_carries_state_and_outside_links_reach_the_right_iterations() -> None:
    """
    init --> [s0]                       +-- loop (3) ------------------------+
                \\--(first iteration)--> | step --> state --(carried)--> step  | --(last)--> report
    [param] --(every iteration)-------> |                                    |
                                        +------------------------------------+
    """
    d = doc(
        [
            app("init", outputs=["o"]),
            data("s0"),
            data("param"),
            construct("loop", "loop", iterations=3),
            app("step", ["state", "param"], ["o"], parent="loop"),
            data("state", parent="loop"),
            app("report", ["final"]),
        ],
        [
            out("init", "o", "s0"),
            into("s0", "step", "state"),
            into("param", "step", "param"),
            out("step", "o", "state"),
            into("state", "step", "state", loop=True),
            into("state", "report", "final"),
        ],
    )
    _ids, es = assert_id_independent(d)
    inputs = {i: {(p, x) for a, d_, p, x in es if a == f"step#{i}" and d_ == "in"} for i in range(3)}
    assert inputs[0] == {("state", "s0"), ("param", "param")}
    assert inputs[1] == {("state", "state#0"), ("param", "param")}
    assert inputs[2] == {("state", "state#1"), ("param", "param")}
    assert {x for a, d_, _p, x in es if a == "report"} == {"state#2"}
    step1 = next(s for s in specs_of(d) if s.id == "step#1")
    assert step1.inputs == {"param": "param", "state": "state#0"}  # one value per port, not a list


def test_subgraph_groups_without_multiplying() -> None:
    """
    +-- sg (subgraph) --+
    |  a --> d --> b    |
    +-------------------+
    """
    d = doc(
        [
            construct("sg", "subgraph"),
            app("a", outputs=["o"], parent="sg"),
            data("d", parent="sg"),
            app("b", ["i"], parent="sg"),
        ],
        [out("a", "o", "d"), into("d", "b", "i")],
    )
    ids, _ = assert_id_independent(d)
    assert ids == {"a", "d", "b"}


def test_branch_and_constructs_nest_arbitrarily() -> None:
    """
    +-- s (2) ---------------------------------------+
    |  +-- l (2) ----------------------------------+ |
    |  |  pick --true--> yes                       | |
    |  |       --false-> no                        | |
    |  +-------------------------------------------+ |
    +------------------------------------------------+
    """
    d = doc(
        [
            construct("s", "scatter", copies=2),
            construct("l", "loop", iterations=2, parent="s"),
            {
                "id": "pick",
                "app": "branch",
                "func": "dropflow.drops.apps.daliuge:constant",
                "outputs": ["true", "false"],
                "parent": "l",
            },
            data("yes", parent="l"),
            data("no", parent="l"),
        ],
        [out("pick", "true", "yes"), out("pick", "false", "no")],
    )
    ids, es = assert_id_independent(d)
    assert len(ids) == 12
    assert ("pick#1.0", "out", "false", "no#1.0") in es


def test_implicit_gather_from_a_scatter_lists_every_copy() -> None:
    """
    +-- s (3) --+
    | a --> d   | --> sink
    +-----------+
    """
    d = doc(
        [
            construct("s", "scatter", copies=3),
            app("a", outputs=["o"], parent="s"),
            data("d", parent="s"),
            app("sink", ["all"]),
        ],
        [out("a", "o", "d"), into("d", "sink", "all")],
    )
    assert_id_independent(d)
    sink = next(s for s in specs_of(d) if s.id == "sink")
    assert sink.inputs == {"all": ["d#0", "d#1", "d#2"]}


def test_parameters_set_construct_sizes() -> None:
    """A graph parameter with a default sizes a scatter; --param overrides it, converted to an integer."""
    d = doc(
        [
            construct("s", "scatter", copies={"param": "n"}),
            app("a", outputs=["o"], parent="s"),
            data("d", parent="s"),
        ],
        [out("a", "o", "d")],
        params={"n": {"default": 2, "type": "int"}},
    )
    assert len(specs_of(d)) == 4
    assert len(specs_of(d, {"n": "5"})) == 10


def test_gather_of_300k_inputs_is_linear() -> None:
    """
    +-- s (N) ---+      +-- g (width N) --+
    | a --> d    | ===> | join            |
    +------------+      +-----------------+

    DALiuGE needs minutes for N = 300,000 (a membership test per input); here it is one vector pass. The
    test checks the structure at N = 300,000 and that doubling N does not quadruple the time (a loose
    bound, measured on the same machine, so only quadratic behaviour can fail it).
    """

    def run(n: int) -> tuple[float, int]:
        d = doc(
            [
                construct("s", "scatter", copies=n),
                app("a", outputs=["o"], parent="s"),
                data("d", parent="s"),
                construct("g", "gather", width=n),
                app("join", ["items"], parent="g"),
            ],
            [out("a", "o", "d"), into("d", "join", "items")],
        )
        import json

        t0 = time.perf_counter()
        r = read(json.dumps(d).encode())
        specs = translate(r).specs
        return time.perf_counter() - t0, len(next(s for s in specs if s.id == "join#0").inputs["items"])

    small, n_small = run(150_000)
    big, n_big = run(300_000)
    assert (n_small, n_big) == (150_000, 300_000)
    assert big < 4 * small + 0.5


def test_template_edges_match_spec_links() -> None:
    """The template's edge arrays (what partitioning sees) are exactly the links of the specs."""
    d = doc(
        [
            construct("s", "scatter", copies=3),
            app("a", outputs=["o"], parent="s"),
            data("d", parent="s"),
            app("sink", ["all"]),
        ],
        [out("a", "o", "d"), into("d", "sink", "all")],
    )
    import json

    r = read(json.dumps(d).encode())
    assert r.template is not None
    ids = [s.id for s in translate(r).specs]
    pairs = {(ids[a], ids[b]) for a, b in zip(r.template.src.tolist(), r.template.dst.tolist(), strict=True)}
    spec_pairs = {
        (x if di == "in" else a, a if di == "in" else x) for a, di, _p, x in edges(translate(r).specs)
    }
    assert pairs == spec_pairs


def test_a_clamped_gather_wider_than_anything_takes_everything() -> None:
    """DALiuGE's clamp: a gather wider than what it gathers makes one instance of all of it -- whatever the
    width, 2**63 included (the graph fuzzer's case: numpy's integers overflowed)."""

    def graph(width: int) -> dict:
        return doc(
            [
                construct("s", "scatter", copies=3),
                app("work", [], ["o"], parent="s"),
                data("y", parent="s"),
                construct("g", "gather", width=width, clamp=True),
                app("join", ["items"], [], parent="g"),
            ],
            [out("work", "o", "y"), into("y", "join", "items")],
        )

    for width in (3, 4, 2**63):
        join = [s for s in specs_of(graph(width)) if s.id.startswith("join")]
        assert [s.id for s in join] == ["join#0"] and join[0].inputs == {"items": ["y#0", "y#1", "y#2"]}
