"""One pipeline, every target: run here, submit to a manager, run as a Slurm job, or save as a graph file.

Theory of operation
-------------------
Every target takes the same thing, the pipeline's native logical graph (:meth:`Pipeline.build`), and hands
it to the machinery the command line uses: :func:`run` translates it and runs it on an engine node started in
this process, as ``dropflow run`` does; :func:`submit` places it on a manager's nodes and follows the session
over REST, as ``dropflow submit --wait`` does; :func:`slurm` saves it and submits it as an engine-as-a-job, as
``dropflow slurm submit`` does; :func:`save` writes the file all three commands take unchanged.

Results come back as a :class:`Run`: the session's end state, its root-cause failures, and the results --
the values of the drops that were kept (memory drops decoded, files and directories as their paths). Run
here, they are read from the session before the engine stops; from a manager, through its
``/graph/drop/{uid}/data`` endpoint; from a Slurm job, from its report, which keeps small values. A handle's
``result()`` looks itself up in its pipeline's last run; a handle in a scatter gives the list of its copies'
values.

A function of the ``__main__`` script that runs in another process (an ``executor="process"`` app, every
Python app on daemons) needs the script to be importable without running its pipeline again: each target
but :func:`save` checks that first (:func:`~.functions.check_main_guard`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..drops.errors import GraphError
from .functions import check_main_guard
from .graph import Handle, Pipeline, PipelineError

__all__ = ["PipelineFailed", "Run", "SlurmRun", "run", "save", "slurm", "submit", "validate"]

_INDEX = re.compile(r"#(\d+(?:\.\d+)*)$")


class PipelineFailed(PipelineError):
    """A result was asked of a pipeline that failed: the message lists the root causes."""


@dataclass(slots=True)
class Run:
    """The outcome of one run of a pipeline, wherever it ran."""

    pipeline: str
    session_id: str
    #: FINISHED, FAILED or CANCELLED.
    state: str
    #: Where it ran: "here", a manager's URL, or "slurm job ID".
    where: str
    #: Drop id -> value of every kept memory drop, path of every kept file or directory.
    values: dict[str, Any] = field(default_factory=dict)
    #: Drop id -> state, of the drops of every node the pipeline has a handle for.
    states: dict[str, str] = field(default_factory=dict)
    #: Root causes: (drop id, message).
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: App id -> what it printed (the tail), when known.
    outputs: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state == "FINISHED"

    def result(self, handle: Handle[Any], timeout: float | None = None) -> Any:
        """The value (or path) of a handle; a list for a handle of a scatter, one value per copy."""
        uids = self._drops(handle.id)
        if not uids and not self.states:
            raise PipelineError(
                f"{handle!r} has no value in the report of {self.where}: a job's report keeps the kept "
                "values of up to 64 KiB; larger ones, and files, are in its results directory"
            )
        if not uids:
            raise PipelineError(f"{handle!r} is not part of run {self.session_id!r}")
        values = [self._one(handle, uid) for uid in uids]
        return values[0] if len(uids) == 1 and uids[0] == handle.id else values

    def __getitem__(self, handle: Handle[Any]) -> Any:
        return self.result(handle)

    def _drops(self, node_id: str) -> list[str]:
        found = []
        for uid in {*self.states, *self.values}:
            if uid == node_id:
                return [uid]
            if uid.startswith(node_id + "#") and _INDEX.search(uid[len(node_id) :]):
                index = tuple(int(i) for i in uid[len(node_id) + 1 :].split("."))
                found.append((index, uid))
        return [uid for _, uid in sorted(found)]

    def _one(self, handle: Handle[Any], uid: str) -> Any:
        if uid in self.values:
            return self.values[uid]
        state = self.states.get(uid, "unknown")
        if state == "ERROR" or (state == "unknown" and not self.ok):
            causes = "\n  ".join(f"{d}: {m}" for d, m in self.failures[:10]) or "(no cause recorded)"
            raise PipelineFailed(f"{handle!r} has no value: the pipeline {self.state}; causes:\n  {causes}")
        if state == "SKIPPED":
            raise PipelineError(f"{handle!r} was SKIPPED: its side of a branch was not taken")
        raise PipelineError(
            f"{handle!r} ({uid}, {state}) was not kept: by default only results that nothing consumes are "
            "kept; keep it with the option keep=True (@python(keep=True), f.options(keep=True)(...), or "
            "persist=True for a shell output)"
        )

    def __repr__(self) -> str:
        return f"<Run {self.session_id!r} of {self.pipeline!r} {where_text(self.where)}: {self.state}>"


def where_text(where: str) -> str:
    return "here" if where == "here" else f"on {where}"


def _data(pipeline: Pipeline) -> bytes:
    return pipeline.graph_bytes()


def _specs(pipeline: Pipeline) -> list[Any]:
    from ..translator import load_logical

    try:
        specs, _ = load_logical(_data(pipeline), f"pipeline {pipeline.name!r}", {})
    except GraphError as exc:
        raise pipeline.error(exc) from None
    return specs


def _refs(specs: Sequence[Any], processes_only: bool) -> list[str]:
    from ..drops.apps.builtin import BranchSpec
    from ..drops.apps.pyfunc import PythonSpec

    out = []
    for s in specs:
        if isinstance(s, PythonSpec | BranchSpec) and (
            not processes_only or getattr(s, "executor", None) == "process"
        ):
            out.append(s.func)
    return out


def save(pipeline: Pipeline, path: str) -> str:
    """Write the pipeline's logical graph to ``path`` (JSON); the path written."""
    doc = pipeline.build()
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return path


