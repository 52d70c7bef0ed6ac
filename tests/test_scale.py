"""A million drops run to FINISHED in one ``dropflow run`` (timing them is the benchmark's job)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import generate


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["chain", "fan"])
def test_million_drops_finish(tmp_path, shape):
    path = tmp_path / f"{shape}.json"
    path.write_bytes(generate.SHAPES[shape](1_000_000))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dropflow.cli",
            "run",
            str(path),
            "--json",
            "--workspace",
            str(tmp_path / "ws"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "FINISHED"
    assert summary["drops"] >= 999_999
    assert sum(summary["by_state"].values()) == summary["drops"]
    assert set(summary["by_state"]) == {"COMPLETED", "FINISHED"}
