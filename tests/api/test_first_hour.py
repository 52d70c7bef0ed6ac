"""The first hour of a new user, smoothed: one test per friction the issue lists.

Each scenario is what a user did, and what dropflow now answers instead of what it answered before.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from dropflow.drops import FileSpec, MemorySpec, PythonSpec, ShellSpec

from apitools import EXAMPLES, REPO, dropflow
from conftest import run, write_graph


def test_validate_imports_from_the_graphs_folder():
    """``dropflow validate examples/branch.json`` (a README command) imported nothing from examples/."""
    done = dropflow("validate", os.path.join(EXAMPLES, "branch.json"), cwd="/")
    assert done.returncode == 0, done.stderr
    assert "valid physical graph" in done.stdout


def test_validate_takes_pythonpath(tmp_path):
    """A graph whose module lives elsewhere validates with --pythonpath, and says what to do without it."""
    shutil.copy(os.path.join(EXAMPLES, "branch.json"), tmp_path / "branch.json")
    without = dropflow("validate", str(tmp_path / "branch.json"))
    assert without.returncode == 2
    assert "--pythonpath DIR" in without.stderr  # the hint of an import that fails
    done = dropflow("validate", str(tmp_path / "branch.json"), "--pythonpath", EXAMPLES)
    assert done.returncode == 0, done.stderr


def test_relative_input_path_gets_a_hint(tmp_path):
    """
    A root file given as ``data.txt`` next to the graph is looked for in the new session's workspace; run
    and validate refuse it before running, saying which absolute path and --allow-path to give.
    """
    (tmp_path / "data.txt").write_text("hi\n")
    graph = write_graph(
        tmp_path / "g.json",
        [
            FileSpec(id="in", path="data.txt"),
            ShellSpec(id="c", command="cat %i[i]", inputs={"i": "in"}, outputs={"stdout": "o"}),
            MemorySpec(id="o", codec="utf-8", persist=True),
        ],
    )
    for command in ("validate", "run"):
        done = dropflow(command, graph, cwd=str(tmp_path))
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"give \"path\": '{tmp_path}/data.txt' and --allow-path {tmp_path}" in done.stderr


def test_missing_relative_root_says_what_relative_means(node):
    """At run time too (daemons have no cwd to look in), a missing relative root explains itself."""
    session = run(node, [FileSpec(id="in", path="nowhere.txt"), MemorySpec(id="m")])
    (failure,) = session.failures()
    assert "a relative path is inside the session's workspace" in failure.message


def test_a_file_given_as_bytes_hints_at_the_path_codec(node):
    """A function that opens its input fails on bytes; the failure says how to receive the path."""
    session = run(
        node,
        [
            ShellSpec(id="gen", command="echo hi > %o[out]", outputs={"out": "f"}),
            FileSpec(id="f"),
            PythonSpec(id="use", func="printing:wants_path", inputs={"data": "f"}, outputs={"return": "n"}),
            MemorySpec(id="n"),
        ],
    )
    (failure,) = session.failures()
    assert 'give the app codecs {"data": "path"}' in failure.message


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_prints_are_captured_per_app(node, executor):
    """
    print() from a Python app, in a thread or a worker process, goes to the app's output (kept with the
    session), not to the terminal; a failing app's prints come with its error.
    """
    session = run(
        node,
        [
            MemorySpec(id="n", data=3, codec="json"),
            PythonSpec(
                id="talk", func="printing:chatty", executor=executor, inputs={"n": "n"}, outputs={"r": "r"}
            ),
            MemorySpec(id="r", codec="json"),
            PythonSpec(id="fail", func="printing:noisy_failure", executor=executor, inputs={"n": "n"}),
        ],
    )
    out, err = session.outputs.get("talk")
    assert "CHATTY line 0\nCHATTY line 1\nCHATTY line 2" in out and "CHATTY on stderr" in err
    (failure,) = session.failures()
    assert "ValueError: bad n" in failure.message and "NOISY before the failure" in failure.message


def test_a_successful_commands_unlinked_output_is_kept(node):
    """A shell app with no stdout port used to send its output to /dev/null; now its tail is kept."""
    session = run(node, [ShellSpec(id="say", command="echo kept words; echo and a warning >&2")])
    assert session.outputs.get("say") == ("kept words\n", "and a warning\n")


def test_run_keeps_the_progress_bar_clean_and_counts_in_integers(tmp_path):
    """
    ``dropflow run --progress always``: the bar on stderr carries no app's print and counts whole drops;
    the prints appear in the summary, under the app that printed them.
    """
    graph = write_graph(
        tmp_path / "g.json",
        [
            MemorySpec(id="n", data=2, codec="json"),
            *[
                PythonSpec(id=f"talk{i}", func="printing:chatty", inputs={"n": "n"}, outputs={"r": f"r{i}"})
                for i in range(3)
            ],
            *[MemorySpec(id=f"r{i}", codec="json") for i in range(3)],
        ],
    )
    here = os.path.dirname(os.path.abspath(__file__))
    done = dropflow(
        "run", graph, "--progress", "always", "--pythonpath", here, "--workspace", str(tmp_path / "ws")
    )
    assert done.returncode == 0, done.stderr
    assert "CHATTY" not in done.stderr
    assert "7/7" in done.stderr and ".0/" not in done.stderr
    assert "output of 3 app(s):" in done.stdout and "    talk0:\n      CHATTY line 0" in done.stdout


def test_kept_lists_only_files_that_completed_and_exist(tmp_path):
    """The summary's "kept:" named files of drops in ERROR, and files that did not exist."""
    graph = write_graph(
        tmp_path / "g.json",
        [
            ShellSpec(id="good", command="echo ok > %o[out]", outputs={"out": "kept"}),
            FileSpec(id="kept", path="kept.txt", persist=True),
            ShellSpec(id="bad", command="echo half > %o[out]; exit 3", outputs={"out": "broken"}),
            FileSpec(id="broken", path="broken.txt", persist=True),
            ShellSpec(id="lazy", command="true", outputs={"out": "never"}),
            FileSpec(id="never", path="never.txt", persist=True),
        ],
    )
    done = dropflow("run", graph, "--workspace", str(tmp_path / "ws"), "--json")
    summary = json.loads(done.stdout)
    assert [os.path.basename(p) for p in summary["persisted"]] == ["kept.txt"]


def test_packaging_has_one_version_a_license_a_changelog_and_a_dev_extra():
    import tomllib

    import dropflow

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert "version" not in project and "version" in project["dynamic"]
    from importlib.metadata import version

    assert version("dropflow") == dropflow.__version__
    with open(os.path.join(REPO, "LICENSE")) as f:
        assert "BSD 3-Clause License" in f.read()
    with open(os.path.join(REPO, "CHANGELOG.md")) as f:
        assert dropflow.__version__ in f.read()
    extras = project["optional-dependencies"]
    names = {e.split(">")[0].split("[")[0] for e in extras["test"]}
    assert not names & {"ruff", "mypy"}
    assert {"ruff", "mypy"} <= {e.split(">")[0] for e in extras["dev"]}
