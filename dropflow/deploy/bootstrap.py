"""Inside the allocation: start the managers, run the graph, write the report, stop everything.

Theory of operation
-------------------
The job script ends by exec-ing ``python -m dropflow.deploy.bootstrap``; it runs on the allocation's first
node, as the batch step. It

1. learns the allocation from Slurm: node names (``scontrol show hostnames``) and their addresses
   (``NodeAddr`` of ``scontrol show node``), and plans every daemon's place and port
   (:func:`~dropflow.deploy.cluster.plan_cluster`), writing the plan to ``nodes.json``;
2. starts one node manager per node as a single srun step (each task finds its own line of the plan,
   :mod:`dropflow.deploy.node_entry`), the island manager(s) and, with several islands, the master manager;
3. waits until every daemon answers ``GET /api/health`` -- with a deadline, and failing at once, with the
   end of its log, when a daemon exits instead;
4. runs ``dropflow submit GRAPH --to ENTRY --wait --report session.json``, which translates the graph if it
   is logical, maps it onto the managers' nodes, runs it and reports;
5. counts where the drops ran (``/graph/status`` of each node manager), writes ``report.json`` and
   ``summary.txt`` (:mod:`dropflow.deploy.report`), and
6. stops the daemons: SIGTERM to the managers it started itself, ``scancel --signal=TERM`` to the srun steps
   (a SIGTERM to srun would kill their tasks outright), then SIGKILL for whatever has not ended within the
   teardown timeout. The report is rewritten with the teardown time.

The exit status is 0 only if the session FINISHED, so the job's own state says whether the graph ran. If the
job is cancelled or reaches its time limit, Slurm sends SIGTERM: the bootstrap stops where it is, writes the
report saying so, and tears down before Slurm's SIGKILL.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from types import FrameType
from typing import Any

from .cluster import ClusterPlan, plan_cluster
from .launchers import (
    NM_STEP,
    dropflow_command,
    island_manager_command,
    master_manager_command,
    node_managers_command,
    srun_on,
    submit_command,
)
from .report import SUMMARY_FILE, JobReport, write_report
from .slurm import Execute, SchedulerError, run_command

__all__ = ["BootstrapError", "discover_nodes", "main"]

PLAN_FILE = "nodes.json"
SESSION_REPORT = "session.json"
TAIL_CHARS = 1500


class BootstrapError(Exception):
    """The engine could not be brought up or run; the message says why (it goes into the report)."""


class Terminated(BaseException):
    """Slurm sent SIGTERM (scancel, time limit). A BaseException, so no ``except Exception`` swallows it."""


@dataclass(slots=True)
class Daemon:
    name: str
    proc: subprocess.Popen[bytes]
    log: str
    #: The srun step's name, when the daemon runs as a step (teardown signals it through scancel).
    step: str | None = None


# -- the allocation -----------------------------------------------------------------------------------------


def _checked(execute: Execute, cmd: list[str]) -> str:
    try:
        result = execute(cmd)
    except SchedulerError as exc:
        raise BootstrapError(str(exc)) from None
    if result.returncode != 0:
        raise BootstrapError(f"{' '.join(cmd)} failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout


def discover_nodes(nodelist: str, execute: Execute = run_command) -> list[tuple[str, str]]:
    """(name, address) of every node of ``nodelist``, in Slurm's order."""
    names = _checked(execute, ["scontrol", "show", "hostnames", nodelist]).split()
    shown = _checked(execute, ["scontrol", "show", "node", "-o", nodelist])
    addresses = {}
    for line in shown.splitlines():
        name = re.search(r"\bNodeName=(\S+)", line)
        addr = re.search(r"\bNodeAddr=(\S+)", line)
        if name:
            addresses[name.group(1)] = addr.group(1) if addr else name.group(1)
    return [(n, addresses.get(n, n)) for n in names]


# -- processes ----------------------------------------------------------------------------------------------


def _start(name: str, cmd: list[str], log_path: str, env: dict[str, str], step: str | None = None) -> Daemon:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    return Daemon(name, proc, log_path, step)


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - TAIL_CHARS))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def _health(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError, ValueError):
        return False


def wait_healthy(urls: dict[str, str], daemons: list[Daemon], timeout: float, logs: dict[str, str]) -> None:
    """Return once every ``name -> url`` answers its health check; raise when a daemon exits or time is up."""
    pending = dict(urls)
    deadline = time.monotonic() + timeout
    pause, wake = 0.05, threading.Event()
    while pending:
        for name, url in list(pending.items()):
            if _health(url):
                del pending[name]
        for d in daemons:
            code = d.proc.poll()
            if code is not None:
                raise BootstrapError(
                    f"{d.name} exited with status {code} before the engine was up; its log ends:\n"
                    + _tail(d.log)
                )
        if not pending:
            return
        if time.monotonic() > deadline:
            waiting = ", ".join(f"{n} ({u})" for n, u in pending.items())
            tails = "\n".join(f"--- {n}:\n{_tail(logs[n])}" for n in pending if n in logs)
            raise BootstrapError(f"no answer within {timeout:g} s from {waiting}\n{tails}".rstrip())
        # A daemon takes a second or so to come up; back off from 50 ms to 0.5 s between rounds of checks.
        wake.wait(pause)
        pause = min(pause * 2, 0.5)


