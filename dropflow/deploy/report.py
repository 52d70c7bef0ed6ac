"""The report of an engine-as-a-job: one JSON document and its short human summary.

Theory of operation
-------------------
The bootstrap gathers what it learnt -- the job (id, name, nodes), the session's end state, drops by
state, failures with their causes, where the drops ran, timings, the log files -- into a
:class:`JobReport` and writes it to the results directory as ``report.json`` and ``summary.txt``, the
latter by :func:`format_summary`. ``dropflow slurm status`` reads it back with :func:`read_report`. The
session part is taken from the report of ``dropflow submit`` where it has one, and is kept whole under
``session`` so that nothing it says is lost; the few fields this report relies on are read tolerantly, so a
report is written even when the engine never ran (then ``state`` is ``ERROR`` and ``error`` says why).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "FORMAT",
    "REPORT_FILE",
    "SUMMARY_FILE",
    "JobReport",
    "format_summary",
    "read_report",
    "write_report",
]

FORMAT = "dropflow/slurm-job-report"
VERSION = 1
REPORT_FILE = "report.json"
SUMMARY_FILE = "summary.txt"
#: The job never got as far as a session that ended.
ERROR = "ERROR"


@dataclass(slots=True)
class JobReport:
    job_id: str | None
    job_name: str | None
    nodes: list[str]
    session_id: str
    #: The session's end state (FINISHED, FAILED, CANCELLED), or ERROR when the engine did not run it.
    state: str = ERROR
    #: A problem of the job itself (a daemon that did not start, a terminated job), not of a drop.
    error: str | None = None
    drops: int | None = None
    by_state: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    #: Node name -> number of drops that ran there.
    placement: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float | None] = field(default_factory=dict)
    #: What -> log file, relative to the results directory.
    logs: dict[str, str] = field(default_factory=dict)
    exit_status: int = 1
    #: The report of ``dropflow submit`` as it was, if there is one.
    session: dict[str, Any] | None = None
    #: Persisted in-memory results (small ones with their data), which outlive the job here.
    values: dict[str, dict[str, Any]] = field(default_factory=dict)

    def take_session(self, submitted: dict[str, Any]) -> None:
        """Adopt the end state, counts and failures from a ``dropflow submit`` report."""
        self.session = submitted
        state = submitted.get("state") or submitted.get("status")
        if isinstance(state, str):
            self.state = state
        by_state = submitted.get("by_state")
        if isinstance(by_state, dict):
            self.by_state = {str(k): int(v) for k, v in by_state.items()}
        failures = submitted.get("failures")
        if isinstance(failures, list):
            self.failures = [f for f in failures if isinstance(f, dict)]
        drops = submitted.get("drops")
        if isinstance(drops, int):
            self.drops = drops
        values = submitted.get("values")
        if isinstance(values, dict):
            self.values = {str(k): v for k, v in values.items() if isinstance(v, dict)}

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}


def write_report(report: JobReport, results_dir: str) -> None:
    """Write ``report.json`` and ``summary.txt`` (each atomically: a reader never sees half a file)."""
    for name, text in (
        (REPORT_FILE, json.dumps(report.to_dict(), indent=1, default=str)),
        (SUMMARY_FILE, format_summary(report.to_dict()) + "\n"),
    ):
        path = os.path.join(results_dir, name)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)


def read_report(results_dir: str) -> dict[str, Any] | None:
    """The report of a job, or None if it has not been written (yet)."""
    try:
        with open(os.path.join(results_dir, REPORT_FILE), encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{results_dir}/{REPORT_FILE} is not a {FORMAT} document")
    return data


def _seconds(value: Any) -> str:
    return f"{value:.1f} s" if isinstance(value, int | float) else "-"


def format_summary(r: dict[str, Any]) -> str:
    """A few lines for a person: what ran where, how it ended, why it failed, how long it took."""
    nodes = r.get("nodes") or []
    lines = [
        f"job {r.get('job_id') or '?'} ({r.get('job_name') or '?'}) on {len(nodes)} node(s) "
        f"{','.join(nodes)}: session {r.get('session_id')} {r.get('state')}"
    ]
    if r.get("error"):
        lines.append(f"  error: {r['error']}")
    t = r.get("timings") or {}
    lines.append(
        f"  queued {_seconds(t.get('queued_seconds'))}, startup {_seconds(t.get('startup_seconds'))}, "
        f"run {_seconds(t.get('run_seconds'))}, teardown {_seconds(t.get('teardown_seconds'))}, "
        f"total {_seconds(t.get('total_seconds'))}"
    )
    by_state = r.get("by_state") or {}
    if by_state:
        total = r.get("drops") or sum(by_state.values())
        lines.append(f"  drops: {total} -- " + ", ".join(f"{s} {n}" for s, n in by_state.items()))
    placement = r.get("placement") or {}
    if placement:
        lines.append("  placement: " + ", ".join(f"{node} {n}" for node, n in placement.items()))
    failures = r.get("failures") or []
    if failures:
        lines.append(f"  failures ({len(failures)}):")
        for f in failures[:10]:
            head, *rest = str(f.get("message", "")).splitlines() or [""]
            lines.append(f"    drop {f.get('uid')!r} ({f.get('kind', '?')}): {head}")
            lines += [f"      {line}" for line in rest[-6:]]
        if len(failures) > 10:
            lines.append(f"    ... and {len(failures) - 10} more (report.json has them all)")
    values = r.get("values") or {}
    for uid, entry in list(values.items())[:10]:
        lines.append(f"  {uid} = {entry.get('preview') if isinstance(entry, dict) else entry}")
    logs = r.get("logs") or {}
    if logs:
        lines.append("  logs: " + ", ".join(sorted(logs.values())))
    return "\n".join(lines)