def validate(pipeline: Pipeline) -> None:
    """Check everything ``dropflow validate`` checks, without running anything."""
    from ..engine.graph import build
    from ..engine.workspace import Workspace, default_root

    specs = _specs(pipeline)
    try:
        build(specs, Workspace(default_root(), "validate", sorted(pipeline.input_dirs)), pipeline.name)
    except GraphError as exc:
        raise pipeline.error(exc) from None


def _session_id(pipeline: Pipeline, given: str | None) -> str:
    from datetime import datetime

    return given or f"{pipeline.name}-{datetime.now():%Y%m%dT%H%M%S}-{os.urandom(2).hex()}"


def run(
    pipeline: Pipeline,
    *,
    workspace: str | None = None,
    executor: str | None = None,
    threads: int = 32,
    processes: int | None = None,
    allow_paths: Sequence[str] = (),
    session_id: str | None = None,
    timeout: float | None = None,
) -> Run:
    """Run the pipeline on an engine node in this process, wait for its end, and return its results.

    ``workspace`` is the root of session workspaces (default: ``$DROPFLOW_WORKSPACE`` or
    ``./dropflow-workspace``), where kept files stay. ``executor`` runs Python functions that name none in
    threads (the default) or in worker ``process``-es. Directories of :func:`~dropflow.api.input_file` inputs
    are allowed paths, with ``allow_paths``.
    """
    from ..engine import Node
    from ..engine.graph import DataNode
    from ..engine.workspace import default_root

    specs = _specs(pipeline)
    check_main_guard(_refs(specs, processes_only=executor != "process"), "a worker process")
    sid = _session_id(pipeline, session_id)
    node = Node(
        workspace_root=workspace or default_root(),
        allowed_paths=[*allow_paths, *sorted(pipeline.input_dirs)],
        threads=threads,
        processes=processes,
        executor=executor,
    )
    node.start()
    try:
        session = node.create_session(sid)
        session.add(specs)
        try:
            session.deploy(source=f"pipeline {pipeline.name!r}")
        except GraphError as exc:
            raise pipeline.error(exc) from None
        try:
            session.wait(timeout)
            if not session.ended:
                raise TimeoutError(f"pipeline {pipeline.name!r} did not end within {timeout} s")
        except BaseException:
            session.cancel()
            session.wait()
            raise
        summary = session.summary()
        values: dict[str, Any] = {}
        states: dict[str, str] = {}
        graph = session.graph
        assert graph is not None
        for uid, n in graph.by_id.items():
            states[uid] = str(n.state)
            if not isinstance(n, DataNode) or not n.spec.persist or str(n.state) != "COMPLETED":
                continue
            if n.spec.TRAITS.value:
                values[uid] = session.value(uid)
            elif n.store is not None and n.spec.TRAITS.mountable:
                values[uid] = n.store.fspath()
    finally:
        node.close()
    result = Run(
        pipeline.name,
        sid,
        summary.state,
        "here",
        values,
        states,
        [(f.uid, f.message) for f in summary.failures],
        dict(summary.outputs),
        {"by_state": summary.by_state, "persisted": summary.persisted, "run_seconds": summary.run_seconds},
    )
    pipeline.last_run = result
    return result


