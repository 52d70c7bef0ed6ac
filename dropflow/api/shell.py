"""Shell commands as apps, and DAGonStar's ``workflow://`` references between them.

Theory of operation
-------------------
:func:`shell` adds a ``shell`` app. Keyword arguments are its ports: a handle (or a list of them) is an input,
written ``%i[name]`` in the command; a :class:`~dropflow.api.Data` is an output written ``%o[name]`` (a file
unless said otherwise); any other value is text, put in place of ``%[name]`` (quoted) when the graph is
built. ``@shell`` does the same for a function that returns the command (Parsl's ``bash_app``): it is called
while the pipeline is built, with ``%i[...]`` / ``%o[...]`` in place of its handle and Data arguments.

Every task runs in a working directory of its own (a directory drop, as DAGonStar's scratch directory), so
two tasks may both write ``f2.txt``. ``workflow:///A/output/f1.txt`` in a command (``workflow://WF/A/...``
for task A of sub-workflow WF) names a file that task A writes in its working directory. When the pipeline
is built, each reference becomes a file drop, written by A and read by the referring task through an input
port: that link is the dependency, and the engine carries the file to the referring task's node if it runs
elsewhere. A copies (hard-links, where it can) the file into that drop after its command succeeds, and
fails, naming the reference, if its command did not write it. The working directory itself expires as soon
as A ends; each referenced file drop expires after use, when the last task referring to it has finished --
DAGonStar's reference counting, one file at a time. ``task.file(path)`` gives the same file to Python, kept
after the run.
"""

from __future__ import annotations

import inspect
import re
import shlex
from collections.abc import Callable
from dataclasses import replace
from typing import Any, overload

from ..drops.apps.shell import Placeholder, parse
from .data import Data, directory, file, memory
from .graph import Handle, Mapped, Pipeline, PipelineError, call_site, current

__all__ = ["ShellFunction", "ShellTask", "shell"]

#: workflow://WORKFLOW/TASK/PATH (WORKFLOW may be empty). A path ends where the shell would end a word.
WORKFLOW_REF = re.compile(
    r"workflow://(?P<wf>[A-Za-z0-9._-]*)/(?P<task>[A-Za-z0-9._-]+)/(?P<path>[^\s'\"`;|&<>()$]+)"
)
_OPTIONS = frozenset(
    {"name", "timeout", "env", "retries", "error_tolerance", "keep_workdir", "node", "island"}
)
WORKDIR_PORT = "scratch"


