"""Scatter, gather, loop and branch from Python, as the logical graph's constructs.

Theory of operation
-------------------
:func:`map` calls a function once per item, as a *scatter* construct: the function's app (and its result)
sit inside the scatter, and the translator unrolls them into one copy per item. The items reach the copies
through a small ``items`` app outside the scatter, whose output port has one drop per copy -- the way
DALiuGE's scatter apps split their input -- or, when an argument is already :class:`~.graph.Mapped` (the
result of another ``map``), copy by copy, with no splitting. :func:`scatter` cuts one value (an array, a
list) in ``n`` pieces the same way. A mapped handle passed to an ordinary call arrives there as the list of
every copy's value; :func:`reduce` does the same through a *gather* construct, whose ``width`` lets the
reduction run on groups of items.

:class:`loop` is a ``with`` block over a *loop* construct: calls inside it run once per iteration.
``loop.carry(initial)`` makes a loop variable; ``loop.update(var, value)`` makes ``value`` of iteration *i*
the variable's value in iteration *i + 1* -- a loop-carried link into every port that reads the variable,
added when the pipeline is built. A handle from inside the loop, used after it, is the last iteration's.

:func:`branch` adds a branch app: the predicate's truth picks the ``true`` or the ``false`` side, each a copy
of the value, and everything downstream of the side not taken is SKIPPED.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, TypeVar

from .data import Data, memory
from .functions import PythonFunction, function_ref
from .graph import Handle, Mapped, Pipeline, PipelineError, call_site, current
from .shell import ShellFunction

__all__ = ["branch", "constant", "input_file", "loop", "map", "reduce", "scatter"]

T = TypeVar("T")
_ITEMS = "dropflow.api.builtins:items"
_SPLIT = "dropflow.api.builtins:split"
_CONSTANT = "dropflow.api.builtins:constant"


def input_file(
    path: str, *, directory: bool = False, codec: str | None = None, name: str | None = None
) -> Handle[str]:
    """A file (or directory) you have, as a pipeline input. A relative path is taken from the current
    directory; runs here allow its directory, ``dropflow run`` of a saved graph needs ``--allow-path``."""
    pipeline = current("input_file()")
    full = os.path.abspath(os.path.expanduser(path))
    kind = "directory" if directory else "file"
    data = Data(kind, codec=codec, path=full, persist=False, name=name)  # type: ignore[arg-type]
    node = pipeline.add_data(
        data, name or os.path.basename(full.rstrip("/")) or "input", tuple(pipeline.scope)
    )
    pipeline.input_dirs.add(full if directory else os.path.dirname(full))
    return Handle(pipeline, node.id, tuple(pipeline.scope), kind, codec)


def _json(value: Any, what: str) -> Any:
    from .functions import _constant

    return _constant(value, "values", f"{what} at {call_site()}")


def constant(value: Any, scope: tuple[str, ...] | None = None, name: str = "constant") -> Handle[Any]:
    """A constant (a JSON value) as a handle, for calls that need a value from a drop."""
    pipeline = current("constant()")
    where = tuple(pipeline.scope) if scope is None else scope
    app = pipeline.add_app(
        "python",
        f"{name}.make",
        where,
        {"func": _CONSTANT, "executor": "thread", "kwargs": {"value": _json(value, "constant()")}},
    )
    return pipeline.output(app, "return", memory(codec="json"), where, name)


def _caller(func: Any, what: str) -> Any:
    if isinstance(func, PythonFunction | ShellFunction):
        return func
    if callable(func):
        raise PipelineError(
            f"{what} at {call_site()}: {getattr(func, '__name__', func)!r} is a plain function; decorate it "
            "with @python (or @shell for a command)"
        )
    raise PipelineError(f"{what} at {call_site()}: the first argument is the function to call")


def _scatter_of(pipeline: Pipeline, handle: Mapped[Any], what: str) -> tuple[str, ...]:
    dims = pipeline.dims(handle.scope)
    if not dims or pipeline.constructs[dims[-1]].kind not in ("scatter", "gather"):
        raise PipelineError(f"{what} at {call_site()}: {handle!r} is not the result of a map or scatter")
    scope = handle.scope
    return scope[: scope.index(dims[-1]) + 1]


def _new_scatter(pipeline: Pipeline, size: int, base: str) -> tuple[str, ...]:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise PipelineError(f"{call_site()}: a scatter needs a number of copies >= 1, not {size!r}")
    outer = tuple(pipeline.scope)
    c = pipeline.construct("scatter", base, size, outer[-1] if outer else None)
    return (*outer, c.id)


def _splitter(
    pipeline: Pipeline,
    func: str,
    value: Handle[Any] | list[Any],
    scatter: tuple[str, ...],
    base: str,
    data: Data,
    kwargs: dict[str, Any] | None = None,
) -> Mapped[Any]:
    """An app outside ``scatter`` that writes one drop per copy inside it (one piece of ``value`` each)."""
    outer = scatter[:-1]
    app = pipeline.add_app("python", f"{base}.split", outer, {"func": func, "executor": "thread"})
    port = "values" if func == _ITEMS else "value"
    kwargs = dict(kwargs or {})
    if isinstance(value, Handle):
        pipeline.reach(value, outer, "map()")
        pipeline.link_input(value, app.id, port)
    elif value and all(isinstance(v, Handle) for v in value):
        for v in value:
            pipeline.reach(v, outer, "map()")
            pipeline.link_input(v, app.id, port)
    else:
        kwargs[port] = _json(value, "map()")
    if kwargs:
        app.fields["kwargs"] = kwargs
    out = pipeline.output(app, "pieces", data, scatter, f"{base}.item", mapped=True)
    assert isinstance(out, Mapped)
    return out


def map(func: Any, /, *iterables: Any, n: int | None = None, **kwargs: Any) -> Any:
    """Call ``func`` once per item, as a scatter: ``map(f, [1, 2, 3])``, ``map(f, handle, n=8)``, or over
    the result of another map, copy by copy. Keyword arguments go to every call. Returns a
    :class:`~dropflow.api.Mapped` handle (a tuple of them for several outputs)."""
    caller = _caller(func, "map()")
    pipeline = current("map()")
    if not iterables:
        raise PipelineError(f"map() at {call_site()}: give at least one sequence to map over")
    scatter: tuple[str, ...] | None = None
    for value in iterables:
        if isinstance(value, Mapped):
            scatter = _scatter_of(pipeline, value, "map()")
            break
    sizes = {len(v) for v in iterables if isinstance(v, list | tuple)}
    if len(sizes) > 1:
        raise PipelineError(f"map() at {call_site()}: the sequences have different lengths {sorted(sizes)}")
    size = n if n is not None else (sizes.pop() if sizes else None)
    if scatter is None:
        if size is None:
            raise PipelineError(
                f"map() at {call_site()}: how many items does the handle hold? The graph is unrolled "
                "before it "
                "runs, so give their number: map(f, handle, n=COUNT)"
            )
        scatter = _new_scatter(pipeline, size, f"map-{getattr(caller, '__name__', 'f')}")
    elif size is not None and size != pipeline.constructs[scatter[-1]].size:
        raise PipelineError(
            f"map() at {call_site()}: {size} items, but the mapped handle has "
            f"{pipeline.constructs[scatter[-1]].size} copies"
        )
    args = []
    for i, value in enumerate(iterables):
        if isinstance(value, Mapped):
            args.append(value)
        elif isinstance(value, Handle | list | tuple):
            items = list(value) if isinstance(value, list | tuple) else value
            if (
                isinstance(items, list)
                and any(isinstance(v, Handle) for v in items)
                and not all(isinstance(v, Handle) for v in items)
            ):
                raise PipelineError(f"map() at {call_site()}: sequence {i} mixes handles and constants")
            base = f"{getattr(caller, '__name__', 'map')}.arg{i}"
            args.append(_splitter(pipeline, _ITEMS, items, scatter, base, memory()))
        else:
            raise PipelineError(
                f"map() at {call_site()}: argument {i} is not a sequence or handle: {value!r}"
            )
    return caller.call(tuple(args), kwargs, scatter)


def scatter(value: Handle[Any], n: int, *, kind: Data | None = None, name: str | None = None) -> Mapped[Any]:
    """Cut ``value`` (an array, along its first axis; or a sequence) into ``n`` pieces, one per copy of a new
    scatter. The pieces are held like the value (shared memory stays shared memory) unless ``kind`` says."""
    pipeline = current("scatter()")
    if not isinstance(value, Handle):
        raise PipelineError(f"scatter() at {call_site()}: the value to scatter must be a handle")
    scope = _new_scatter(pipeline, n, name or f"scatter-{value.id}")
    data = kind or Data("shm" if value.kind == "shm" else "memory", value.codec)  # type: ignore[arg-type]
    return _splitter(pipeline, _SPLIT, value, scope, name or value.id, data, {"parts": n})


def reduce(func: Any, mapped: Mapped[Any], /, *args: Any, width: int | None = None, **kwargs: Any) -> Any:
    """Call ``func`` on the list of every copy's value of ``mapped`` (its first argument), through a gather.

    With ``width``, on groups of ``width`` values: the result is then mapped, one per group."""
    caller = _caller(func, "reduce()")
    pipeline = current("reduce()")
    if not isinstance(mapped, Mapped):
        raise PipelineError(f"reduce() at {call_site()}: the second argument must be a mapped handle")
    source = _scatter_of(pipeline, mapped, "reduce()")
    copies = pipeline.constructs[source[-1]].size
    outer = source[:-1]
    whole = width is None or width >= copies
    gather = pipeline.construct(
        "gather",
        f"reduce-{getattr(caller, '__name__', 'f')}",
        copies if whole or width is None else width,
        outer[-1] if outer else None,
    )
    result = caller.call((mapped, *args), kwargs, (*outer, gather.id))
    if whole:  # one instance: its results are plain values, outside the gather
        results = result if isinstance(result, tuple) else (result,)
        for h in results:
            node = h.node
            node.parent = outer[-1] if outer else None
            h.scope = outer
            h.__class__ = Handle
    return result


class loop:
    """``with loop(n) as it:`` -- the calls in the block run ``n`` times, iteration after iteration.

    ``x = it.carry(initial)`` is a loop variable: ``initial`` in the first iteration, and after
    ``it.update(x, y)`` the value ``y`` had in the previous one. Handles made in the block, used after it, are
    the last iteration's.
    """

    def __init__(self, iterations: int, *, name: str = "loop") -> None:
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise PipelineError(
                f"loop() at {call_site()}: iterations must be an integer >= 1, not {iterations!r}"
            )
        self.iterations = iterations
        self.name = name
        self.pipeline: Pipeline | None = None
        self.id = ""
        self._vars: list[_Carried[Any]] = []

    def __enter__(self) -> loop:
        pipeline = current("loop()")
        c = pipeline.construct(
            "loop", self.name, self.iterations, pipeline.scope[-1] if pipeline.scope else None
        )
        self.pipeline, self.id = pipeline, c.id
        pipeline.scope.append(c.id)
        pipeline.deferred.append(self._close)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.pipeline is not None
        self.pipeline.scope.pop()

    def carry(self, initial: Any) -> Handle[Any]:
        """A loop variable, ``initial`` (a handle from before the loop, or a JSON value) at first."""
        pipeline = self.pipeline
        if pipeline is None or not pipeline.scope or pipeline.scope[-1] != self.id:
            raise PipelineError(
                f"carry() at {call_site()} must be called directly inside its loop's with block"
            )
        outer = tuple(pipeline.scope[:-1])
        if isinstance(initial, Handle):
            pipeline.reach(initial, outer, "carry()")
            source, kind, codec = initial.id, initial.kind, initial.codec
        else:
            made = constant(initial, outer, f"{self.id}.initial")
            source, kind, codec = made.id, "memory", made.codec
        var: _Carried[Any] = _Carried(pipeline, source, tuple(pipeline.scope), kind, codec)
        self._vars.append(var)
        return var

    def update(self, var: Handle[Any], value: Handle[Any]) -> None:
        """From the second iteration on, ``var`` is the ``value`` of the iteration before."""
        if not isinstance(var, _Carried) or var not in self._vars:
            raise PipelineError(
                f"update() at {call_site()}: {var!r} is not a variable of this loop (loop.carry)"
            )
        if not isinstance(value, Handle) or value.scope[-1:] != (self.id,):
            raise PipelineError(
                f"update() at {call_site()}: the new value must be made directly in the loop's block"
            )
        var.next = value

    def _close(self) -> None:
        assert self.pipeline is not None
        for var in self._vars:
            if var.next is None:
                raise PipelineError(
                    f"the loop variable made at {var.where} is never given its next value (loop.update)"
                )
            for app, port in var.readers:
                self.pipeline.link(var.next.id, app, dst_port=port, carried=True)


class _Carried(Handle[T]):
    """A loop variable: its id is the initial value's node; readers get the next value by a carried link."""

    __slots__ = ("next", "readers")

    def __init__(
        self, pipeline: Pipeline, node_id: str, scope: tuple[str, ...], kind: str, codec: str | None
    ):
        super().__init__(pipeline, node_id, scope, kind, codec)
        self.next: Handle[Any] | None = None
        self.readers: list[tuple[str, str]] = []

    def consumed(self, app: str, port: str) -> None:
        self.readers.append((app, port))


