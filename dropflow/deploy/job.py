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
from dataclasses import dataclass, field
from datetime import datetime

from ..drops.errors import GraphError
from ..loading import load_graph
from . import template
from .launchers import bootstrap_command
from .slurm import SlurmProvider

__all__ = [
    "TEMPLATE_VARIABLES",
    "JobError",
    "JobRequest",
    "SubmittedJob",
    "check",
    "find_job_dir",
    "render_script",
    "submit",
]

DEFAULT_RESULTS = "dropflow-results"
DEFAULT_PORT_BASE = 8000
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
    "sbatch_options": "#SBATCH lines for --partition, --time and --account (those given)",
    "results_dir": "the job's results directory (report, logs, script, graph copy)",
    "graph": "the job's copy of the graph file",
    "workspace": "root of the node managers' workspaces (one directory per node below it)",
    "python": "the Python interpreter dropflow runs with",
    "venv": "the virtualenv dropflow is installed in, or empty",
    "module_loads": "'module load' lines for --module (or a comment)",
    "venv_activation": "the line that activates the virtualenv (or a comment)",
    "port_base": "first TCP port of the daemons",
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
    graph: str
    nodes: int
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    islands: int = 1
    template: str | None = None
    results: str = DEFAULT_RESULTS
    job_name: str | None = None
    modules: tuple[str, ...] = ()
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


def check(req: JobRequest) -> list[str]:
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
    for flag, value in (("--partition", req.partition), ("--account", req.account)):
        if value is not None and not _OPTION.match(value):
            problems.append(f"{flag} {value!r}: no spaces, quotes or '#' allowed")
    if req.job_name is not None and not _JOB_NAME.match(req.job_name):
        problems.append(f"--job-name {req.job_name!r}: 1-64 letters, digits, '.', '_' or '-'")
    if not 1 <= req.port_base <= 65535 - req.nodes - req.islands - 1:
        problems.append(f"--port-base {req.port_base} leaves no room for {req.nodes} nodes' ports")
    for module in req.modules:
        if not _OPTION.match(module):
            problems.append(f"--module {module!r}: no spaces, quotes or '#' allowed")
    if req.venv is not None and not os.path.isfile(os.path.join(req.venv, "bin", "activate")):
        problems.append(f"--venv {req.venv!r} is not a virtualenv (no bin/activate)")
    if not os.path.exists(req.graph):
        problems.append(f"graph {req.graph!r} does not exist")
    elif not os.path.isfile(req.graph):
        problems.append(f"graph {req.graph!r} is not a file")
    else:
        try:
            load_graph(req.graph, dict(req.params))
        except GraphError as exc:
            problems.append(f"graph {req.graph!r} does not load:\n{exc}")
    try:
        render_script(req, os.path.join(os.path.abspath(req.results), "JOBDIR"))
    except template.TemplateError as exc:
        problems.append(str(exc))
    return problems


def _sbatch_options(req: JobRequest) -> str:
    lines = [f"#SBATCH --{flag}={value}" for flag, value in _options(req).items()]
    return "\n".join(lines) if lines else "# (no --partition, --time or --account given)"


def _options(req: JobRequest) -> dict[str, str]:
    given = {"partition": req.partition, "time": req.time, "account": req.account}
    return {k: v for k, v in given.items() if v is not None}


def template_values(req: JobRequest, job_dir: str) -> dict[str, str]:
    venv = req.venv if req.venv is not None else _current_venv()
    graph_copy = os.path.join(job_dir, "graph" + _extension(req.graph))
    workspace = req.workspace or os.path.join(job_dir, "workspace")
    bootstrap = bootstrap_command(
        req.python,
        results_dir=job_dir,
        graph=graph_copy,
        port_base=req.port_base,
        islands=req.islands,
        workspace=workspace,
        # Python function apps import modules that sit beside the graph, as with `dropflow run`.
        pythonpath=[os.path.dirname(os.path.abspath(req.graph)), *req.pythonpath],
        params=req.params,
        startup_timeout=req.startup_timeout,
    )
    modules = "\n".join(f"module load {m}" for m in req.modules) or "# (no --module given)"
    activation = (
        f"source {shlex.quote(os.path.join(venv, 'bin', 'activate'))}"
        if venv
        else f"# (no virtualenv: dropflow runs from {req.python})"
    )
    return {
        "job_name": req.job_name or f"dropflow-{_graph_name(req.graph)}",
        "nodes": str(req.nodes),
        "islands": str(req.islands),
        "partition": req.partition or "",
        "time": req.time or "",
        "account": req.account or "",
        "sbatch_options": _sbatch_options(req),
        "results_dir": job_dir,
        "graph": graph_copy,
        "workspace": workspace,
        "python": req.python,
        "venv": venv or "",
        "module_loads": modules,
        "venv_activation": activation,
        "port_base": str(req.port_base),
        "bootstrap": shlex.join(bootstrap),
    }


def _extension(path: str) -> str:
    name = os.path.basename(path)
    return name[name.index(".") :] if "." in name.lstrip(".") else ".json"


def render_script(req: JobRequest, job_dir: str) -> str:
    """The job script for a request whose results go to ``job_dir``; raises TemplateError."""
    text, where = template.load(req.template)
    return template.render(text, template_values(req, job_dir), where, REQUIRED_VARIABLES)


def _new_job_dir(req: JobRequest) -> str:
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    name = f"{req.job_name or _graph_name(req.graph)}-{stamp}-{os.urandom(3).hex()}"
    return os.path.join(os.path.abspath(req.results), name)


def submit(req: JobRequest, provider: SlurmProvider | None = None) -> SubmittedJob:
    """Check, render, submit. Raises JobError (nothing submitted) or SchedulerError."""
    problems = check(req)
    if problems:
        raise JobError("\n".join(problems))
    provider = provider or SlurmProvider()
    job_dir = _new_job_dir(req)
    script = render_script(req, job_dir)
    os.makedirs(os.path.join(job_dir, "logs"), exist_ok=True)
    values = template_values(req, job_dir)
    shutil.copyfile(req.graph, values["graph"])
    script_path = os.path.join(job_dir, SCRIPT_FILE)
    with open(script_path, "w", encoding="utf-8") as f:
        f.write(script)
    os.chmod(script_path, 0o755)
    try:
        job_id = provider.submit(script_path, job_dir)
    except Exception:
        shutil.rmtree(job_dir, ignore_errors=True)  # nothing was submitted: leave nothing behind
        raise
    record = {
        "job_id": job_id,
        "job_name": values["job_name"],
        "submitted_at": time.time(),
        "graph": os.path.abspath(req.graph),
        "nodes": req.nodes,
        "islands": req.islands,
        "options": _options(req),
        "directory": job_dir,
    }
    with open(os.path.join(job_dir, JOB_FILE), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    link = os.path.join(os.path.dirname(job_dir), job_id)
    with contextlib.suppress(FileExistsError):  # a job id reused by a re-created cluster keeps the first
        os.symlink(os.path.basename(job_dir), link)
    return SubmittedJob(job_id, job_dir, script_path)


def find_job_dir(job_id: str, results: str = DEFAULT_RESULTS) -> str | None:
    """The results directory of a submitted job, found by its id under ``results``."""
    link = os.path.join(os.path.abspath(results), job_id)
    return os.path.realpath(link) if os.path.isdir(link) else None
