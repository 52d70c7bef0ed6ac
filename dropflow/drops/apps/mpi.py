"""MPI apps: a program started with N ranks, by ``srun`` inside a Slurm allocation and ``mpirun`` outside.

Theory of operation
-------------------
``command`` is the program and its arguments as a template: each ``%i[port]`` / ``%o[port]`` (or
``{port}``) becomes the shell-quoted path of the port's drop (as in a shell app), then the line is split
into words -- there is no shell, the launcher starts the program itself. :func:`launch_command`, a pure
function, puts the launcher in front: ``srun --ntasks=N ...`` when the engine runs inside a Slurm
allocation (``SLURM_JOB_ID`` is set) and ``mpirun -n N ...`` otherwise, unless the spec names one. The
launcher inherits the session's environment and the spec's ``env``. Open MPI refuses to run as root unless
told otherwise; an engine running as root (as in most containers) tells it through
``OMPI_ALLOW_RUN_AS_ROOT*``, which other MPI libraries ignore.

Inside an allocation the step is started with ``--overlap``: when the engine itself runs as a Slurm job, its
node managers are job steps that hold the nodes' CPUs, and an MPI step must be allowed to share them.

Every rank's standard output goes through the launcher into one log file; if the app has a ``stdout`` output
port, that drop receives it. A non-zero exit (of any rank, as the launcher reports it) puts the app in ERROR
with the tail of the standard error (or, if that is empty, of the output). The launcher runs in a session and
process group of its own, which a cancel or a timeout signals (SIGTERM, which both launchers pass on to the
ranks, then SIGKILL). When the launcher has ended, whatever is left of its session is killed: mpirun gives
each local rank a process group of its own, so a group signal alone could leave ranks of a killed launcher
running.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Annotated, ClassVar, Literal

import msgspec

from ..errors import Problem
from ..spec import AppSpec, DataTraits, Seconds
from ..stores import CHUNK
from .base import CancelToken, Outcome, OutputRef, Task
from .shell import render, template_problems

__all__ = ["MpiSpec", "check_mpi", "launch_command", "launcher_for", "run"]

TAIL_CHARS = 2048
ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}

#: At most 2**22 (4 million) ranks or nodes: more than any machine has; a bigger number is a mistake (or an
#: attack: ``mpirun -n 10000000`` on one host), refused when the graph is checked.
PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=2**22)]


class MpiSpec(AppSpec, tag="mpi", frozen=True, gc=False, kw_only=True):
    """Runs an MPI program with several ranks."""

    #: A thread waits for the launcher; a worker process would add nothing.
    EXECUTORS: ClassVar[tuple[str, ...]] = ("thread",)

    #: Program and arguments (a template; ``%i[port]`` placeholders become paths). No shell is involved.
    command: str
    #: Number of MPI ranks (processes).
    ranks: PositiveInt = 1
    #: Spread the ranks over this many nodes (srun only; mpirun places ranks by its own host file).
    nodes: PositiveInt | None = None
    #: ``auto``: srun inside a Slurm allocation, mpirun outside.
    launcher: Literal["auto", "srun", "mpirun"] = "auto"
    #: The mpirun executable, e.g. ``mpirun.mpich`` or a full path.
    mpirun: str = "mpirun"
    #: Extra launcher options, e.g. ``["--mpi=pmi2"]`` for srun or ``["--oversubscribe"]`` for Open MPI.
    launcher_args: list[str] = []
    #: Extra environment variables (every rank gets them).
    env: dict[str, str] = {}
    #: Kill the program and fail the app after this many seconds.
    timeout: Seconds | None = None


def check_mpi(spec: MpiSpec, kinds: Mapping[str, DataTraits]) -> list[Problem]:
    """Problems with an MPI app, given the kind of each linked drop (by drop id)."""
    where = spec.label()
    problems = template_problems(
        spec,
        spec.command,
        kinds,
        lambda name, drop_id, kind: f"placeholder {{{name}}}: {drop_id!r} is a {kind} drop, no path",
    )
    if "stdin" in spec.inputs:
        problems.append(Problem(where, "inputs", "an MPI program's standard input cannot be a drop"))
    if spec.nodes is not None and spec.nodes > spec.ranks:
        problems.append(Problem(where, "nodes", f"{spec.nodes} nodes for {spec.ranks} ranks"))
    if not spec.command.strip():
        problems.append(Problem(where, "command", "empty command"))
    return problems


def launcher_for(spec: MpiSpec, environ: Mapping[str, str]) -> str:
    """``srun`` or ``mpirun``: what ``auto`` means in this environment."""
    if spec.launcher != "auto":
        return spec.launcher
    return "srun" if environ.get("SLURM_JOB_ID") else "mpirun"


def launch_command(spec: MpiSpec, program: Sequence[str], launcher: str) -> list[str]:
    """The full command line: launcher, its options, then the program and its arguments.

    >>> launch_command(MpiSpec(id="a", command="x", ranks=4), ["./hello", "out"], "mpirun")
    ['mpirun', '-n', '4', './hello', 'out']
    >>> launch_command(MpiSpec(id="a", command="x", ranks=4, nodes=2), ["./hello"], "srun")
    ['srun', '--ntasks=4', '--nodes=2', '--overlap', '--kill-on-bad-exit=1', './hello']
    """
    if launcher == "srun":
        head = ["srun", f"--ntasks={spec.ranks}"]
        if spec.nodes is not None:
            head.append(f"--nodes={spec.nodes}")
        # --overlap: share CPUs with the engine's own steps; --kill-on-bad-exit: one failed rank ends the run
        # instead of leaving the others blocked in a collective.
        head += ["--overlap", "--kill-on-bad-exit=1"]
    else:
        head = [spec.mpirun, "-n", str(spec.ranks)]
    return [*head, *spec.launcher_args, *program]


def _render(task: Task, spec: MpiSpec) -> list[str]:
    return shlex.split(render(task, spec.command))


def _tail(path: str) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - TAIL_CHARS))
        return f.read().decode(errors="replace").strip()


def _session_members(sid: int) -> list[int]:
    """PIDs of the live processes in session ``sid`` (Linux ``/proc``; empty elsewhere)."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # ended meanwhile
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses, so split after it.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 3 and fields[0] != b"Z" and int(fields[3]) == sid:
            members.append(int(entry))
    return members


