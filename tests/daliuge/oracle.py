"""DALiuGE 6.6 as the oracle: its virtualenv (made by .ci/setup/50-daliuge.sh), found, or required in CI.

Nothing of DALiuGE is imported into the test process: its commands and a small driver run with the
oracle's own interpreter, and answers come back as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

from conftest import require

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VENV = os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
    "dropflow",
    "daliuge-6.6.0",
)


def venv_path() -> str:
    return os.environ.get("DROPFLOW_DALIUGE_VENV") or DEFAULT_VENV


@dataclass(frozen=True)
class Oracle:
    """DALiuGE 6.6 in its own virtualenv."""

    venv: str

    @property
    def python(self) -> str:
        return os.path.join(self.venv, "bin", "python")

    @property
    def dlg(self) -> str:
        return os.path.join(self.venv, "bin", "dlg")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PATH"] = os.path.join(self.venv, "bin") + os.pathsep + env.get("PATH", "")
        return env

    def run(self, args: list[str], timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env=self.env(), capture_output=True, text=True, timeout=timeout, **kw)

    def unroll_many(self, paths: list[str], out_dir: str) -> dict[str, dict[str, Any]]:
        """``dlg unroll`` of many graphs in one interpreter: path -> {"ok", "pgt" or "error"}."""
        driver = os.path.join(HERE, "oracle_unroll.py")
        r = self.run([self.python, driver, out_dir, *paths], timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        results = {}
        for i, path in enumerate(paths):
            with open(os.path.join(out_dir, f"{i}.json")) as f:
                results[path] = json.load(f)
        return results


def _available(venv: str) -> bool:
    return os.access(os.path.join(venv, "bin", "dlg"), os.X_OK)


def find_oracle() -> Oracle:
    """The oracle; skips the test where it is missing, fails it in CI."""
    venv = venv_path()
    require("DALiuGE 6.6 (the oracle)", _available(venv), f"no {venv}/bin/dlg: run .ci/setup/50-daliuge.sh")
    return Oracle(venv)