def _client(url: str | None, token: str | None) -> Any:
    from ..cli.client import DEFAULT_URL
    from ..cli.common import read_token
    from ..managers.client import RestClient

    url = url or os.environ.get("DROPFLOW_URL") or DEFAULT_URL
    return RestClient(url, token=token or read_token(None))


def submit(
    pipeline: Pipeline,
    url: str | None = None,
    *,
    token: str | None = None,
    session_id: str | None = None,
    algorithm: str = "metis",
    timeout: float | None = None,
) -> Run:
    """Run the pipeline on the cluster whose manager answers at ``url`` (default ``$DROPFLOW_URL`` or the
    local cluster's island, ``http://127.0.0.1:8001``); wait for its end and return its results.

    The managers' node managers import the pipeline's Python functions: start them with the functions'
    directory on their Python path (``dropflow cluster up --pythonpath DIR``).
    """
    from ..cli.client import placed
    from ..managers.errors import ApiError, BadGraph

    specs_local = _specs(pipeline)  # the whole check, before anything reaches the cluster
    check_main_guard(_refs(specs_local, processes_only=False), "the cluster's worker processes")
    sid = _session_id(pipeline, session_id)
    client = _client(url, token)
    try:
        role = client.info().get("role")
        specs = placed(client, role, _data(pipeline), {}, algorithm)
        client.create_session(sid)
        try:
            client.append(sid, specs)
            client.deploy(sid)
        except ApiError as exc:
            if 400 <= exc.status < 500:
                with contextlib.suppress(ApiError):
                    client.delete_session(sid)
            if isinstance(exc, BadGraph):
                problems = [
                    GraphError.one(p["where"], p.get("field"), p["message"]).problems[0]
                    for p in exc.extra.get("problems", [])
                ]
                raise pipeline.problems(problems) from None
            raise PipelineError(f"{client.url} refused pipeline {pipeline.name!r}: {exc.message}") from None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 30.0 if deadline is None else max(0.0, min(30.0, deadline - time.monotonic()))
            answer = client.wait(sid, left)
            if answer.get("ended"):
                summary = answer["summary"]
                break
            if deadline is not None and time.monotonic() >= deadline:
                client.cancel(sid)
                raise TimeoutError(
                    f"pipeline {pipeline.name!r} did not end within {timeout} s on {client.url}"
                )
        states = {uid: entry["status"] for uid, entry in client.graph_status(sid).items()}
        values = _decoded(_fetch_kept(client, sid, specs, states))
    finally:
        client.close()
    result = Run(
        pipeline.name,
        sid,
        summary["status"],
        client.url,
        values,
        states,
        [(f["uid"], f.get("message") or "") for f in summary.get("failures", [])],
        {},
        summary,
    )
    pipeline.last_run = result
    return result


