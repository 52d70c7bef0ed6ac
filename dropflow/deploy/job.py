"""Submitting the engine as a Slurm job: check the request, render the script, submit, record.

Theory of operation
-------------------
A :class:`JobRequest` is what the user asked for (``dropflow slurm submit``). :func:`check` finds every
problem with it -- no nodes, more islands than nodes, a bad time limit, a graph that is missing or does not
load, a template with an unknown variable -- and :func:`render_script` produces the job script; both happen
before anything touches the disk or the scheduler, so a bad request leaves nothing behind.

:func:`submit` then makes the job's results directory ``RESULTS/<name>-<time>-<random>/`` (it must be on a
filesystem the compute nodes share), copies the graph into it -- the job runs what was submitted, even if
the file changes meanwhile -- writes the script, submits it through the provider and records the job id in
``job.json``, with a link ``RESULTS/<job id>`` to the directory so that ``dropflow slurm status JOBID``
finds it. Inside the allocation, :mod:`dropflow.deploy.bootstrap` writes the report next to them.

Site options (partition, account, QoS, GPUs, memory, modules, ...) come from flags and a site preset
(:mod:`.site`). A job may *resume* an earlier one (``resume``: its id): it runs that job's copy of the graph
as the same session, over the same workspaces and journals, so what finished there is not run again (see
:mod:`dropflow.engine.resume`); ``job.json`` records what a resume needs -- the session id, the workspace and
journal roots, the request itself -- and a job run with ``chain`` submits its own continuation, with a Slurm
dependency, when its walltime ends it (:func:`continuation`). A ``pilot`` job runs no graph: it keeps its
managers up for the graphs submitted to it (see :mod:`.pilot`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from ..drops.errors import GraphError
from ..loading import load_graph
from . import site as sites
from . import template
from .launchers import bootstrap_command
from .report import read_report
from .site import SiteOptions
from .slurm import SlurmProvider

__all__ = [
    "TEMPLATE_VARIABLES",
    "JobError",
    "JobRequest",
    "SubmittedJob",
    "check",
    "continuation",
    "find_job_dir",
    "previous_job",
    "render_script",
    "submit",
]

DEFAULT_RESULTS = "dropflow-results"
#: 0: every daemon takes a free port when it starts (two jobs on one node never collide).
DEFAULT_PORT_BASE = 0
JOB_FILE = "job.json"
SCRIPT_FILE = "job.sbatch"

#: Variable -> what it holds, for templates (``dropflow slurm submit --help`` lists them).
TEMPLATE_VARIABLES: dict[str, str] = {
    "job_name": "the job's name",
    "nodes": "number of nodes",
    "islands": "number of data islands",
    "partition": "--partition, or empty",
    "time": "--time, or empty",
    "account": "--account, or empty",
    "sbatch_options": "#SBATCH lines of the site options given (partition, time, account, qos, ...)",
    "results_dir": "the job's results directory (report, logs, script, graph copy)",
    "graph": "the job's copy of the graph file",
    "workspace": "root of the node managers' workspaces (one directory per node below it)",
    "python": "the Python interpreter dropflow runs with",
    "venv": "the virtualenv dropflow is installed in, or empty",
    "module_loads": "'module load' lines for --module (or a comment)",
    "env_setup": "the --env-setup lines (or a comment)",
    "venv_activation": "the line that activates the virtualenv (or a comment)",
    "port_base": "first TCP port of the daemons (0: each takes a free port when it starts)",
    "bootstrap": "the command that runs the engine inside the allocation (required)",
}
REQUIRED_VARIABLES = ("bootstrap",)

# Slurm's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S, or UNLIMITED/INFINITE.
_TIME = re.compile(
    r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+(:\d{1,2}(:\d{1,2})?)?|UNLIMITED|INFINITE)$"
)
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_OPTION = re.compile(r"^[^\s#'\"\\]+$")


class JobError(ValueError):
    """A request that cannot be submitted; the message lists every problem."""


@dataclass(frozen=True, slots=True)
class JobRequest:
    #: The graph file; None when resuming (the earlier job's copy runs).
    graph: str | None
    nodes: int
    time: str | None = None
    islands: int = 1
    template: str | None = None
    results: str = DEFAULT_RESULTS
    job_name: str | None = None
    site: SiteOptions = field(default_factory=SiteOptions)
    #: Virtualenv to activate in the job; None: the one this process runs in, if any.
    venv: str | None = None
    python: str = field(default_factory=lambda: sys.executable)
    port_base: int = DEFAULT_PORT_BASE
    #: Root of the node managers' workspaces; None: ``<results dir>/workspace``.
    workspace: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    startup_timeout: float | None = None
    #: More directories that Python function apps import from (the graph's own is always one).
    pythonpath: tuple[str, ...] = ()
    #: The id of a job whose session this one continues.
    resume: str | None = None
    #: When the walltime ends the session, submit a continuation job that resumes it.
    chain: bool = False
    #: At most this many jobs in a chain.
    max_chain: int = 10
    #: ``sbatch --dependency`` (a chained job waits for the job it continues).
    dependency: str | None = None
    #: Seconds before the walltime at which the job checkpoints; None: a tenth of it, 10 s to 2 min.
    checkpoint_margin: float | None = None
    #: Run no graph: keep the managers up for graphs submitted to them.
    pilot: bool = False

    @property
    def partition(self) -> str | None:
        return self.site.partition

    @property
    def account(self) -> str | None:
        return self.site.account


@dataclass(frozen=True, slots=True)
class Previous:
    """What a resume takes from the job it continues (its ``job.json``)."""

    job_id: str
    directory: str
    graph: str
    session_id: str
    workspace: str
    journal: str
    chain: int
    request: dict[str, Any]
    job_name: str | None = None

    def site(self) -> SiteOptions:
        """The site options that job ran with."""
        raw = self.request.get("site") or {}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return SiteOptions(**values)


@dataclass(frozen=True, slots=True)
class SubmittedJob:
    job_id: str
    directory: str
    script: str


def _current_venv() -> str | None:
    if sys.prefix != sys.base_prefix:
        return sys.prefix
    return os.environ.get("VIRTUAL_ENV") or None


def _graph_name(path: str) -> str:
    base = os.path.basename(path).split(".")[0]
    return re.sub(r"[^A-Za-z0-9._-]", "_", base) or "graph"


def session_id_of(job_name: str, job_id: str) -> str:
    """The session id a job runs its graph as (the first job of a chain names the session)."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", job_name).lstrip("._-") or "dropflow"
    return f"{base[:100]}-{job_id}"


