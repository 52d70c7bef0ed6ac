"""``dropflow slurm submit|pilot|status|cancel``: the engine as a Slurm job, from the command line.

A thin shell over :mod:`dropflow.deploy`: ``submit`` checks every argument, the site preset, the graph and
the template before anything is written or submitted, then prints the job id (and with ``--wait`` follows the
job to its end); ``--resume JOBID`` continues an earlier job's session, ``--chain`` lets a job continue
itself when its walltime ends it. ``pilot`` submits a job that keeps managers up for graphs submitted to it
(``dropflow submit --to slurm:JOBID``). ``status`` prints the report the job wrote; while there is none yet,
the scheduler's state and the running session's live progress, asked of the job's own engine
(:mod:`dropflow.deploy.live`) -- or, for a pilot, where to submit; and for a job that ended without a report,
the end of its output file. Exit status: 0 when the session FINISHED (or the job has not ended yet), 1 when it
did not, 2 for bad arguments.

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
from ..deploy import site as sites
from ..deploy.pilot import read_pilot
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


def _site_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("site options (flags win over the site preset; lists add to it)")
    g.add_argument(
        "--site",
        metavar="FILE",
        help=f"site preset, TOML (default ${sites.SITE_ENV}, else ~/.config/dropflow/site.toml if it exists)",
    )
    g.add_argument("--no-site", action="store_true", help="ignore the default site preset")
    g.add_argument("--partition", metavar="P")
    g.add_argument("--account", metavar="A")
    g.add_argument("--qos", metavar="Q")
    g.add_argument("--constraint", metavar="C", help="node features, e.g. haswell")
    g.add_argument("--gres", metavar="G", help="generic resources per node, e.g. gpu:4")
    g.add_argument("--gpus-per-node", type=integer(1), metavar="N")
    g.add_argument("--mem", metavar="SIZE", help="memory per node, e.g. 64G")
    g.add_argument("--cpus-per-node", type=integer(1), metavar="N", help="cores for dropflow on each node")
    g.add_argument("--exclusive", action="store_true", help="ask for whole nodes (not the default)")
    g.add_argument(
        "--module", action="append", default=[], metavar="NAME", help="module to load (repeatable)"
    )
    g.add_argument(
        "--env-setup", action="append", default=[], metavar="LINE", help="shell line run before dropflow"
    )
    g.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="OPTION",
        help="more sbatch options, e.g. --mail-type=FAIL",
    )
    g.add_argument(
        "--allow-path",
        action="append",
        default=[],
        metavar="DIR",
        help="let file drops read and write under DIR (project, scratch), outside the job's workspace",
    )
    g.add_argument("--venv", metavar="DIR", help="virtualenv to activate (default: the current one)")
    g.add_argument("--template", metavar="FILE", help="job script template (default: the built-in one)")


def _job_args(p: argparse.ArgumentParser, nodes_required: bool) -> None:
    p.add_argument("--nodes", type=integer(), required=nodes_required, metavar="N", help="number of nodes")
    p.add_argument("--time", metavar="T", help="time limit, e.g. 30 or 1:00:00 or 1-00:00")
    p.add_argument("--islands", type=integer(), metavar="K", help="data islands (default 1)")
    p.add_argument("--job-name", metavar="NAME", help="default: dropflow-<graph name>")
    p.add_argument(
        "--port-base",
        type=integer(0),
        default=jobs.DEFAULT_PORT_BASE,
        metavar="PORT",
        help="first port of the daemons (default 0: each takes a free port when it starts)",
    )
    p.add_argument(
        "--checkpoint-margin",
        type=float,
        metavar="SECONDS",
        help="checkpoint this long before the time limit (default: a tenth of it, 10 s to 2 min; 0: never, "
        "Slurm's SIGTERM at the limit ends it)",
    )
    _site_args(p)
    _results_arg(p)


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
    s.add_argument(
        "graph",
        nargs="?",
        help="graph file (logical or physical, any format `dropflow run` reads); with --resume, the "
        "earlier job's copy by default",
    )
    _job_args(s, nodes_required=False)
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
    s.add_argument("--workspace", metavar="DIR", help="node workspaces root (default: RESULTS/JOB/workspace)")
    s.add_argument(
        "--resume",
        metavar="JOBID",
        help="continue the session of job JOBID, which ended early (time limit, cancel, a lost node): apps "
        "that finished are not run again; the nodes may be more or fewer",
    )
    s.add_argument(
        "--chain",
        action="store_true",
        help="when the time limit ends the session, submit a job that resumes it (needs --time)",
    )
    s.add_argument(
        "--max-chain", type=integer(1), default=10, metavar="N", help="at most N jobs (default 10)"
    )
    s.add_argument("--dependency", metavar="DEP", help="sbatch --dependency, e.g. afterok:1234")
    s.add_argument("--dry-run", action="store_true", help="print the job script instead of submitting it")
    s.add_argument("--wait", action="store_true", help="wait for the job to end and print its report")
    pi = sub.add_parser(
        "pilot",
        help="submit a job that keeps managers up for many graphs",
        description="Start the managers in one allocation and keep them up until its time limit: submit "
        "graphs to it with `dropflow submit GRAPH --to slurm:JOBID` (with --results if not the default).",
    )
    _job_args(pi, nodes_required=True)
    pi.add_argument("--up", action="store_true", help="wait until the pilot takes graphs, then print its id")
    st = sub.add_parser("status", help="state and report of a submitted job")
    st.add_argument("job_id", metavar="JOBID")
    st.add_argument("--wait", action="store_true", help="wait for the job to end")
    st.add_argument("--json", action="store_true", help="print the report as JSON")
    _results_arg(st)
    c = sub.add_parser("cancel", help="cancel a submitted job (its report says so)")
    c.add_argument("job_id", metavar="JOBID")
    sp = sub.add_parser("stop", help="end a pilot job cleanly (its report counts the graphs it ran)")
    sp.add_argument("job_id", metavar="JOBID")
    sp.add_argument("--wait", action="store_true", help="wait for the job to end and print its report")
    _results_arg(sp)


def _site(args: argparse.Namespace) -> sites.SiteOptions:
    path = args.site or (None if args.no_site else sites.default_site_file())
    try:
        preset = sites.load_site(path) if path else sites.SiteOptions()
    except sites.SiteError as exc:
        raise UsageError(f"nothing was submitted:\n  {exc}") from None
    flags = sites.SiteOptions(
        partition=args.partition,
        account=args.account,
        qos=args.qos,
        constraint=args.constraint,
        gres=args.gres,
        gpus_per_node=args.gpus_per_node,
        mem=args.mem,
        cpus_per_node=args.cpus_per_node,
        exclusive=args.exclusive,
        modules=tuple(args.module),
        env_setup=tuple(args.env_setup),
        sbatch=tuple(args.sbatch),
        allow_paths=tuple(os.path.abspath(d) for d in args.allow_path),
    )
    return preset.merged(flags)


def _request(args: argparse.Namespace, pilot: bool = False) -> jobs.JobRequest:
    resume = getattr(args, "resume", None)
    # A resume runs as the job it continues did, but for what the command line says anew.
    before: dict[str, object] = {}
    site = _site(args)
    if resume:
        try:
            previous = jobs.previous_job(resume, args.results)
        except jobs.JobError as exc:
            raise UsageError(f"nothing was submitted:\n  {exc}") from None
        before = previous.request
        site = previous.site().merged(site)
    nodes = args.nodes if args.nodes is not None else before.get("nodes")
    if nodes is None:
        raise UsageError("--nodes is required (or --resume JOBID, which takes that job's)")

    def given(name: str, default: object = None) -> object:
        value = getattr(args, name, None)
        return value if value not in (None, [], ()) else before.get(name, default)

    return jobs.JobRequest(
        graph=None if pilot else args.graph,
        nodes=int(str(nodes)),
        time=given("time"),  # type: ignore[arg-type]
        islands=int(str(given("islands", 1))),
        template=given("template"),  # type: ignore[arg-type]
        results=args.results,
        job_name=args.job_name,
        site=site,
        venv=given("venv"),  # type: ignore[arg-type]
        port_base=args.port_base,
        workspace=getattr(args, "workspace", None),
        params=params(getattr(args, "param", [])) or dict(before.get("params") or {}),  # type: ignore[call-overload]
        pythonpath=tuple(os.path.abspath(str(d)) for d in given("pythonpath", ()) or ()),  # type: ignore[attr-defined]
        resume=resume,
        chain=getattr(args, "chain", False),
        max_chain=getattr(args, "max_chain", 10),
        dependency=getattr(args, "dependency", None),
        checkpoint_margin=args.checkpoint_margin
        if args.checkpoint_margin is not None
        else before.get("checkpoint_margin"),  # type: ignore[arg-type]
        pilot=pilot,
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
    job_id: str, job_dir: str | None, info: JobInfo | None, report: object, pilot: object
) -> tuple[object, str | None]:
    """While the job runs and has no report: the engine's own view of the session (or why there is none);
    once it ended without one: its output file. A pilot that is up runs no session of its own to view."""
    if report is not None or job_dir is None:
        return None, None
    output = live.job_output(job_dir, job_id)
    if info is not None and info.state.ended:
        return None, output
    if pilot is not None:
        return None, None
    try:
        return live.live_status(job_dir, job_id), None
    except live.LiveError as exc:
        # Not up yet, or gone (a scheduler that forgot the job says UNKNOWN): the job's output tells.
        return str(exc), output


def _show(job_id: str, job_dir: str | None, info: JobInfo | None, as_json: bool) -> int:
    report = read_report(job_dir) if job_dir else None
    pilot = read_pilot(job_dir) if job_dir else None
    progress, output = _live(job_id, job_dir, info, report, pilot)
    if as_json:
        out = {
            "job_id": job_id,
            "scheduler": None,
            "report": report,
            "directory": job_dir,
            "live": progress,
            "output": output,
            "pilot": pilot,
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
            if pilot is not None and not ended:
                print(f"  pilot up at {pilot.get('url')}: dropflow submit GRAPH --to slurm:{job_id}")
            else:
                why = "" if ended or progress is None else f" ({progress})"
                print(f"  no report {'and no output file ' if ended else 'yet '}in {job_dir}{why}")
    if report is not None:
        return EXIT_OK if report.get("state") == "FINISHED" and not report.get("error") else EXIT_FAILED
    if info is not None and info.state.ended:
        return EXIT_OK if info.state is JobState.COMPLETED else EXIT_FAILED
    return EXIT_OK


def _submit(args: argparse.Namespace, provider: SlurmProvider, pilot: bool = False) -> int:
    req = _request(args, pilot)
    try:
        previous = jobs.previous_job(req.resume, req.results) if req.resume else None
    except jobs.JobError as exc:
        raise UsageError(f"nothing was submitted:\n  {exc}") from None
    problems = jobs.check(req, previous)
    if problems:
        raise UsageError(
            "nothing was submitted:\n  " + "\n  ".join(p.replace("\n", "\n    ") for p in problems)
        )
    if getattr(args, "dry_run", False):
        where = os.path.join(os.path.abspath(req.results), "<job directory>")
        print(jobs.render_script(req, where, previous), end="")
        return EXIT_OK
    submitted = jobs.submit(req, provider)
    if pilot:
        if args.up:
            _pilot_up(provider, submitted.job_id, submitted.directory)
        print(submitted.job_id, flush=True)
        print(f"submit graphs with: dropflow submit GRAPH --to slurm:{submitted.job_id}", file=sys.stderr)
        return EXIT_OK
    print(submitted.job_id, flush=True)
    if not args.wait:
        print(f"results: {submitted.directory}", file=sys.stderr)
        return EXIT_OK
    info = _wait(provider, submitted.job_id, submitted.directory)
    return _show(submitted.job_id, submitted.directory, info, as_json=False)


def _pilot_up(provider: SlurmProvider, job_id: str, job_dir: str) -> None:
    """Wait until the pilot takes graphs (its pilot.json is there), or fail if it ended first."""
    pause, wake = 0.2, threading.Event()
    while read_pilot(job_dir) is None:
        info = provider.status(job_id)
        if info.state.ended:
            raise UsageError(f"pilot job {job_id} ended ({info.slurm_state}) before it was up; see {job_dir}")
        wake.wait(pause)
        pause = min(pause * 1.5, WAIT_MAX_PAUSE)


def _stop(args: argparse.Namespace, provider: SlurmProvider) -> int:
    from ..deploy.pilot import stop

    job_dir = jobs.find_job_dir(args.job_id, args.results)
    if job_dir is None or read_pilot(job_dir) is None:
        raise UsageError(f"job {args.job_id} is not a pilot that is up under {args.results}/")
    stop(job_dir)
    print(f"job {args.job_id}: stop requested")
    if not args.wait:
        return EXIT_OK
    return _show(args.job_id, job_dir, _wait(provider, args.job_id, job_dir), as_json=False)


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
        if args.slurm_command == "pilot":
            return _submit(args, provider, pilot=True)
        if args.slurm_command == "stop":
            return _stop(args, provider)
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
