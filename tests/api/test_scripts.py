"""Functions defined in the script being run (``__main__``): they work in worker processes, or are refused
before anything runs with what to do -- and a function object given to PythonSpec is named, not a traceback.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from dropflow.drops import MemorySpec, PythonSpec

from conftest import run

HEADER = """
from dropflow.api import Pipeline, python

print("SCRIPT RUNS")

@python(executor="process")
def square(x: int) -> int:
    import os
    return x * x

@python
def plus_one(x: int) -> int:
    return x + 1
"""


def script(tmp_path, body: str, name: str = "myscript.py") -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(HEADER + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120, cwd=str(tmp_path)
    )


def test_a_guarded_script_runs_its_functions_in_worker_processes(tmp_path):
    """The worker imports the script as module ``myscript``: its guarded block does not run again there."""
    done = script(
        tmp_path,
        """
        if __name__ == "__main__":
            with Pipeline("s") as p:
                y = plus_one(square(7))
            p.run(workspace="ws")
            print("RESULT", y.result())
        """,
    )
    assert done.returncode == 0, done.stderr
    assert "RESULT 50" in done.stdout
    assert done.stdout.count("SCRIPT RUNS") == 1  # the worker's import printed into the app's output


def test_an_unguarded_script_is_refused_before_running(tmp_path):
    done = script(
        tmp_path,
        """
        with Pipeline("s") as p:
            y = plus_one(square(7))
        p.run(workspace="ws")
        """,
    )
    assert done.returncode != 0
    assert "square is defined in myscript.py, which a worker process imports to find it" in done.stderr
    assert 'is not under `if __name__ == "__main__":`' in done.stderr
    assert not (tmp_path / "ws").exists()  # refused before anything ran


def test_an_unguarded_script_runs_in_threads_without_running_twice(tmp_path):
    done = script(
        tmp_path,
        """
        with Pipeline("s") as p:
            y = plus_one(plus_one(1))
        p.run(workspace="ws")
        print("RESULT", y.result())
        """,
    )
    assert done.returncode == 0, done.stderr
    assert "RESULT 3" in done.stdout and done.stdout.count("SCRIPT RUNS") == 1


def test_functions_of_an_interactive_session_are_refused_for_processes(tmp_path):
    code = HEADER + textwrap.dedent(
        """
        with Pipeline("s") as p:
            square(2)
        try:
            p.run(workspace="ws")
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert "PipelineError square is defined in an interactive session" in done.stdout, done.stderr


def test_pythonspec_takes_a_function(node):
    """PythonSpec(func=f) names f as module:function; a lambda is refused, saying what to do."""
    import json

    spec = PythonSpec(id="dump", func=json.dumps, inputs={"obj": "x"}, outputs={"text": "y"})
    assert spec.func == "json:dumps"
    session = run(node, [MemorySpec(id="x", data=[1], codec="json"), spec, MemorySpec(id="y", codec="utf-8")])
    assert session.state == "FINISHED"
    with pytest.raises(TypeError, match="is a lambda, which another process cannot import by name"):
        PythonSpec(id="f", func=lambda x: x)
