"""Parsl, the way its users run a graph: a ``Config``, ``parsl.load`` and apps chained through their futures.

Two executors, each the usual local configuration of its kind:

- ``threads``: ``ThreadPoolExecutor(max_threads=2)``: apps run in threads of this process.
- ``htex``: ``HighThroughputExecutor`` with a ``LocalProvider`` block of one node and two workers
  (``max_workers_per_node=2``), the interchange and workers on 127.0.0.1; apps run in the worker processes
  and their arguments and results travel over ZeroMQ. The driver waits for the block's workers to connect
  before the clock starts: that start-up, like ``parsl.load`` itself, is reported apart (``startup_s``), as
  Dask's cluster start is.

Each task is one call of a ``python_app`` wrapping the :mod:`tasks` function (``bash_app`` of
:func:`tasks.shell_command` for the shell workloads, Parsl's own way to run a command), given the futures of
its dependencies as arguments; Parsl starts a task once those futures are done. Submitting every task is
``deploy_s``; waiting for the sinks' results is ``run_s``. The numpy pipeline is ``make_array`` then
``checksum`` of its future. Parsl's run directory (logs, submit scripts) is ``--run-dir``.

The DataFlowKernel is used as a context manager, whose exit cleans up (the block's workers and the
interchange are stopped); the driver lists its descendants' PIDs before that (``pids`` in its JSON), so the
harness can stop by PID anything that outlives the cleanup.

Usage: ``python parsl_driver.py {threads,htex} WORKLOAD (DAG.json | numpy:NBYTES) --run-dir DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil
from tasks import shell_command, submit_all
from workloads import read_dag, split

WORKERS = 2


def tree() -> list[psutil.Process]:
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def tree_cpu() -> float:
    total = 0.0
    for p in tree():
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def make_config(executor: str, run_dir: str) -> Any:
    from parsl.config import Config

    if executor == "threads":
        from parsl.executors import ThreadPoolExecutor

        chosen: Any = ThreadPoolExecutor(label="threads", max_threads=WORKERS)
    elif executor == "htex":
        from parsl.executors import HighThroughputExecutor
        from parsl.providers import LocalProvider

        chosen = HighThroughputExecutor(
            label="htex",
            address="127.0.0.1",
            loopback_address="127.0.0.1",
            max_workers_per_node=WORKERS,
            provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),
        )
    else:
        raise ValueError(f"no Parsl executor {executor!r}")
    return Config(executors=[chosen], run_dir=run_dir, usage_tracking=0)


def app_submitter(parsl: Any, kind: str) -> Callable[..., Any]:
    """``submit(func, *args)`` as one call of ``func`` made a Parsl app (once per function); a shell task is
    a ``bash_app`` of :func:`tasks.shell_command`."""
    apps: dict[Callable[..., Any], Any] = {}

    def submit(func: Callable[..., Any], *args: Any) -> Any:
        app = apps.get(func)
        if app is None:
            if kind == "shell":
                app = apps[func] = parsl.bash_app(shell_command)
            else:
                app = apps[func] = parsl.python_app(func)
        return app(*args)

    return submit


def run(parsl: Any, workload: str, arg: str) -> dict[str, Any]:
    kind, _shape = split(workload)
    submit = app_submitter(parsl, kind)
    if kind == "numpy":
        from payload import checksum, make_array  # numpy imported before the clock starts
    t0 = time.perf_counter()
    if kind == "numpy":
        nbytes = int(arg.split(":", 1)[1])
        t1 = time.perf_counter()
        crc = submit(checksum, submit(make_array, nbytes))
        t2 = time.perf_counter()
        value = crc.result()
        t3 = time.perf_counter()
        return {"load_s": t1 - t0, "deploy_s": t2 - t1, "run_s": t3 - t2, "tasks": 2, "checksum": value}
    dag = read_dag(arg)
    t1 = time.perf_counter()
    futures = submit_all(kind, dag.deps, submit)
    t2 = time.perf_counter()
    sinks = [futures[i].result() for i in dag.sinks()]
    t3 = time.perf_counter()
    return {"load_s": t1 - t0, "deploy_s": t2 - t1, "run_s": t3 - t2, "tasks": len(futures), "sinks": sinks}


def wait_for_workers(dfk: Any, label: str, timeout: float = 120.0) -> int:
    """Block until the HTEX block's workers have connected; their number."""
    executor = dfk.executors[label]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = sum(m.get("worker_count", 0) for m in executor.connected_managers())
        if workers >= WORKERS:
            return workers
        time.sleep(0.05)
    raise TimeoutError(f"the HighThroughputExecutor's workers did not connect in {timeout:g} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("executor", choices=["threads", "htex"])
    p.add_argument("workload")
    p.add_argument("arg", help="DAG.json or numpy:NBYTES")
    p.add_argument("--run-dir", required=True)
    args = p.parse_args(argv)
    import parsl

    t0 = time.perf_counter()
    pids: list[int] = []
    with parsl.load(make_config(args.executor, args.run_dir)) as dfk:
        try:
            workers = wait_for_workers(dfk, "htex") if args.executor == "htex" else WORKERS
            startup = time.perf_counter() - t0
            cpu0 = tree_cpu()
            out = run(parsl, args.workload, args.arg)
            out["cpu_window_s"] = tree_cpu() - cpu0
            out.update(startup_s=startup, workers=workers)
        finally:
            pids = [q.pid for q in tree()[1:]]
    parsl.clear()
    out["pids"] = pids
    out["version"] = parsl.__version__
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