def _step_ids(job_id: str, names: set[str], execute: Execute) -> list[str]:
    out = execute(["squeue", "-h", "-s", "-j", job_id, "-o", "%i %j"])
    ids = []
    for line in out.stdout.splitlines():
        step, _, name = line.strip().partition(" ")
        if name in names:
            ids.append(step)
    return ids


def teardown(daemons: list[Daemon], job_id: str | None, timeout: float, execute: Execute) -> None:
    """Stop every daemon: managers above the nodes first, then the node managers."""
    steps = {d.step for d in daemons if d.step is not None}
    for d in reversed(daemons):  # started bottom-up, stopped top-down
        if d.proc.poll() is not None:
            continue
        if d.step is None:
            d.proc.terminate()
    if steps and job_id:
        try:
            for step in _step_ids(job_id, steps, execute):
                execute(["scancel", "--signal=TERM", step])
        except SchedulerError:
            for d in daemons:  # no scheduler commands: srun's own SIGTERM, which kills the tasks outright
                if d.step is not None and d.proc.poll() is None:
                    d.proc.terminate()
    deadline = time.monotonic() + timeout
    for d in daemons:
        try:
            d.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            d.proc.kill()  # srun killed: Slurm kills the step's tasks
            d.proc.wait()


# -- the run ------------------------------------------------------------------------------------------------


def _get_json(url: str) -> Any:
    request = urllib.request.Request(url)
    token = os.environ.get("DROPFLOW_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.load(resp)


def placement(plan: ClusterPlan, session_id: str) -> dict[str, int]:
    """Node name -> number of drops it holds of the session (a node that cannot say counts -1)."""
    counts = {}
    for nm in plan.node_managers:
        try:
            status = _get_json(f"{nm.url}/api/v1/sessions/{session_id}/graph/status")
            counts[nm.node] = len(status) if isinstance(status, dict) else -1
        except (OSError, urllib.error.URLError, ValueError):
            counts[nm.node] = -1
    return counts


def _session_id(job_name: str, job_id: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "_", job_name).lstrip("._-") or "dropflow"
    return f"{base[:100]}-{job_id}"


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m dropflow.deploy.bootstrap", description=__doc__.split("\n")[0]
    )
    p.add_argument("--results", required=True, help="the job's results directory")
    p.add_argument("--graph", required=True)
    p.add_argument("--port-base", type=int, default=8000)
    p.add_argument("--islands", type=int, default=1)
    p.add_argument("--workspace", help="root of node workspaces (default RESULTS/workspace)")
    p.add_argument("--pythonpath", action="append", default=[])
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--startup-timeout", type=float, default=120.0)
    p.add_argument("--teardown-timeout", type=float, default=20.0)
    return p.parse_args(argv)


