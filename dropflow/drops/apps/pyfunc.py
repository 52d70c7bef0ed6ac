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
missing function or an argument no port provides is refused before anything runs. ``func`` may also be given
as the function itself when a spec is made in Python: :func:`callable_ref` turns it into its
``module:function`` name, or refuses (a lambda, a nested function) with a message that says what to do. A
function of the script being run (``__main__``) is named by the script's module name, so that worker
processes, which import the script as a module, find it too.

What the function prints is captured (:mod:`.capture`), and its tail returned as the app's output.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import msgspec
import numpy as np

from ..codecs import CodecError, decode, encode
from ..errors import Problem
from ..spec import AppSpec
from ..stores import Writer
from .base import AppError, CancelToken, InputRef, Outcome, OutputRef, Task, format_exception
from .capture import Printed, captured

__all__ = [
    "Output",
    "PythonSpec",
    "call_function",
    "callable_ref",
    "check_callable",
    "main_module_name",
    "resolve_callable",
    "run",
]


def main_module_name() -> str | None:
    """The name under which other processes import the script running as ``__main__`` (None: there is none,
    e.g. an interactive session). ``python -m pkg.mod`` gives ``pkg.mod``; ``python path/script.py`` gives
    ``script``, which imports from the script's directory."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name)
    path = getattr(main, "__file__", None)
    if not path:
        return None
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem if stem.isidentifier() else None


def callable_ref(func: Any) -> str:
    """The ``module:qualified.name`` of a function that can be imported by name, or TypeError saying why not.

    A function of the ``__main__`` script is named after the script's module (see :func:`main_module_name`),
    and that name is made to stand for the running script in this process, so that resolving it here does
    not run the script a second time.
    """
    if isinstance(func, str):
        return func
    name = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    if not callable(func) or not isinstance(name, str) or not isinstance(module, str):
        raise TypeError(f"func must be a 'module:function' string or a function, not {type(func).__name__}")
    if "<lambda>" in name or "<locals>" in name:
        what = "a lambda" if "<lambda>" in name else "a function defined inside another function"
        raise TypeError(
            f"{name} is {what}, which another process cannot import by name: "
            "define it with def at the top level of a module (or of your script)"
        )
    if module == "__main__":
        script = main_module_name()
        if script is not None:
            main = sys.modules["__main__"]
            known = sys.modules.setdefault(script, main)
            if known is main:
                return f"{script}:{name}"
    return f"{module}:{name}"


class PythonSpec(AppSpec, tag="python", frozen=True, gc=False, kw_only=True):
    """Calls a Python function."""

    USER_CODE: ClassVar[bool] = True

    #: ``package.module:function`` (the function part may be dotted, e.g. ``mod:Class.method``).
    func: str
    #: Constant keyword arguments.
    kwargs: dict[str, Any] = {}

    def __post_init__(self) -> None:
        if type(self.func) is not str:  # given the function itself, in Python
            msgspec.structs.force_setattr(self, "func", callable_ref(self.func))


@functools.lru_cache(maxsize=1024)
def resolve_callable(path: str) -> Callable[..., Any]:
    """Import ``module:attr.attr`` and return the callable, or raise :class:`AppError` saying why not."""
    module_name, sep, attr_path = path.partition(":")
    if not sep or not module_name or not attr_path:
        raise AppError(f"{path!r} is not of the form 'module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        hint = ""
        if exc.name == module_name.partition(".")[0]:
            hint = (
                "; put its directory on the Python path (dropflow run and validate --pythonpath DIR, "
                "dropflow cluster up --pythonpath DIR, or $PYTHONPATH for the daemons)"
            )
        raise AppError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}{hint}") from None
    except Exception as exc:  # any import-time failure of user code is reported, not raised
        raise AppError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            hint = ""
            if module_name == "__main__":
                hint = (
                    f" ({attr_path!r} was defined in the script that built the graph, which this process "
                    "does not run: define it in a module, or run it in a thread with executor 'thread')"
                )
            raise AppError(f"module {module_name!r} has no attribute {attr_path!r}{hint}") from None
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


def _bytes_hint(task: Task) -> str:
    """A hint for a function that failed while it was given a file's bytes (perhaps it wanted the path)."""
    ports = sorted(
        {r.port for r in task.inputs if r.traits.path and r.codec == "bytes" and r.store is not None}
    )
    if not ports:
        return ""
    names = ", ".join(repr(p) for p in ports)
    codecs = ", ".join(f'"{p}": "path"' for p in ports)
    return (
        f"\n(hint: input {names} received the file's bytes; to receive its path instead, "
        f"give the app codecs {{{codecs}}})"
    )


def _with_output(outcome: Outcome, printed: Printed) -> Outcome:
    """Put what the function printed in its outcome; a failure also quotes its last lines."""
    outcome.stdout, outcome.stderr = printed.out.text(), printed.err.text()
    if not outcome.ok and outcome.error is not None and (outcome.stdout or outcome.stderr):
        lines = (outcome.stdout + outcome.stderr).rstrip().splitlines()[-10:]
        outcome.error += "\nit printed (last lines):\n" + "\n".join(lines)
    return outcome


def run(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, PythonSpec)
    with captured() as printed:
        try:
            value, rest = call_function(task, spec.func, spec.kwargs)
            store_return(value, rest)
        except AppError as exc:
            return _with_output(Outcome.failed(str(exc)), printed)
        except Exception as exc:  # the user's function failed: report its exception and frames
            error = format_exception(exc, skip_frames=2) + _bytes_hint(task)
            return _with_output(Outcome.failed(error), printed)
    outcome = Outcome(True, stores={ref.drop_id: ref.store for ref in task.outputs})
    return _with_output(outcome, printed)
