"""The README's promises: its first two commands exist as written, and .ci/run calls the test command."""

from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_commands() -> list[str]:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "the README opens with a sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_setup_run_and_test_commands():
    setup_and_run, test = readme_commands()[:2]
    assert "venv" in setup_and_run and "dropflow run examples/" in setup_and_run
    assert "pytest" in test
    example = setup_and_run.split("dropflow run ")[1].split()[0]
    assert os.path.exists(os.path.join(ROOT, example))


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read()
    assert readme_commands()[1] in ci.splitlines()
