"""What the bootstrap asks Slurm about time: when the job ends, how long teardown may take, why it ended.

Theory of operation
-------------------
Pure parsing plus a few scheduler queries, all through the provider's replaceable ``execute``. The job's end
comes from ``squeue -o %L`` (time left: independent of time zones), the grace between Slurm's SIGTERM and its
SIGKILL from ``scontrol show config`` (``KillWait``), and why a job was signalled from ``scontrol show job``
(``JobState=TIMEOUT`` or ``CANCELLED``), with the clock as a fallback: a SIGTERM within a few seconds of the
end is the time limit. :func:`checkpoint_margin` says how long before the end the job stops itself -- long
enough to cancel, spill what a resume needs, write the report, tear down and submit a continuation.
"""

from __future__ import annotations

import re
import time

from .slurm import Execute, SchedulerError

__all__ = [
    "DEFAULT_KILL_WAIT",
    "checkpoint_margin",
    "ended_by",
    "job_end",
    "kill_wait",
    "parse_duration",
]

#: Slurm's default KillWait (seconds between SIGTERM and SIGKILL).
DEFAULT_KILL_WAIT = 30.0
_LEFT = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(?:(\d+):)?(\d+)$")


def parse_duration(text: str) -> float | None:
    """Seconds of a Slurm duration (``MM:SS``, ``H:MM:SS``, ``D-HH:MM:SS``, ``D-HH``...), None if unlimited.

    >>> [parse_duration(t) for t in ("0:58", "1:00:00", "2-00:00:01", "UNLIMITED", "NOT_SET")]
    [58.0, 3600.0, 172801.0, None, None]
    """
    text = text.strip()
    if "-" in text:
        days, _, rest = text.partition("-")
        parts = rest.split(":")
        if not days.isdigit() or not all(p.isdigit() for p in parts) or len(parts) > 3:
            return None
        h, m, s = ([int(p) for p in parts] + [0, 0])[:3]
        return float(int(days) * 86400 + h * 3600 + m * 60 + s)
    parts = text.split(":")
    if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
        return None
    values = [int(p) for p in parts]
    if len(values) == 1:
        return float(values[0] * 60)  # minutes, as --time takes them
    if len(values) == 2:
        return float(values[0] * 60 + values[1])
    return float(values[0] * 3600 + values[1] * 60 + values[2])


def job_end(job_id: str, execute: Execute) -> float | None:
    """When the job's time limit ends (seconds since the epoch), or None (no limit, or no answer)."""
    try:
        result = execute(["squeue", "-h", "-j", job_id, "-o", "%L"])
    except SchedulerError:
        return None
    if result.returncode != 0 or not result.stdout.strip():
        return None
    left = parse_duration(result.stdout.strip().splitlines()[0])
    return None if left is None else time.time() + left


def kill_wait(execute: Execute) -> float:
    """Seconds Slurm waits between SIGTERM and SIGKILL (``KillWait``)."""
    try:
        result = execute(["scontrol", "show", "config"])
    except SchedulerError:
        return DEFAULT_KILL_WAIT
    match = re.search(r"^KillWait\s*=\s*(\d+)", result.stdout, re.MULTILINE)
    return float(match.group(1)) if match else DEFAULT_KILL_WAIT


def checkpoint_margin(limit: float | None, given: float | None = None) -> float:
    """Seconds before the end of a job of ``limit`` seconds at which it checkpoints: a tenth, 10 s to 2 min.

    >>> checkpoint_margin(60), checkpoint_margin(3600), checkpoint_margin(86400), checkpoint_margin(60, 0)
    (10.0, 120.0, 120.0, 0.0)
    """
    if given is not None:
        return float(given)
    if limit is None:
        return 0.0
    return min(120.0, max(10.0, limit / 10))


def ended_by(job_id: str, execute: Execute, end: float | None, now: float | None = None) -> str:
    """Why a signalled job is ending: ``TIMEOUT`` (its time limit) or ``CANCELLED`` (scancel, preemption)."""
    try:
        shown = execute(["scontrol", "show", "job", "-o", job_id])
        match = re.search(r"\bJobState=(\S+)", shown.stdout) if shown.returncode == 0 else None
        reason = re.search(r"\bReason=(\S+)", shown.stdout) if shown.returncode == 0 else None
        # While Slurm ends a job over its limit, it shows JobState=COMPLETING Reason=TimeLimit.
        if (match and match.group(1) in ("TIMEOUT", "DEADLINE")) or (
            reason and reason.group(1) == "TimeLimit"
        ):
            return "TIMEOUT"
        if match and match.group(1) in ("CANCELLED", "PREEMPTED"):
            return "CANCELLED"
    except SchedulerError:
        pass
    now = time.time() if now is None else now
    return "TIMEOUT" if end is not None and now >= end - 5 else "CANCELLED"
