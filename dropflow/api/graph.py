"""The pipeline: a native logical graph built from Python calls, and the handles that stand for values.

Theory of operation
-------------------
A :class:`Pipeline` collects, while its ``with`` block runs, one logical node per app call and per value,
and the links between them; :meth:`Pipeline.build` writes them as a native logical graph
(``docs/logical-graph.md``), the one thing every target runs. Nothing here executes anything.

A call returns a :class:`Handle`: the value's data node, the call's *scope* and where in the user's code the
call was made. The scope is the chain of constructs the value lives in: the ``with`` blocks around the call
(loops, sub-workflows) and, for a :func:`~dropflow.api.map`-ed call, its scatter. A handle from a scatter is
:class:`Mapped`: one value per copy. Passing a handle to a call links its data node to the call's app; the
translator's rules then say what arrives: a handle from outside reaches every copy, a mapped handle passed
to a call outside its scatter arrives as the list of all copies' values (an implicit gather), and a handle
from a loop arrives from the last iteration. Handles whose scopes cannot meet (two unrelated scatters) are
refused at the call, which is where the traceback then points.

Checks that need the whole pipeline -- ``workflow://`` references to tasks defined later, loop variables
never updated -- run in :meth:`build`. Problems the translator or the engine find (a function that cannot be
imported, a shell placeholder naming no port) come back as :class:`PipelineError`, each naming the file and
line of the call that made the node at fault.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import msgspec

from ..drops.errors import GraphError, Problem
from .data import Data

if TYPE_CHECKING:
    from .targets import Run, SlurmRun

__all__ = ["Handle", "Mapped", "Pipeline", "PipelineError", "call_site", "current"]

T = TypeVar("T")

_API_DIR = os.path.dirname(os.path.abspath(__file__))
_ID = re.compile(r"[^A-Za-z0-9_.:/+-]+")
_MULTIPLYING = ("scatter", "gather", "loop")


class PipelineError(Exception):
    """A pipeline that cannot be built as written. The message names the line of the call at fault."""


def call_site() -> str:
    """``file:line`` of the innermost frame outside this package: the user's call."""
    frame = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if not os.path.abspath(path).startswith(_API_DIR + os.sep) and "contextlib" not in path:
            return f"{os.path.relpath(path) if not path.startswith('<') else path}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return "<unknown>"


_current: contextvars.ContextVar[Pipeline | None] = contextvars.ContextVar("dropflow_pipeline", default=None)


def current(what: str) -> Pipeline:
    """The pipeline of the enclosing ``with`` block, or PipelineError saying how to make one."""
    pipeline = _current.get()
    if pipeline is None:
        raise PipelineError(
            f'{what} at {call_site()} is outside a pipeline: call it inside `with Pipeline("name") as p:`'
        )
    return pipeline


@dataclass(slots=True)
class _Construct:
    id: str
    kind: Literal["scatter", "gather", "loop", "subgraph"]
    parent: str | None
    where: str
    size: int = 1


@dataclass(slots=True)
class _Node:
    id: str
    role: Literal["app", "data"]
    kind: str
    parent: str | None
    where: str
    fields: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    #: Data: what the author asked for; ``persist`` None is decided in build().
    data: Data | None = None
    consumers: int = 0
    #: App: estimated run time (partitioning weight).
    time: float | None = None
    #: Data: its kind was the API's choice, not the author's (so the API may change it).
    implied: bool = False

    def make_file(self) -> None:
        """An implied memory value that a command reads by path: hold it in a file instead."""
        if self.role == "data" and self.implied and self.kind == "memory" and self.data is not None:
            self.kind = "file"
            self.data = replace(self.data, kind="file")


