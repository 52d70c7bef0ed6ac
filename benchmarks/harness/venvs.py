"""The peers' own virtualenvs, separate from dropflow's, under ``benchmarks/.venvs/`` (git-ignored).

Each environment is a name and its pip requirements. :func:`ensure` creates it with the interpreter running
the harness's base Python and installs the requirements with pip from PyPI; a marker file records what was
installed, so that a later run reuses the environment until the requirements change. :func:`python` is the
environment's interpreter, or ``None`` if it has not been installed (smoke mode never installs anything).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

__all__ = ["ENVS", "VENV_ROOT", "ensure", "python", "version_of"]

VENV_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venvs")

#: name -> requirements
ENVS: dict[str, list[str]] = {
    "daliuge": ["daliuge-engine==6.6.*", "daliuge-translator==6.6.*", "psutil"],
    "dask": ["distributed>=2024.1", "numpy", "psutil"],
    "ray": ["ray>=2.9", "numpy", "psutil"],
    "parsl": ["parsl>=2024.1", "numpy", "psutil"],
    # plots (matplotlib) and profiles (py-spy): tools of the harness, not dependencies of dropflow
    "tools": ["matplotlib>=3.8", "py-spy>=0.3"],
}

MARKER = "dropflow-bench.json"


def _dir(name: str, root: str) -> str:
    return os.path.join(root, name)


def python(name: str, root: str = VENV_ROOT) -> str | None:
    """The environment's interpreter if it is installed with the current requirements."""
    path = os.path.join(_dir(name, root), "bin", "python")
    try:
        with open(os.path.join(_dir(name, root), MARKER)) as f:
            installed = json.load(f)
    except (OSError, ValueError):
        return None
    return path if installed.get("requirements") == ENVS[name] and os.path.exists(path) else None


def ensure(name: str, root: str = VENV_ROOT, log: object = sys.stderr) -> str:
    """Create or update the environment ``name``; return its interpreter."""
    ready = python(name, root)
    if ready:
        return ready
    where = _dir(name, root)
    print(f"bench: installing {name} into {where}: {' '.join(ENVS[name])}", file=log, flush=True)  # type: ignore[call-overload]
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", where], check=True)
    py = os.path.join(where, "bin", "python")
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([py, "-m", "pip", "install", "--quiet", *ENVS[name]], check=True)
    with open(os.path.join(where, MARKER), "w") as f:
        json.dump({"requirements": ENVS[name]}, f)
    return py


def version_of(py: str, distribution: str) -> str:
    """Installed version of a distribution in an interpreter's environment."""
    out = subprocess.run(
        [py, "-c", f"import importlib.metadata as m; print(m.version({distribution!r}))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"