def previous_job(job_id: str, results: str) -> Previous:
    """The job a resume continues, from its results directory; JobError if it cannot be continued."""
    directory = find_job_dir(job_id, results)
    if directory is None:
        raise JobError(
            f"--resume {job_id}: no job {job_id} under {os.path.abspath(results)}/ (give --results)"
        )
    try:
        with open(os.path.join(directory, JOB_FILE), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError) as exc:
        raise JobError(f"--resume {job_id}: cannot read its {JOB_FILE}: {exc}") from None
    try:
        report = read_report(directory)
    except ValueError:
        report = None
    session_id = record.get("session_id") or (report or {}).get("session_id")
    if not session_id:
        session_id = session_id_of(str(record.get("job_name") or "dropflow"), job_id)
    if report is not None and report.get("state") == "FINISHED" and not report.get("error"):
        raise JobError(f"--resume {job_id}: its session {session_id} FINISHED; there is nothing to resume")
    graph = record.get("graph_copy") or os.path.join(
        directory, "graph" + _extension(str(record.get("graph")))
    )
    return Previous(
        job_id,
        directory,
        str(graph),
        str(session_id),
        str(record.get("workspace") or os.path.join(directory, "workspace")),
        str(record.get("journal") or os.path.join(directory, "journal")),
        int(record.get("chain") or 0),
        dict(record.get("request") or {}),
        str(record["job_name"]) if record.get("job_name") else None,
    )