class Handle(Generic[T]):
    """A value of a pipeline, before (and after) it runs: pass it to other calls like a future.

    After a run, :meth:`result` gives the value (memory drops) or the path (files and directories).
    """

    __slots__ = ("_kind", "codec", "id", "pipeline", "scope", "where")

    def __init__(
        self, pipeline: Pipeline, node_id: str, scope: tuple[str, ...], kind: str, codec: str | None
    ) -> None:
        self.pipeline = pipeline
        self.id = node_id
        self.scope = scope
        self._kind = kind
        self.codec = codec
        self.where = call_site()

    @property
    def kind(self) -> str:
        """The data kind of the value (the API may change an implied one, e.g. to a file for a command)."""
        node = self.pipeline.nodes.get(self.id)
        return node.kind if node is not None else self._kind

    def result(self, timeout: float | None = None) -> T:
        """The value after the pipeline's last run (a path, for a file); raises if it failed or was lost."""
        run = self.pipeline.last_run
        if run is None:
            raise PipelineError(
                f"{self!r}: the pipeline has not run yet (call .run(), .submit() or .slurm())"
            )
        return run.result(self, timeout)  # type: ignore[no-any-return]

    def consumed(self, app: str, port: str) -> None:
        """An app's input port now reads this value (loop variables need to know)."""

    @property
    def node(self) -> _Node:
        return self.pipeline.nodes[self.id]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r} ({self.kind}) from {self.where}>"

    def __bool__(self) -> bool:
        raise PipelineError(
            f"{self!r} has no truth value while the pipeline is being built (at {call_site()}): "
            "to choose at run time, use dropflow.api.branch(predicate, value)"
        )

    def __iter__(self) -> Iterator[Any]:
        raise PipelineError(
            f"{self!r} cannot be iterated while the pipeline is being built (at {call_site()}): "
            "to call a function on every item, use dropflow.api.map(function, value, n=COUNT)"
        )


class Mapped(Handle[T]):
    """One value per copy of a scatter (see :func:`~dropflow.api.map`). Passed to a call outside the
    scatter, it arrives as the list of all copies' values; passed to ``map``, copy by copy."""

    __slots__ = ()


