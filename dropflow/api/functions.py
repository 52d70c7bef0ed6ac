"""Python functions as apps: the ``@python`` decorator, and naming a function so that any process finds it.

Theory of operation
-------------------
``@python`` wraps a function in a :class:`PythonFunction`. Calling it inside a pipeline binds the arguments
to the function's signature -- a wrong argument fails there, at the caller's line, as a plain call would --
and adds one ``python`` app: each argument that is a handle (or a list of handles) becomes an input port of
the parameter's name, linked to the handle's data node; every other argument must be a JSON value and
becomes a constant keyword argument. The result is a new data node on the output port ``return`` (a name
no parameter can have), in memory unless an option or the return annotation says otherwise; with
``outputs=`` the function has several, returned as a dict, and the call returns one handle per output.

A graph names a function as ``module:qualified.name`` (:func:`function_ref`). A function of the script the
user runs (``__main__``) is named after the script's module, which worker processes import from the script's
directory: that imports the script a second time, so its pipeline must not be built and run at import. When
a pipeline runs such a function in another process, :func:`check_main_guard` reads the script and refuses,
before anything runs, one whose run is not inside ``if __name__ == "__main__":``, saying so.
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Generic, TypeVar, overload

import msgspec

from ..drops.apps.pyfunc import callable_ref, main_module_name
from .data import Data, codec_for, data_hint, is_path_hint, memory
from .graph import Handle, Mapped, Pipeline, PipelineError, _current, call_site, current

__all__ = ["PythonFunction", "check_main_guard", "function_ref", "python"]

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

RETURN_PORT = "return"
_OPTIONS = frozenset(
    {"name", "executor", "retries", "error_tolerance", "time", "returns", "outputs", "node", "island", "keep"}
)


def function_ref(func: Callable[..., Any], where: str) -> str:
    """``module:name`` of a function, or PipelineError (at ``where``) saying how to make it importable."""
    try:
        return callable_ref(func)
    except TypeError as exc:
        raise PipelineError(f"{where}: {exc}") from None


def _guarded(tree: ast.Module) -> list[tuple[int, int]]:
    """Line ranges of the script's ``if __name__ == "__main__":`` blocks."""
    ranges = []
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.If)
            and "__name__" in ast.unparse(stmt.test)
            and "__main__" in ast.unparse(stmt.test)
        ):
            ranges.append((stmt.lineno, stmt.end_lineno or stmt.lineno))
    return ranges


def check_main_guard(refs: list[str], what: str) -> None:
    """Refuse to run functions of the ``__main__`` script in other processes if the script, imported there
    by name, would build and run its pipeline again. ``refs`` are the graph's ``module:function`` names."""
    script = main_module_name()
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    used = sorted({r.partition(":")[2] for r in refs if r.partition(":")[0] in (script, "__main__")})
    if not used:
        return
    if script is None or path is None or any(r.startswith("__main__:") for r in refs):
        raise PipelineError(
            f"{', '.join(used)} {'is' if len(used) == 1 else 'are'} defined in an interactive session, "
            f"which {what} cannot import: define {'it' if len(used) == 1 else 'them'} in a module, or run "
            "with executor='thread'"
        )
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError):
        return  # nothing to check against; the worker's import will tell
    guarded = _guarded(tree)
    # The frames of the script that are running now: is each inside a guarded block?
    frame = sys._getframe(1)
    lines = []
    while frame is not None:
        if (
            os.path.abspath(frame.f_code.co_filename) == os.path.abspath(path)
            and frame.f_code.co_name == "<module>"
        ):
            lines.append(frame.f_lineno)
        frame = frame.f_back  # type: ignore[assignment]
    if lines and not all(any(lo <= n <= hi for lo, hi in guarded) for n in lines):
        them = "it" if len(used) == 1 else "them"
        raise PipelineError(
            f"{', '.join(used)} {'is' if len(used) == 1 else 'are'} defined in {os.path.basename(path)}, "
            f"which {what} {'import' if what.endswith('es') else 'imports'} to find {them}; importing it "
            "would build and run the pipeline again, "
            f'since the run (line {lines[-1]}) is not under `if __name__ == "__main__":` -- put the code '
            f"that builds and runs the pipeline there (or move {them} to a module)"
        )


