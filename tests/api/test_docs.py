"""The complete programs of docs/python-api.md run as written: the first pipeline and the README's example."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from apitools import REPO

DOC = os.path.join(REPO, "docs", "python-api.md")


def programs() -> list[str]:
    with open(DOC, encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    return [b for b in blocks if 'if __name__ == "__main__":' in b]


@pytest.mark.parametrize("index", range(2))
def test_program_runs(index, tmp_path):
    found = programs()
    assert len(found) == 2
    script = tmp_path / f"program{index}.py"
    script.write_text(found[index])
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.strip()
    if index == 0:
        state, path = out.split()
        assert state == "FINISHED" and path.endswith("/report.txt.gz") and os.path.getsize(path) > 0
    else:
        import json

        assert out.endswith("/stats.json")
        with open(out) as f:
            assert json.load(f)["rows"] == 2048.0