class ShellTask(Handle[str]):
    """A shell command of a pipeline. As a handle, it stands for its only declared output, or else for its
    standard output (text). ``task.stdout``, ``task["port"]`` and ``task.file("path/in/workdir")`` give the
    others."""

    __slots__ = ("_app", "_files", "_outputs", "_refs", "_stdout", "_user_command", "task_name")

    def __init__(self, pipeline: Pipeline, app_id: str, scope: tuple[str, ...], task_name: str) -> None:
        self._app = app_id
        self.task_name = task_name
        self._outputs: dict[str, Handle[Any]] = {}
        self._stdout: Handle[str] | None = None
        self._files: dict[str, tuple[Handle[Any], str]] = {}
        self._refs: list[tuple[re.Match[str], str]] = []
        self._user_command = ""
        super().__init__(pipeline, "", scope, "memory", "utf-8")

    @property
    def app_id(self) -> str:
        return self._app

    @property
    def stdout(self) -> Handle[str]:
        """The command's standard output, as text."""
        if self._stdout is None:
            app = self.pipeline.nodes[self._app]
            self._stdout = self.pipeline.output(
                app,
                "stdout",
                memory(codec="utf-8"),
                self.scope,
                f"{self._app}.stdout",
                isinstance(self, Mapped),
            )
        return self._stdout

    def __getitem__(self, port: str) -> Handle[Any]:
        if port == "stdout":
            return self.stdout
        if port not in self._outputs:
            raise KeyError(
                f"task {self.task_name!r} has no output {port!r} (outputs: {', '.join(self._outputs)})"
            )
        return self._outputs[port]

    def file(self, path: str, *, persist: bool = True, expire_after_use: bool = False) -> Handle[str]:
        """A file (a directory, with a trailing ``/``) that the command writes in its working directory; kept
        after the run unless ``persist=False`` (then only for other calls to read)."""
        return self._stage(path, persist, expire_after_use)

    def _stage(self, path: str, persist: bool | None, expire: bool) -> Handle[str]:
        norm = path.strip()
        if norm.startswith("/") or ".." in norm.split("/") or not norm.strip("/"):
            raise PipelineError(
                f"{call_site()}: {path!r} must be a relative path inside task {self.task_name!r}'s working "
                "directory"
            )
        if norm in self._files:
            handle = self._files[norm][0]
            node = handle.node
            assert node.data is not None
            if persist and not node.data.persist:
                node.data = replace(node.data, persist=True, expire_after_use=False)
            return handle
        pipeline = self.pipeline
        app = pipeline.nodes[self._app]
        port = f"staged{len(self._files)}"
        kind = directory if norm.endswith("/") else file
        data = kind(persist=persist, expire_after_use=expire and not persist)
        handle = pipeline.output(
            app, port, data, self.scope, f"{self._app}/{norm.rstrip('/')}", isinstance(self, Mapped)
        )
        self._files[norm] = (handle, port)
        return handle

    # -- build time -----------------------------------------------------------------------------------------

    def resolve_references(self) -> None:
        """Turn each ``workflow://`` reference into a staged file of its task, linked to a port here."""
        pipeline = self.pipeline
        app = pipeline.nodes[self._app]
        mine = pipeline.workflow_name(self.scope)
        command = self._user_command
        for n, (m, where) in enumerate(self._refs):
            wf, name, path = m.group("wf"), m.group("task"), m.group("path")
            keys = [(wf, name)] if wf and wf != pipeline.name else [(mine, name), ("", name)]
            producer = next((pipeline.tasks[k] for k in keys if k in pipeline.tasks), None)
            if producer is None:
                known = ", ".join(sorted(f"{w}/{t}" if w else t for w, t in pipeline.tasks)) or "none"
                raise PipelineError(
                    f"{m.group(0)} at {where}: there is no task {name!r}"
                    + (f" in workflow {wf!r}" if wf else "")
                    + f" (tasks: {known})"
                )
            if producer is self:
                raise PipelineError(f"{m.group(0)} at {where}: a task cannot refer to its own files")
            staged = producer._stage(path, None, True)
            pipeline.reach(staged, self.scope, m.group(0))
            port = f"wf{n}"
            pipeline.link(staged.id, app.id, dst_port=port)
            command = command.replace(m.group(0), f"%i[{port}]", 1)
        self._user_command = command

    def finalize(self) -> None:
        """Write the app's command: into its working directory, the user's command, then the staging."""
        app = self.pipeline.nodes[self._app]
        lines = [f"cd %o[{WORKDIR_PORT}] || exit 1", "(", self._user_command, ") || exit"]
        for path, (_handle, port) in self._files.items():
            src = shlex.quote(path.rstrip("/") or ".")
            ref = f"workflow:///{self.task_name}/{path}"
            lines.append(
                f'[ -e {src} ] || {{ echo "task {self.task_name} did not write {path} in its working '
                f'directory (needed as {ref})" >&2; exit 1; }}'
            )
            if path.endswith("/"):
                lines.append(f"cp -al {src}/. %o[{port}]/ 2>/dev/null || cp -a {src}/. %o[{port}]/ || exit 1")
            else:
                lines.append(f"ln -f {src} %o[{port}] 2>/dev/null || cp -f {src} %o[{port}] || exit 1")
        app.fields["command"] = "\n".join(lines)


def _text(value: Any) -> str:
    return shlex.quote(str(value))


