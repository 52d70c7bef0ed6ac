"""The Slurm provider: submit, status and cancel, all through one replaceable command runner.

Theory of operation
-------------------
:class:`SlurmProvider` never calls a subprocess itself: it hands argument lists to its ``execute`` function
(by default :func:`run_command`) and parses what comes back, so tests can replace the scheduler with fake
executables or a function. ``sbatch --parsable`` gives the job id. A job's state comes from
``scontrol show job``, which answers for as long as slurmctld remembers the job (``MinJobAge``), and then
from ``sacct`` where the site keeps accounting. Slurm's many state names map onto the few that matter
here through one table, :data:`STATE_TABLE`; an unknown name maps to UNKNOWN rather than failing.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "STATE_TABLE",
    "CommandResult",
    "Execute",
    "JobInfo",
    "JobState",
    "SchedulerError",
    "SlurmProvider",
    "run_command",
]


class JobState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    UNKNOWN = "UNKNOWN"

    @property
    def ended(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT)


#: Slurm's job state names -> ours.
STATE_TABLE: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "SUSPENDED": JobState.PENDING,
    "STOPPED": JobState.PENDING,
    "RESIZING": JobState.RUNNING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "PREEMPTED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
    "DEADLINE": JobState.TIMEOUT,
    "TIMEOUT": JobState.TIMEOUT,
}


class SchedulerError(RuntimeError):
    """A scheduler command failed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


Execute = Callable[[Sequence[str]], CommandResult]


def run_command(cmd: Sequence[str], timeout: float = 60.0) -> CommandResult:
    """Run a scheduler command; a missing executable or a hang is a :class:`SchedulerError`."""
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SchedulerError(f"{cmd[0]!r} is not on PATH: run this on a Slurm login node") from None
    except subprocess.TimeoutExpired:
        raise SchedulerError(f"{cmd[0]} did not answer within {timeout:g} s") from None
    return CommandResult(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True, slots=True)
class JobInfo:
    job_id: str
    state: JobState
    #: Slurm's own name for the state (e.g. ``NODE_FAIL``), or ``""`` when unknown.
    slurm_state: str = ""
    #: Exit status of the job script, once it ended.
    exit_code: int | None = None
    #: Signal that ended the job script, if any.
    signal: int | None = None
    #: Slurm's reason (why pending, why failed), when it gives one.
    reason: str | None = None


_JOB_ID = re.compile(r"^(\d+(?:_\d+)?)(?:;\S+)?$")
_STATE = re.compile(r"\bJobState=(\S+)")
_EXIT = re.compile(r"\bExitCode=(\d+):(\d+)")
_REASON = re.compile(r"\bReason=(\S+)")


def _state(name: str) -> JobState:
    # sacct writes e.g. "CANCELLED by 0"; take the first word.
    return STATE_TABLE.get(name.split()[0] if name.strip() else "", JobState.UNKNOWN)


class SlurmProvider:
    """Submit, watch and cancel batch jobs."""

    def __init__(self, execute: Execute = run_command) -> None:
        self.execute = execute

    def _run(self, cmd: Sequence[str]) -> CommandResult:
        result = self.execute(cmd)
        if result.returncode != 0:
            why = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
            raise SchedulerError(f"{' '.join(cmd[:2])} failed: {why}")
        return result

    def submit(self, script: str, workdir: str) -> str:
        """Submit a job script; returns the job id."""
        out = self._run(["sbatch", "--parsable", f"--chdir={workdir}", script]).stdout.strip()
        last = out.splitlines()[-1] if out else ""
        match = _JOB_ID.match(last.strip())
        if match is None:
            raise SchedulerError(f"sbatch gave no job id: {out!r}")
        return match.group(1)

    def status(self, job_id: str) -> JobInfo:
        """The job's state: from slurmctld while it remembers the job, then from accounting."""
        shown = self.execute(["scontrol", "show", "job", "-o", job_id])
        if shown.returncode == 0 and (m := _STATE.search(shown.stdout)):
            exit_match = _EXIT.search(shown.stdout)
            reason = _REASON.search(shown.stdout)
            return JobInfo(
                job_id,
                _state(m.group(1)),
                m.group(1),
                int(exit_match.group(1)) if exit_match else None,
                int(exit_match.group(2)) if exit_match else None,
                reason.group(1) if reason and reason.group(1) != "None" else None,
            )
        acct = self.execute(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State,ExitCode"])
        if acct.returncode == 0 and acct.stdout.strip():
            state, _, code = acct.stdout.strip().splitlines()[0].partition("|")
            status, _, sig = code.partition(":")
            return JobInfo(
                job_id,
                _state(state),
                state.split()[0] if state.strip() else "",
                int(status) if status.isdigit() else None,
                int(sig) if sig.isdigit() else None,
            )
        return JobInfo(job_id, JobState.UNKNOWN)

    def cancel(self, job_id: str) -> None:
        self._run(["scancel", job_id])
