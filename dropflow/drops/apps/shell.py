"""Shell command apps: a command template whose ``{port}`` placeholders become paths.

Theory of operation
-------------------
``command`` is a ``str.format`` template run by ``/bin/sh -c`` in the session's working directory. Each
``{port}`` placeholder becomes the shell-quoted path of the port's drop (several drops: several words):
files and directories by their path, shared-memory drops by their segment's path, null drops as /dev/null.
Memory drops have no path; they connect through the special ports ``stdin`` (the drop's bytes are fed to
the command's standard input) and ``stdout`` (the command's standard output is written to the drop).
``{session_id}``, ``{drop_id}`` and ``{workdir}`` are also available, and the same three values are in the
environment as ``DROPFLOW_SESSION_ID``, ``DROPFLOW_DROP_ID`` and ``DROPFLOW_WORKDIR``.

The command runs in a process group of its own, which the engine kills when the session is cancelled or
the command times out, and which is reaped when the command ends, so nothing it started outlives it. A
non-zero exit puts the app in ERROR with the tail of its standard error. Standard output that no drop takes
and standard error go to files in the workspace while the command runs; their tails go into the outcome
(the drop's log), the files are removed.
"""

from __future__ import annotations

import os
import shlex
import string
import subprocess
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from ..errors import Problem
from ..spec import AppSpec, DataTraits, Seconds
from ..stores import CHUNK
from .base import OUTPUT_TAIL, CancelToken, InputRef, Outcome, OutputRef, Task, tail_of

__all__ = ["ShellSpec", "check_command", "render", "run", "template_problems"]

BUILTIN_FIELDS = frozenset({"session_id", "drop_id", "workdir"})
#: Data kinds that can stand in a placeholder (they have a path).
STDERR_TAIL = 2048


class ShellSpec(AppSpec, tag="shell", frozen=True, gc=False, kw_only=True):
    """Runs a shell command."""

    #: A thread waits for the command; running it inline would block the owner, a process adds nothing.
    EXECUTORS: ClassVar[tuple[str, ...]] = ("thread",)

    command: str
    #: Extra environment variables.
    env: dict[str, str] = {}
    #: Kill the command and fail the app after this many seconds.
    timeout: Seconds | None = None


def placeholders(command: str) -> list[str]:
    """Field names used by a command template; raises ValueError on a malformed template."""
    names = []
    for _literal, field_name, _spec, _conv in string.Formatter().parse(command):
        if field_name is not None:
            names.append(field_name)
    return names


def template_problems(
    spec: AppSpec,
    command: str,
    kinds: Mapping[str, DataTraits],
    pathless: Callable[[str, str, str], str] | None,
) -> list[Problem]:
    """Problems with a command template of shell, MPI and container apps.

    Every placeholder must name a port of the app (or a built-in field). With ``pathless``, a placeholder
    whose drop has no path is a problem too, explained by ``pathless(placeholder, drop id, drop kind)``.
    """
    where = spec.label()
    try:
        names = placeholders(command)
    except ValueError as exc:
        return [Problem(where, "command", f"malformed template: {exc}")]
    problems = []
    ports = {**spec.inputs, **spec.outputs}
    for name in names:
        if name in BUILTIN_FIELDS:
            continue
        if name not in ports:
            problems.append(Problem(where, "command", f"placeholder {{{name}}} names no port of this app"))
            continue
        value = ports[name]
        for drop_id in [value] if isinstance(value, str) else value:
            traits = kinds.get(drop_id)
            if pathless is not None and traits is not None and not (traits.path or traits.discards):
                problems.append(Problem(where, "command", pathless(name, drop_id, traits.kind)))
    return problems