def shell_task(
    command: str, ports: dict[str, Any], options: dict[str, Any], scatter: tuple[str, ...] | None, what: str
) -> ShellTask:
    """Add a shell app running ``command``; ``ports`` are the keyword arguments of :func:`shell`."""
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise TypeError(f"{what} at {call_site()}: unknown option {unknown[0]!r}")
    pipeline = current(what)
    where = call_site()
    if not isinstance(command, str) or not command.strip():
        raise PipelineError(f"{what} at {where}: the command must be a non-empty string")
    scope = scatter if scatter is not None else tuple(pipeline.scope)
    segments, syntax = parse(command)
    if syntax == "legacy":
        legacy = [s.name for s in segments if isinstance(s, Placeholder) and s.name in ports]
        if legacy:
            raise PipelineError(
                f"{what} at {where}: write %i[{legacy[0]}] (an input) or %o[{legacy[0]}] (an output), not "
                f"{{{legacy[0]}}}: braces are the shell's"
            )
    used: dict[str, set[str | None]] = {}
    for seg in segments:
        if isinstance(seg, Placeholder) and syntax == "dropflow":
            used.setdefault(seg.name, set()).add(seg.direction)
    text: dict[str, str] = {}
    inputs: dict[str, list[Handle[Any]]] = {}
    outputs: dict[str, Data] = {}
    for name, value in ports.items():
        if name == WORKDIR_PORT:
            raise PipelineError(f"{what} at {where}: {WORKDIR_PORT!r} is the task's working directory port")
        directions = used.get(name, set())
        if isinstance(value, Handle) or (
            isinstance(value, list | tuple) and value and all(isinstance(v, Handle) for v in value)
        ):
            if "out" in directions:
                raise PipelineError(
                    f"{what} at {where}: %o[{name}] is given a handle, which is an input: write %i[{name}]"
                )
            inputs[name] = [value] if isinstance(value, Handle) else list(value)
        elif isinstance(value, Data):
            if "in" in directions:
                raise PipelineError(
                    f"{what} at {where}: %i[{name}] is given a Data, which makes an output: write %o[{name}] "
                    "(for a file you have, pass input_file(path))"
                )
            outputs[name] = value
        else:
            if directions - {None}:
                raise PipelineError(
                    f"{what} at {where}: {name!r} is the value {value!r}, not a handle or Data: "
                    f"write %[{name}]"
                )
            text[name] = _text(value)
    missing = sorted(n for n in used if n not in ports and n not in ("session_id", "drop_id", "workdir"))
    if missing:
        raise PipelineError(
            f"{what} at {where}: placeholder %[{missing[0]}] names no argument "
            f"(arguments: {', '.join(ports) or 'none'})"
        )
    # Constants are text: put them in now, so that the graph holds the command as it will run.
    if text:
        command = "".join(s if isinstance(s, str) else text.get(s.name, s.text) for s in segments)
    task_name = options.get("name") or "shell"
    fields: dict[str, Any] = {}
    for key in ("timeout", "env", "retries", "error_tolerance", "node", "island"):
        if options.get(key) is not None:
            fields[key] = options[key]
    app = pipeline.add_app("shell", task_name, scope, fields)
    cls = MappedShellTask if scatter is not None else ShellTask
    task = cls(pipeline, app.id, scope, options.get("name") or app.id)
    task.where = where
    task._user_command = command
    task_key = (pipeline.workflow_name(scope), task.task_name)
    if task_key in pipeline.tasks:
        raise PipelineError(
            f"{what} at {where}: there is already a task named {task.task_name!r} "
            f"({pipeline.tasks[task_key].where})"
        )
    pipeline.tasks[task_key] = task
    for name, handles in inputs.items():
        for h in handles:
            pipeline.reach(h, scope, what)
            if name in used and name != "stdin":
                h.node.make_file()  # a command reads it by path
            pipeline.link_input(h, app.id, name)
    # Its working directory: kept if asked, else deleted as soon as the task ends (what others need of it
    # is staged into drops of their own).
    keep = bool(options.get("keep_workdir"))
    pipeline.output(
        app, WORKDIR_PORT, directory(persist=keep, expire_after_use=not keep), scope, f"{app.id}.scratch"
    )
    for name, data in outputs.items():
        if name == "stdout":
            task._stdout = pipeline.output(
                app,
                "stdout",
                data.with_codec("utf-8") if data.kind == "memory" else data,
                scope,
                data.name or f"{app.id}.stdout",
                scatter is not None,
            )
            continue
        kind = data if data.kind != "memory" else replace(data, kind="file")
        task._outputs[name] = pipeline.output(
            app, name, kind, scope, data.name or f"{app.id}.{name}", scatter is not None
        )
    for m in WORKFLOW_REF.finditer(command):
        task._refs.append((m, where))
    if task._refs:
        pipeline.deferred.insert(0, task.resolve_references)
    pipeline.finalizers.append(task.finalize)
    default = next(iter(task._outputs.values())) if len(task._outputs) == 1 else task.stdout
    task.id, task._kind, task.codec = default.id, default.kind, default.codec
    return task


