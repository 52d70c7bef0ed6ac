"""The ``dropflow`` command end to end: examples, summaries, exit status, progress, Ctrl-C, validate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from dropflow.cli import COMMANDS, main
from dropflow.drops import MemorySpec, NoopSpec, PythonSpec, ShellSpec

from conftest import poll_for, write_graph

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def dropflow(*args: str, cwd: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dropflow.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


@pytest.mark.parametrize(
    "example,expect",
    [
        ("shell_pipeline.json", "top3 = '998\\n999\\n1000\\n'"),
        ("numpy_shm_pipeline.json", "stats.json"),
        ("branch.json", "large-report = 'large input: 500 lines\\n'"),
    ],
)
def test_examples_run_and_finish(tmp_path, example, expect):
    result = dropflow(
        "run", os.path.join(EXAMPLES, example), "--workspace", str(tmp_path / "ws"), cwd=str(tmp_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": FINISHED in" in result.stdout
    assert expect in result.stdout


def test_numpy_example_result_is_kept_and_correct(tmp_path):
    result = dropflow(
        "run",
        os.path.join(EXAMPLES, "numpy_shm_pipeline.json"),
        "--workspace",
        str(tmp_path),
        "--session-id",
        "np",
        "--json",
        cwd=str(tmp_path),
    )
    summary = json.loads(result.stdout)
    assert summary["state"] == "FINISHED" and summary["persisted"] == [str(tmp_path / "np" / "stats.json")]
    stats = json.loads((tmp_path / "np" / "stats.json").read_text())
    assert stats["rows"] == 2048.0 and stats["std"] > 0
    assert sorted(os.listdir(tmp_path / "np")) == ["stats.json"]  # the rest of the workspace is gone


def test_failing_graph_exits_nonzero_and_names_drop_and_exception(tmp_path):
    path = write_graph(
        tmp_path / "fail.json",
        [
            MemorySpec(id="x", data=1, codec="json"),
            PythonSpec(id="explode", func="testfuncs:boom", inputs={"x": "x"}, outputs={"out": "y"}),
            MemorySpec(id="y"),
            NoopSpec(id="later", inputs={"i": "y"}),
        ],
    )
    apps = os.path.join(ROOT, "tests", "apps")
    result = dropflow(
        "run", path, "--pythonpath", apps, "--workspace", str(tmp_path / "ws"), cwd=str(tmp_path)
    )
    assert result.returncode == 1
    assert ": FAILED in" in result.stdout
    assert "drop 'explode' (python): ValueError: boom: bad value" in result.stdout
    assert "ERROR 3" in result.stdout  # explode, y, later
    assert "Traceback" not in result.stderr


def test_validate_does_not_run(tmp_path):
    path = write_graph(tmp_path / "g.json", [ShellSpec(id="s", command=f"touch {tmp_path}/ran")])
    result = dropflow("validate", path, cwd=str(tmp_path))
    assert result.returncode == 0 and "valid physical graph, 1 drops (1 apps, 0 data)" in result.stdout
    assert not (tmp_path / "ran").exists()


def test_progress_bar_reports_all_drops(tmp_path):
    path = write_graph(
        tmp_path / "g.json",
        [MemorySpec(id="d0")]
        + [
            x
            for i in range(1, 51)
            for x in (
                NoopSpec(id=f"a{i}", inputs={"i": f"d{i - 1}"}, outputs={"o": f"d{i}"}),
                MemorySpec(id=f"d{i}"),
            )
        ],
    )
    result = dropflow(
        "run", path, "--progress", "always", "--workspace", str(tmp_path / "ws"), cwd=str(tmp_path)
    )
    assert result.returncode == 0
    assert "101/101" in result.stderr


def test_ctrl_c_cancels_running_apps_and_cleans_up(tmp_path):
    path = write_graph(
        tmp_path / "g.json",
        [ShellSpec(id="long", command="sleep 100", outputs={"stdout": "m"}), MemorySpec(id="m")],
    )
    ws = tmp_path / "ws"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dropflow.cli",
            "run",
            path,
            "--workspace",
            str(ws),
            "--session-id",
            "interrupted",
        ],
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sleeper = poll_for(
            lambda: [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "sleep"],
            timeout=30,
        )[0]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "CANCELLED" in out and "Traceback" not in err
    assert not psutil.pid_exists(sleeper.pid) or sleeper.status() == psutil.STATUS_ZOMBIE
    assert not (ws / "interrupted").exists()


def test_help_lists_every_command_without_loading_them(tmp_path):
    """Scenario: ``dropflow --help`` lists every command of the index, yet imports none of the command
    modules and nothing of numpy or the engine (they cost half a second); ``dropflow run --help`` loads
    only the run module, and not the engine either."""
    probe = (
        "import sys\n"
        "from dropflow.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('dropflow.', 'numpy')))\n"
        "print('LOADED', ' '.join(loaded))\n"
    )

    def loaded(*args: str) -> tuple[str, set[str]]:
        result = subprocess.run(
            [sys.executable, "-c", probe, *args],
            cwd=str(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        text, _, modules = result.stdout.rpartition("LOADED")
        return text, set(modules.split())

    text, modules = loaded("--help")
    assert all(f"    {name}" in text for name in COMMANDS)
    assert modules == {"dropflow.cli", "dropflow.cli.common"}
    text, modules = loaded("run", "--help")
    assert "--threads N" in text
    assert modules == {"dropflow.cli", "dropflow.cli.common", "dropflow.cli.run"}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_of_the_index_is_registered_by_its_module(name, capsys):
    """Scenario: each command of the index gets its arguments from the module the index names: its --help
    shows the index's help and more arguments than -h. An entry its module does not register fails."""
    with pytest.raises(SystemExit) as stop:
        main([name, "--help"])
    assert stop.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # as argparse wraps it to the terminal's width
    assert COMMANDS[name][1] in out and not out.startswith(f"usage: dropflow {name} [-h] {COMMANDS[name][1]}")
