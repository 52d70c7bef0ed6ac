"""Model-based test of the cascade: random graphs of scripted Python apps, run by the engine and checked
against an independent reference model (tests/engine/model.py).

Scenario, for each example hypothesis draws (tests/engine/model_cases.py):

1. The model predicts every drop's final state, the session's outcome, how many attempts each app makes,
   which apps fail by themselves and -- when an app blocks -- the states just before the cancel.
2. The engine runs the graph with real Python apps (tests/apps/modelfuncs.py) on one node, or split over
   two or three nodes of an island joined by the in-process bus; apps run inline, on threads or in worker
   processes.
3. If an app blocks, the test waits until the engine shows the model's states before the cancel (and every
   app has made its attempts), cancels the session, and lets the blocked threads return.
4. It compares every drop's final state, the outcome, the attempts, the root-cause failures and the
   session errors with the model, runs the engine's invariant checks (``Session.validate``), deletes the
   session, and checks that nothing of it is left: no shared-memory segment, no workspace, no Session or
   Core object once garbage is collected. After the last example, no thread, process, socket, file
   descriptor or segment of the test's nodes is left either.

The test is strict: nothing it checks is relaxed. Settings (environment variables):
``DROPFLOW_MODEL_EXAMPLES`` (default 2000 in CI, 200 elsewhere) and ``DROPFLOW_MODEL_TIMEOUT`` (seconds an
example may take to reach a state, default 15). The hypothesis seed is printed, and added to a failure's
report; ``--hypothesis-seed=N`` replays a run, and a failure prints a ``@reproduce_failure`` blob and the
drawn graph. ``pytest -s`` shows where the time went.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from model import predict
from model_cases import NODES, Case, cases
from model_harness import Cluster

from conftest import LeakCheck, announce

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
EXAMPLES = int(os.environ.get("DROPFLOW_MODEL_EXAMPLES") or (2000 if CI else 200))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: Any) -> Iterator[Cluster]:
    root = str(tmp_path_factory.mktemp("model"))
    leaks = LeakCheck(roots=[os.path.join(root, name) for name in NODES])
    c = Cluster(root)
    try:
        yield c
    finally:
        c.close()
        leaks.check()


def hypothesis_seed(request: Any) -> int:
    given_seed = request.config.getoption("hypothesis_seed", None)
    return int(given_seed) if given_seed is not None else random.SystemRandom().randrange(2**64)


# Half a second per example is ample for a correct engine; a failing run also needs time to shrink (hypothesis
# gives up on a failure that shrinks slowly after five minutes), and a timeout would lose its report.
@pytest.mark.timeout(int(EXAMPLES * 0.5) + 1800)
def test_cascade_matches_model(cluster: Cluster, request: Any) -> None:
    """Every drop ends where the model says, whatever the graph, executors, placement and app outcomes."""
    run_seed = hypothesis_seed(request)
    announce(
        request, f"model-based cascade test: {EXAMPLES} examples, rerun with --hypothesis-seed={run_seed}"
    )

    @seed(run_seed)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(case=cases())
    def check(case: Case) -> None:
        prediction = predict(case.specs("", ""), case.scripts())
        started = time.perf_counter()
        try:
            cluster.check(case, prediction)
        except BaseException as exc:
            exc.add_note(f"case: {case!r}")
            raise
        kind = (
            f"{'big' if len(case) > 60 else 'small'}, {case.nodes} node(s)"
            f"{', cancelled' if prediction.blocked else ''}{', processes' if case.uses_processes() else ''}"
        )
        timings.setdefault(kind, []).append(time.perf_counter() - started)

    timings: dict[str, list[float]] = {}
    try:
        check()
    except BaseException as exc:
        exc.add_note(f"hypothesis seed: rerun with --hypothesis-seed={run_seed}")
        raise
    finally:  # where the time goes (pytest -s, or -rP, shows it), to keep the run within its budget
        for kind, times in sorted(timings.items()):
            mean = sum(times) / len(times)
            print(f"{kind:40} {len(times):5} examples, mean {mean:.3f} s, max {max(times):.3f} s")