class MappedShellTask(ShellTask, Mapped[str]):
    """A shell task of a scatter: one per copy."""

    __slots__ = ()


class ShellFunction:
    """A function returning a command (Parsl's ``bash_app``): each call adds a shell task."""

    def __init__(self, func: Callable[..., str], options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise TypeError(f"unknown option {unknown[0]!r} (options: {', '.join(sorted(_OPTIONS))})")
        self.func = func
        self.opts = options
        self.signature = inspect.signature(func)
        self.__name__ = func.__name__
        self.__doc__ = func.__doc__

    def options(self, **options: Any) -> ShellFunction:
        return ShellFunction(self.func, {**self.opts, **options})

    def __call__(self, *args: Any, **kwargs: Any) -> ShellTask:
        return self.call(args, kwargs, None)

    def call(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], scatter: tuple[str, ...] | None
    ) -> ShellTask:
        where = call_site()
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.__name__}() at {where}: {exc}") from None
        bound.apply_defaults()
        ports: dict[str, Any] = {}
        shown: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if isinstance(value, Handle) or (
                isinstance(value, list | tuple) and value and all(isinstance(v, Handle) for v in value)
            ):
                ports[name], shown[name] = value, f"%i[{name}]"
            elif isinstance(value, Data):
                ports[name], shown[name] = value, f"%o[{name}]"
            else:
                shown[name] = value
        command = self.func(**shown)
        if not isinstance(command, str):
            raise PipelineError(f"{self.__name__}() at {where} must return the command, a str")
        options = {"name": self.__name__, **self.opts}
        return shell_task(command, ports, options, scatter, f"{self.__name__}()")


@overload
def shell(command: str, /, **ports_and_options: Any) -> ShellTask: ...


@overload
def shell(func: Callable[..., str], /) -> ShellFunction: ...


@overload
def shell(**options: Any) -> Callable[[Callable[..., str]], ShellFunction]: ...


def shell(command: str | Callable[..., str] | None = None, /, **ports_and_options: Any) -> Any:
    """Add a shell command to the current pipeline; returns its task (a handle of its output).

    ``%i[name]``, ``%o[name]`` and ``%[name]`` in ``command`` are the keyword arguments: handles are inputs,
    :class:`~dropflow.api.Data` values are outputs (``out=file("x.gz", persist=True)``), anything else is
    text. ``workflow:///TASK/PATH`` names a file that task TASK writes in its working directory. Options:
    ``name`` (the task's name, for references), ``timeout``, ``env``, ``retries``, ``error_tolerance``,
    ``keep_workdir``, ``node``/``island`` (placement).

    As a decorator (``@shell`` or ``@shell(timeout=60)``) on a function that returns the command, each call
    of the function adds a task; its handle arguments appear in the command as ``%i[param]``, its Data
    arguments as ``%o[param]``.
    """
    if command is None:
        return lambda f: ShellFunction(f, ports_and_options)
    if callable(command):
        return ShellFunction(command, ports_and_options)
    options = {k: v for k, v in ports_and_options.items() if k in _OPTIONS}
    ports = {k: v for k, v in ports_and_options.items() if k not in _OPTIONS}
    return shell_task(command, ports, options, None, "shell()")
