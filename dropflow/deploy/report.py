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

A killed job's managers cannot answer any more, but the session's journals (on the shared filesystem) say
what each node did: :meth:`JobReport.take_journals` fills the drops by state and their placement from them,
and counts the apps that finished (with a few of their names), so that a report says what finished even
when the job died -- and ``ended_by`` says whether its time limit or a cancel ended it.
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
    #: What ended a job before its session did: ``TIMEOUT`` (its walltime) or ``CANCELLED``; else None.
    ended_by: str | None = None
    #: Apps of the session that have finished so far (in this job or the ones it resumed), from the journals,
    #: and the first few of their ids.
    finished: int | None = None
    finished_sample: list[str] = field(default_factory=list)
    #: The session's journal directory (what a resume reads), and how to resume.
    journal: str | None = None
    resume_with: str | None = None
    #: The job this one resumed, and what it kept from it.
    resumed: dict[str, Any] | None = None
    #: The job submitted to continue this one (``--chain``).
    continuation: str | None = None
    #: The job's own output file (what Slurm wrote, also when the bootstrap died before the report).
    output_file: str | None = None

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

    def take_journals(self, directory: str, sample: int = 20) -> None:
        """Fill what the managers can no longer say from the session's journals: drops by state and their
        placement (nodes whose part, run by this job, ended), and the apps that finished (in any job)."""
        from ..engine.journal import read

        try:
            records = read(directory)
        except (OSError, ValueError):
            return
        self.journal = directory
        self.finished = len(records.finished)
        self.finished_sample = sorted(records.finished)[:sample]
        by_state: dict[str, int] = {}
        placement: dict[str, int] = {}
        for node, meta in records.nodes.items():
            if self.job_id is not None and meta.get("slurm_job_id") not in (None, self.job_id):
                continue  # what an earlier job of the chain did there
            try:
                counts = json.loads(meta.get("by_state") or "{}")
            except ValueError:
                counts = {}
            if not isinstance(counts, dict) or not counts:
                continue  # that node died before its session ended: only its records tell
            placement[node] = sum(int(n) for n in counts.values())
            for state, n in counts.items():
                by_state[str(state)] = by_state.get(str(state), 0) + int(n)
        if not self.by_state and by_state:
            self.by_state = dict(sorted(by_state.items()))
            self.drops = sum(by_state.values())
        if not self.placement and placement:
            self.placement = placement
        if (
            not self.values
        ):  # the small results the session made before it died (their bytes are in the journal)
            self.values = _journal_values(records)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}


def _journal_values(records: Any, limit: int = 100, preview: int = 200) -> dict[str, dict[str, Any]]:
    """Persisted in-memory results recorded in a journal, in the shape ``dropflow submit`` reports them."""
    import base64

    from ..drops.codecs import decode

    out: dict[str, dict[str, Any]] = {}
    for uid, codec in list(records.results.items())[:limit]:
        where = records.location(uid)
        if where is None or where.value is None:
            continue
        try:
            text = (
                repr(decode(codec, where.value))
                if codec != "pickle"
                else f"<pickle, {len(where.value)} bytes>"
            )
        except Exception as exc:  # a preview must never break a report
            text = f"<cannot decode: {exc}>"
        out[uid] = {
            "uid": uid,
            "codec": codec,
            "size": len(where.value),
            "data": base64.b64encode(where.value).decode("ascii"),
            "preview": text if len(text) <= preview else text[: preview - 3] + "...",
        }
    return out


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
    if r.get("ended_by"):
        lines.append(f"  ended by: {r['ended_by']}")
    if r.get("error"):
        lines.append(f"  error: {r['error']}")
    resumed = r.get("resumed") or {}
    if resumed:
        lines.append(
            f"  resumed job {resumed.get('job')}: {resumed.get('kept', '?')} finished app(s) kept, "
            f"{resumed.get('rerun', 0)} run again"
        )
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
    if isinstance(r.get("finished"), int) and r.get("state") != "FINISHED":
        sample = r.get("finished_sample") or []
        more = ", ..." if r["finished"] > len(sample) else ""
        lines.append(
            f"  finished apps (journal): {r['finished']}"
            + (f" -- {', '.join(sample)}{more}" if sample else "")
        )
    if r.get("continuation"):
        lines.append(f"  continued by job {r['continuation']}")
    elif r.get("resume_with"):
        lines.append(f"  resume with: {r['resume_with']}")
    logs = r.get("logs") or {}
    if logs:
        lines.append("  logs: " + ", ".join(sorted(logs.values())))
    if r.get("output_file"):
        lines.append(f"  job output: {r['output_file']}")
    return "\n".join(lines)