class Pipeline:
    """A pipeline under construction: a ``with`` block in which calls add apps and values.

    ``with Pipeline("name") as p:`` makes it the current pipeline of the block; calls of decorated functions
    and :func:`~dropflow.api.shell` add to it. Then :meth:`run` runs it here, :meth:`submit` on a cluster,
    :meth:`slurm` as a Slurm job, and :meth:`save` writes the graph file the ``dropflow`` commands take.
    """

    def __init__(self, name: str = "pipeline", *, description: str | None = None) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
            raise PipelineError(f"pipeline name {name!r}: 1-100 letters, digits, '.', '_' or '-'")
        self.name = name
        self.description = description
        self.nodes: dict[str, _Node] = {}
        self.constructs: dict[str, _Construct] = {}
        self.links: list[dict[str, Any]] = []
        #: Constructs of the enclosing ``with`` blocks (loops, sub-workflows), outermost first.
        self.scope: list[str] = []
        #: Checks and rewrites that need the whole pipeline, run once by build(), in order.
        self.deferred: list[Callable[[], None]] = []
        #: Then these, which may depend on what the deferred ones did (run by every build()).
        self.finalizers: list[Callable[[], None]] = []
        #: Directories of input files outside any workspace (allowed when running here).
        self.input_dirs: set[str] = set()
        #: Shell tasks by (workflow, task name), for ``workflow://`` references.
        self.tasks: dict[tuple[str, str], Any] = {}
        self.last_run: Run | SlurmRun | None = None
        self._token: contextvars.Token[Pipeline | None] | None = None
        self._built: dict[str, Any] | None = None

    # -- the with block -------------------------------------------------------------------------------------

    def __enter__(self) -> Pipeline:
        if self._token is not None:
            raise PipelineError(f"pipeline {self.name!r} is already open (at {call_site()})")
        self._token = _current.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _current.reset(self._token)
        self._token = None

    @contextlib.contextmanager
    def workflow(self, name: str) -> Iterator[str]:
        """A sub-workflow: tasks made in the block are ``workflow://NAME/TASK/...`` to other workflows."""
        if name in self.constructs or name in self.nodes or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise PipelineError(f"workflow name {name!r} at {call_site()} is taken or not a plain name")
        c = _Construct(name, "subgraph", self.scope[-1] if self.scope else None, call_site())
        self.constructs[name] = c
        self.scope.append(name)
        try:
            yield name
        finally:
            self.scope.pop()

    def workflow_name(self, scope: tuple[str, ...]) -> str:
        """The sub-workflow a scope is in ("" for the pipeline itself)."""
        names = [c for c in scope if self.constructs[c].kind == "subgraph"]
        return names[-1] if names else ""

    # -- building ----------------------------------------------------------------------------------------

    def unique(self, base: str) -> str:
        """A node id from ``base`` that no node or construct has yet: ``base``, ``base-2``, ..."""
        base = _ID.sub("_", base).strip("_") or "x"
        base = base[:150]
        candidate, n = base, 1
        while candidate in self.nodes or candidate in self.constructs:
            n += 1
            candidate = f"{base}-{n}"
        self._built = None
        return candidate

    def construct(
        self,
        kind: Literal["scatter", "gather", "loop", "subgraph"],
        base: str,
        size: int = 1,
        parent: str | None = None,
    ) -> _Construct:
        c = _Construct(self.unique(base), kind, parent, call_site(), size)
        self.constructs[c.id] = c
        return c

    def add_app(
        self, kind: str, base: str, scope: tuple[str, ...], fields: dict[str, Any], time: float | None = None
    ) -> _Node:
        node = _Node(self.unique(base), "app", kind, scope[-1] if scope else None, call_site(), dict(fields))
        node.time = time
        self.nodes[node.id] = node
        return node

    def add_data(self, data: Data, base: str, scope: tuple[str, ...], value: Any = None) -> _Node:
        """A data node; ``value`` is the initial content of a root memory drop."""
        node = _Node(
            self.unique(data.name or base),
            "data",
            data.kind,
            scope[-1] if scope else None,
            call_site(),
            data=data,
        )
        if value is not None:
            node.fields["data"] = value
        self.nodes[node.id] = node
        return node

    def output(
        self,
        app: _Node,
        port: str,
        data: Data,
        scope: tuple[str, ...],
        base: str | None = None,
        mapped: bool = False,
        implied: bool = False,
    ) -> Handle[Any]:
        """A new data node written by ``app``'s output ``port``; its handle. An ``implied`` kind is the API's
        choice, which it may change later."""
        node = self.add_data(data, base or f"{app.id}.{port}", scope)
        node.implied = implied
        self.link(app.id, node.id, src_port=port)
        cls = Mapped if mapped else Handle
        return cls(self, node.id, scope, data.kind, data.codec)

    def link(
        self,
        src: str,
        dst: str,
        *,
        src_port: str | None = None,
        dst_port: str | None = None,
        carried: bool = False,
    ) -> None:
        link: dict[str, Any] = {"from": src, "to": dst}
        if src_port is not None:
            link["from_port"] = src_port
            if src_port not in self.nodes[src].outputs:
                self.nodes[src].outputs.append(src_port)
        if dst_port is not None:
            link["to_port"] = dst_port
            if dst_port not in self.nodes[dst].inputs:
                self.nodes[dst].inputs.append(dst_port)
            self.nodes[src].consumers += 1
        if carried:
            link["loop"] = True
        self.links.append(link)
        self._built = None

    def link_input(self, handle: Handle[Any], app: str, port: str) -> None:
        """Link a handle's data node to an input port of an app (telling a loop variable who reads it)."""
        self.link(handle.id, app, dst_port=port)
        handle.consumed(app, port)

    def dims(self, scope: tuple[str, ...]) -> tuple[str, ...]:
        """The constructs of a scope that multiply (sub-workflows only group)."""
        return tuple(c for c in scope if self.constructs[c].kind in _MULTIPLYING)

    def reach(self, handle: Handle[Any], scope: tuple[str, ...], what: str) -> None:
        """Check that a call in ``scope`` can use ``handle``; raise PipelineError naming both lines if not."""
        if handle.pipeline is not self:
            raise PipelineError(
                f"{what} at {call_site()}: {handle!r} belongs to pipeline {handle.pipeline.name!r}, "
                f"not {self.name!r}"
            )
        a, b = self.dims(handle.scope), self.dims(scope)
        n = min(len(a), len(b))
        if a[:n] == b[:n]:
            return  # from outside (every copy), the same copy, or from inside (a gather, a loop's result)
        if len(a) == len(b) and a[:-1] == b[:-1]:
            x, y = self.constructs[a[-1]], self.constructs[b[-1]]
            if x.kind == y.kind == "scatter" and x.size == y.size:
                return  # sibling scatters of one size: copy i to copy i
            if y.kind == "gather":
                return  # into a gather: its instances take the items, width at a time
        raise PipelineError(
            f"{what} at {call_site()}: {handle!r} lives in {self._describe(a)}, which a call in "
            f"{self._describe(b)} cannot reach"
        )

    def _describe(self, dims: tuple[str, ...]) -> str:
        if not dims:
            return "no construct"
        return " in ".join(
            f"{self.constructs[c].kind} {c!r} ({self.constructs[c].where})" for c in reversed(dims)
        )

    # -- the graph ----------------------------------------------------------------------------------------

    def build(self) -> dict[str, Any]:
        """The pipeline as a native logical graph (a JSON-ready dict), checked by the translator."""
        if self._built is not None:
            return self._built
        while self.deferred:
            self.deferred.pop(0)()
        for finish in self.finalizers:
            finish()
        nodes: list[dict[str, Any]] = []
        for c in self.constructs.values():
            raw: dict[str, Any] = {"id": c.id, "construct": c.kind}
            if c.parent is not None:
                raw["parent"] = c.parent
            if c.kind == "scatter":
                raw["copies"] = c.size
            elif c.kind == "loop":
                raw["iterations"] = c.size
            elif c.kind == "gather":
                raw["width"] = c.size
            nodes.append(raw)
        for node in self.nodes.values():
            raw = {"id": node.id, node.role: node.kind}
            if node.parent is not None:
                raw["parent"] = node.parent
            if node.role == "app":
                if node.inputs:
                    raw["inputs"] = list(node.inputs)
                if node.outputs:
                    raw["outputs"] = list(node.outputs)
                if node.time is not None:
                    raw["time"] = node.time
            else:
                assert node.data is not None
                fields = node.data.fields()
                if (
                    node.data.persist is None
                    and node.consumers == 0
                    and node.kind in ("memory", "file")
                    and not node.data.expire_after_use
                    and node.data.lifespan is None
                ):
                    fields["persist"] = True  # a result nobody consumes: keep it for the author
                raw.update(fields)
            raw.update(node.fields)
            nodes.append(raw)
        doc: dict[str, Any] = {"format": "dropflow/logical-graph", "version": 1, "name": self.name}
        if self.description:
            doc["description"] = self.description
        doc["nodes"] = nodes
        doc["links"] = list(self.links)
        self._check(doc)
        self._built = doc
        return doc

    def graph_bytes(self) -> bytes:
        return msgspec.json.encode(self.build())

    def _where(self, text: str) -> str:
        """The call site of the node a translator or engine message names (``node 'x'``, ``drop 'x#3'``)."""
        m = re.search(r"(?:node|drop) '([^']+)'", text)
        if m is None:
            return ""
        node_id = m.group(1).split("#")[0]
        node = self.nodes.get(node_id) or self.constructs.get(node_id)
        return f" (made at {node.where})" if node is not None else ""

    def error(self, exc: GraphError) -> PipelineError:
        lines = [f"{p}{self._where(p.where)}" for p in exc.problems]
        return PipelineError(f"pipeline {self.name!r} cannot run:\n  " + "\n  ".join(lines))

    def _check(self, doc: dict[str, Any]) -> None:
        from ..translator import read

        if not self.nodes:
            raise PipelineError(f"pipeline {self.name!r} is empty: call functions inside its with block")
        try:
            read(msgspec.json.encode(doc))
        except GraphError as exc:
            raise self.error(exc) from None

    def problems(self, problems: list[Problem]) -> PipelineError:
        return self.error(GraphError(problems))

    # -- targets ------------------------------------------------------------------------------------------

    def save(self, path: str) -> str:
        """Write the pipeline as a graph file that ``dropflow run``, ``submit`` and ``slurm submit`` take."""
        from .targets import save

        return save(self, path)

    def validate(self) -> None:
        """Check the pipeline as ``dropflow validate`` would (functions import, templates name ports)."""
        from .targets import validate

        validate(self)

    def run(self, **options: Any) -> Run:
        """Run here, in this process (see :func:`dropflow.api.targets.run` for the options)."""
        from .targets import run

        return run(self, **options)

    def submit(self, url: str | None = None, **options: Any) -> Run:
        """Run on the cluster whose manager answers at ``url`` (see :func:`dropflow.api.targets.submit`)."""
        from .targets import submit

        return submit(self, url, **options)

    def slurm(self, nodes: int, **options: Any) -> SlurmRun:
        """Run as a Slurm job on ``nodes`` nodes (see :func:`dropflow.api.targets.slurm`)."""
        from .targets import slurm

        return slurm(self, nodes, **options)

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r}: {len(self.nodes)} nodes, {len(self.constructs)} constructs>"
