"""A Slurm job's live progress, read from its results directory while it runs.

Theory of operation
-------------------
A job writes its report only when it ends. While it runs, its results directory already holds what is
needed to ask the engine itself: the plan of its daemons (``nodes.json``, whose entry manager takes the
graph), the token the bootstrap made for them (``token``, readable only by the user), and the job's name
and id (``job.json``), from which the bootstrap names the session. :func:`live_status` asks the entry
manager for the session's monitor view (``GET /api/sessions/{id}/monitor``) with a short timeout and returns
it with the manager's URL, so that ``dropflow slurm status`` can show progress, failures and where to look
next (the web monitor, ``dropflow why``). A job that ended without a report -- killed before the bootstrap
could write one, or a template that never ran it -- is explained by its own output file, which
:func:`job_output` finds.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx

from .bootstrap import PLAN_FILE
from .cluster import ClusterPlan
from .job import session_id_of

__all__ = ["LiveError", "format_live", "job_output", "live_status", "tail"]

TIMEOUT = 5.0


class LiveError(Exception):
    """The job's engine cannot be asked (not up yet, gone, or not answering); the message says which."""


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def live_status(job_dir: str, job_id: str) -> dict[str, Any]:
    """The running session's monitor view, with ``url`` (the entry manager) and ``token_file``."""
    try:
        with open(os.path.join(job_dir, PLAN_FILE), encoding="utf-8") as f:
            plan = ClusterPlan.from_json(f.read())
    except FileNotFoundError:
        raise LiveError("the job has not started its daemons yet (no nodes.json)") from None
    except (OSError, ValueError, KeyError) as exc:
        raise LiveError(f"cannot read {PLAN_FILE}: {exc}") from None
    token_file = os.path.join(job_dir, "token")
    token = None
    if os.path.exists(token_file):
        with open(token_file, encoding="utf-8") as f:
            token = f.read().strip() or None
    token = token or os.environ.get("DROPFLOW_TOKEN") or None
    try:
        record = _read_json(os.path.join(job_dir, "job.json"))
    except (OSError, ValueError):
        record = {}
    job_name = str(record.get("job_name") or "dropflow")
    # A resumed job runs the session of the job it continues, whose id job.json records.
    recorded = record.get("session_id")
    url = plan.entry.url
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT) as http:
        try:
            session_id = str(recorded) if recorded else session_id_of(job_name, job_id)
            resp = http.get(f"/api/sessions/{session_id}/monitor")
            if resp.status_code == 404:  # a site template may name the job otherwise: the job's only session
                sessions = http.get("/api/sessions").json()
                if not isinstance(sessions, list) or len(sessions) != 1:
                    raise LiveError(f"the engine at {url} has no session {session_id!r} (yet)")
                session_id = sessions[0]["sessionId"]
                resp = http.get(f"/api/sessions/{session_id}/monitor")
        except httpx.HTTPError as exc:
            raise LiveError(f"the engine at {url} does not answer: {type(exc).__name__}: {exc}") from None
    if not resp.is_success:
        raise LiveError(f"the engine at {url} answered {resp.status_code}: {resp.text[:200]}")
    view: dict[str, Any] = resp.json()
    view["url"] = url
    view["token_file"] = token_file if os.path.exists(token_file) else None
    return view


def job_output(job_dir: str, job_id: str) -> str | None:
    """The job's own output file (Slurm's ``--output``), if it is in the results directory."""
    path = os.path.join(job_dir, f"slurm-{job_id}.out")
    return path if os.path.exists(path) else None


def tail(path: str, lines: int = 15) -> str:
    """The last ``lines`` lines of a text file (read from its end, so a huge file costs nothing)."""
    with open(path, "rb") as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - 200 * lines))
        return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])


def format_live(view: dict[str, Any]) -> str:
    """A few lines: the session's state and progress, failures, nodes, and where to look next."""
    size, settled = view.get("size") or 0, view.get("settled") or 0
    pct = 100.0 * settled / size if size else 0.0
    sid = view.get("sessionId")
    lines = [f"  session {sid} {view.get('status')}: {settled} of {size} drops settled ({pct:.1f}%)"]
    totals = view.get("totals") or {}
    if totals:
        order = view.get("states") or sorted(totals)
        lines.append("  drops: " + ", ".join(f"{k} {totals[k]}" for k in order if totals.get(k)))
    if view.get("failure_count"):
        first = (view.get("failures") or [{}])[0]
        head = (first.get("message") or "").splitlines()
        lines.append(
            f"  failed: {view['failure_count']}, first {first.get('uid')!r}: {head[0] if head else ''}"
        )
    nodes = view.get("nodes") or {}
    bad = [
        f"{n} {r.get('status')}"
        for n, r in sorted(nodes.items())
        if r.get("status") in ("LOST", "SILENT", "UNREACHABLE")
    ]
    if bad:
        lines.append("  nodes not answering: " + ", ".join(bad))
    token = f" --token-file {view['token_file']}" if view.get("token_file") else ""
    where = view.get("token_file") or "$DROPFLOW_TOKEN"
    lines.append(f"  monitor: {view.get('url')}/  (the page asks for the token in {where})")
    lines.append(f"  why is it not finishing: dropflow why {sid} --to {view.get('url')}{token}")
    return "\n".join(lines)
