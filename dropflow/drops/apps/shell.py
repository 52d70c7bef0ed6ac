"""Shell command apps: a command template whose placeholders become the paths of the app's drops.

Theory of operation
-------------------
``command`` is run by ``/bin/sh -c`` in the session's working directory. Its placeholders are written in a
syntax that no shell uses, DALiuGE's: ``%i[port]`` (an input port), ``%o[port]`` (an output port) and
``%[name]`` (either, or one of the built-in fields ``session_id``, ``drop_id``, ``workdir``). Each becomes
the shell-quoted path of the port's drop (several drops: several words): files and directories by their
path, shared-memory drops by their segment's path, null drops as /dev/null. ``%%[``, ``%%i[`` and ``%%o[``
stand for the literal ``%[``, ``%i[`` and ``%o[``; every other character, braces included, is the shell's.

A command that uses none of these placeholders is read in the older ``{port}`` syntax, kept for existing
graphs: ``{name}`` is a placeholder when ``name`` is an identifier not preceded by ``$`` (so ``${HOME}``,
awk's ``'{print $1}'`` and ``{ a; b; }`` stay the shell's), and ``{{`` / ``}}`` are literal braces. One
renderer (:func:`substitute`) serves the shell, MPI and container apps, and one checker
(:func:`template_problems`) refuses, before anything runs, a placeholder that names no port, or an input
port written ``%o[...]``.

Memory drops have no path; they connect through the special ports ``stdin`` (the drop's bytes are fed to
the command's standard input) and ``stdout`` (the command's standard output is written to the drop), or
give their *value*: an input port given a codec other than ``path`` in the app's ``codecs`` is replaced by
its drop's value, decoded by that codec and shell-quoted (DALiuGE's input ports of a value encoding). The
values of the built-in fields are also in the environment as ``DROPFLOW_SESSION_ID``, ``DROPFLOW_DROP_ID``
and ``DROPFLOW_WORKDIR``.

The command runs in a process group of its own, which the engine kills when the session is cancelled or
the command times out, and which is reaped when the command ends, so nothing it started outlives it. A
non-zero exit puts the app in ERROR with the tail of its standard error. Standard output that no drop takes
and standard error are pipes, drained while the command runs, of which only the tails are kept, for the
outcome (the drop's log). :func:`start` starts the command and returns a :class:`~.command.Command`, which
the engine's watcher drives with every other command of the node -- no thread waits for it --, and
:func:`run` drives one in the calling thread.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from ..codecs import CodecError, decode
from ..errors import Problem
from ..spec import AppSpec, DataTraits, Seconds
from ..stores import CHUNK
from .base import OUTPUT_TAIL, AppError, CancelToken, InputRef, Outcome, OutputRef, Task
from .command import Command, Sink, drive

__all__ = [
    "BUILTIN_FIELDS",
    "Placeholder",
    "ShellSpec",
    "check_command",
    "parse",
    "placeholders",
    "render",
    "run",
    "start",
    "substitute",
    "template_problems",
    "value_ports",
]

BUILTIN_FIELDS = frozenset({"session_id", "drop_id", "workdir"})
STDERR_TAIL = 2048

# %i[port], %o[port], %[name]; a doubled % makes them literal.
_DROPFLOW = re.compile(r"%(?P<esc>%)?(?P<dir>[io]?)\[(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)\]")
# {name} (not after $), and the {{ }} escapes of str.format.
_LEGACY = re.compile(r"\{\{|\}\}|(?<!\$)\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")

Syntax = Literal["dropflow", "legacy"]


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One placeholder of a command template."""

    name: str
    #: "in" for ``%i[...]``, "out" for ``%o[...]``, None for ``%[...]`` and ``{...}``.
    direction: Literal["in", "out"] | None
    #: As written in the command (for messages).
    text: str


Segment = str | Placeholder


def _syntax(command: str) -> Syntax:
    return "dropflow" if any(m.group("esc") is None for m in _DROPFLOW.finditer(command)) else "legacy"


def parse(command: str) -> tuple[list[Segment], Syntax]:
    """The command as literal text and placeholders, and which syntax it is written in.

    >>> parse("gzip -c %i[data] > %o[out]")[0][1]
    Placeholder(name='data', direction='in', text='%i[data]')
    >>> parse("awk '{print $1}' {inp} > ${HOME}/x")[0][1:3]
    [Placeholder(name='inp', direction=None, text='{inp}'), ' > ${HOME}/x']
    """
    syntax = _syntax(command)
    segments: list[Segment] = []
    pos = 0
    pattern = _DROPFLOW if syntax == "dropflow" else _LEGACY
    for m in pattern.finditer(command):
        segments.append(command[pos : m.start()])
        pos = m.end()
        text = m.group(0)
        if syntax == "dropflow":
            if m.group("esc") is not None:
                segments.append(text[1:])  # %%i[x] -> %i[x]
                continue
            direction = {"i": "in", "o": "out"}.get(m.group("dir"))
            segments.append(Placeholder(m.group("name"), direction, text))  # type: ignore[arg-type]
        elif m.group("name") is None:
            segments.append(text[0])  # {{ -> {, }} -> }
        else:
            segments.append(Placeholder(m.group("name"), None, text))
    segments.append(command[pos:])
    return [s for s in segments if s != ""], syntax


