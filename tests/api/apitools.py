"""Helpers of the API tests: the examples (and this folder) on the import path, the CLI, free ports."""

from __future__ import annotations

import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXAMPLES = os.path.join(REPO, "examples")
for _path in (HERE, EXAMPLES):
    if _path not in sys.path:
        sys.path.insert(0, _path)

CLI = [sys.executable, "-c", "import sys; from dropflow.cli import main; sys.exit(main())"]


def dropflow(*args: str, timeout: float = 180, cwd: str | None = None, env: dict[str, str] | None = None):
    """Run the dropflow command; its completed process (text)."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def free_ports(count: int) -> int:
    """A first port of ``count`` consecutive loopback ports that nothing holds now."""
    from dropflow.deploy.localcluster import port_taken

    for _ in range(200):
        base = random.randrange(20000, 40000 - count)
        if not any(port_taken(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free ports")