def _fetch_kept(
    client: Any, sid: str, specs: Sequence[Any], states: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """The data endpoint's answers for every kept drop that COMPLETED: values of memory drops (up to the
    endpoint's largest answer), paths of files and directories."""
    from ..drops.spec import DataSpec
    from ..managers.errors import ApiError
    from ..managers.results import MAX_LIMIT, fetch

    out = {}
    for spec in specs:
        if not isinstance(spec, DataSpec) or not spec.persist or states.get(spec.id) != "COMPLETED":
            continue
        if not (spec.TRAITS.value or spec.TRAITS.mountable):
            continue
        try:
            out[spec.id] = fetch(client, sid, spec.id, MAX_LIMIT, content=bool(spec.TRAITS.value))
        except ApiError as exc:
            out[spec.id] = {"uid": spec.id, "error": exc.message}
    return out


def _decoded(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Values from the data endpoint's answers (or a job report's copies of them); pickle included: these
    are the results of the caller's own pipeline."""
    from ..managers.results import decode_value

    out: dict[str, Any] = {}
    for uid, entry in entries.items():
        if entry.get("error") or entry.get("status", "COMPLETED") != "COMPLETED":
            continue
        try:
            out[uid] = decode_value(entry, allow_pickle=True)
        except Exception:  # not decodable here (a value too large was left out): no value
            continue
    return out


@dataclass(slots=True)
class SlurmRun:
    """A pipeline submitted as a Slurm job; :meth:`wait` (or a handle's ``result()``) follows it."""

    pipeline: Pipeline
    job_id: str
    directory: str
    _run: Run | None = None

    def wait(self, timeout: float | None = None) -> Run:
        """Wait for the job to end; its outcome, read from its report."""
        if self._run is not None:
            return self._run
        from ..deploy.report import read_report
        from ..deploy.slurm import JobState, SlurmProvider

        provider = SlurmProvider()
        deadline = None if timeout is None else time.monotonic() + timeout
        pause, wake = 0.2, threading.Event()
        while True:
            info = provider.status(self.job_id)
            report = read_report(self.directory)
            if info.state.ended or (info.state is JobState.UNKNOWN and report is not None):
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"Slurm job {self.job_id} did not end within {timeout} s")
            wake.wait(pause)  # the scheduler only says when asked; back off so as not to load it
            pause = min(pause * 1.5, 5.0)
        report = read_report(self.directory) or {}
        session = report.get("session") or {}
        self._run = Run(
            self.pipeline.name,
            str(report.get("session_id") or ""),
            str(report.get("state") or info.state),
            f"slurm job {self.job_id}",
            _decoded(report.get("values") or {}),
            {},
            [(f.get("uid", "?"), f.get("message", "")) for f in report.get("failures") or []]
            + ([("job", report["error"])] if report.get("error") else []),
            {},
            {**session, "report": report},
        )
        self.pipeline.last_run = self._run
        return self._run

    @property
    def state(self) -> str:
        return self.wait().state

    def result(self, handle: Handle[Any], timeout: float | None = None) -> Any:
        return self.wait(timeout).result(handle)

    def __repr__(self) -> str:
        return f"<SlurmRun of {self.pipeline.name!r}: job {self.job_id}, results in {self.directory}>"


def slurm(
    pipeline: Pipeline,
    nodes: int,
    *,
    wait: bool = True,
    results: str | None = None,
    partition: str | None = None,
    time_limit: str | None = None,
    account: str | None = None,
    islands: int = 1,
    template: str | None = None,
    job_name: str | None = None,
    modules: Sequence[str] = (),
    venv: str | None = None,
    port_base: int | None = None,
    pythonpath: Sequence[str] = (),
) -> SlurmRun:
    """Run the pipeline as a Slurm job on ``nodes`` nodes (see ``dropflow slurm submit``); with ``wait``,
    follow it to its end. The job imports Python functions from the directory of the running script (and
    ``pythonpath``); the job's report, under ``results``, keeps small kept values."""
    from ..deploy import job as jobs
    from ..deploy.site import SiteOptions

    specs = _specs(pipeline)
    check_main_guard(_refs(specs, processes_only=False), "the job's worker processes")
    results_dir = os.path.abspath(results or jobs.DEFAULT_RESULTS)
    os.makedirs(results_dir, exist_ok=True)
    graph = os.path.join(results_dir, f"{pipeline.name}.pipeline.json")
    save(pipeline, graph)
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    script_dir = os.path.dirname(os.path.abspath(main_file)) if isinstance(main_file, str) else None
    req = jobs.JobRequest(
        graph=graph,
        nodes=nodes,
        time=time_limit,
        islands=islands,
        template=template,
        results=results_dir,
        job_name=job_name or f"dropflow-{pipeline.name}"[:64],
        site=SiteOptions(partition=partition, account=account, modules=tuple(modules)),
        venv=venv,
        port_base=port_base or jobs.DEFAULT_PORT_BASE,
        pythonpath=tuple([*([script_dir] if script_dir else []), os.getcwd(), *pythonpath]),
    )
    try:
        submitted = jobs.submit(req)
    except jobs.JobError as exc:
        raise PipelineError(f"pipeline {pipeline.name!r} was not submitted to Slurm:\n{exc}") from None
    job = SlurmRun(pipeline, submitted.job_id, submitted.directory)
    pipeline.last_run = job
    if wait:
        job.wait()
    return job
