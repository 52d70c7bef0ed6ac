"""Functions that test graphs call as Python function apps."""

from __future__ import annotations

import os
import threading

import numpy as np

_calls: dict[str, int] = {}
_lock = threading.Lock()


def const(value):
    return value


def add(a, b):
    return a + b


def total(xs):
    return sum(xs)


def count(xs):
    return len(xs)


def boom(x=None):
    raise ValueError("boom: bad value")


def flaky(key: str, fails: int):
    """Fails ``fails`` times per key (in this process), then returns the number of calls."""
    with _lock:
        n = _calls[key] = _calls.get(key, 0) + 1
    if n <= fails:
        raise RuntimeError(f"flaky failure {n}")
    return n


def positive(x):
    return x > 0


def pid():
    return os.getpid()


def exists(path):
    return os.path.exists(path)


def fill_array(n: int, out) -> None:
    """Allocate an array of n uint8 inside the output drop and fill it in place."""
    arr = out.array((n,), np.uint8)
    arr[:] = 1
    arr[0] = 11


def touch_first(arr):
    """A consumer in another process: prove it sees the producer's segment, then write through it."""
    assert not arr.flags.owndata  # a view, not a copy
    seen, head = int(arr[0]), int(arr[:1000].sum())
    arr[0] = 99  # visible through every other view of the segment, if and only if nothing was copied
    return {"pid": os.getpid(), "seen": seen, "size": int(arr.size), "sum_head": head}


def read_first(arr, after=None):
    """Runs after touch_first: the write made in the other process must be visible here."""
    return int(arr[0])


def write_text(text: str, out) -> None:
    with open(out.path, "w") as f:
        f.write(text)


def read_text(path):
    with open(path) as f:
        return f.read()


def stream_out(chunks: int, out) -> None:
    for i in range(chunks):
        out.write(bytes([i % 256]) * 1000)


def two_outputs(x):
    return {"left": x - 1, "right": x + 1}


def split(n):
    return [i for i in range(n)]


def random_bytes(n: int, out) -> None:
    """n random bytes, generated inside the output drop."""
    arr = out.array((n,), np.uint8)
    rng = np.random.default_rng(7)
    step = 1 << 24
    for start in range(0, n, step):
        arr[start : start + step] = rng.integers(0, 256, min(step, n - start), dtype=np.uint8)


def crc(arr) -> int:
    import zlib

    return zlib.crc32(memoryview(np.ascontiguousarray(arr)).cast("B"))


def same(a, b, total=None) -> bool:
    """Raise unless the two checksums agree (and, if given, ``total`` is 1 + ... + 1000)."""
    if a != b or not a:
        raise AssertionError(f"checksums differ: {a} != {b}")
    if total is not None and int(total) != 500500:
        raise AssertionError(f"the sum is {total!r}, not 500500")
    return True


def inc(x):
    return x + 1


def forever(*args, **kwargs):
    """Never returns (until the test process ends): Python code that no cancel can interrupt."""
    threading.Event().wait()


_gates: dict[str, threading.Event] = {}


def gate(name: str) -> threading.Event:
    """A named gate that tests open; apps calling ``wait_gate`` block on it (in this process)."""
    with _lock:
        return _gates.setdefault(name, threading.Event())


def wait_gate(name: str, timeout: float = 60.0) -> bool:
    return gate(name).wait(timeout)


def wait_gate_with(x: object, name: str) -> bool:
    """wait_gate for an app with an input."""
    return gate(name).wait(60.0)


def thread_name(x=None):
    """The name of the thread the app runs in (the owner's when it runs inline)."""
    return threading.current_thread().name


def nap(x=None, seconds: float = 0.005):
    import time

    time.sleep(seconds)
    return threading.current_thread().name


def gated_bytes(name: str) -> bytes:
    """Waits for the gate ``name`` (a test opens it), then returns a few bytes."""
    wait_gate(name)
    return b"late"
