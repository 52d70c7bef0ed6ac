"""Python function apps: ``module:function`` called with its inputs as keyword arguments.

Theory of operation
-------------------
Each input port becomes the keyword argument of the same name, decoded by the port's codec (the data drop's
codec unless the app overrides it in ``codecs``); a port that lists several drops gives a list. A parameter
named after an *output* port receives an :class:`Output` through which the function writes that port
itself: streaming ``write``, a filesystem ``path``, or ``array`` to fill a numpy array allocated inside the
drop (zero copy into shared memory). The return value goes to the remaining output ports: to the only one,
or, with several, from a dict keyed by port; a port listing several drops takes a sequence, one item per
drop. ``kwargs`` in the spec add constant arguments.

The callable is resolved and its signature checked against the ports when the graph is validated, so a
missing function or an argument no port provides is refused before anything runs.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np

from ..codecs import CodecError, decode, encode
from ..errors import Problem
from ..spec import AppSpec
from ..stores import Writer
from .base import AppError, CancelToken, InputRef, Outcome, OutputRef, Task, format_exception

__all__ = ["Output", "PythonSpec", "call_function", "check_callable", "resolve_callable", "run"]


class PythonSpec(AppSpec, tag="python", frozen=True, gc=False, kw_only=True):
    """Calls a Python function."""

    USER_CODE: ClassVar[bool] = True

    #: ``package.module:function`` (the function part may be dotted, e.g. ``mod:Class.method``).
    func: str
    #: Constant keyword arguments.
    kwargs: dict[str, Any] = {}


@functools.lru_cache(maxsize=1024)
def resolve_callable(path: str) -> Callable[..., Any]:
    """Import ``module:attr.attr`` and return the callable, or raise :class:`AppError` saying why not."""
    module_name, sep, attr_path = path.partition(":")
    if not sep or not module_name or not attr_path:
        raise AppError(f"{path!r} is not of the form 'module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code is reported, not raised
        raise AppError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppError(f"module {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(obj):
        raise AppError(f"{path!r} is a {type(obj).__name__}, not a callable")
    return obj  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=1024)
def _parameters(func: Callable[..., Any]) -> tuple[frozenset[str], frozenset[str], bool]:
    """(all named parameters, required ones, accepts **kwargs)."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return frozenset(), frozenset(), True  # builtins without a signature: accept anything
    named, required, var_kw = set(), set(), False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            named.add(p.name)
            if p.default is p.empty:
                required.add(p.name)
    return frozenset(named), frozenset(required), var_kw


def check_callable(spec: AppSpec, func_path: str, kwargs: dict[str, Any]) -> list[Problem]:
    """Problems with the callable of an app: unresolvable, or arguments that ports do not match."""
    found = _signature_problems(func_path, tuple(spec.inputs), tuple(spec.outputs), tuple(kwargs))
    if not found:
        return []
    where = spec.label()
    return [Problem(where, field, message) for field, message in found]


