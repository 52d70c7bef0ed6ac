"""The drivers of the peers that CI does not install (Ray, Parsl), and the floors, without the peers.

Ray's and Parsl's drivers are run against small stand-ins of the two libraries that evaluate each task when
it is submitted, resolving the object references or futures it was given: what the drivers must get right --
one remote call or app call per task, dependencies passed as direct arguments, the sinks' values read back --
is checked without the libraries. The floors' pool runs the same DAGs on real pools. The harness's
kill-by-PID of what a driver left running is checked on a process this test starts. No time is asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARNESS = os.path.join(ROOT, "benchmarks", "harness")
sys.path.insert(0, HARNESS)
sys.path.insert(0, os.path.join(HARNESS, "drivers"))

import convert  # noqa: E402
import floors  # noqa: E402
import measure  # noqa: E402
import parsl_driver  # noqa: E402
import payload  # noqa: E402
import ray_driver  # noqa: E402
import tasks  # noqa: E402
import workloads  # noqa: E402


class Ref:
    """An object reference (Ray) or a future (Parsl) whose value is known at once."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


def resolve(args: tuple[Any, ...]) -> list[Any]:
    """Direct arguments that are references become their values, as Ray and Parsl do (nested ones do not)."""
    return [a.value if isinstance(a, Ref) else a for a in args]


class FakeRay:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.made: list[str] = []

    def remote(self, func: Any) -> Any:
        self.made.append(func.__name__)

        def call(*args: Any) -> Ref:
            self.calls.append((func.__name__, args))
            return Ref(func(*resolve(args)))

        return SimpleNamespace(remote=call)

    def get(self, refs: Any) -> Any:
        return [r.value for r in refs] if isinstance(refs, list) else refs.value


class FakeParsl:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, tuple[Any, ...]]] = []

    def python_app(self, func: Any) -> Any:
        def call(*args: Any) -> Ref:
            self.calls.append(("python", func.__name__, args))
            return Ref(func(*resolve(args)))

        return call

    def bash_app(self, func: Any) -> Any:
        def call(*args: Any) -> Ref:
            self.calls.append(("bash", func.__name__, args))
            command = func(*resolve(args))
            return Ref(subprocess.run(command, shell=True).returncode)

        return call


@pytest.mark.parametrize("workload", ["py-chain", "py-fan", "py-scatter2", "noop-fan"])
def test_ray_driver_chains_remote_calls_through_references(workload: str, tmp_path: Any) -> None:
    """Scenario: every task is one ``.remote`` call given its dependencies' references as direct arguments
    (the first Python task ``inc(0)``, a gather ``total_of``), one remote function is made per function, and
    the sinks' values come back through ``ray.get``: the expected ones for the Python workloads."""
    files = convert.write_workload(workload, 12, str(tmp_path))
    dag = workloads.read_dag(files["dag"])
    ray = FakeRay()
    out = ray_driver.run(ray, workload, files["dag"])
    assert out["tasks"] == dag.tasks == len(ray.calls)
    assert len(ray.made) == len(set(ray.made))
    if files["expected"] is not None:
        assert out["sinks"] == files["expected"]
    for (name, args), deps in zip(ray.calls, dag.deps, strict=True):
        func, consts = tasks.star_call(workloads.split(workload)[0], deps)
        assert name == func.__name__ and args[: len(consts)] == consts
        assert all(isinstance(a, Ref) for a in args[len(consts) :]) and len(args) == len(consts) + len(deps)
    assert out["load_s"] >= 0 and out["deploy_s"] >= 0 and out["run_s"] >= 0


def test_ray_driver_numpy_goes_through_the_object_store() -> None:
    """Scenario: the numpy pipeline is make_array then checksum of its reference; the checksum is right."""
    ray = FakeRay()
    out = ray_driver.run(ray, "numpy-proc", f"numpy:{2**16}")
    assert [name for name, _ in ray.calls] == ["make_array", "checksum"]
    assert isinstance(ray.calls[1][1][0], Ref)
    assert out["checksum"] == payload.expected(2**16) and out["tasks"] == 2