def _constant(value: Any, param: str, where: str) -> Any:
    try:
        return msgspec.json.decode(msgspec.json.encode(value))
    except (TypeError, msgspec.EncodeError, OverflowError):
        raise PipelineError(
            f"{where}: argument {param!r} is a {type(value).__name__}, which a graph cannot hold as a "
            "constant (constants are JSON values): pass a handle from another call instead, e.g. of a "
            "function that makes it"
        ) from None


def bind_inputs(
    pipeline: Pipeline,
    app_id: str,
    scope: tuple[str, ...],
    arguments: dict[str, Any],
    what: str,
) -> tuple[dict[str, Any], list[tuple[str, list[Handle[Any]]]]]:
    """Split bound arguments into constants (kwargs) and handles per port (inputs), checking each handle."""
    kwargs: dict[str, Any] = {}
    inputs: list[tuple[str, list[Handle[Any]]]] = []
    where = call_site()
    for param, value in arguments.items():
        if isinstance(value, Handle):
            pipeline.reach(value, scope, what)
            inputs.append((param, [value]))
        elif isinstance(value, list | tuple) and value and any(isinstance(v, Handle) for v in value):
            if not all(isinstance(v, Handle) for v in value):
                raise PipelineError(
                    f"{what} at {where}: argument {param!r} mixes handles and constants; a list argument "
                    "is either all handles (the function then gets their values as a list) or a constant"
                )
            for v in value:
                pipeline.reach(v, scope, what)
            if len(value) == 1 and not isinstance(value[0], Mapped):
                raise PipelineError(
                    f"{what} at {where}: argument {param!r} is a list of one handle, which arrives as the "
                    f"value itself; pass the handle ({param}=h) instead"
                )
            inputs.append((param, list(value)))
        else:
            kwargs[param] = _constant(value, param, f"{what} at {where}")
    return kwargs, inputs


