"""Ray, the way its users run a graph of tasks: ``ray.init`` on this machine and ``@ray.remote`` functions
chained through object references.

``ray.init(num_cpus=2, include_dashboard=False)`` starts a local Ray (GCS, raylet, object store and worker
processes) bound to 127.0.0.1, with its session files in ``--temp-dir`` (so nothing lands in ``/tmp/ray``)
and usage statistics off (no traffic leaves the machine); its start-up is reported apart (``startup_s``), as
Dask's cluster start is. Each task is one ``.remote(...)`` call of a remote version of the :mod:`tasks`
function, given the object references of its dependencies as direct arguments (Ray resolves those before the
call); submitting them all is ``deploy_s``, ``ray.get`` of the sinks is ``run_s``. The numpy pipeline goes
through Ray's object store: ``make_array.remote(n)`` then ``checksum.remote(ref)``. Every task runs in a Ray
worker process.

Before ``ray.shutdown()`` the driver lists its descendants' PIDs (``pids`` in its JSON), so the harness can
stop by PID anything that outlives the shutdown. CPU seconds of the window are this process and every Ray
process (psutil).

Usage: ``python ray_driver.py WORKLOAD (DAG.json | numpy:NBYTES) --temp-dir DIR``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil
from tasks import submit_all
from workloads import read_dag, split


def tree(pid: int | None = None) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_cpu() -> float:
    total = 0.0
    for p in tree():
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def remote_submitter(ray: Any) -> Callable[..., Any]:
    """``submit(func, *args)``: one ``.remote`` call of ``func``'s remote version (made once per function)."""
    remotes: dict[Callable[..., Any], Any] = {}

    def submit(func: Callable[..., Any], *args: Any) -> Any:
        remote = remotes.get(func)
        if remote is None:
            remote = remotes[func] = ray.remote(func)
        return remote.remote(*args)

    return submit


def run(ray: Any, workload: str, arg: str) -> dict[str, Any]:
    """Submit one workload and wait for it; the phases and what came back."""
    kind, _shape = split(workload)
    submit = remote_submitter(ray)
    if kind == "numpy":
        from payload import checksum, make_array  # numpy imported before the clock starts
    t0 = time.perf_counter()
    if kind == "numpy":
        nbytes = int(arg.split(":", 1)[1])
        t1 = time.perf_counter()
        crc = submit(checksum, submit(make_array, nbytes))
        t2 = time.perf_counter()
        value = ray.get(crc)
        t3 = time.perf_counter()
        return {"load_s": t1 - t0, "deploy_s": t2 - t1, "run_s": t3 - t2, "tasks": 2, "checksum": value}
    dag = read_dag(arg)
    t1 = time.perf_counter()
    refs = submit_all(kind, dag.deps, submit)
    t2 = time.perf_counter()
    sinks = ray.get([refs[i] for i in dag.sinks()])
    t3 = time.perf_counter()
    return {"load_s": t1 - t0, "deploy_s": t2 - t1, "run_s": t3 - t2, "tasks": len(refs), "sinks": sinks}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload")
    p.add_argument("arg", help="DAG.json or numpy:NBYTES")
    p.add_argument("--temp-dir", required=True, help="Ray's session directory (short: it holds sockets)")
    p.add_argument("--cpus", type=int, default=2)
    args = p.parse_args(argv)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # no usage report sent anywhere
    import ray

    t0 = time.perf_counter()
    ray.init(
        num_cpus=args.cpus,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=os.path.abspath(args.temp_dir),
        logging_level="WARNING",
        log_to_driver=False,
    )
    pids: list[int] = []
    try:
        startup = time.perf_counter() - t0
        cpu0 = tree_cpu()
        out = run(ray, args.workload, args.arg)
        out["cpu_window_s"] = tree_cpu() - cpu0
        out["startup_s"] = startup
    finally:
        pids = [q.pid for q in tree()[1:]]
        ray.shutdown()
    out["pids"] = pids
    out["version"] = ray.__version__
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
