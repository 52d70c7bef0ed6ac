"""The kind registry: every drop kind's spec class, and its store (data) or runner (apps).

Theory of operation
-------------------
A kind is registered once, by its spec class (whose msgspec tag is the kind's name) and its behaviour: a
data kind names the factory of its :class:`~dropflow.drops.stores.Store`, an app kind its runner and an
optional ``check`` that validates a spec against the kinds of the drops it links (a shell template's
placeholders, a Python function's signature). The built-in kinds register on import; third-party packages
add kinds through the ``dropflow.kinds`` entry-point group, whose entries are loaded (imported) the first
time the registry is read. Lookups by spec type are plain dict accesses, cheap enough for the owner loop.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import Protocol

from . import codecs, shm
from .apps import builtin, dlgpyfunc, pyfunc, shell
from .apps.base import CancelToken, Outcome, Task, format_exception
from .apps.command import Command
from .errors import Problem
from .gcclock import gc_seconds
from .spec import (
    AppSpec,
    DataSpec,
    DataTraits,
    DirectorySpec,
    DropSpec,
    FileSpec,
    MemorySpec,
    NullSpec,
    ParameterSetSpec,
    SharedMemorySpec,
)
from .stores import DirectoryStore, FileStore, MemoryStore, NullStore, SharedMemoryStore, Store

__all__ = [
    "AppKind",
    "DataKind",
    "StoreContext",
    "app_checks",
    "app_kind",
    "data_checks",
    "data_kind",
    "data_spec_types",
    "execute",
    "kind_names",
    "register_app",
    "register_data",
    "spec_types",
    "start",
]

log = logging.getLogger(__name__)

Runner = Callable[[Task, CancelToken], Outcome]
#: Starts an app's command and returns it for the engine's watcher to drive (or the outcome at once).
Starter = Callable[[Task, CancelToken], Command | Outcome]
#: (spec, {linked drop id: its kind's traits}) -> problems
Checker = Callable[[AppSpec, Mapping[str, DataTraits]], list[Problem]]


class StoreContext(Protocol):
    """What a store factory needs from the session."""

    @property
    def session_id(self) -> str: ...

    @property
    def shm_scope(self) -> str:
        """The scope of the session's shared-memory segment names (see :mod:`dropflow.drops.shm`)."""
        ...

    def resolve(self, spec: DataSpec, path: str | None) -> tuple[str, bool, str]:
        """Absolute path for a file or directory drop, whether the session owns it, and the directory below
        which its path may hold no symbolic link (see :mod:`dropflow.drops.beneath`)."""
        ...


StoreFactory = Callable[[DataSpec, StoreContext], Store]
DataChecker = Callable[[DataSpec, StoreContext], list[Problem]]


@dataclass(frozen=True, slots=True)
class DataKind:
    name: str
    spec: type[DataSpec]
    store: StoreFactory
    check: DataChecker | None = None


@dataclass(frozen=True, slots=True)
class AppKind:
    name: str
    spec: type[AppSpec]
    run: Runner
    check: Checker | None = None
    #: For kinds that run a command: start it, and leave the waiting to the engine (no thread waits).
    start: Starter | None = None


_by_type: dict[type[DropSpec], DataKind | AppKind] = {}
_by_name: dict[str, DataKind | AppKind] = {}
_plugins_loaded = False


def _tag(spec: type[DropSpec]) -> str:
    tag = spec.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{spec.__name__} needs a string msgspec tag (its kind name)")
    return tag


def _add(kind: DataKind | AppKind) -> None:
    if kind.name in _by_name and _by_name[kind.name].spec is not kind.spec:
        raise ValueError(f"drop kind {kind.name!r} is already registered")
    _by_name[kind.name] = kind
    _by_type[kind.spec] = kind


def register_data(spec: type[DataSpec], store: StoreFactory, check: DataChecker | None = None) -> None:
    _add(DataKind(_tag(spec), spec, store, check))


def register_app(
    spec: type[AppSpec], run: Runner, check: Checker | None = None, start: Starter | None = None
) -> None:
    _add(AppKind(_tag(spec), spec, run, check, start))


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in importlib.metadata.entry_points(group="dropflow.kinds"):
        try:
            ep.load()
        except Exception:  # a broken plugin must not break the engine; say which one
            log.exception("cannot load drop kinds from plugin %s", ep.value)


