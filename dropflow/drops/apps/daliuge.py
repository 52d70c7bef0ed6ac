"""Built-in equivalents of DALiuGE's simple apps, so that EAGLE graphs using them run unchanged.

Theory of operation
-------------------
DALiuGE ships small apps in ``dlg.apps.simple`` that graphs use as stand-ins and glue: ``HelloWorldApp``,
``RandomArrayApp``, ``PickOne``, ``SleepAndCopyApp``, ``ArrayGatherApp``, ``AverageArraysApp``,
``UrlRetrieveApp``, the generic scatter and gather apps. Each has a kind here with the same
parameters; the translator maps the DALiuGE class onto it. Values travel as DALiuGE writes them: through
the data drop's codec, except that drops whose codec is raw bytes (files) carry pickles, DALiuGE's default
encoding. Two plain functions serve the ``python`` and ``branch`` kinds: :func:`call_code` runs a function
defined in the graph itself (EAGLE's ``func_code``), :func:`constant` is the condition of
``SimpleBranch``.
"""

from __future__ import annotations

import pickle
import threading
import urllib.request
from typing import Annotated, Any, ClassVar, Literal

import msgspec
import numpy as np

from ..codecs import decode, encode
from ..spec import AppSpec, Seconds
from .base import AppError, CancelToken, InputRef, Outcome, OutputRef, Task, format_exception

__all__ = [
    "ArrayGatherSpec",
    "AverageArraysSpec",
    "HelloSpec",
    "NpyGatherSpec",
    "PickOneSpec",
    "RandomArraySpec",
    "ScatterArraySpec",
    "SleepCopySpec",
    "UrlRetrieveSpec",
    "call_code",
    "constant",
    "run_array_gather",
    "run_average_arrays",
    "run_hello",
    "run_npy_gather",
    "run_pick_one",
    "run_random_array",
    "run_scatter_array",
    "run_sleep_copy",
    "run_url_retrieve",
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
    """Splits its input sequence into its first element and the rest (DALiuGE's PickOne, for loops): the
    rest goes to the ``rest_ports``, the first element to every other output."""

    rest_ports: list[str] = msgspec.field(default_factory=lambda: ["rest"])


class SleepCopySpec(AppSpec, tag="sleep_copy", frozen=True, gc=False, kw_only=True):
    """Sleeps, then copies the bytes of its inputs into every output (DALiuGE's SleepAndCopyApp)."""

    seconds: float = 0.0


class ArrayGatherSpec(AppSpec, tag="array_gather", frozen=True, gc=False, kw_only=True):
    """Writes the list of its input values, in input order, to every output (DALiuGE's ArrayGatherApp)."""


class AverageArraysSpec(AppSpec, tag="average_arrays", frozen=True, gc=False, kw_only=True):
    """Averages its input arrays element-wise (DALiuGE's AverageArraysApp)."""

    method: Literal["mean", "median"] = "mean"


class UrlRetrieveSpec(AppSpec, tag="url_retrieve", frozen=True, gc=False, kw_only=True):
    """Writes the content found at ``url`` to every output (DALiuGE's UrlRetrieveApp)."""

    url: str
    timeout: Seconds = 30.0


class ScatterArraySpec(AppSpec, tag="scatter_array", frozen=True, gc=False, kw_only=True):
    """Splits its input array into as many parts as it has output drops (DALiuGE's GenericScatterApp)."""

    #: Write each part's first element rather than the part.
    element: bool = False


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
        if not isinstance(seq, list | tuple | np.ndarray):
            raise AppError(f"pick_one needs a sequence, not a {type(seq).__name__}")
        array = np.asarray(seq)
        if array.ndim == 0:
            array = array.reshape(1)
        value = array[0] if len(array) else None
        rest = array[1:]
        for ref in task.outputs:
            _write(ref, rest if ref.port in spec.rest_ports else value)

    return _guard(task, body)


def run_sleep_copy(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, SleepCopySpec)
    if spec.seconds > 0:
        woken = threading.Event()
        token.on_cancel(woken.set)
        if woken.wait(spec.seconds):
            return Outcome.failed("cancelled")

    def body() -> None:
        writers = [ref.store.writer() for ref in task.outputs]
        try:
            for ref in task.inputs:
                if ref.store is not None:
                    for chunk in ref.store.chunks():
                        for w in writers:
                            w.write(chunk)
        finally:
            for w in writers:
                w.close()

    return _guard(task, body)


def run_array_gather(task: Task, token: CancelToken) -> Outcome:
    def body() -> None:
        values = [_read(r) for r in task.inputs if r.store is not None]
        for ref in task.outputs:
            _write(ref, values)

    return _guard(task, body)


def run_average_arrays(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, AverageArraysSpec)

    def body() -> None:
        rows: list[Any] = []
        for value in (_read(r) for r in task.inputs if r.store is not None):
            if value is None:
                continue
            if isinstance(value, list | tuple | np.ndarray):
                rows.extend(list(value))
            else:
                rows.append(value)
        if not rows:
            raise AppError("average_arrays got no input values")
        average = np.mean(rows, axis=0) if spec.method == "mean" else np.median(rows, axis=0)
        for ref in task.outputs:
            _write(ref, average)

    return _guard(task, body)


def run_url_retrieve(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, UrlRetrieveSpec)

    def body() -> None:
        try:
            with urllib.request.urlopen(spec.url, timeout=spec.timeout) as answer:  # the graph's own URL
                content = answer.read()
        except (OSError, ValueError) as exc:
            raise AppError(f"cannot retrieve {spec.url!r}: {exc}") from None
        for ref in task.outputs:
            w = ref.store.writer()
            try:
                w.write(content)
            finally:
                w.close()

    return _guard(task, body)


def run_scatter_array(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, ScatterArraySpec)

    def body() -> None:
        values = [v for v in (_read(r) for r in task.inputs) if v is not None]
        array = np.asarray(values[0]) if values else np.zeros(0)
        parts = np.array_split(array, max(1, len(task.outputs)))
        for ref, part in zip(task.outputs, parts, strict=False):
            _write(ref, part[0] if spec.element and len(part) else part)

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