def check(req: JobRequest, previous: Previous | None = None) -> list[str]:
    """Every problem with a request (empty if it can be submitted). Loads the graph to check it."""
    problems = []
    if req.nodes < 1:
        problems.append(f"--nodes must be at least 1 (got {req.nodes})")
    if req.islands < 1:
        problems.append(f"--islands must be at least 1 (got {req.islands})")
    elif req.nodes >= 1 and req.islands > req.nodes:
        problems.append(f"--islands {req.islands} needs at least as many nodes (got --nodes {req.nodes})")
    if req.time is not None and not _TIME.match(req.time):
        problems.append(f"--time {req.time!r} is not a Slurm time (MM, HH:MM:SS, D-HH:MM, ...)")
    problems += sites.problems(req.site)
    if req.job_name is not None and not _JOB_NAME.match(req.job_name):
        problems.append(f"--job-name {req.job_name!r}: 1-64 letters, digits, '.', '_' or '-'")
    if req.port_base and not 1 <= req.port_base <= 65535 - req.nodes - req.islands - 1:
        problems.append(f"--port-base {req.port_base} leaves no room for {req.nodes} nodes' ports")
    if req.venv is not None and not os.path.isfile(os.path.join(req.venv, "bin", "activate")):
        problems.append(f"--venv {req.venv!r} is not a virtualenv (no bin/activate)")
    if req.chain and req.time is None:
        problems.append("--chain continues a job that its time limit ends: give --time")
    if req.max_chain < 1:
        problems.append(f"--max-chain must be at least 1 (got {req.max_chain})")
    if req.dependency is not None and not _OPTION.match(req.dependency):
        problems.append(f"--dependency {req.dependency!r}: no spaces, quotes or '#' allowed")
    if req.checkpoint_margin is not None and req.checkpoint_margin < 0:
        problems.append(f"--checkpoint-margin must not be negative (got {req.checkpoint_margin:g})")
    graph = req.graph if req.graph is not None else (previous.graph if previous is not None else None)
    if req.pilot:
        pass  # a pilot runs the graphs submitted to it
    elif graph is None:
        problems.append("give a graph file (or --resume JOBID)")
    elif not os.path.exists(graph):
        problems.append(f"graph {graph!r} does not exist")
    elif not os.path.isfile(graph):
        problems.append(f"graph {graph!r} is not a file")
    else:
        if previous is not None and req.graph is not None and not _same_file(req.graph, previous.graph):
            problems.append(
                f"--resume {previous.job_id}: the graph is not the one that job ran ({previous.graph}); a "
                "resume keeps finished work only for the same graph (leave the graph out)"
            )
        try:
            load_graph(graph, dict(req.params))
        except GraphError as exc:
            problems.append(f"graph {graph!r} does not load:\n{exc}")
    try:
        render_script(req, os.path.join(os.path.abspath(req.results), "JOBDIR"), previous)
    except template.TemplateError as exc:
        problems.append(str(exc))
    return problems


def _same_file(a: str, b: str) -> bool:
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return fa.read() == fb.read()
    except OSError:
        return False


def _sbatch_options(req: JobRequest) -> str:
    lines = sites.sbatch_lines(req.site, req.time)
    if req.dependency:
        lines.append(f"#SBATCH --dependency={req.dependency}")
    return "\n".join(lines) if lines else "# (no site options given)"


def _options(req: JobRequest) -> dict[str, str]:
    given = {"partition": req.site.partition, "time": req.time, "account": req.site.account}
    return {k: v for k, v in given.items() if v is not None}


def _graph_copy(req: JobRequest, job_dir: str, previous: Previous | None) -> str:
    source = (
        req.graph if req.graph is not None else (previous.graph if previous is not None else "graph.json")
    )
    return os.path.join(job_dir, "graph" + _extension(source))


