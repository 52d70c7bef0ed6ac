"""Built-in apps that need no user code: no-op, sleep, copy, and branch.

Theory of operation
-------------------
``noop`` writes nothing and runs in the owner loop by default: it is the unit of scale benchmarks and a
barrier that joins dependencies. ``sleep`` waits (cancellably) and ``copy`` streams the bytes of its inputs,
concatenated, into every output. ``branch`` calls a Python predicate on its inputs and takes its ``true`` or
``false`` output port; the drops of the other port are SKIPPED, and skipping propagates downstream. With a
single input drop, the taken side receives a copy of that input's bytes, so a branch can route data.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any, ClassVar

import msgspec

from ..spec import AppSpec
from .base import AppError, CancelToken, Outcome, Task, format_exception
from .pyfunc import input_arguments, resolve_callable

__all__ = [
    "BranchSpec",
    "CopySpec",
    "NoopSpec",
    "SleepSpec",
    "run_branch",
    "run_copy",
    "run_noop",
    "run_sleep",
]


class NoopSpec(AppSpec, tag="noop", frozen=True, gc=False, kw_only=True):
    """Does nothing; its outputs complete empty."""

    DEFAULT_EXECUTOR: ClassVar[str] = "inline"


class SleepSpec(AppSpec, tag="sleep", frozen=True, gc=False, kw_only=True):
    """Sleeps, then completes its outputs empty."""

    seconds: Annotated[float, msgspec.Meta(ge=0.0)] = 1.0


class CopySpec(AppSpec, tag="copy", frozen=True, gc=False, kw_only=True):
    """Copies the bytes of its inputs (concatenated, in port order) into every output."""


class BranchSpec(AppSpec, tag="branch", frozen=True, gc=False, kw_only=True):
    """Takes output port ``true`` or ``false`` by a predicate; the other side is SKIPPED."""

    USER_CODE: ClassVar[bool] = True

    #: ``module:function`` called with the inputs (as for Python apps); its truth picks the side.
    func: str
    kwargs: dict[str, Any] = {}


def run_noop(task: Task, token: CancelToken) -> Outcome:
    return Outcome(True)


_sleepers = threading.Event()  # never set: waiting on it is an interruptible sleep


def run_sleep(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, SleepSpec)
    remaining = spec.seconds
    step = 0.05
    while remaining > 0 and not token.cancelled:
        _sleepers.wait(min(step, remaining))
        remaining -= step
    return Outcome.failed("cancelled") if token.cancelled else Outcome(True)


def _copy_into(task: Task, out_refs: list[object]) -> None:
    writers = [ref.store.writer() for ref in task.outputs if ref in out_refs]
    try:
        for ref in task.inputs:
            if ref.store is None:
                continue
            for chunk in ref.store.chunks():
                for w in writers:
                    w.write(chunk)
    finally:
        for w in writers:
            w.close()


def run_copy(task: Task, token: CancelToken) -> Outcome:
    _copy_into(task, list(task.outputs))
    return Outcome(True, stores={ref.drop_id: ref.store for ref in task.outputs})


def run_branch(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, BranchSpec)
    try:
        func = resolve_callable(spec.func)
        taken = "true" if func(**spec.kwargs, **input_arguments(task.inputs)) else "false"
    except AppError as exc:
        return Outcome.failed(str(exc))
    except Exception as exc:  # the predicate failed
        return Outcome.failed(format_exception(exc, skip_frames=1))
    untaken = "false" if taken == "true" else "true"
    taken_refs: list[object] = [ref for ref in task.outputs if ref.port == taken]
    if len([r for r in task.inputs if r.store is not None]) == 1:
        _copy_into(task, taken_refs)
    return Outcome(
        True,
        stores={ref.drop_id: ref.store for ref in task.outputs if ref.port == taken},
        skip_ports=(untaken,),
    )