def branch(predicate: Any, value: Handle[T], /, **kwargs: Any) -> tuple[Handle[T], Handle[T]]:
    """``yes, no = branch(pred, value, **kwargs)``: ``pred(value, **kwargs)`` picks a side at run time; the
    side taken receives ``value``, and everything downstream of the other is SKIPPED."""
    pipeline = current("branch()")
    func = predicate.func if isinstance(predicate, PythonFunction) else predicate
    if not callable(func):
        raise PipelineError(f"branch() at {call_site()}: the predicate must be a function")
    if not isinstance(value, Handle):
        raise PipelineError(f"branch() at {call_site()}: the value to branch on must be a handle")
    params = [
        p.name
        for p in inspect.signature(func).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY) and p.name not in kwargs
    ]
    if not params:
        raise PipelineError(f"branch() at {call_site()}: the predicate has no parameter left for the value")
    scope = tuple(pipeline.scope)
    pipeline.reach(value, scope, "branch()")
    fields: dict[str, Any] = {"func": function_ref(func, f"branch() at {call_site()}")}
    if kwargs:
        fields["kwargs"] = kwargs
    app = pipeline.add_app("branch", getattr(func, "__name__", "branch"), scope, fields)
    pipeline.link_input(value, app.id, params[0])
    side = Data(value.kind if value.kind in ("memory", "file") else "memory", value.codec)  # type: ignore[arg-type]
    yes = pipeline.output(app, "true", side, scope, f"{app.id}.true")
    no = pipeline.output(app, "false", side, scope, f"{app.id}.false")
    return yes, no
