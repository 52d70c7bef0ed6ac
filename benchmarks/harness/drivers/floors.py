"""The two floors: what plain Python needs to run the same dependency shape, with no engine at all.

``loop``: call every task's function in topological order, passing it its dependencies' results.
``threads``: a ``concurrent.futures.ThreadPoolExecutor`` (default size) and dependency counting: a task's
done-callback queues it; the main thread takes finished tasks from the queue, decrements their consumers'
counters and submits those that reach zero -- the smallest correct dataflow engine one can write with the
standard library.

Usage: ``python floors.py {loop,threads} (DAG.json | numpy:NBYTES)``; prints one JSON object with the phases
(load: read the workload file; deploy: build the dependency structures; run: execute) and what ran.
"""

from __future__ import annotations

import json
import queue
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from payload import checksum, make_array, noop
from workloads import read_dag

Task = Callable[..., Any]


def load(arg: str) -> tuple[list[list[int]], list[Task]]:
    if arg.startswith("numpy:"):
        nbytes = int(arg.split(":", 1)[1])
        return [[], [0]], [lambda: make_array(nbytes), checksum]
    dag = read_dag(arg)
    return dag.deps, [noop] * len(dag.deps)


def run_loop(deps: list[list[int]], funcs: list[Task]) -> list[Any]:
    results: list[Any] = [None] * len(deps)
    for i, d in enumerate(deps):
        results[i] = funcs[i](*[results[j] for j in d])
    return results


def consumers_of(deps: list[list[int]]) -> list[list[int]]:
    consumers: list[list[int]] = [[] for _ in deps]
    for i, d in enumerate(deps):
        for j in d:
            consumers[j].append(i)
    return consumers


def run_threads(deps: list[list[int]], funcs: list[Task], consumers: list[list[int]]) -> list[Any]:
    """Run the DAG on a thread pool; this thread counts dependencies and submits what became ready.

    Done-callbacks only queue the finished task: submitting consumers from inside a callback would recurse
    (a callback added to a future that has already finished runs at once, in the thread adding it) and
    overflow the stack on a long chain.
    """
    results: list[Any] = [None] * len(deps)
    waiting = [len(d) for d in deps]
    finished: queue.SimpleQueue[tuple[int, Future[Any]]] = queue.SimpleQueue()
    with ThreadPoolExecutor() as pool:

        def submit(i: int) -> None:
            fut = pool.submit(funcs[i], *[results[j] for j in deps[i]])
            fut.add_done_callback(lambda f, i=i: finished.put((i, f)))

        for i, d in enumerate(deps):
            if not d:
                submit(i)
        for _ in range(len(deps)):
            i, fut = finished.get()
            results[i] = fut.result()  # re-raises a task's exception
            for c in consumers[i]:
                waiting[c] -= 1
                if waiting[c] == 0:
                    submit(c)
    return results


def main(argv: list[str]) -> int:
    mode, arg = argv
    t0 = time.perf_counter()
    deps, funcs = load(arg)
    t1 = time.perf_counter()
    consumers = consumers_of(deps) if mode == "threads" else []
    t2 = time.perf_counter()
    results = run_threads(deps, funcs, consumers) if mode == "threads" else run_loop(deps, funcs)
    t3 = time.perf_counter()
    out: dict[str, Any] = {"load_s": t1 - t0, "deploy_s": t2 - t1, "run_s": t3 - t2, "tasks": len(deps)}
    if arg.startswith("numpy:"):
        out["checksum"] = results[-1]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
