"""Fake Slurm commands for the rendering and bootstrap unit tests: tiny executables put first on PATH.

Each fake appends its argument list (one JSON line) to ``calls.jsonl`` in its directory; ``sbatch`` also keeps
a copy of the script it was given. What a fake prints and its exit status are set per test, so a test can
play a scheduler that accepts, refuses, or knows some nodes -- with no Slurm installed.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

TEMPLATE = """#!{python}
import json, os, shutil, sys
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
if os.path.basename(sys.argv[0]) == "sbatch":
    shutil.copyfile(sys.argv[-1], os.path.join(here, "submitted.sbatch"))
stdout = {stdout!r}
if isinstance(stdout, dict):  # by the start of the arguments, e.g. {{"show hostnames": "n1\\n"}}
    args = " ".join(sys.argv[1:])
    stdout = next((text for start, text in stdout.items() if args.startswith(start)), "")
sys.stdout.write(stdout)
sys.stderr.write({stderr!r})
sys.exit({status})
"""


class FakeSlurm:
    """A directory of fake scheduler commands, to prepend to PATH."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)

    def command(
        self, name: str, stdout: str | dict[str, str] = "", stderr: str = "", status: int = 0
    ) -> None:
        """Make ``name`` print ``stdout`` (or, from a dict, the text for its arguments' start) and exit."""
        path = self.dir / name
        path.write_text(TEMPLATE.format(python=sys.executable, stdout=stdout, stderr=stderr, status=status))
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env["PATH"] = f"{self.dir}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env

    def calls(self, name: str | None = None) -> list[list[str]]:
        path = self.dir / "calls.jsonl"
        if not path.exists():
            return []
        calls = [json.loads(line) for line in path.read_text().splitlines()]
        return calls if name is None else [c[1:] for c in calls if c[0] == name]

    @property
    def script(self) -> str:
        return (self.dir / "submitted.sbatch").read_text()