def check_command(spec: ShellSpec, kinds: Mapping[str, DataTraits]) -> list[Problem]:
    """Problems with a shell app's template, given the kind of each linked drop (by drop id)."""
    problems = template_problems(
        spec,
        spec.command,
        kinds,
        lambda name, drop_id, kind: (
            f"placeholder {{{name}}} needs a drop with a path, but {drop_id!r} is a "
            f"{kind} drop; connect it to the 'stdin' or 'stdout' port instead"
        ),
    )
    where = spec.label()
    for port in ("stdin",):
        if port in spec.outputs:
            problems.append(Problem(where, "outputs", "'stdin' is an input port"))
    if "stdout" in spec.inputs:
        problems.append(Problem(where, "inputs", "'stdout' is an output port"))
    return problems


def render(task: Task, command: str) -> str:
    """A command template with its ``{port}`` placeholders replaced by the quoted paths of the drops."""
    words: dict[str, list[str]] = {}
    refs: list[InputRef | OutputRef] = [*task.inputs, *task.outputs]
    for ref in refs:
        path = "/dev/null" if ref.store is None or ref.traits.discards else ref.store.fspath()
        words.setdefault(ref.port, []).append(shlex.quote(path or ""))
    fields: dict[str, Any] = {port: " ".join(w) for port, w in words.items()}
    fields.update(
        session_id=shlex.quote(task.session_id),
        drop_id=shlex.quote(task.spec.id),
        workdir=shlex.quote(task.workdir),
    )
    return command.format_map(fields)


def _tail(path: str, limit: int = STDERR_TAIL) -> str:
    try:
        with open(path, "rb") as f:
            return tail_of(f.fileno(), os.fstat(f.fileno()).st_size, limit)
    except FileNotFoundError:
        return ""


def run(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, ShellSpec)
    command = render(task, spec.command)
    env = {**os.environ, **task.env(), **spec.env}
    log_dir = os.path.join(task.workdir, ".dropflow", "logs")
    os.makedirs(log_dir, exist_ok=True)
    stderr_path = os.path.join(log_dir, f"{os.getpid()}-{id(task)}.stderr")
    stdout_path = stderr_path[: -len("stderr")] + "stdout"
    stdin_refs = [r for r in task.inputs if r.port == "stdin" and r.store is not None]
    stdout_refs = [r for r in task.outputs if r.port == "stdout"]
    stdin_data = b"".join(r.store.buffer() for r in stdin_refs if r.store is not None) if stdin_refs else None
    with open(stderr_path, "wb") as stderr, open(stdout_path, "wb") as stdout_log:
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=task.workdir,
                env=env,
                stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_refs else stdout_log,
                stderr=stderr,
                start_new_session=True,
            )
        except OSError as exc:
            os.unlink(stdout_path)
            os.unlink(stderr_path)
            return Outcome.failed(f"cannot start /bin/sh: {exc}")
        token.attach(proc.pid)
        try:
            timed_out = False
            try:
                out, _ = proc.communicate(stdin_data, timeout=spec.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                token.cancel()
                out, _ = proc.communicate()
        finally:
            token.detach()
    logged = Outcome(True, stdout=_tail(stdout_path, OUTPUT_TAIL), stderr=_tail(stderr_path, OUTPUT_TAIL))
    tail = logged.stderr[-STDERR_TAIL:].strip()
    os.unlink(stderr_path)
    os.unlink(stdout_path)
    if token.cancelled and not timed_out:
        return _logged(logged, "cancelled")
    if timed_out:
        return _logged(logged, f"timed out after {spec.timeout:g} s" + (f"; stderr:\n{tail}" if tail else ""))
    if proc.returncode != 0:
        how = (
            f"killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exit status {proc.returncode}"
        )
        return _logged(logged, f"command failed ({how})" + (f"; stderr:\n{tail}" if tail else ""))
    for ref in stdout_refs:
        w = ref.store.writer()
        view = memoryview(out or b"")
        for start in range(0, len(view), CHUNK):
            w.write(view[start : start + CHUNK])
        w.close()
    logged.stores = {ref.drop_id: ref.store for ref in task.outputs}
    return logged


def _logged(outcome: Outcome, error: str) -> Outcome:
    outcome.ok, outcome.error = False, error
    return outcome