def placeholders(command: str) -> list[str]:
    """Names of the placeholders a command uses, in order."""
    return [s.name for s in parse(command)[0] if isinstance(s, Placeholder)]


def substitute(command: str, fields: Mapping[str, str]) -> str:
    """The command with each placeholder replaced by its field's text.

    A legacy ``{name}`` that names no field stays as written (a checked graph has none).

    >>> substitute("cp %i[a] %o[b]; echo '{x}' 100%%[sic]", {"a": "/in", "b": "/out"})
    "cp /in /out; echo '{x}' 100%[sic]"
    """
    out = []
    for seg in parse(command)[0]:
        if isinstance(seg, str):
            out.append(seg)
        else:
            out.append(fields.get(seg.name, seg.text))
    return "".join(out)


class ShellSpec(AppSpec, tag="shell", frozen=True, gc=False, kw_only=True):
    """Runs a shell command."""

    #: A thread waits for the command; running it inline would block the owner, a process adds nothing.
    EXECUTORS: ClassVar[tuple[str, ...]] = ("thread",)

    command: str
    #: Extra environment variables.
    env: dict[str, str] = {}
    #: Kill the command and fail the app after this many seconds.
    timeout: Seconds | None = None


def _unknown(spec: AppSpec, seg: Placeholder, syntax: Syntax) -> str:
    ports = sorted({*spec.inputs, *spec.outputs})
    close = difflib.get_close_matches(seg.name, [*ports, *sorted(BUILTIN_FIELDS)], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (its ports: {', '.join(ports) or 'none'})"
    if syntax == "legacy":
        hint += f"; for literal braces write {{{{{seg.name}}}}}, or use %i[port] / %o[port] placeholders"
    return f"placeholder {seg.text} names no port of this app{hint}"


def template_problems(
    spec: AppSpec,
    command: str,
    kinds: Mapping[str, DataTraits],
    pathless: Callable[[str, str, str], str] | None,
    values: frozenset[str] = frozenset(),
) -> list[Problem]:
    """Problems with a command template of shell, MPI and container apps.

    Every placeholder must name a port of the app (or a built-in field), in its direction when it says one.
    With ``pathless``, a placeholder whose drop has no path is a problem too, explained by
    ``pathless(placeholder, drop id, drop kind)`` -- unless its port is one of ``values``, whose placeholders
    are replaced by the drop's value.
    """
    where = spec.label()
    segments, syntax = parse(command)
    problems = []
    for seg in segments:
        if isinstance(seg, str) or (seg.name in BUILTIN_FIELDS and seg.direction is None):
            continue
        ports = spec.inputs if seg.direction == "in" else spec.outputs if seg.direction == "out" else None
        if ports is not None and seg.name not in ports:
            other = spec.outputs if seg.direction == "in" else spec.inputs
            if seg.name in other:
                right = "%o" if seg.direction == "in" else "%i"
                problems.append(
                    Problem(
                        where,
                        "command",
                        f"placeholder {seg.text}: {seg.name!r} is an "
                        f"{'output' if seg.direction == 'in' else 'input'} port; write {right}[{seg.name}]",
                    )
                )
            else:
                problems.append(Problem(where, "command", _unknown(spec, seg, syntax)))
            continue
        value = {**spec.inputs, **spec.outputs}.get(seg.name)
        if value is None:
            problems.append(Problem(where, "command", _unknown(spec, seg, syntax)))
            continue
        if seg.name in values:
            continue
        for drop_id in [value] if isinstance(value, str) else value:
            traits = kinds.get(drop_id)
            if pathless is not None and traits is not None and not (traits.path or traits.discards):
                problems.append(Problem(where, "command", pathless(seg.text, drop_id, traits.kind)))
    return problems


def value_ports(spec: AppSpec) -> frozenset[str]:
    """The input ports whose placeholders are their drops' values: given a codec other than ``path``."""
    codecs = spec.codecs
    if not codecs:
        return frozenset()
    return frozenset(p for p, codec in codecs.items() if codec != "path" and p in spec.inputs)


def check_command(spec: ShellSpec, kinds: Mapping[str, DataTraits]) -> list[Problem]:
    """Problems with a shell app's template, given the kind of each linked drop (by drop id)."""
    problems = template_problems(
        spec,
        spec.command,
        kinds,
        lambda text, drop_id, kind: (
            f"placeholder {text} needs a drop with a path, but {drop_id!r} is a "
            f"{kind} drop; connect it to the 'stdin' or 'stdout' port instead (or give the port a "
            "codec in 'codecs' to have its value)"
        ),
        value_ports(spec),
    )
    where = spec.label()
    if "stdin" in spec.outputs:
        problems.append(Problem(where, "outputs", "'stdin' is an input port"))
    if "stdout" in spec.inputs:
        problems.append(Problem(where, "inputs", "'stdout' is an output port"))
    return problems


def _value_text(ref: InputRef) -> str:
    """An input drop's value as the text of a placeholder (empty for a drop that gives none)."""
    if ref.store is None or ref.traits.discards:
        return ""
    buf = ref.store.buffer()
    if not len(memoryview(buf)):
        return ""
    try:
        value = decode(ref.codec, buf)
    except CodecError as exc:
        raise AppError(f"input {ref.drop_id!r} (port {ref.port!r}, codec {ref.codec}): {exc}") from None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def fields_of(task: Task) -> dict[str, str]:
    """Placeholder values of a task: each port's quoted paths (or values), and the built-in fields."""
    words: dict[str, list[str]] = {}
    values = value_ports(task.spec)
    refs: list[InputRef | OutputRef] = [*task.inputs, *task.outputs]
    for ref in refs:
        if values and ref.port in values and isinstance(ref, InputRef):
            words.setdefault(ref.port, []).append(shlex.quote(_value_text(ref)))
            continue
        path = "/dev/null" if ref.store is None or ref.traits.discards else ref.store.fspath()
        words.setdefault(ref.port, []).append(shlex.quote(path or ""))
    fields = {port: " ".join(w) for port, w in words.items()}
    # A port of the same name as a built-in field wins: %o[workdir] names the app's own port.
    fields.setdefault("session_id", shlex.quote(task.session_id))
    fields.setdefault("drop_id", shlex.quote(task.spec.id))
    fields.setdefault("workdir", shlex.quote(task.workdir))
    return fields


def render(task: Task, command: str) -> str:
    """A command template with its placeholders replaced by the quoted paths of the drops."""
    return substitute(command, fields_of(task))


def start(task: Task, token: CancelToken) -> Command | Outcome:
    """Start the app's command; the outcome at once if it cannot start. See :mod:`.command` for the rest."""
    spec = task.spec
    assert isinstance(spec, ShellSpec)
    try:
        command = render(task, spec.command)
    except AppError as exc:
        return Outcome.failed(str(exc))
    env = {**os.environ, **task.env(), **spec.env}
    stdin_refs = [r for r in task.inputs if r.port == "stdin" and r.store is not None]
    to_drop = any(r.port == "stdout" for r in task.outputs)
    stdin_data = b"".join(r.store.buffer() for r in stdin_refs if r.store is not None) if stdin_refs else None
    started = time.perf_counter()
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=task.workdir,
            env=env,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return Outcome.failed(f"cannot start /bin/sh: {exc}")
    token.attach(proc.pid)
    assert proc.stdout is not None and proc.stderr is not None
    # The driver owns the pipes' descriptors from here on (Popen's file objects would close them again).
    out_fd, err_fd = os.dup(proc.stdout.fileno()), os.dup(proc.stderr.fileno())
    proc.stdout.close()
    proc.stderr.close()
    out, err = Sink(None if to_drop else OUTPUT_TAIL), Sink(OUTPUT_TAIL)
    return Command(
        proc,
        token,
        lambda cmd: finish(task, cmd, out, err),
        sinks={out_fd: out, err_fd: err},
        stdin=stdin_data,
        timeout=spec.timeout,
        started=started,
    )


def finish(task: Task, cmd: Command, stdout: Sink, stderr: Sink) -> Outcome:
    """The outcome of a command that has exited: its status, its log's tails, its standard output's drop."""
    spec = task.spec
    assert isinstance(spec, ShellSpec)
    stdout_refs = [r for r in task.outputs if r.port == "stdout"]
    logged = Outcome(
        True, stdout="" if stdout_refs else stdout.text()[-OUTPUT_TAIL:], stderr=stderr.text()[-OUTPUT_TAIL:]
    )
    tail = logged.stderr[-STDERR_TAIL:].strip()
    returncode = cmd.returncode
    assert returncode is not None
    if cmd.token.cancelled and not cmd.timed_out:
        return _logged(logged, "cancelled")
    if cmd.timed_out:
        return _logged(logged, f"timed out after {spec.timeout:g} s" + (f"; stderr:\n{tail}" if tail else ""))
    if returncode != 0:
        how = f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
        if not tail and logged.stdout:
            return _logged(logged, f"command failed ({how}); output:\n{logged.stdout.strip()}")
        return _logged(logged, f"command failed ({how})" + (f"; stderr:\n{tail}" if tail else ""))
    out = stdout.value() if stdout_refs else b""
    for ref in stdout_refs:
        w = ref.store.writer()
        view = memoryview(out)
        for pos in range(0, len(view), CHUNK):
            w.write(view[pos : pos + CHUNK])
        w.close()
    logged.stores = {ref.drop_id: ref.store for ref in task.outputs}
    return logged


def run(task: Task, token: CancelToken) -> Outcome:
    """Run the app's command to its end in the calling thread (the engine drives it without one)."""
    started = start(task, token)
    return started if isinstance(started, Outcome) else drive(started)


def _logged(outcome: Outcome, error: str) -> Outcome:
    outcome.ok, outcome.error = False, error
    return outcome
