"""Built-in equivalents of DALiuGE's simple apps, so that EAGLE graphs using them run unchanged.

Theory of operation
-------------------
DALiuGE ships small apps in ``dlg.apps.simple`` that graphs use as stand-ins and glue: ``HelloWorldApp``,
``RandomArrayApp``, ``PickOne``, the generic scatter and gather apps. Each has a kind here with the same
parameters; the translator maps the DALiuGE class onto it. Values travel as DALiuGE writes them: through
the data drop's codec, except that drops whose codec is raw bytes (files) carry pickles, DALiuGE's default
encoding. Two plain functions serve the ``python`` and ``branch`` kinds: :func:`call_code` runs a function
defined in the graph itself (EAGLE's ``func_code``), :func:`constant` is the condition of
``SimpleBranch``.
"""

from __future__ import annotations

import pickle
from typing import Annotated, Any, ClassVar

import msgspec
import numpy as np

from ..codecs import decode, encode
from ..spec import AppSpec
from .base import AppError, CancelToken, InputRef, Outcome, OutputRef, Task, format_exception

__all__ = [
    "HelloSpec",
    "NpyGatherSpec",
    "PickOneSpec",
    "RandomArraySpec",
    "ScatterArraySpec",
    "call_code",
    "constant",
    "run_hello",
    "run_npy_gather",
    "run_pick_one",
    "run_random_array",
    "run_scatter_array",
]


class HelloSpec(AppSpec, tag="hello", frozen=True, gc=False, kw_only=True):
    """Writes ``Hello <greet>`` to every output (DALiuGE's HelloWorldApp)."""

    DEFAULT_EXECUTOR: ClassVar[str] = "inline"

    greet: str = "World"


class RandomArraySpec(AppSpec, tag="random_array", frozen=True, gc=False, kw_only=True):
    """Writes an array of random numbers to every output (DALiuGE's RandomArrayApp)."""

    #: Number of elements (at most 2**31 - 1: an array of 16 GiB; it is a stand-in app, not a big-data one).
    size: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 100
    integer: bool = True
    low: float = 0
    high: float = 100
    #: Fixed seed for a reproducible array; none draws a fresh one.
    seed: Annotated[int, msgspec.Meta(ge=0)] | None = None


class PickOneSpec(AppSpec, tag="pick_one", frozen=True, gc=False, kw_only=True):
    """Splits its input sequence into its first element and the rest (DALiuGE's PickOne, for loops)."""

    value_port: str = "value"
    rest_port: str = "rest"


class ScatterArraySpec(AppSpec, tag="scatter_array", frozen=True, gc=False, kw_only=True):
    """Splits its input array into as many parts as it has output drops (DALiuGE's GenericScatterApp)."""


class NpyGatherSpec(AppSpec, tag="npy_gather", frozen=True, gc=False, kw_only=True):
    """Combines its input arrays with a numpy function (DALiuGE's GenericNpyGatherApp)."""

    #: ``sum``, ``prod``, ``max``, ``min``, ``mean``: reduce the stacked inputs; ``concatenate``: join them.
    function: str = "sum"
    axis: int | None = 0


_REDUCERS: dict[str, Any] = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "mean": np.mean}


def _read(ref: InputRef) -> Any:
    if ref.store is None:
        return None
    buf = ref.store.buffer()
    if ref.codec in ("bytes", "path"):
        return pickle.loads(buf) if len(memoryview(buf)) else None
    return decode(ref.codec, buf)


def _write(ref: OutputRef, value: Any) -> None:
    codec = "pickle" if ref.codec in ("bytes", "path") else ref.codec
    w = ref.store.writer()
    try:
        for chunk in encode(codec, value):
            w.write(chunk)
    finally:
        w.close()


def _finish(task: Task) -> Outcome:
    return Outcome(True, stores={ref.drop_id: ref.store for ref in task.outputs})


def _guard(task: Task, body: Any) -> Outcome:
    try:
        body()
    except AppError as exc:
        return Outcome.failed(str(exc))
    except Exception as exc:  # a value of the wrong shape or type: the app fails with the reason
        return Outcome.failed(format_exception(exc, skip_frames=2))
    return _finish(task)


def run_hello(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, HelloSpec)
    text = f"Hello {spec.greet}"

    def body() -> None:
        for ref in task.outputs:
            w = ref.store.writer()
            try:
                for chunk in encode("bytes" if ref.codec in ("bytes", "path") else ref.codec, text):
                    w.write(chunk)
            finally:
                w.close()

    return _guard(task, body)


def run_random_array(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, RandomArraySpec)

    def body() -> None:
        rng = np.random.default_rng(spec.seed)
        if spec.integer:
            value: Any = rng.integers(int(spec.low), int(spec.high), size=spec.size)
        else:
            value = rng.uniform(spec.low, spec.high, size=spec.size)
        for ref in task.outputs:
            _write(ref, value)

    return _guard(task, body)


def run_pick_one(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, PickOneSpec)

    def body() -> None:
        values = [v for v in (_read(r) for r in task.inputs) if v is not None]
        if len(values) != 1:
            raise AppError(f"pick_one needs exactly one input value, got {len(values)}")
        seq = values[0]
        if len(seq) == 0:
            raise AppError("pick_one got an empty sequence")
        for ref in task.outputs:
            _write(ref, seq[0] if ref.port == spec.value_port else seq[1:])

    return _guard(task, body)


def run_scatter_array(task: Task, token: CancelToken) -> Outcome:
    def body() -> None:
        values = [v for v in (_read(r) for r in task.inputs) if v is not None]
        array = np.asarray(values[0]) if values else np.zeros(0)
        parts = np.array_split(array, max(1, len(task.outputs)))
        for ref, part in zip(task.outputs, parts, strict=False):
            _write(ref, part)

    return _guard(task, body)


def run_npy_gather(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, NpyGatherSpec)

    def body() -> None:
        arrays = [np.asarray(v) for v in (_read(r) for r in task.inputs) if v is not None]
        if not arrays:
            raise AppError("npy_gather got no input array")
        if spec.function == "concatenate":
            value: Any = np.concatenate(arrays, axis=spec.axis or 0)
        else:
            reducer = _REDUCERS.get(spec.function)
            if reducer is None:
                raise AppError(
                    f"unknown function {spec.function!r} (use concatenate, {', '.join(_REDUCERS)})"
                )
            value = reducer(np.stack(arrays), axis=spec.axis)
        for ref in task.outputs:
            _write(ref, value)

    return _guard(task, body)


def call_code(code: str, function: str, **kwargs: Any) -> Any:
    """Define ``function`` by running ``code`` (a graph's inline function) and call it with ``kwargs``."""
    namespace: dict[str, Any] = {}
    exec(compile(code, f"<func_code of {function}>", "exec"), namespace)  # the graph's own code, by design
    func = namespace.get(function)
    if not callable(func):
        raise AppError(f"the inline code defines no function {function!r}")
    return func(**kwargs)


def constant(result: bool = True, **inputs: Any) -> bool:
    """A branch condition that ignores its inputs (DALiuGE's SimpleBranch)."""
    return bool(result)