@pytest.mark.parametrize("workload", ["py-chain", "py-scatter2", "shell-fan"])
def test_parsl_driver_chains_apps_through_futures(workload: str, tmp_path: Any) -> None:
    """Scenario: every task is one call of a python_app (a bash_app running the shell command for the shell
    workloads) given its dependencies' futures; the sinks' results are the expected values, or exit status 0
    of ``true``."""
    files = convert.write_workload(workload, 6, str(tmp_path))
    dag = workloads.read_dag(files["dag"])
    parsl = FakeParsl()
    out = parsl_driver.run(parsl, workload, files["dag"])
    assert out["tasks"] == dag.tasks == len(parsl.calls)
    if workload.startswith("shell"):
        assert {(kind, name) for kind, name, _ in parsl.calls} == {("bash", "shell_command")}
        assert out["sinks"] == [0]
    else:
        assert {kind for kind, _, _ in parsl.calls} == {"python"}
        assert out["sinks"] == files["expected"]
    for (_, _, args), deps in zip(parsl.calls, dag.deps, strict=True):
        assert sum(isinstance(a, Ref) for a in args) == len(deps)


def test_parsl_waits_for_the_htex_workers() -> None:
    """Scenario: the clock starts only once the block's two workers have connected to the interchange."""
    answers = iter([[], [{"worker_count": 1}], [{"worker_count": 2}]])
    executor = SimpleNamespace(connected_managers=lambda: next(answers))
    dfk = SimpleNamespace(executors={"htex": executor})
    assert parsl_driver.wait_for_workers(dfk, "htex", timeout=30) == 2


def test_parsl_configs_are_local_and_on_loopback(tmp_path: Any) -> None:
    """Scenario (with Parsl installed): a thread pool of two, or an HTEX block of two workers on 127.0.0.1,
    run directory where the harness says, no usage tracking."""
    pytest.importorskip("parsl")
    threads = parsl_driver.make_config("threads", str(tmp_path))
    assert threads.executors[0].max_threads == 2 and threads.run_dir == str(tmp_path)
    htex = parsl_driver.make_config("htex", str(tmp_path)).executors[0]
    assert htex.address == "127.0.0.1" and htex.max_workers_per_node == 2 and not threads.usage_tracking


@pytest.mark.parametrize("workload", ["py-chain", "py-fan", "py-scatter2", "shell-fan", "noop-chain"])
def test_the_floor_runs_the_dag_on_two_threads(workload: str, tmp_path: Any) -> None:
    """Scenario: the floor's done-callbacks run every task once, after its dependencies, and end with the
    expected values; a long chain does not recurse through the callbacks."""
    n = 3_000 if workload == "py-chain" else 25
    files = convert.write_workload(workload, n, str(tmp_path))
    deps, funcs = floors.plan(workload, files["dag"])
    kind = workloads.split(workload)[0]
    with ThreadPoolExecutor(2) as pool:
        results = floors.run_pool(pool, kind, deps, funcs, floors.consumers_of(deps))
    sinks = [results[i] for i in workloads.read_dag(files["dag"]).sinks()]
    assert sinks == (files["expected"] or sinks)
    assert floors.run_loop(kind, deps, funcs) == results


def test_the_process_floor_and_a_failing_task(tmp_path: Any) -> None:
    """Scenario: the proc floor runs the functions in worker processes with the same result; a task that
    raises fails the run with its exception instead of hanging."""
    files = convert.write_workload("proc-fan", 8, str(tmp_path))
    deps, funcs = floors.plan("proc-fan", files["dag"])
    with ProcessPoolExecutor(2) as pool:
        results = floors.run_pool(pool, "proc", deps, funcs, floors.consumers_of(deps))
    assert results[-1] == 8
    broken = [*funcs[:-1], int]  # int([1, 1, ...]) raises TypeError in the gather
    with ThreadPoolExecutor(2) as pool, pytest.raises(TypeError):
        floors.run_pool(pool, "py", deps, broken, floors.consumers_of(deps))


def test_processes_left_behind_are_stopped_by_pid() -> None:
    """Scenario: a process a driver listed, still alive after it, is killed by its PID; one that started
    outside the driver's window (a PID reused since) is left alone."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        now = time.time()
        assert measure.stop_pids([proc.pid], started=(now + 10, now + 20)) == []
        assert proc.poll() is None
        assert measure.stop_pids([proc.pid], started=(now - 60, now + 1)) == [proc.pid]
        assert proc.wait(timeout=30) != 0
    finally:
        proc.kill()
        proc.wait()


def test_a_segment_in_use_is_not_a_leftover() -> None:
    """Scenario: a /dev/shm segment that a live process (this one) maps is not counted as left behind; once
    unmapped and still there, it is."""
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(create=True, size=4096)
    name = shm._name.lstrip("/")  # type: ignore[attr-defined]
    try:
        assert measure.unmapped([name]) == []
        shm.close()
        assert measure.unmapped([name]) == [name]
    finally:
        shm.unlink()
