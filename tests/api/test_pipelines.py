"""Pipelines built with the Python API: the logical graph they make, and their results when run here.

Every pipeline is a native logical graph (checked by the translator) and runs on an engine node in the
test's process; the values come back through handles.
"""

from __future__ import annotations

import os

import pytest

from dropflow.api import (
    Data,
    Pipeline,
    PipelineError,
    PipelineFailed,
    branch,
    file,
    input_file,
    loop,
    map,
    memory,
    python,
    reduce,
    scatter,
    shell,
    shm,
)

from apitools import HERE
from pipelinefuncs import (
    add,
    compress,
    concat,
    count_lines,
    describe,
    double,
    fail,
    is_big,
    numbers,
    pid_square,
    ramp,
    raw_size,
    scale,
    split_at,
    total,
)

THIS = os.path.basename(__file__)


def nodes_of(doc: dict, **match) -> list[dict]:
    return [n for n in doc["nodes"] if all(n.get(k) == v for k, v in match.items())]


def test_a_chain_is_a_logical_graph_with_codecs_from_type_hints(tmp_path):
    """
    Three calls, each taking the previous handle, make three python apps and three memory drops whose
    codecs follow the return annotations (list -> json, str -> utf-8); the result nothing consumes is kept.
    """
    with Pipeline("chain") as p:
        t = describe(total(numbers(5)))
    doc = p.build()
    assert doc["format"] == "dropflow/logical-graph" and doc["name"] == "chain"
    assert [n["func"] for n in nodes_of(doc, app="python")] == [
        "pipelinefuncs:numbers",
        "pipelinefuncs:total",
        "pipelinefuncs:describe",
    ]
    assert nodes_of(doc, id="numbers")[0]["kwargs"] == {"n": 5}
    data = {n["id"]: n for n in nodes_of(doc, data="memory")}
    assert data["numbers.return"]["codec"] == "json" and not data["numbers.return"].get("persist")
    assert data["describe.return"] == {
        "id": "describe.return",
        "data": "memory",
        "codec": "utf-8",
        "persist": True,
    }
    run = p.run(workspace=str(tmp_path))
    assert run.ok and t.result() == "<10>"


def test_lists_of_handles_multiple_outputs_and_keep(tmp_path):
    with Pipeline("lists") as p:
        doubled = [double(i) for i in range(4)]
        s = total(doubled)
        low, high = split_at.options(keep=True)(numbers(6), at=3)
        both = add(total(low), total(high))
    p.run(workspace=str(tmp_path))
    assert s.result() == 12
    assert (low.result(), high.result(), both.result()) == ([0, 1, 2], [3, 4, 5], 15)
    with pytest.raises(PipelineError, match=r"was not kept.*keep=True"):
        doubled[0].result()


def test_map_scatter_and_reduce_are_constructs(tmp_path):
    """
    map over a list is a scatter of len(list) copies, map over another map's result runs copy by copy,
    a mapped handle given to a call arrives as the list of all copies, reduce is a gather (also by groups),
    and scatter() cuts a numpy array in shared memory into pieces that worker processes scale in place.
    """
    with Pipeline("constructs") as p:
        squares = map(pid_square, [1, 2, 3, 4])
        plus = map(add, squares, b=1)
        listed = total(plus)
        reduced = reduce(total, plus)
        pairs = reduce(total, plus, width=2)
        dyn = map(double, numbers(3), n=3)
        parts = scatter(ramp(6), 3, kind=shm(expire_after_use=True))
        scaled = concat(map(scale, parts, by=2.0))
    doc = p.build()
    kinds = sorted(
        (c["construct"], c.get("copies") or c.get("width")) for c in doc["nodes"] if "construct" in c
    )
    assert kinds == [("gather", 2), ("gather", 4), ("scatter", 3), ("scatter", 3), ("scatter", 4)]
    run = p.run(workspace=str(tmp_path))
    assert run.ok, run.failures
    assert listed.result() == reduced.result() == 2 + 5 + 10 + 17
    assert pairs.result() == [7, 27]
    assert dyn.result() == [0, 2, 4]
    assert scaled.result() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert run.states[parts.id + "#1"] in ("EXPIRED", "DELETED")


def test_loop_and_branch(tmp_path):
    """A loop variable carried 4 times, then a branch on its result: one side runs, one is SKIPPED."""
    with Pipeline("loop-branch") as p:
        with loop(4) as it:
            x = it.carry(1)
            y = double(x)
            it.update(x, y)
        big, small = branch(is_big, y, limit=10)
        said_big, said_small = describe(big), describe(small)
    p.run(workspace=str(tmp_path))
    assert said_big.result() == "<16>"
    with pytest.raises(PipelineError, match="SKIPPED"):
        said_small.result()


