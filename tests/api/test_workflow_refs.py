"""DAGonStar's workflow:// references: dependencies, staged files, and clean-up by reference counting.

Every task runs in a working directory of its own; ``workflow:///A/path`` in a command is a file that task A
wrote there, staged into a drop of its own that the referring task reads. The drop expires when its last
referring task has finished; the working directory as soon as its task ends.
"""

from __future__ import annotations

import os

import pytest

from dropflow.api import Pipeline, PipelineError, shell

from apitools import EXAMPLES  # noqa: F401  (the import path)


def test_the_dagonstar_demo_runs_and_cleans_up(tmp_path):
    import dagonstar_dataflow as demo

    run = demo.demo.run(workspace=str(tmp_path))
    assert run.ok, run.failures
    assert demo.d.result() == "from B\nfrom A\nfrom C\nfrom A\n"
    # B and C both wrote f2.txt, each in its own directory; each staged file expired after its readers.
    for staged in ("A/output/f1.txt", "B/f2.txt", "C/f2.txt"):
        assert run.states[staged] in ("EXPIRED", "DELETED"), (staged, run.states[staged])
    for task in "ABCD":
        assert run.states[f"{task}.scratch"] in ("EXPIRED", "DELETED")
    assert os.listdir(tmp_path) == []  # nothing kept on disk: the results were values


def test_a_file_reference_is_the_dependency_and_a_file_of_the_consumer(tmp_path):
    """
    The reader starts after the writer (the link is the dependency), finds the file at a path of its own
    (quoted or not), and a task's file is also a result for Python (kept when nothing else reads it).
    """
    with Pipeline("refs") as p:
        late = shell('cat "workflow:///writer/out/data.txt" workflow:///writer/out/data.txt', name="reader")
        writer = shell("sleep 0.2; mkdir out; echo payload > out/data.txt", name="writer")
        kept = writer.file("out/data.txt")
    p.run(workspace=str(tmp_path))
    assert late.result() == "payload\npayload\n"
    with open(kept.result()) as f:
        assert f.read() == "payload\n"


def test_a_reference_to_a_file_never_written_fails_naming_it(tmp_path):
    with Pipeline("missing") as p:
        shell("echo nothing", name="A")
        b = shell("cat workflow:///A/result.txt", name="B")
    run = p.run(workspace=str(tmp_path))
    assert run.state == "FAILED"
    ((uid, message),) = run.failures
    assert uid == "A" and "task A did not write result.txt" in message
    assert "workflow:///A/result.txt" in message
    with pytest.raises(PipelineError):
        b.result()


def test_workflows_refer_to_each_other_by_name(tmp_path):
    """Sub-workflows are namespaces (DAGonStar's meta-workflows): workflow://WF/TASK/... crosses them."""
    with Pipeline("meta") as p:
        with p.workflow("first"):
            shell("echo one > x.txt", name="A")
        with p.workflow("second"):
            shell("echo two > x.txt", name="A")
            both = shell(
                "cat workflow://first/A/x.txt workflow:///A/x.txt workflow://meta/top/x.txt", name="B"
            )
        shell("echo three > x.txt", name="top")
    doc = p.build()
    assert {n["id"] for n in doc["nodes"] if n.get("construct") == "subgraph"} == {"first", "second"}
    p.run(workspace=str(tmp_path))
    assert both.result() == "one\ntwo\nthree\n"


def test_a_directory_reference_stages_the_whole_tree(tmp_path):
    with Pipeline("tree") as p:
        shell("mkdir -p out/sub; echo a > out/a; echo b > out/sub/b", name="make")
        listing = shell("cd workflow:///make/out/ && find . -type f | sort && cat sub/b", name="list")
    p.run(workspace=str(tmp_path))
    assert listing.result() == "./a\n./sub/b\nb\n"