def spec_types() -> tuple[type[DropSpec], ...]:
    _load_plugins()
    return tuple(_by_type)


def kind_names() -> list[str]:
    _load_plugins()
    return sorted(_by_name)


def data_spec_types() -> frozenset[type[DropSpec]]:
    _load_plugins()
    return frozenset(t for t, k in _by_type.items() if isinstance(k, DataKind))


def data_checks() -> dict[type[DropSpec], DataChecker]:
    """Spec type -> checker, for the data kinds that have one."""
    _load_plugins()
    return {t: k.check for t, k in _by_type.items() if isinstance(k, DataKind) and k.check is not None}


def app_checks() -> dict[type[DropSpec], Checker]:
    """Spec type -> checker, for the app kinds that have one."""
    _load_plugins()
    return {t: k.check for t, k in _by_type.items() if isinstance(k, AppKind) and k.check is not None}


def data_kind(spec: DataSpec) -> DataKind:
    kind = _by_type[type(spec)]
    assert isinstance(kind, DataKind)
    return kind


def app_kind(spec: AppSpec) -> AppKind:
    kind = _by_type[type(spec)]
    assert isinstance(kind, AppKind)
    return kind


def _prepare_outputs(task: Task) -> None:
    """Directories that outputs with paths need, so that apps can simply open their output paths."""
    for ref in task.outputs:
        if ref.traits.mountable:  # not: no path, or one on a filesystem of its own (/dev/shm)
            ref.store.prepare(ref.traits.directory)


def execute(task: Task, token: CancelToken) -> Outcome:
    """Run a task with its kind's runner; a runner that raises yields a failed outcome, never an exception."""
    kind = app_kind(task.spec)
    start, collected = perf_counter(), gc_seconds()
    try:
        _prepare_outputs(task)
        outcome = kind.run(task, token)
    except Exception as exc:  # a bug or an I/O error in a runner must fail the app, not the engine
        outcome = Outcome.failed(f"{kind.name} runner failed: {format_exception(exc)}")
    except BaseException as exc:  # sys.exit() in user code ends that app, not the engine's thread
        outcome = Outcome.failed(f"{kind.name} app raised {format_exception(exc)}")
    # (Time in the garbage collector is the process's, not the app's.)
    outcome.seconds = max(0.0, perf_counter() - start - (gc_seconds() - collected))
    return outcome


def start(task: Task, token: CancelToken) -> Command | Outcome:
    """Start a task of a kind that has a ``start``: its command, or its (failed) outcome if it cannot start.

    Like :func:`execute`, whatever the starter raises fails the app, never the engine."""
    kind = app_kind(task.spec)
    assert kind.start is not None
    begin = perf_counter()
    try:
        _prepare_outputs(task)
        return kind.start(task, token)
    except Exception as exc:
        outcome = Outcome.failed(f"{kind.name} runner failed: {format_exception(exc)}")
    outcome.seconds = perf_counter() - begin
    return outcome


def _check_python(spec: AppSpec, kinds: Mapping[str, DataTraits]) -> list[Problem]:
    assert isinstance(spec, pyfunc.PythonSpec | builtin.BranchSpec)
    return pyfunc.check_callable(spec, spec.func, dict(spec.kwargs))


def _check_dlg_python(spec: AppSpec, kinds: Mapping[str, DataTraits]) -> list[Problem]:
    return dlgpyfunc.check(spec)


def _check_shell(spec: AppSpec, kinds: Mapping[str, DataTraits]) -> list[Problem]:
    assert isinstance(spec, shell.ShellSpec)
    return shell.check_command(spec, dict(kinds))


def _check_branch(spec: AppSpec, kinds: Mapping[str, DataTraits]) -> list[Problem]:
    problems = [
        Problem(spec.label(), "outputs", f"a branch has output ports 'true' and 'false', not {port!r}")
        for port in spec.outputs
        if port not in ("true", "false")
    ]
    return problems + _check_python(spec, kinds)


def _check_path(spec: DataSpec, ctx: StoreContext) -> list[Problem]:
    assert isinstance(spec, FileSpec | DirectorySpec | ParameterSetSpec)
    try:
        ctx.resolve(spec, getattr(spec, "path", None))
    except ValueError as exc:
        return [Problem(spec.label(), "path", str(exc))]
    return []


