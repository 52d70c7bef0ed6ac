"""Floors: the least plain Python needs to run the same shapes with the same functions.

Usage: ``python floors.py KIND N`` with KIND one of thread-chain, thread-fan, process-chain, process-fan,
shell-chain, numpy; prints one JSON object ``{"seconds": ..., "check": ...}``. The time runs from creating
the pool (so a process pool's start is counted, as it is on dropflow's critical path) to the last result.

threads / processes: ``concurrent.futures`` with 2 workers; dependencies are counted in done-callbacks, which
submit what became ready -- a finishing worker hands the next task over with no coordinator in between.
shell: ``subprocess.run("true", shell=True)`` one after another. numpy: two warm worker processes, a producer
filling a 64 MiB array in ``multiprocessing.shared_memory`` and a consumer taking its CRC-32.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import subprocess
import sys
import threading
import time
import zlib
from multiprocessing import resource_tracker, shared_memory
from typing import Any

import numpy as np
from funcs import inc


def graph_on(pool: cf.Executor, n: int, chain: bool) -> int:
    """Run n inc tasks as a chain (each on the previous result) or a fan (all on 0); return the sum."""
    done = threading.Event()
    lock = threading.Lock()
    left = [n]
    total = [0]

    def finished(fut: cf.Future[int], i: int) -> None:
        value = fut.result()
        if chain and i + 1 < n:
            pool.submit(inc, value).add_done_callback(lambda f, i=i + 1: finished(f, i))
        with lock:
            total[0] += value
            left[0] -= 1
            if left[0] == 0:
                done.set()

    if chain:
        pool.submit(inc, 0).add_done_callback(lambda f: finished(f, 0))
    else:
        for i in range(n):
            pool.submit(inc, 0).add_done_callback(lambda f, i=i: finished(f, i))
    done.wait()
    return total[0]


def _attach(name: str) -> shared_memory.SharedMemory:
    """Attach without the resource tracker's claim (Python 3.11 would unlink the segment at worker exit)."""
    shm = shared_memory.SharedMemory(name=name)
    resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    return shm


def _produce(name: str, nbytes: int) -> None:
    shm = _attach(name)
    np.ndarray((nbytes // 8,), np.uint64, buffer=shm.buf)[:] = np.arange(nbytes // 8, dtype=np.uint64)
    shm.close()


def _consume(name: str, nbytes: int) -> int:
    shm = _attach(name)
    value = zlib.crc32(shm.buf[:nbytes])
    shm.close()
    return value


def _warm(_: int) -> int:
    return 0


def numpy_floor(nbytes: int) -> tuple[float, int]:
    with cf.ProcessPoolExecutor(2) as pool:
        list(pool.map(_warm, range(4)))  # warm: both workers started and importing numpy
        t0 = time.perf_counter()
        shm = shared_memory.SharedMemory(create=True, size=nbytes)
        try:
            pool.submit(_produce, shm.name, nbytes).result()
            value = pool.submit(_consume, shm.name, nbytes).result()
        finally:
            shm.close()
            shm.unlink()
        return time.perf_counter() - t0, value


def main(kind: str, n: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    check: Any
    if kind in ("thread-chain", "thread-fan"):
        with cf.ThreadPoolExecutor(2) as pool:
            check = graph_on(pool, n, kind.endswith("chain"))
    elif kind in ("process-chain", "process-fan"):
        with cf.ProcessPoolExecutor(2) as pool:
            check = graph_on(pool, n, kind.endswith("chain"))
    elif kind == "shell-chain":
        for _ in range(n):
            subprocess.run("true", shell=True, check=True)
        check = n
    elif kind == "numpy":
        seconds, check = numpy_floor(n)
        return {"seconds": seconds, "check": check}
    else:
        raise SystemExit(f"unknown floor {kind}")
    return {"seconds": time.perf_counter() - t0, "check": check}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