def template_values(req: JobRequest, job_dir: str, previous: Previous | None = None) -> dict[str, str]:
    venv = req.venv if req.venv is not None else _current_venv()
    graph_copy = _graph_copy(req, job_dir, previous)
    if previous is not None:  # the same session, over the same workspaces and journals
        workspace, journal = previous.workspace, previous.journal
    else:
        workspace = req.workspace or os.path.join(job_dir, "workspace")
        journal = os.path.join(job_dir, "journal")
    source_dir = os.path.dirname(os.path.abspath(req.graph)) if req.graph else None
    if source_dir is None and previous is not None:
        source_dir = previous.request.get("graph_dir")
    bootstrap = bootstrap_command(
        req.python,
        results_dir=job_dir,
        graph=None if req.pilot else graph_copy,
        port_base=req.port_base,
        islands=req.islands,
        workspace=workspace,
        journal=journal,
        # Python function apps import modules that sit beside the graph, as with `dropflow run`.
        pythonpath=[d for d in [source_dir, *req.pythonpath] if d],
        params=req.params,
        startup_timeout=req.startup_timeout,
        allow_paths=req.site.allow_paths,
        session_id=previous.session_id if previous is not None else None,
        resume=previous is not None,
        chain=req.chain,
        checkpoint_margin=req.checkpoint_margin,
    )
    modules = "\n".join(f"module load {m}" for m in req.site.modules) or "# (no --module given)"
    setup = "\n".join(req.site.env_setup) or "# (no --env-setup given)"
    activation = (
        f"source {shlex.quote(os.path.join(venv, 'bin', 'activate'))}"
        if venv
        else f"# (no virtualenv: dropflow runs from {req.python})"
    )
    name = req.job_name or (
        previous.job_name
        if previous is not None and previous.job_name
        else f"dropflow-{_graph_name(req.graph or 'pilot')}"
    )
    return {
        "job_name": name,
        "nodes": str(req.nodes),
        "islands": str(req.islands),
        "partition": req.site.partition or "",
        "time": req.time or "",
        "account": req.site.account or "",
        "sbatch_options": _sbatch_options(req),
        "results_dir": job_dir,
        "graph": graph_copy,
        "workspace": workspace,
        "python": req.python,
        "venv": venv or "",
        "module_loads": modules,
        "env_setup": setup,
        "venv_activation": activation,
        "port_base": str(req.port_base),
        "bootstrap": shlex.join(bootstrap),
    }


def _extension(path: str) -> str:
    name = os.path.basename(path)
    return name[name.index(".") :] if "." in name.lstrip(".") else ".json"


def render_script(req: JobRequest, job_dir: str, previous: Previous | None = None) -> str:
    """The job script for a request whose results go to ``job_dir``; raises TemplateError."""
    text, where = template.load(req.template)
    return template.render(text, template_values(req, job_dir, previous), where, REQUIRED_VARIABLES)


def _new_job_dir(req: JobRequest, name: str) -> str:
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    return os.path.join(os.path.abspath(req.results), f"{name}-{stamp}-{os.urandom(3).hex()}")


def _request_record(req: JobRequest) -> dict[str, Any]:
    """The request as JSON, for a continuation to submit again (the graph is the job's copy)."""
    out = asdict(req)
    out["site"] = asdict(req.site)
    out["params"] = dict(req.params)
    out["graph_dir"] = os.path.dirname(os.path.abspath(req.graph)) if req.graph else None
    return out