class PythonFunction(Generic[R]):
    """A function whose calls, inside a pipeline, add an app instead of running it."""

    def __init__(self, func: Callable[..., R], options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise TypeError(f"unknown option {unknown[0]!r} (options: {', '.join(sorted(_OPTIONS))})")
        self.func = func
        self.opts = options
        self.signature = inspect.signature(func)
        try:
            self.hints = _hints(func)
        except Exception:  # an annotation that does not evaluate: go without hints
            self.hints = {}
        functools.update_wrapper(self, func)

    def options(self, **options: Any) -> PythonFunction[R]:
        """The same function with other options for the calls made through it (``f.options(name="x")(1)``)."""
        return PythonFunction(self.func, {**self.opts, **options})

    def __call__(self, *args: Any, **kwargs: Any) -> Handle[R]:
        """Inside a pipeline, add an app and return its handle; anywhere else -- in the engine's apps, in
        tests -- call the function itself."""
        if _current.get() is None and not any(isinstance(a, Handle) for a in (*args, *kwargs.values())):
            return self.func(*args, **kwargs)  # type: ignore[return-value]
        return self.call(args, kwargs, None)  # type: ignore[return-value]

    def outputs(self) -> dict[str, tuple[Data, bool]]:
        """Output port -> how it is held, and whether that is the API's choice (implied)."""
        declared = self.opts.get("outputs")
        if declared is None:
            returns = self.opts.get("returns")
            hint = self.hints.get("return", inspect.Parameter.empty)
            implied = False
            if returns is None:
                returns = data_hint(hint)
                implied = returns is None
            return {RETURN_PORT: ((returns or memory()).with_codec(codec_for(hint)), implied)}
        if isinstance(declared, dict):
            return {
                str(k): ((v, False) if isinstance(v, Data) else (memory(), True)) for k, v in declared.items()
            }
        return {str(k): (memory(), True) for k in declared}

    def call(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], scatter: tuple[str, ...] | None
    ) -> Handle[R] | tuple[Handle[Any], ...]:
        """Add the app; ``scatter`` is the scope of a mapped call (None: the enclosing blocks' scope)."""
        name = self.__name__  # type: ignore[attr-defined]
        pipeline = current(f"{name}()")
        where = call_site()
        outputs = self.outputs()
        own = [p for p in outputs if p in self.signature.parameters]
        try:
            bound = self.signature.bind_partial(*args, **kwargs)
            missing = [
                p.name
                for p in self.signature.parameters.values()
                if p.default is p.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in bound.arguments
                and p.name not in own
            ]
            if missing:
                raise TypeError(f"missing required argument(s): {', '.join(missing)}")
        except TypeError as exc:
            raise TypeError(f"{name}() at {where}: {exc}") from None
        arguments = dict(bound.arguments)
        for p in self.signature.parameters.values():
            if p.kind is p.VAR_KEYWORD and p.name in arguments:
                arguments.update(arguments.pop(p.name))
            elif p.kind is p.VAR_POSITIONAL and p.name in arguments:
                raise TypeError(f"{name}() at {where}: *{p.name} cannot take values in a pipeline")
        scope = scatter if scatter is not None else tuple(pipeline.scope)
        fields: dict[str, Any] = {"func": function_ref(self.func, f"{name}() at {where}")}
        for key in ("executor", "retries", "error_tolerance"):
            if self.opts.get(key) is not None:
                fields[key] = self.opts[key]
        for key in ("node", "island"):
            if self.opts.get(key) is not None:
                fields[key] = self.opts[key]
        app = pipeline.add_app("python", self.opts.get("name") or name, scope, fields, self.opts.get("time"))
        constants, inputs = bind_inputs(pipeline, app.id, scope, arguments, f"{name}()")
        if constants:
            app.fields["kwargs"] = constants
        codecs: dict[str, str] = {}
        for port, handles in inputs:
            for h in handles:
                pipeline.link_input(h, app.id, port)
            hint = self.hints.get(port, inspect.Parameter.empty)
            if (
                handles[0].kind in ("file", "directory")
                and handles[0].codec is None
                and (hint is inspect.Parameter.empty or is_path_hint(hint))
            ):
                codecs[port] = "path"  # a file arrives as its path, unless the function asks for bytes
        if codecs:
            app.fields["codecs"] = codecs
        mapped = scatter is not None
        handles_out = []
        for port, (data, implied) in outputs.items():
            placed = data
            if self.opts.get("keep") and data.persist is None:
                placed = replace(placed, persist=True)
            if data.node is None and self.opts.get("node") is not None:
                placed = replace(data, node=self.opts["node"], island=self.opts.get("island"))
            handles_out.append(pipeline.output(app, port, placed, scope, None, mapped, implied))
        for h in handles_out:
            h.where = where
        if self.opts.get("outputs") is None:
            return handles_out[0]
        return tuple(handles_out)


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(func, include_extras=True)


@overload
def python(func: Callable[..., R], /) -> PythonFunction[R]: ...


@overload
def python(
    *,
    name: str | None = None,
    executor: str | None = None,
    retries: int | None = None,
    error_tolerance: float | None = None,
    time: float | None = None,
    returns: Data | None = None,
    outputs: list[str] | dict[str, Data] | None = None,
    node: str | None = None,
    island: str | None = None,
    keep: bool | None = None,
) -> Callable[[Callable[..., R]], PythonFunction[R]]: ...


def python(func: Callable[..., R] | None = None, /, **options: Any) -> Any:
    """Make a function an app of pipelines: ``@python`` or ``@python(executor="process", returns=shm())``.

    Options: ``name`` (the app's id), ``executor`` (``thread`` or ``process``), ``retries``,
    ``error_tolerance``, ``time`` (a weight for partitioning), ``returns`` (a :class:`~dropflow.api.Data`
    for the result), ``outputs`` (several results: a list of names, or names -> Data; the function returns a
    dict, or writes a parameter of the same name itself), ``node``/``island`` (placement), ``keep`` (keep
    the results after the run even if other calls consume them; results nothing consumes are kept anyway).
    """
    if func is not None:
        if not callable(func):
            raise TypeError(f"@python decorates a function, not {type(func).__name__}")
        return PythonFunction(func, options)

    def decorate(f: Callable[..., R]) -> PythonFunction[R]:
        return PythonFunction(f, options)

    return decorate
