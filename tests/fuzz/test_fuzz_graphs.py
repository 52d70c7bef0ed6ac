"""The graph fuzzer in CI: thousands of hostile graphs through ``dropflow validate``, each handled cleanly.

Settings (environment variables):

- ``DROPFLOW_FUZZ_EXAMPLES``: how many graphs (default 3000, what CI runs: about a minute on 2 cores);
- ``DROPFLOW_FUZZ_SEED``: the random seed (default: a fresh one). The seed is printed at the start, and in
  every failure, so that a failing run is repeated exactly with ``DROPFLOW_FUZZ_SEED=<seed>``.

A case fails on a traceback (any exception out of the command), a hang (10 s for one graph) or a refusal
that does not name its place. Memory is checked too: the resident size may not grow by more than 400 MiB
over the run (sampled after every case, and as the process's peak). The unrolled-size limit is lowered to
50,000 drops for the run: what the fuzzer checks is that every size is counted and refused *before*
anything is allocated; at the default limit, a legitimately large graph would only make the run slow.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys

import psutil
import pytest
from graphfuzz import IMPORT_FLAGS, Case, case, check
from hypothesis import HealthCheck, Phase, given, seed, settings

from conftest import announce

EXAMPLES = int(os.environ.get("DROPFLOW_FUZZ_EXAMPLES") or 3000)
SEED = int(os.environ.get("DROPFLOW_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
MEMORY_GROWTH_MIB = 400


@pytest.mark.timeout(max(300, EXAMPLES // 5))
def test_hostile_graphs_are_refused_cleanly(tmp_path, monkeypatch, request):
    announce(request, f"graph fuzzer: DROPFLOW_FUZZ_SEED={SEED} DROPFLOW_FUZZ_EXAMPLES={EXAMPLES}")
    monkeypatch.setenv("DROPFLOW_MAX_DROPS", "50000")
    path = str(tmp_path / "graph.json")
    me = psutil.Process()
    base_rss = me.memory_info().rss
    base_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seen = {"cases": 0, "refused": 0, "max_rss": base_rss}

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    @given(case())
    def one(c: Case) -> None:
        outcome = check(c, path)
        seen["cases"] += 1
        seen["refused"] += outcome.kind == "refused"
        seen["max_rss"] = max(seen["max_rss"], me.memory_info().rss)
        assert outcome.kind in ("accepted", "refused"), (
            f"{outcome.kind}: {outcome.detail}\n{c!r}\nmutations: {list(c.ops)}\n"
            f"repeat with DROPFLOW_FUZZ_SEED={SEED}"
        )

    one()
    growth = (seen["max_rss"] - base_rss) >> 20
    peak_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_peak) >> 10
    announce(
        request,
        f"graph fuzzer: {seen['cases']} graphs, {seen['refused']} refused, the others accepted; "
        f"RSS grew {growth} MiB (peak {peak_growth} MiB)",
    )
    assert seen["cases"] >= EXAMPLES
    assert growth < MEMORY_GROWTH_MIB and peak_growth < MEMORY_GROWTH_MIB, (growth, peak_growth, SEED)


def test_cases_through_the_real_command(tmp_path, request):
    """A few cases through the installed command in a subprocess, as a user runs it: the same verdict as
    in-process, exit status 0 or 2, and never a traceback."""
    cases: list[Case] = []

    @seed(SEED)
    @settings(
        max_examples=12, database=None, phases=(Phase.generate,), suppress_health_check=list(HealthCheck)
    )
    @given(case())
    def collect(c: Case) -> None:
        cases.append(c)

    collect()
    env = {**os.environ, "DROPFLOW_MAX_DROPS": "50000", "DROPFLOW_WORKSPACE": str(tmp_path / "ws")}
    for i, c in enumerate(cases[:12]):
        path = str(tmp_path / f"case{i}.json")
        expected = check(c, str(tmp_path / "in-process.json"))
        with open(path, "wb") as f:
            f.write(c.data)
        result = subprocess.run(
            [sys.executable, "-m", "dropflow.cli", "validate", path, *IMPORT_FLAGS],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,
        )
        detail = json.dumps(
            {"case": repr(c), "ops": list(c.ops), "seed": SEED, "stderr": result.stderr[-2000:]}
        )
        assert "Traceback" not in result.stderr, detail
        assert result.returncode == {"accepted": 0, "refused": 2}[expected.kind], detail
    assert not (tmp_path / "ws").exists(), "validate made a workspace"