def test_files_in_and_out(tmp_path):
    """
    A file of the user's is an input (its directory allowed for the run); a Python function gets a file's
    path unless its parameter asks for bytes; a command's Data argument is a file it writes; an implied
    memory value that a command reads by path becomes a file.
    """
    source = tmp_path / "lines.txt"
    source.write_text("a\nb\nc\n")
    with Pipeline("files") as p:
        lines = input_file(str(source))
        n = count_lines.options(keep=True)(lines)
        size = raw_size(lines)
        text = describe(n)
        gz = compress(text, out=file("text.gz", persist=True))
        echoed = shell("cat %i[t] %i[src]", t=text, src=lines)
    run = p.run(workspace=str(tmp_path / "ws"))
    assert run.ok, run.failures
    assert (n.result(), size.result(), echoed.result()) == (3, 6, "<3>a\nb\nc\n")
    assert gz.result().endswith("/text.gz") and os.path.getsize(gz.result()) > 0
    assert text.kind == "file"


def test_a_failure_is_raised_from_the_result_with_its_cause(tmp_path):
    with Pipeline("failing") as p:
        bad = describe(fail(3))
    run = p.run(workspace=str(tmp_path))
    assert run.state == "FAILED"
    with pytest.raises(PipelineFailed, match="RuntimeError: failing on 3"):
        bad.result()


def test_functions_stay_plain_functions_outside_a_pipeline():
    """The engine calls the decorated object by name: outside a pipeline, it is the function itself."""
    assert double(21) == 42 and total([1, 2]) == 3


def line_of(text: str) -> int:
    with open(__file__) as f:
        return next(i for i, line in enumerate(f, 1) if text in line)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: shell("echo hi"), "is outside a pipeline"),
        (lambda: double(1, 2, 3), "too many positional arguments"),
        (lambda: double(x=object()), "a graph cannot hold as a constant"),
        (lambda: bool(double(1)), "use dropflow.api.branch"),
        (lambda: [i for i in numbers(3)], "use dropflow.api.map"),
        (lambda: double(map(double, [1, 2])[0]), "not subscriptable"),
        (lambda: map(add, map(double, [1, 2]), map(double, [1, 2, 3])), "cannot reach"),
        (lambda: python(lambda x: x)(1), "is a lambda"),
        (lambda: shell("cat %i[f]", f=file()), "makes an output: write %o[f]"),
        (lambda: shell("cat %i[g]", f=double(1)), "placeholder %[g] names no argument"),
        (lambda: shell("cat {f}", f=double(1)), "write %i[f] (an input)"),
    ],
)
def test_mistakes_are_refused_at_the_users_line(build, message):
    """Each mistake fails at the call that makes it, and the message names that line of this file."""
    needs_pipeline = message != "is outside a pipeline"
    with pytest.raises((PipelineError, TypeError)) as err:
        if needs_pipeline:
            with Pipeline("mistakes"):
                build()
        else:
            build()
    assert message in str(err.value)
    if "subscriptable" not in message:
        assert f"{THIS}:" in str(err.value)


def test_problems_found_when_building_name_the_call():
    """A workflow:// reference to no task is found when the graph is built; the message names its line."""
    with Pipeline("late") as p:
        shell("cat workflow:///nobody/x.txt")  # the line named
    with pytest.raises(PipelineError) as err:
        p.build()
    assert f"{THIS}:{line_of('# the line named')}" in str(err.value)
    assert "there is no task 'nobody'" in str(err.value)


def test_data_options_reach_the_graph():
    with Pipeline("options") as p:
        v = python(lambda_free_identity).options(
            returns=memory(persist=True, lifespan=30.0, name="kept-value"), node="n1", executor="process"
        )(1)
        shell("echo > %o[o]", o=Data("file", path="out.txt", expire_after_use=True))
    doc = p.build()
    kept = nodes_of(doc, id="kept-value")[0]
    assert kept["persist"] is True and kept["lifespan"] == 30.0 and kept["node"] == "n1"
    app = nodes_of(doc, app="python")[0]
    assert app["executor"] == "process" and app["node"] == "n1"
    assert nodes_of(doc, id="shell.o")[0] == {
        "id": "shell.o",
        "data": "file",
        "path": "out.txt",
        "expire_after_use": True,
    }
    assert v.id == "kept-value"


def lambda_free_identity(x: int) -> int:
    return x


def test_the_graph_dir_of_this_module_is_importable():
    assert os.path.isdir(HERE)