def _kill_session(sid: int) -> None:
    """SIGKILL what is left of the launcher's session.

    Killing the launcher's process group is not enough: mpirun puts each local rank in a process group of its
    own, so ranks of a launcher that died (or was killed) would live on. They all stay in its session.
    """
    for pid in _session_members(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _copy(path: str, ref: OutputRef) -> None:
    w = ref.store.writer()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            w.write(chunk)
    w.close()


def run(task: Task, token: CancelToken) -> Outcome:
    spec = task.spec
    assert isinstance(spec, MpiSpec)
    env = {**os.environ, **task.env(), **spec.env}
    if os.geteuid() == 0:
        env = {**ROOT_ENV, **env}
    launcher = launcher_for(spec, env)
    argv = launch_command(spec, _render(task, spec), launcher)
    if shutil.which(argv[0], path=env.get("PATH")) is None:
        where = "inside a Slurm allocation" if launcher == "srun" else "outside a Slurm allocation"
        return Outcome.failed(f"{argv[0]!r} (the MPI launcher {where}) is not on PATH")
    log_dir = os.path.join(task.workdir, ".dropflow", "logs")
    os.makedirs(log_dir, exist_ok=True)
    base = os.path.join(log_dir, f"{os.getpid()}-{id(task)}")
    out_path, err_path = base + ".stdout", base + ".stderr"
    timed_out = False
    try:
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=task.workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            except OSError as exc:
                return Outcome.failed(f"cannot start {argv[0]}: {exc}")
            token.attach(proc.pid)
            try:
                try:
                    proc.wait(timeout=spec.timeout)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    token.cancel()
                    proc.wait()
            finally:
                token.detach()
                _kill_session(proc.pid)
        if token.cancelled and not timed_out:
            return Outcome.failed("cancelled")
        tail = _tail(err_path) or _tail(out_path)
        where = f"; {'stderr' if os.path.getsize(err_path) else 'output'}:\n{tail}" if tail else ""
        if timed_out:
            return Outcome.failed(f"timed out after {spec.timeout:g} s" + where)
        if proc.returncode != 0:
            how = (
                f"killed by signal {-proc.returncode}"
                if proc.returncode < 0
                else f"exit status {proc.returncode}"
            )
            return Outcome.failed(f"{launcher} of {spec.ranks} ranks failed ({how})" + where)
        for ref in task.outputs:
            if ref.port == "stdout":
                _copy(out_path, ref)
    finally:
        for path in (out_path, err_path):
            if os.path.exists(path):
                os.unlink(path)
    return Outcome(True, stores={ref.drop_id: ref.store for ref in task.outputs})