def _check_memory(spec: DataSpec, ctx: StoreContext) -> list[Problem]:
    """The initial ``data`` of a memory drop must encode with its codec: found now, not when it runs."""
    assert isinstance(spec, MemorySpec)
    if spec.data is None:
        return []
    try:
        codecs.encode(spec.effective_codec(), spec.data)
    except (codecs.CodecError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        codec = spec.effective_codec()
        return [Problem(spec.label(), "data", f"cannot be encoded with the {codec} codec: {exc}")]
    return []


def _check_shm(spec: DataSpec, ctx: StoreContext) -> list[Problem]:
    if spec.persist:
        return [
            Problem(spec.label(), "persist", "shared memory cannot outlive its session; persist a file drop")
        ]
    return []


def _path_store(cls: type[FileStore]) -> StoreFactory:
    def make(spec: DataSpec, ctx: StoreContext) -> Store:
        assert isinstance(spec, FileSpec | DirectorySpec)
        return cls(*ctx.resolve(spec, spec.path))

    return make


register_data(MemorySpec, lambda spec, ctx: MemoryStore(), _check_memory)
register_data(
    SharedMemorySpec,
    lambda spec, ctx: SharedMemoryStore(shm.segment_name(ctx.shm_scope, ctx.session_id, spec.id)),
    _check_shm,
)
register_data(FileSpec, _path_store(FileStore), _check_path)
register_data(DirectorySpec, _path_store(DirectoryStore), _check_path)
register_data(NullSpec, lambda spec, ctx: NullStore())
# A parameter set is a file in the session workspace, written from its spec when the session starts.
register_data(ParameterSetSpec, lambda spec, ctx: FileStore(*ctx.resolve(spec, None)), _check_path)

register_app(builtin.NoopSpec, builtin.run_noop)
register_app(builtin.SleepSpec, builtin.run_sleep)
register_app(builtin.CopySpec, builtin.run_copy)
register_app(builtin.BranchSpec, builtin.run_branch, _check_branch)
register_app(pyfunc.PythonSpec, pyfunc.run, _check_python)
register_app(shell.ShellSpec, shell.run, _check_shell, shell.start)

# DALiuGE's simple apps (dlg.apps.simple), for graphs imported from EAGLE or DALiuGE physical graphs.
from .apps import daliuge  # noqa: E402

register_app(daliuge.HelloSpec, daliuge.run_hello)
register_app(daliuge.RandomArraySpec, daliuge.run_random_array)
register_app(daliuge.PickOneSpec, daliuge.run_pick_one)
register_app(daliuge.ScatterArraySpec, daliuge.run_scatter_array)
register_app(daliuge.NpyGatherSpec, daliuge.run_npy_gather)
register_app(daliuge.SleepCopySpec, daliuge.run_sleep_copy)
register_app(daliuge.ArrayGatherSpec, daliuge.run_array_gather)
register_app(daliuge.AverageArraysSpec, daliuge.run_average_arrays)
register_app(daliuge.UrlRetrieveSpec, daliuge.run_url_retrieve)
register_app(dlgpyfunc.DlgPythonSpec, dlgpyfunc.run, _check_dlg_python)

# Components of imported graphs that dropflow cannot run: translated, refused when a session builds them.
from . import foreign  # noqa: E402

register_app(foreign.ForeignAppSpec, foreign.run_foreign, foreign.check_foreign)
register_data(foreign.ForeignDataSpec, foreign.foreign_store, foreign.check_foreign_data)

# Containers and MPI programs (dropflow.drops.apps.docker, .mpi).
from .apps import docker as docker_app  # noqa: E402


def _check_docker(spec: AppSpec, kinds: Mapping[str, DataTraits]) -> list[Problem]:
    assert isinstance(spec, docker_app.DockerSpec)
    return docker_app.check_docker(spec, dict(kinds))


register_app(docker_app.DockerSpec, docker_app.run, _check_docker)

from .apps import mpi  # noqa: E402


def _check_mpi(spec: AppSpec, kinds: Mapping[str, DataTraits]) -> list[Problem]:
    assert isinstance(spec, mpi.MpiSpec)
    return mpi.check_mpi(spec, kinds)


register_app(mpi.MpiSpec, mpi.run, _check_mpi)
