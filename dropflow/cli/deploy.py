"""``dropflow slurm submit|status|cancel``: the engine as a Slurm job, from the command line.

A thin shell over :mod:`dropflow.deploy`: ``submit`` checks every argument, the graph and the template before
anything is written or submitted, then prints the job id (and with ``--wait`` follows the job to its end);
``status`` prints the report the job wrote; while there is none yet, the scheduler's state and the running
session's live progress, asked of the job's own engine (:mod:`dropflow.deploy.live`); and for a job that
ended without a report, the end of its output file. Exit status:
0 when the session FINISHED (or the job has not ended yet), 1 when it did not, 2 for bad arguments.

The parser needs :mod:`dropflow.deploy.job`'s defaults and template variables, so this module imports it
when loaded -- which :mod:`dropflow.cli` does only for ``dropflow slurm``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading

from ..deploy import job as jobs
from ..deploy import live
from ..deploy.report import format_summary, read_report
from ..deploy.slurm import JobInfo, JobState, SchedulerError, SlurmProvider
from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, command, integer, params

__all__ = ["cmd_slurm"]

#: Longest pause between two looks at a job that is being waited for.
WAIT_MAX_PAUSE = 5.0


def _variables_help() -> str:
    width = max(len(k) for k in jobs.TEMPLATE_VARIABLES)
    return "template variables ({{ name }}):\n" + "\n".join(
        f"  {k.ljust(width)}  {v}" for k, v in jobs.TEMPLATE_VARIABLES.items()
    )


def _results_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--results",
        default=jobs.DEFAULT_RESULTS,
        metavar="DIR",
        help=f"where job results go, on a filesystem the nodes share (default ./{jobs.DEFAULT_RESULTS})",
    )


def _add_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="slurm_command", metavar="ACTION", required=True)
    s = sub.add_parser(
        "submit",
        help="submit a graph as a Slurm job",
        description="Render the job script from a template, submit it and print the job id. Inside the "
        "allocation a node manager starts on every node, an island manager on the first, the graph runs, "
        "and a report is written to the job's results directory.",
        epilog=_variables_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("graph", help="graph file (logical or physical, any format `dropflow run` reads)")
    s.add_argument("--nodes", type=integer(), required=True, metavar="N", help="number of nodes")
    s.add_argument("--partition", metavar="P")
    s.add_argument("--time", metavar="T", help="time limit, e.g. 30 or 1:00:00 or 1-00:00")
    s.add_argument("--account", metavar="A")
    s.add_argument("--islands", type=integer(), default=1, metavar="K", help="data islands (default 1)")
    s.add_argument("--template", metavar="FILE", help="job script template (default: the built-in one)")
    s.add_argument("--job-name", metavar="NAME", help="default: dropflow-<graph name>")
    s.add_argument(
        "--module", action="append", default=[], metavar="NAME", help="module to load (repeatable)"
    )
    s.add_argument("--venv", metavar="DIR", help="virtualenv to activate (default: the current one)")
    s.add_argument("--port-base", type=integer(1), default=jobs.DEFAULT_PORT_BASE, metavar="PORT")
    s.add_argument("--workspace", metavar="DIR", help="node workspaces root (default: RESULTS/JOB/workspace)")
    s.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="logical graph parameter"
    )
    s.add_argument(
        "--pythonpath",
        action="append",
        default=[],
        metavar="DIR",
        help="where Python function apps are imported from, besides the graph's directory (repeatable)",
    )
    s.add_argument("--dry-run", action="store_true", help="print the job script instead of submitting it")
    s.add_argument("--wait", action="store_true", help="wait for the job to end and print its report")
    _results_arg(s)
    st = sub.add_parser("status", help="state and report of a submitted job")
    st.add_argument("job_id", metavar="JOBID")
    st.add_argument("--wait", action="store_true", help="wait for the job to end")
    st.add_argument("--json", action="store_true", help="print the report as JSON")
    _results_arg(st)
    c = sub.add_parser("cancel", help="cancel a submitted job (its report says so)")
    c.add_argument("job_id", metavar="JOBID")


def _request(args: argparse.Namespace) -> jobs.JobRequest:
    return jobs.JobRequest(
        graph=args.graph,
        nodes=args.nodes,
        partition=args.partition,
        time=args.time,
        account=args.account,
        islands=args.islands,
        template=args.template,
        results=args.results,
        job_name=args.job_name,
        modules=tuple(args.module),
        venv=args.venv,
        port_base=args.port_base,
        workspace=args.workspace,
        params=params(args.param),
        pythonpath=tuple(os.path.abspath(d) for d in args.pythonpath),
    )


def _wait(provider: SlurmProvider, job_id: str, job_dir: str | None) -> JobInfo:
    """Follow the job until the scheduler says it ended (the report then is complete)."""
    pause, wake = 0.2, threading.Event()
    while True:
        info = provider.status(job_id)
        if info.state.ended:
            return info
        if info.state is JobState.UNKNOWN and job_dir is not None and read_report(job_dir) is not None:
            return info  # the scheduler forgot the job (no accounting); its report is all there is
        # Polling the scheduler is the only way to learn of a job's end; back off so as not to load it.
        wake.wait(pause)
        pause = min(pause * 1.5, WAIT_MAX_PAUSE)


def _live(
    job_id: str, job_dir: str | None, info: JobInfo | None, report: object
) -> tuple[object, str | None]:
    """While the job runs and has no report: the engine's own view of the session (or why there is none);
    once it ended without one: its output file."""
    if report is not None or job_dir is None:
        return None, None
    output = live.job_output(job_dir, job_id)
    if info is not None and info.state.ended:
        return None, output
    try:
        return live.live_status(job_dir, job_id), None
    except live.LiveError as exc:
        # Not up yet, or gone (a scheduler that forgot the job says UNKNOWN): the job's output tells.
        return str(exc), output


def _show(job_id: str, job_dir: str | None, info: JobInfo | None, as_json: bool) -> int:
    report = read_report(job_dir) if job_dir else None
    progress, output = _live(job_id, job_dir, info, report)
    if as_json:
        out = {
            "job_id": job_id,
            "scheduler": None,
            "report": report,
            "directory": job_dir,
            "live": progress,
            "output": output,
        }
        if info is not None:
            out["scheduler"] = {
                "state": info.state,
                "slurm_state": info.slurm_state,
                "exit_code": info.exit_code,
            }
        print(json.dumps(out, indent=1))
    else:
        if info is not None:
            code = (
                f", exit status {info.exit_code}" if info.exit_code is not None and info.state.ended else ""
            )
            reason = f" ({info.reason})" if info.reason and not info.state.ended else ""
            print(f"job {job_id}: {info.slurm_state or info.state}{reason}{code}")
        if report is not None:
            print(format_summary(report))
            print(f"  results: {job_dir}")
        elif isinstance(progress, dict):
            print(live.format_live(progress))
            print(f"  results (the report comes at the end): {job_dir}")
        elif output is not None:
            ended = info is not None and info.state.ended
            what = "the job ended without writing a report" if ended else f"no live view ({progress})"
            print(f"  {what}; its output ({output}) ends:")
            print("    " + live.tail(output).replace("\n", "\n    "))
        elif job_dir is not None:
            ended = info is not None and info.state.ended
            why = "" if ended or progress is None else f" ({progress})"
            print(f"  no report {'and no output file ' if ended else 'yet '}in {job_dir}{why}")
    if report is not None:
        return EXIT_OK if report.get("state") == "FINISHED" and not report.get("error") else EXIT_FAILED
    if info is not None and info.state.ended:
        return EXIT_OK if info.state is JobState.COMPLETED else EXIT_FAILED
    return EXIT_OK


def _submit(args: argparse.Namespace, provider: SlurmProvider) -> int:
    req = _request(args)
    problems = jobs.check(req)
    if problems:
        raise UsageError(
            "nothing was submitted:\n  " + "\n  ".join(p.replace("\n", "\n    ") for p in problems)
        )
    if args.dry_run:
        print(jobs.render_script(req, os.path.join(os.path.abspath(req.results), "<job directory>")), end="")
        return EXIT_OK
    submitted = jobs.submit(req, provider)
    print(submitted.job_id, flush=True)
    if not args.wait:
        print(f"results: {submitted.directory}", file=sys.stderr)
        return EXIT_OK
    info = _wait(provider, submitted.job_id, submitted.directory)
    return _show(submitted.job_id, submitted.directory, info, as_json=False)


def _status(args: argparse.Namespace, provider: SlurmProvider) -> int:
    job_dir = jobs.find_job_dir(args.job_id, args.results)
    try:
        info = _wait(provider, args.job_id, job_dir) if args.wait else provider.status(args.job_id)
    except SchedulerError:
        if job_dir is None:
            raise
        info = None  # no scheduler here (another machine): the report still tells
    if job_dir is None and (info is None or info.state is JobState.UNKNOWN):
        raise UsageError(f"no job {args.job_id} known to Slurm or under {args.results}/")
    return _show(args.job_id, job_dir, info, args.json)


@command("slurm", _add_args)
def cmd_slurm(args: argparse.Namespace) -> int:
    provider = SlurmProvider()
    try:
        if args.slurm_command == "submit":
            return _submit(args, provider)
        if args.slurm_command == "status":
            return _status(args, provider)
        provider.cancel(args.job_id)
        print(f"job {args.job_id}: cancel requested")
        return EXIT_OK
    except jobs.JobError as exc:
        raise UsageError(f"nothing was submitted:\n{exc}") from None
    except SchedulerError as exc:
        print(f"dropflow slurm {args.slurm_command}: {exc}", file=sys.stderr)
        return EXIT_FAILED if args.slurm_command != "submit" else EXIT_USAGE
