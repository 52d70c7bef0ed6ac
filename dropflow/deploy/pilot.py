"""A pilot: one allocation whose managers stay up for many graphs, submitted to it like to any island.

Theory of operation
-------------------
``dropflow slurm pilot --nodes N --time T`` submits a job whose bootstrap brings the managers up as for a
graph (:mod:`.bootstrap`) but runs none: it writes ``pilot.json`` in its results directory -- the entry
manager's URL, the nodes, until when it runs -- and waits until its walltime nears, or until it is cancelled.
Graphs go to it with ``dropflow submit GRAPH --to slurm:JOBID``: :func:`resolve` finds the job's results
directory, its ``pilot.json`` and the job's own token (``RESULTS/JOB/token``, readable by its user only), so
small graphs pay neither a job's queue wait nor 2-3 s of daemons starting and stopping each -- as Parsl's
blocks or HyperQueue's workers. ``dropflow slurm stop JOBID`` ends a pilot cleanly (its report counts the
sessions it ran; the job's exit status is 0); its walltime or a cancel end it too.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

__all__ = ["PILOT_FILE", "PREFIX", "STOP_FILE", "PilotError", "read_pilot", "resolve", "stop", "write_pilot"]

PILOT_FILE = "pilot.json"
#: Made by ``dropflow slurm stop``: the pilot ends cleanly within a second (a cancel is abrupt).
STOP_FILE = "stop"
#: ``--to slurm:JOBID``: a pilot job's entry manager.
PREFIX = "slurm:"


class PilotError(Exception):
    """A pilot that cannot be reached; the message says why."""


def write_pilot(results: str, url: str, job_id: str | None, nodes: list[str], until: float | None) -> None:
    path = os.path.join(results, PILOT_FILE)
    entry = {"url": url, "job_id": job_id, "nodes": nodes, "until": until, "started": time.time()}
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(entry, f, indent=1)
    os.replace(path + ".tmp", path)


def read_pilot(job_dir: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(job_dir, PILOT_FILE), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def resolve(target: str, results: str) -> tuple[str, str | None]:
    """``slurm:JOBID`` -> (the pilot's entry URL, the job's token file or None)."""
    from .job import find_job_dir

    job_id = target[len(PREFIX) :]
    job_dir = find_job_dir(job_id, results)
    if job_dir is None:
        raise PilotError(f"no job {job_id} under {os.path.abspath(results)}/ (give --results DIR)")
    pilot = read_pilot(job_dir)
    if pilot is None:
        raise PilotError(
            f"job {job_id} is not a pilot that is up (no {PILOT_FILE} in {job_dir} yet: still queued or "
            "starting? `dropflow slurm status` tells)"
        )
    if os.path.exists(os.path.join(job_dir, "report.json")):
        raise PilotError(f"pilot job {job_id} has ended (see {job_dir}/report.json)")
    token = os.path.join(job_dir, "token")
    return str(pilot["url"]), token if os.path.exists(token) else None


def stop(job_dir: str) -> None:
    """Ask the pilot whose results are ``job_dir`` to end (it looks every second)."""
    with open(os.path.join(job_dir, STOP_FILE), "w", encoding="utf-8") as f:
        f.write(f"{time.time()}\n")