def _environment(pythonpath: list[str], results: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # logs show what happened up to a crash
    if not env.get("DROPFLOW_TOKEN"):
        # Managers on a cluster network refuse to serve without a shared secret: one per job, for its
        # daemons (which inherit it, srun steps too) and for the user (readable only by them) in the results.
        env["DROPFLOW_TOKEN"] = secrets.token_urlsafe(24)
        fd = os.open(os.path.join(results, "token"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(env["DROPFLOW_TOKEN"] + "\n")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*pythonpath, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _submitted_at(results: str) -> float | None:
    try:
        with open(os.path.join(results, "job.json"), encoding="utf-8") as f:
            value = json.load(f).get("submitted_at")
    except (OSError, ValueError):
        return None
    return float(value) if isinstance(value, int | float) else None


class _Job:
    """One bootstrap run: what it started, what it learnt, and the report it writes."""

    def __init__(self, args: argparse.Namespace, execute: Execute) -> None:
        self.args = args
        self.execute = execute
        self.started = time.time()
        self.results = os.path.abspath(args.results)
        self.logs_dir = os.path.join(self.results, "logs")
        os.makedirs(self.logs_dir, exist_ok=True)
        self.job_id = os.environ.get("SLURM_JOB_ID")
        job_name = os.environ.get("SLURM_JOB_NAME", "dropflow")
        self.report = JobReport(
            self.job_id, job_name, [], _session_id(job_name, self.job_id or str(os.getpid()))
        )
        self.report.logs["batch"] = f"slurm-{self.job_id}.out"
        self.env = _environment(args.pythonpath, self.results)
        os.environ["DROPFLOW_TOKEN"] = self.env["DROPFLOW_TOKEN"]  # for this process's own requests
        self.dropflow = dropflow_command(sys.executable)
        self.daemons: list[Daemon] = []
        self.up: float | None = None
        self.ended: float | None = None

    def _log(self, name: str) -> str:
        return os.path.join(self.logs_dir, name)

    def _start(self, name: str, cmd: list[str], log: str, step: str | None = None) -> None:
        self.daemons.append(_start(name, cmd, log, self.env, step))
        self.report.logs[name] = os.path.relpath(log, self.results)

    def bring_up(self) -> ClusterPlan:
        """Plan the daemons over the allocation, start them, and wait until every one answers."""
        nodelist = os.environ.get("SLURM_JOB_NODELIST")
        if not self.job_id or not nodelist:
            raise BootstrapError("not inside a Slurm allocation (SLURM_JOB_ID or SLURM_JOB_NODELIST unset)")
        nodes = discover_nodes(nodelist, self.execute)
        self.report.nodes = [name for name, _ in nodes]
        try:
            plan = plan_cluster(nodes, self.args.port_base, self.args.islands)
        except ValueError as exc:
            raise BootstrapError(str(exc)) from None
        plan_file = os.path.join(self.results, PLAN_FILE)
        with open(plan_file, "w", encoding="utf-8") as f:
            f.write(plan.to_json())
        workspace = self.args.workspace or os.path.join(self.results, "workspace")
        cpus = os.environ.get("SLURM_CPUS_ON_NODE", "")
        cmd = node_managers_command(
            sys.executable, plan, plan_file, workspace, self.logs_dir, int(cpus) if cpus.isdigit() else None
        )
        self.daemons.append(_start("node managers", cmd, self._log("srun-nm.log"), self.env, NM_STEP))
        health = {f"nm {nm.node}": nm.url for nm in plan.node_managers}
        for nm in plan.node_managers:
            self.report.logs[f"nm {nm.node}"] = f"logs/nm-{nm.node}.log"
        batch_node = plan.node_managers[0].node  # the batch step runs on the allocation's first node
        for j, island in enumerate(plan.islands):
            name, log = f"island {j}", self._log(f"dim-{j}.log")
            cmd = island_manager_command(self.dropflow, island)
            if island.manager.node == batch_node:
                self._start(name, cmd, log)
            else:
                step = f"dropflow-dim-{j}"
                self._start(name, srun_on(island.manager.node, cmd, log, step), log, step)
            health[name] = island.manager.url
        if plan.master is not None:
            self._start("master", master_manager_command(self.dropflow, plan), self._log("mm.log"))
            health["master"] = plan.master.url
        logs = {n: os.path.join(self.results, p) for n, p in self.report.logs.items()}
        wait_healthy(health, self.daemons, self.args.startup_timeout, logs)
        self.up = time.time()
        return plan

    def run_session(self, plan: ClusterPlan) -> None:
        """Submit the graph to the entry manager, follow it to its end, and take its report."""
        session_report = os.path.join(self.results, SESSION_REPORT)
        params = dict(p.partition("=")[::2] for p in self.args.param)
        cmd = submit_command(
            self.dropflow, self.args.graph, plan.entry.url, self.report.session_id, session_report, params
        )
        log = self._log("submit.log")
        self.report.logs["submit"] = os.path.relpath(log, self.results)
        with open(log, "ab") as out:
            code = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self.env
            ).returncode
        self.ended = time.time()
        try:
            with open(session_report, encoding="utf-8") as f:
                self.report.take_session(json.load(f))
        except (OSError, ValueError) as exc:
            raise BootstrapError(
                f"dropflow submit exited with status {code} and wrote no report ({exc}); "
                f"its log ends:\n{_tail(log)}"
            ) from None
        if not self.report.placement:
            self.report.placement = placement(plan, self.report.session_id)

    def finish(self) -> None:
        r = self.report
        r.exit_status = 0 if r.state == "FINISHED" and r.error is None else 1
        t = r.timings
        submitted = _submitted_at(self.results)
        t["started_at"] = self.started
        t["queued_seconds"] = self.started - submitted if submitted is not None else None
        t["startup_seconds"] = self.up - self.started if self.up is not None else None
        t["run_seconds"] = self.ended - self.up if self.ended is not None and self.up is not None else None
        write_report(r, self.results)

    def tear_down(self) -> None:
        t0 = time.time()
        teardown(self.daemons, self.job_id, self.args.teardown_timeout, self.execute)
        self.report.timings["teardown_seconds"] = time.time() - t0
        self.report.timings["total_seconds"] = time.time() - self.started
        write_report(self.report, self.results)


def main(argv: list[str] | None = None, execute: Execute = run_command) -> int:
    job = _Job(_args(argv), execute)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        try:
            job.run_session(job.bring_up())
        except BootstrapError as exc:
            job.report.error = str(exc)
        except Exception as exc:  # a bug here must still leave a report and a torn-down job
            job.report.error = f"the bootstrap failed: {type(exc).__name__}: {exc}"
        except Terminated:
            job.report.error = "the job was terminated (scancel or time limit) before the session ended"
            if job.report.state == "ERROR":
                job.report.state = "CANCELLED"
        job.finish()  # the report now, in case the teardown outlives Slurm's patience
    except Terminated:
        pass  # SIGTERM while writing the report: tear down all the same
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the teardown must run to its end
        job.tear_down()
    with open(os.path.join(job.results, SUMMARY_FILE), encoding="utf-8") as f:
        print(f.read(), end="", flush=True)  # into the job's output file too
    return job.report.exit_status


if __name__ == "__main__":
    sys.exit(main())