@functools.lru_cache(maxsize=4096)
def _signature_problems(
    func_path: str, inputs: tuple[str, ...], outputs: tuple[str, ...], kwargs: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    """(field, message) of each problem; cached, since large graphs repeat one function with one set of
    port names many thousands of times."""
    try:
        func = resolve_callable(func_path)
    except AppError as exc:
        return (("func", str(exc)),)
    named, required, var_kw = _parameters(func)
    provided = set(inputs) | set(kwargs)
    problems = [
        ("kwargs", f"argument {k!r} is also an input port") for k in sorted(set(kwargs) & set(inputs))
    ]
    if not var_kw:
        problems += [
            ("inputs", f"{func_path} has no parameter for input port {p!r}")
            for p in sorted(set(inputs) - named)
        ]
        problems += [("kwargs", f"{func_path} has no parameter {k!r}") for k in sorted(set(kwargs) - named)]
    output_params = named & set(outputs)
    missing = sorted(required - provided - output_params)
    if missing:
        problems.append(
            ("func", f"{func_path} needs argument(s) {', '.join(missing)} that no port or kwarg gives")
        )
    return tuple(problems)


class Output:
    """An output port handed to the function: write it yourself instead of returning a value."""

    def __init__(self, refs: list[OutputRef]) -> None:
        self._refs = refs
        self._writers: list[Writer] | None = None
        self.used = False

    @property
    def path(self) -> str:
        """Filesystem path of the port's drop (files, directories, shared-memory segments)."""
        paths = self.paths
        if len(paths) != 1:
            raise AppError(f"output port {self._refs[0].port!r} has {len(paths)} drops; use .paths")
        return paths[0]

    @property
    def paths(self) -> list[str]:
        self.used = True
        out = []
        for ref in self._refs:
            p = ref.store.fspath()
            if p is None:
                raise AppError(f"output {ref.drop_id!r} is a {ref.kind} drop and has no path")
            out.append(p)
        return out

    def write(self, chunk: Any) -> None:
        """Stream bytes into every drop of the port."""
        self.used = True
        if self._writers is None:
            self._writers = [ref.store.writer() for ref in self._refs]
        for w in self._writers:
            w.write(chunk)

    def array(self, shape: int | tuple[int, ...], dtype: Any = np.float64) -> np.ndarray[Any, Any]:
        """Allocate an array inside the port's (single) drop; fill it in place."""
        if len(self._refs) != 1:
            raise AppError(f"output port {self._refs[0].port!r} has several drops; array() needs one")
        self.used = True
        shape_t = (shape,) if isinstance(shape, int) else tuple(shape)
        return self._refs[0].store.array(shape_t, dtype)

    def close(self) -> None:
        for w in self._writers or ():
            w.close()


def _decode_input(ref: InputRef) -> Any:
    if ref.store is None:
        return None
    if ref.codec == "path":
        path = ref.store.fspath()
        if path is None:
            raise AppError(f"input {ref.drop_id!r} is a {ref.kind} drop and has no path")
        return path
    try:
        return decode(ref.codec, ref.store.buffer())
    except CodecError as exc:
        raise AppError(f"input {ref.drop_id!r} (port {ref.port!r}, codec {ref.codec}): {exc}") from None


def input_arguments(inputs: Iterable[InputRef]) -> dict[str, Any]:
    """Keyword arguments from input ports; list ports collect their drops' values in order."""
    args: dict[str, Any] = {}
    for ref in inputs:
        if ref.many:
            values = args.setdefault(ref.port, [])
            if ref.store is not None:  # a tolerated failed input is left out of the list
                values.append(_decode_input(ref))
        else:
            args[ref.port] = _decode_input(ref)
    return args


def _write_value(refs: list[OutputRef], value: Any) -> None:
    if refs[0].many:
        if not isinstance(value, list | tuple) or len(value) != len(refs):
            raise AppError(
                f"output port {refs[0].port!r} has {len(refs)} drops; return a sequence of that length"
            )
        pairs = list(zip(refs, value, strict=True))
    else:
        pairs = [(ref, value) for ref in refs]
    for ref, item in pairs:
        if ref.codec == "path":
            if item is not None:
                raise AppError(
                    f"output {ref.drop_id!r} takes a path; write the file instead of returning a value"
                )
            continue
        try:
            chunks = encode(ref.codec, item)
        except CodecError as exc:
            raise AppError(f"output {ref.drop_id!r} (port {ref.port!r}, codec {ref.codec}): {exc}") from None
        ref.store.put(chunks)


def _group(refs: list[OutputRef]) -> dict[str, list[OutputRef]]:
    ports: dict[str, list[OutputRef]] = {}
    for ref in refs:
        ports.setdefault(ref.port, []).append(ref)
    return ports


def call_function(
    task: Task, func_path: str, kwargs: dict[str, Any]
) -> tuple[Any, dict[str, list[OutputRef]]]:
    """Call the function; return its value and the output ports it did not write itself."""
    func = resolve_callable(func_path)
    named = _parameters(func)[0]
    args = input_arguments(task.inputs)
    if kwargs:
        args = {**kwargs, **args}
    ports = _group(task.outputs)
    if named.isdisjoint(ports):  # the common case: the function returns its outputs
        return func(**args), ports
    handles = {port: Output(refs) for port, refs in ports.items() if port in named}
    args.update(handles)
    try:
        value = func(**args)
    finally:
        for h in handles.values():
            h.close()
    return value, {port: refs for port, refs in ports.items() if port not in handles}


def store_return(value: Any, ports: dict[str, list[OutputRef]]) -> None:
    """Write a function's return value to the output ports it did not write itself."""
    if not ports:
        return
    if len(ports) == 1:
        (refs,) = ports.values()
        _write_value(refs, value)
        return
    if not isinstance(value, dict) or set(value) != set(ports):
        raise AppError(
            f"with output ports {', '.join(sorted(ports))} the function must return a dict with exactly "
            f"those keys, not {type(value).__name__}"
        )
    for port, refs in ports.items():
        _write_value(refs, value[port])


def run(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, PythonSpec)
    try:
        value, rest = call_function(task, spec.func, spec.kwargs)
        store_return(value, rest)
    except AppError as exc:
        return Outcome.failed(str(exc))
    except Exception as exc:  # the user's function failed: report its exception and frames
        return Outcome.failed(format_exception(exc, skip_frames=2))
    return Outcome(True, stores={ref.drop_id: ref.store for ref in task.outputs})
