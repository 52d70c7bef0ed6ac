"""The floors: what plain Python needs to run the same dependency shape with the same functions, no engine.

``pool`` (the system ``floor``, the one every ratio is taken against): a ``concurrent.futures`` pool of two
workers -- ``ThreadPoolExecutor(2)`` for the ``py``, ``noop`` and ``shell`` workloads,
``ProcessPoolExecutor(2)`` for ``proc`` -- and dependencies counted in done-callbacks: the callback of a
finished task decrements its consumers' counters and submits those that reach zero itself, so that the worker
finishing a task hands the next one over with no coordinating thread in between. That is the smallest correct
dataflow engine one can write with the standard library. The process pool's start is inside the measured run
(it is on the critical path of a one-shot run). ``numpy``: the producer and consumer on the thread pool;
``numpy-proc``: two warm worker processes (started, and numpy imported, before the clock starts, reported as
``startup_s``) and the array in ``multiprocessing.shared_memory``, filled in place and checksummed in place.

``loop`` (the system ``loop``): every task's function called in topological order in one thread -- no
concurrency at all, the cost of the work itself. Not defined for the process workloads.

Usage: ``python floors.py {loop,pool} WORKLOAD (DAG.json | numpy:NBYTES)``; prints one JSON object with the
phases (load: read the workload file; deploy: build the dependency structures and the pool; run: execute),
what ran, and the sinks' values.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tasks import inc, noop, run_true, total
from workloads import read_dag, split

Task = Callable[..., Any]
#: a task: its function and how its arguments are made from its dependencies' results
Plan = tuple[list[list[int]], list[Task]]


def plan(workload: str, arg: str) -> Plan:
    """The dependencies and functions of a workload's tasks (a gather's function takes a list)."""
    kind, _shape = split(workload)
    if kind == "numpy":
        from payload import checksum, make_array

        nbytes = int(arg.split(":", 1)[1])
        return [[], [0]], [lambda: make_array(nbytes), checksum]
    deps = read_dag(arg).deps
    if kind in ("py", "proc"):
        return deps, [total if len(d) > 1 else inc for d in deps]
    return deps, [run_true if kind == "shell" else noop] * len(deps)


def arguments(kind: str, deps: list[int], results: list[Any]) -> tuple[Any, ...]:
    """A task's arguments: ``inc(0)`` for a first ``py`` task, a gather's list, else its inputs' values."""
    values = [results[j] for j in deps]
    if kind in ("py", "proc"):
        if not deps:
            return (0,)
        return (values,) if len(deps) > 1 else (values[0],)
    return tuple(values)


def consumers_of(deps: list[list[int]]) -> list[list[int]]:
    consumers: list[list[int]] = [[] for _ in deps]
    for i, d in enumerate(deps):
        for j in d:
            consumers[j].append(i)
    return consumers


def run_loop(kind: str, deps: list[list[int]], funcs: list[Task]) -> list[Any]:
    results: list[Any] = [None] * len(deps)
    for i, d in enumerate(deps):
        results[i] = funcs[i](*arguments(kind, d, results))
    return results


def run_pool(
    pool: cf.Executor, kind: str, deps: list[list[int]], funcs: list[Task], consumers: list[list[int]]
) -> list[Any]:
    """Run the DAG on ``pool``; the done-callback of a finished task submits the consumers it made ready.

    A callback added to a future that has already finished runs at once, in the thread adding it, which
    would recurse once per task on a long chain; so a callback that finds itself inside another in the same
    thread only queues its task, and the outer one settles it (a trampoline).
    """
    n = len(deps)
    results: list[Any] = [None] * n
    waiting = [len(d) for d in deps]
    lock = threading.Lock()
    left = [n]
    failed: list[BaseException] = []
    done = threading.Event()
    local = threading.local()

    def submit(i: int) -> None:
        fut = pool.submit(funcs[i], *arguments(kind, deps[i], results))
        fut.add_done_callback(lambda f, i=i: finished(i, f))

    def finished(i: int, fut: cf.Future[Any]) -> None:
        queued: list[tuple[int, cf.Future[Any]]] | None = getattr(local, "queued", None)
        if queued is not None:
            queued.append((i, fut))
            return
        local.queued = queued = [(i, fut)]
        try:
            while queued:
                j, f = queued.pop()
                if f.exception() is not None:
                    failed.append(f.exception())  # type: ignore[arg-type]
                    done.set()
                    return
                results[j] = f.result()
                ready = []
                with lock:
                    for c in consumers[j]:
                        waiting[c] -= 1
                        if waiting[c] == 0:
                            ready.append(c)
                    left[0] -= 1
                    if left[0] == 0:
                        done.set()
                for c in ready:
                    submit(c)
        finally:
            local.queued = None

    for i, d in enumerate(deps):
        if not d:
            submit(i)
    done.wait()
    if failed:
        raise failed[0]
    return results


def numpy_proc(nbytes: int) -> tuple[float, float, int]:
    """The warm shared-memory floor: returns (start-up of the pool, run, checksum)."""
    from multiprocessing import resource_tracker, shared_memory

    from payload import checksum_of_segment, fill_segment, warm

    t0 = time.perf_counter()
    # the process that tracks segments, started before the workers so that they share it (else the first
    # segment starts it, in each process, inside the measured run)
    resource_tracker.ensure_running()
    with cf.ProcessPoolExecutor(2) as pool:
        list(pool.map(warm, range(4)))  # both workers started, numpy imported
        t1 = time.perf_counter()
        shm = shared_memory.SharedMemory(create=True, size=nbytes)
        try:
            pool.submit(fill_segment, shm.name, nbytes).result()
            value = pool.submit(checksum_of_segment, shm.name, nbytes).result()
        finally:
            shm.close()
            shm.unlink()
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, value


def main(argv: list[str]) -> int:
    mode, workload, arg = argv
    kind, _shape = split(workload)
    out: dict[str, Any] = {"mode": mode, "workload": workload}
    if workload == "numpy-proc":
        if mode != "pool":
            raise SystemExit("the loop floor runs in one process: no numpy-proc")
        startup, run_s, value = numpy_proc(int(arg.split(":", 1)[1]))
        out.update(load_s=0.0, deploy_s=0.0, run_s=run_s, startup_s=startup, tasks=2, checksum=value)
        print(json.dumps(out))
        return 0
    if mode == "loop" and kind == "proc":
        raise SystemExit("the loop floor runs in one process: no proc workloads")
    if kind == "numpy":
        import payload  # noqa: F401  (numpy imported before the clock starts, as in the engines)
    t0 = time.perf_counter()
    deps, funcs = plan(workload, arg)
    t1 = time.perf_counter()
    if mode == "loop":
        t2 = time.perf_counter()
        results = run_loop(kind, deps, funcs)
    else:
        consumers = consumers_of(deps)
        pool = cf.ProcessPoolExecutor(2) if kind == "proc" else cf.ThreadPoolExecutor(2)
        t2 = time.perf_counter()
        with pool:
            results = run_pool(pool, kind, deps, funcs, consumers)
    t3 = time.perf_counter()
    out.update(load_s=t1 - t0, deploy_s=t2 - t1, run_s=t3 - t2, tasks=len(deps))
    if kind == "numpy":
        out["checksum"] = results[-1]
    else:
        used = {j for d in deps for j in d}
        out["sinks"] = [results[i] for i in range(len(deps)) if i not in used]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
