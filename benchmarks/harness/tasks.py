"""The task functions every system calls, one module for all, standard library only.

- :func:`inc` (``x + 1``) is the task of the ``py`` and ``proc`` workloads with at most one dependency; a task
  with several dependencies (a gather) sums them with :func:`total` (one list argument: dropflow's list port,
  the floors) or :func:`total_of` (one argument per dependency: Dask, Ray and Parsl resolve the futures or
  object references only when they are direct arguments).
- :func:`noop` is the task of the ``noop`` workloads: the engine's bookkeeping, no work.
- :func:`run_true` runs the ``shell`` workloads' command, ``true``, through ``/bin/sh -c`` as dropflow's shell
  apps, DALiuGE's ``BashShellApp`` and Parsl's ``bash_app`` do; Dask and Ray tasks call it, as their users
  would. ``SHELL_COMMAND`` is the command every system runs.

:func:`star_call` says how a system that passes futures (or object references, or keys) as direct arguments
calls task ``i``, and :func:`submit_all` submits a whole DAG that way through one ``submit(func, *args)``
callable: the Ray and Parsl drivers use it, the Dask driver builds its task dict with :func:`star_call`.

Kept free of numpy so that a worker process of a non-numpy workload imports nothing heavy.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = [
    "SHELL_COMMAND",
    "inc",
    "noop",
    "run_true",
    "shell_command",
    "star_call",
    "submit_all",
    "total",
    "total_of",
]

H = TypeVar("H")

SHELL_COMMAND = "true"


def inc(x: int) -> int:
    return x + 1


def total(xs: Sequence[int]) -> int:
    return sum(xs)


def total_of(*xs: int) -> int:
    return sum(xs)


def noop(*_inputs: Any) -> None:
    return None


def shell_command(*_after: Any) -> str:
    """The command line of a shell task, for systems that run it themselves (Parsl's ``bash_app``)."""
    return SHELL_COMMAND


def run_true(*_after: Any) -> int:
    """Run the shell workloads' command; its exit status (0), so that a failure is an exception."""
    subprocess.run(SHELL_COMMAND, shell=True, check=True)
    return 0


def star_call(kind: str, deps: Sequence[int]) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """The function of a task with dependencies ``deps`` and its constant leading arguments; the dependencies'
    results follow them, one argument each.

    >>> [(f.__name__, args) for f, args in (star_call("py", d) for d in ([], [3], [1, 2]))]
    [('inc', (0,)), ('inc', ()), ('total_of', ())]
    """
    if kind in ("py", "proc"):
        if not deps:
            return inc, (0,)
        return (inc, ()) if len(deps) == 1 else (total_of, ())
    if kind == "shell":
        return run_true, ()
    if kind == "noop":
        return noop, ()
    raise ValueError(f"no tasks of kind {kind!r}")


def submit_all(kind: str, deps: Sequence[Sequence[int]], submit: Callable[..., H]) -> list[H]:
    """Submit every task in topological order, passing each the handles of its dependencies; the handles.

    >>> submit_all("py", [[], [0], [0], [1, 2]], lambda f, *a: f(*a))  # evaluated at once
    [1, 2, 2, 4]
    """
    handles: list[H] = []
    for d in deps:
        func, consts = star_call(kind, d)
        handles.append(submit(func, *consts, *[handles[j] for j in d]))
    return handles