def submit(req: JobRequest, provider: SlurmProvider | None = None) -> SubmittedJob:
    """Check, render, submit. Raises JobError (nothing submitted) or SchedulerError."""
    provider = provider or SlurmProvider()
    previous = previous_job(req.resume, req.results) if req.resume else None
    problems = check(req, previous)
    if problems:
        raise JobError("\n".join(problems))
    if previous is not None and req.dependency is None:
        state = provider.status(previous.job_id).state
        if not state.ended and state.name != "UNKNOWN":
            raise JobError(
                f"--resume {previous.job_id}: that job is {state}; resume it once it has ended (or cancel it)"
            )
    if previous is not None and previous.chain + 1 >= req.max_chain and req.chain:
        req = replace(req, chain=False)  # the last job of the chain: it does not continue itself
    name = req.job_name or (
        previous.job_name.removeprefix("dropflow-")
        if previous is not None and previous.job_name
        else (_graph_name(req.graph) if req.graph else "pilot")
    )
    job_dir = _new_job_dir(req, name)
    script = render_script(req, job_dir, previous)
    os.makedirs(os.path.join(job_dir, "logs"), exist_ok=True)
    values = template_values(req, job_dir, previous)
    if not req.pilot:
        source = req.graph if req.graph is not None else previous.graph  # type: ignore[union-attr]
        shutil.copyfile(source, values["graph"])
    script_path = os.path.join(job_dir, SCRIPT_FILE)
    with open(script_path, "w", encoding="utf-8") as f:
        f.write(script)
    os.chmod(script_path, 0o755)
    try:
        job_id = provider.submit(script_path, job_dir)
    except Exception:
        shutil.rmtree(job_dir, ignore_errors=True)  # nothing was submitted: leave nothing behind
        raise
    request = _request_record(req)
    if previous is not None:
        request["graph_dir"] = previous.request.get("graph_dir")
        request["job_name"] = request.get("job_name") or previous.request.get("job_name")
    record = {
        "job_id": job_id,
        "job_name": values["job_name"],
        "submitted_at": time.time(),
        "graph": os.path.abspath(req.graph) if req.graph else (previous.graph if previous else None),
        "graph_copy": None if req.pilot else values["graph"],
        "nodes": req.nodes,
        "islands": req.islands,
        "options": _options(req),
        "directory": job_dir,
        "pilot": req.pilot,
        # What a resume of this job needs: the session, its workspaces and journals, the request.
        "session_id": previous.session_id
        if previous is not None
        else session_id_of(values["job_name"], job_id),
        "workspace": values["workspace"],
        "journal": previous.journal if previous is not None else os.path.join(job_dir, "journal"),
        "resumes": previous.job_id if previous is not None else None,
        "chain": previous.chain + 1 if previous is not None else 0,
        "request": request,
    }
    with open(os.path.join(job_dir, JOB_FILE), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    link = os.path.join(os.path.dirname(job_dir), job_id)
    with contextlib.suppress(FileExistsError):  # a job id reused by a re-created cluster keeps the first
        os.symlink(os.path.basename(job_dir), link)
    return SubmittedJob(job_id, job_dir, script_path)


def continuation(job_dir: str, provider: SlurmProvider) -> SubmittedJob:
    """From inside a job that its walltime ended: submit the job that resumes it, once it has ended."""
    with open(os.path.join(job_dir, JOB_FILE), encoding="utf-8") as f:
        record = json.load(f)
    raw = dict(record["request"])
    raw.pop("graph_dir", None)
    site: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw["site"].items()}
    raw["site"] = SiteOptions(**site)
    raw["job_name"] = raw.get("job_name") or record.get("job_name")
    raw["pythonpath"] = tuple(raw.get("pythonpath") or ())
    raw.update(
        graph=None,
        resume=str(record["job_id"]),
        dependency=f"afterany:{record['job_id']}",
        results=os.path.dirname(job_dir),
    )
    return submit(JobRequest(**raw), provider)


def find_job_dir(job_id: str, results: str = DEFAULT_RESULTS) -> str | None:
    """The results directory of a submitted job, found by its id under ``results``."""
    link = os.path.join(os.path.abspath(results), job_id)
    return os.path.realpath(link) if os.path.isdir(link) else None
