"""Inside the allocation: start the managers, run the graph (or serve as a pilot), report, stop everything.

Theory of operation
-------------------
The job script ends by exec-ing ``python -m dropflow.deploy.bootstrap``; it runs on the allocation's first
node, as the batch step. It

1. learns the allocation from Slurm -- node names and addresses, when the job's time ends (``squeue %L``) and
   how long Slurm waits between SIGTERM and SIGKILL (``KillWait``) -- and plans the daemons
   (:func:`~dropflow.deploy.cluster.plan_cluster`), writing the plan to ``nodes.json``;
2. starts one node manager per node as a single srun step (each task takes a free port of its node and
   announces it, :mod:`dropflow.deploy.node_entry`), then the island manager(s) over them and, with several
   islands, the master manager. Every node manager keeps its sessions' journals in the job's journal
   directory, knows the job's deadline (apps that cannot finish before it do not start), and shuts down
   within KillWait;
3. waits until every daemon answers -- and proves it is this job's own (the job's token, its name, its
   address, its job id), so that two jobs sharing a node never reach each other's daemons -- with a
   deadline, failing at once, with the end of its log, when a daemon exits instead;
4. runs ``dropflow submit GRAPH --to ENTRY --wait --report session.json`` (with ``--resume`` when this job
   continues an earlier one: the same session, over the same workspaces and journals), and follows it; a
   *pilot* runs no graph and waits instead, its managers taking graphs submitted to it;
5. ``checkpoint_margin`` before the walltime ends, cancels the session -- running apps stop, what finished
   and what a resume needs are kept by the journals -- and with ``--chain`` submits the continuation job
   (``--dependency=afterany``), provided this job made progress;
6. writes ``report.json`` and ``summary.txt`` (:mod:`dropflow.deploy.report`): the session's end, drops by
   state and where they ran -- from the managers, or, when they are gone, from the journals -- what
   finished, whether the time limit or a cancel ended the job, how to resume it;
7. stops the daemons: SIGTERM to the managers it started itself, ``scancel --signal=TERM`` to the srun steps
   (a SIGTERM to srun would kill their tasks outright), then SIGKILL for whatever has not ended -- within
   Slurm's KillWait when Slurm is the one ending the job. The report is rewritten afterwards.

The exit status is 0 only if the session FINISHED (a pilot: if it served until its end), so the job's own
state says whether the graph ran. If Slurm ends the job first (scancel, or the time limit with no margin
left), it sends SIGTERM: the bootstrap stops where it is, asks Slurm which it was, writes the report saying
so, and tears down before Slurm's SIGKILL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
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

from ..engine.journal import journal_dir
from . import walltime
from .cluster import ClusterPlan, plan_cluster
from .launchers import (
    NM_STEP,
    daemon_entry_command,
    dropflow_command,
    island_manager_command,
    master_manager_command,
    node_managers_command,
    srun_on,
    submit_command,
)
from .node_entry import ANNOUNCE_DIR, announcement, free_port
from .pilot import STOP_FILE, write_pilot
from .report import SUMMARY_FILE, JobReport, write_report
from .slurm import Execute, SchedulerError, SlurmProvider, run_command

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


def _own(url: str, name: str, token: str | None, job_id: str | None) -> bool:
    """True once the daemon at ``url`` answers and proves it is this job's ``name``; False while nothing
    answers there yet; BootstrapError when someone else answers (another job's daemon on that port)."""
    from ..managers.client import Unproven, adopt
    from ..managers.errors import ApiError

    try:
        client = adopt(url, token, name, timeout=2.0)
    except Unproven as exc:
        raise BootstrapError(
            f"the daemon answering at {url} is not this job's {name}: {exc.message}"
        ) from None
    except ApiError:
        return False
    try:
        info = client.info()
    except ApiError:
        return False
    finally:
        client.close()
    theirs = info.get("slurm_job_id")
    if job_id is not None and theirs is not None and str(theirs) != job_id:
        raise BootstrapError(
            f"the daemon answering at {url} belongs to job {theirs}, not to this job {job_id}"
        )
    return True


def _check_alive(daemons: list[Daemon]) -> None:
    for d in daemons:
        code = d.proc.poll()
        if code is not None:
            raise BootstrapError(
                f"{d.name} exited with status {code} before the engine was up; its log ends:\n" + _tail(d.log)
            )


def _backoff() -> Any:
    pause, wake = 0.05, threading.Event()
    while True:
        yield
        # A daemon takes a second or so to come up; back off from 50 ms to 0.5 s between rounds of checks.
        wake.wait(pause)
        pause = min(pause * 2, 0.5)


def wait_announced(
    names: list[str], directory: str, daemons: list[Daemon], deadline: float, logs: dict[str, str]
) -> dict[str, int]:
    """The ports that daemons ``names`` took, once each has announced it (see node_entry)."""
    found: dict[str, int] = {}
    for _ in _backoff():
        for name in names:
            if name not in found:
                try:
                    with open(announcement(directory, name), encoding="utf-8") as f:
                        found[name] = int(json.load(f)["port"])
                except (OSError, ValueError, KeyError):
                    pass
        if len(found) == len(names):
            return found
        _check_alive(daemons)
        if time.monotonic() > deadline:
            missing = [n for n in names if n not in found]
            tails = "\n".join(f"--- {n}:\n{_tail(logs[n])}" for n in missing if n in logs)
            raise BootstrapError(f"{', '.join(missing)} did not start (no port announced)\n{tails}".rstrip())
    raise AssertionError("unreachable")


def wait_healthy(
    urls: dict[str, str],
    daemons: list[Daemon],
    timeout: float,
    logs: dict[str, str],
    token: str | None = None,
    job_id: str | None = None,
) -> None:
    """Return once every ``name -> url`` answers as this job's own daemon; raise when a daemon exits, when
    another job's daemon answers, or when time is up."""
    pending = dict(urls)
    deadline = time.monotonic() + timeout
    for _ in _backoff():
        for name, url in list(pending.items()):
            if (
                _own(url, name.removeprefix("nm "), token, job_id)
                if name.startswith("nm ")
                else _up(url, token)
            ):
                del pending[name]
        if not pending:
            return
        _check_alive(daemons)
        if time.monotonic() > deadline:
            waiting = ", ".join(f"{n} ({u})" for n, u in pending.items())
            tails = "\n".join(f"--- {n}:\n{_tail(logs[n])}" for n in pending if n in logs)
            raise BootstrapError(f"no answer within {timeout:g} s from {waiting}\n{tails}".rstrip())


def _up(url: str, token: str | None) -> bool:
    """A manager above the nodes (named after its host and port, not a node): its token is the proof."""
    from ..managers.client import Unproven, adopt
    from ..managers.errors import ApiError

    try:
        adopt(url, token, timeout=2.0).close()
    except Unproven as exc:
        raise BootstrapError(f"the daemon answering at {url} is not this job's: {exc.message}") from None
    except ApiError:
        return False
    return True


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


def _request(url: str, method: str = "GET", timeout: float = 30) -> Any:
    request = urllib.request.Request(url, method=method)
    token = os.environ.get("DROPFLOW_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body else None


def placement(plan: ClusterPlan, session_id: str) -> dict[str, int]:
    """Node name -> number of drops it holds of the session (a node that cannot say counts -1)."""
    counts = {}
    for nm in plan.node_managers:
        try:
            status = _request(f"{nm.url}/api/v1/sessions/{session_id}/graph/status", timeout=10)
            counts[nm.node] = len(status) if isinstance(status, dict) else -1
        except (OSError, urllib.error.URLError, ValueError):
            counts[nm.node] = -1
    return counts


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m dropflow.deploy.bootstrap", description=__doc__.split("\n")[0]
    )
    p.add_argument("--results", required=True, help="the job's results directory")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--graph")
    what.add_argument("--pilot", action="store_true", help="run no graph: serve graphs submitted to the job")
    p.add_argument("--port-base", type=int, default=0, help="first port (default 0: free ports, per daemon)")
    p.add_argument("--islands", type=int, default=1)
    p.add_argument("--workspace", help="root of node workspaces (default RESULTS/workspace)")
    p.add_argument("--journal", help="root of the sessions' journals (default RESULTS/journal)")
    p.add_argument("--pythonpath", action="append", default=[])
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--allow-path", action="append", default=[], metavar="DIR")
    p.add_argument("--session-id", help="the session (default: from the job's name and id)")
    p.add_argument("--resume", action="store_true", help="resume the session from its journals")
    p.add_argument(
        "--chain", action="store_true", help="at the walltime, submit the job that resumes this one"
    )
    p.add_argument("--checkpoint-margin", type=float, help="seconds before the walltime to checkpoint")
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


def _job_record(results: str) -> dict[str, Any]:
    try:
        with open(os.path.join(results, "job.json"), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class _Job:
    """One bootstrap run: what it started, what it learnt, and the report it writes."""

    def __init__(self, args: argparse.Namespace, execute: Execute) -> None:
        from .job import session_id_of

        self.args = args
        self.execute = execute
        self.started = time.time()
        self.results = os.path.abspath(args.results)
        self.logs_dir = os.path.join(self.results, "logs")
        os.makedirs(self.logs_dir, exist_ok=True)
        self.job_id = os.environ.get("SLURM_JOB_ID")
        job_name = os.environ.get("SLURM_JOB_NAME", "dropflow")
        session_id = args.session_id or session_id_of(job_name, self.job_id or str(os.getpid()))
        self.report = JobReport(self.job_id, job_name, [], session_id)
        self.report.logs["batch"] = f"slurm-{self.job_id}.out"
        self.report.output_file = os.path.join(self.results, f"slurm-{self.job_id}.out")
        self.env = _environment(args.pythonpath, self.results)
        self.token = self.env["DROPFLOW_TOKEN"]
        os.environ["DROPFLOW_TOKEN"] = self.token  # for this process's own requests
        self.dropflow = dropflow_command(sys.executable)
        self.workspace = args.workspace or os.path.join(self.results, "workspace")
        self.journal_root = args.journal or os.path.join(self.results, "journal")
        self.journal = journal_dir(self.journal_root, session_id)
        self.daemons: list[Daemon] = []
        self.plan: ClusterPlan | None = None
        self.up: float | None = None
        self.ended: float | None = None
        # Time: when Slurm ends the job, when this job stops itself before that, how fast teardown must be.
        self.end = walltime.job_end(self.job_id, execute) if self.job_id else None
        limit = self.end - self.started if self.end is not None else None
        self.margin = walltime.checkpoint_margin(limit, args.checkpoint_margin)
        # (A margin of 0: the job never stops itself; Slurm's SIGTERM at the limit ends it.)
        self.checkpoint_at = self.end - self.margin if self.end is not None and self.margin > 0 else None
        self.kill_wait = walltime.kill_wait(execute) if self.job_id else walltime.DEFAULT_KILL_WAIT
        self.terminated = False
        self.finished_before = self._finished_so_far()

    def _finished_so_far(self) -> int:
        from ..engine.journal import read

        try:
            return len(read(self.journal).finished)
        except (OSError, ValueError):
            return 0

    def _log(self, name: str) -> str:
        return os.path.join(self.logs_dir, name)

    def _start(self, name: str, cmd: list[str], log: str, step: str | None = None) -> None:
        self.daemons.append(_start(name, cmd, log, self.env, step))
        self.report.logs[name] = os.path.relpath(log, self.results)

    def _nm_args(self) -> list[str]:
        """Options of every node manager: journals, allowed paths, the deadline, a quick shutdown."""
        out = ["--journal", self.journal_root]
        for path in self.args.allow_path:
            out += ["--allow-path", path]
        if self.checkpoint_at is not None:
            out += ["--deadline", f"{self.checkpoint_at:.3f}"]
        # Slurm's SIGKILL follows its SIGTERM after KillWait: sessions must have ended (cleaned) before.
        out += ["--shutdown-timeout", f"{max(1.0, self.kill_wait - 2):g}"]
        return out

    def bring_up(self) -> ClusterPlan:
        """Plan the daemons over the allocation, start them, and wait until every one answers as ours."""
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
        announced = os.path.join(self.results, ANNOUNCE_DIR)
        cpus = os.environ.get("SLURM_CPUS_ON_NODE", "")
        cmd = node_managers_command(
            sys.executable,
            plan,
            plan_file,
            self.workspace,
            self.logs_dir,
            int(cpus) if cpus.isdigit() else None,
            self._nm_args(),
        )
        self.daemons.append(_start("node managers", cmd, self._log("srun-nm.log"), self.env, NM_STEP))
        for nm in plan.node_managers:
            self.report.logs[f"nm {nm.node}"] = f"logs/nm-{nm.node}.log"
        logs = {n: os.path.join(self.results, p) for n, p in self.report.logs.items()}
        deadline = time.monotonic() + self.args.startup_timeout
        if self.args.port_base == 0:
            names = [f"nm {nm.node}" for nm in plan.node_managers]
            plan = plan.with_ports(wait_announced(names, announced, self.daemons, deadline, logs))
        batch_node = plan.node_managers[0].node  # the batch step runs on the allocation's first node
        ports: dict[str, int] = {}
        remote: list[str] = []
        for j, island in enumerate(plan.islands):
            name, log = f"island {j}", self._log(f"dim-{j}.log")
            if island.manager.node == batch_node or self.args.port_base != 0:
                port = island.manager.port or free_port(island.manager.address)
                ports[name] = port
                island = type(island)(
                    type(island.manager)(island.manager.node, island.manager.address, port), island.members
                )
                cmd = island_manager_command(self.dropflow, island)
                if island.manager.node == batch_node:
                    self._start(name, cmd, log)
                else:
                    step = f"dropflow-dim-{j}"
                    self._start(name, srun_on(island.manager.node, cmd, log, step), log, step)
            else:  # on another node: the entry point there takes a port of that node
                step = f"dropflow-dim-{j}"
                inner = daemon_entry_command(
                    sys.executable, name, island.manager.address, announced,
                    island_manager_command(self.dropflow, island, port=False),
                )  # fmt: skip
                self._start(name, srun_on(island.manager.node, inner, log, step), log, step)
                remote.append(name)
        if plan.master is not None:
            ports["master"] = plan.master.port or free_port(plan.master.address)
        if remote:
            logs = {n: os.path.join(self.results, p) for n, p in self.report.logs.items()}
            ports.update(wait_announced(remote, announced, self.daemons, deadline, logs))
        plan = plan.with_ports(ports)
        if plan.master is not None:
            self._start("master", master_manager_command(self.dropflow, plan), self._log("mm.log"))
        with open(plan_file, "w", encoding="utf-8") as f:
            f.write(plan.to_json())  # the ports the daemons took
        health = {name: d.url for name, d in plan.daemons().items()}
        logs = {n: os.path.join(self.results, p) for n, p in self.report.logs.items()}
        wait_healthy(
            health, self.daemons, max(1.0, deadline - time.monotonic()), logs, self.token, self.job_id
        )
        self.up = time.time()
        self.plan = plan
        return plan

    def run_session(self, plan: ClusterPlan) -> None:
        """Submit the graph to the entry manager and follow it to its end -- or to the checkpoint."""
        session_report = os.path.join(self.results, SESSION_REPORT)
        params = dict(p.partition("=")[::2] for p in self.args.param)
        cmd = submit_command(
            self.dropflow,
            self.args.graph,
            plan.entry.url,
            self.report.session_id,
            session_report,
            params,
            resume=self.journal_root if self.args.resume else None,
        )
        log = self._log("submit.log")
        self.report.logs["submit"] = os.path.relpath(log, self.results)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        try:
            while proc.poll() is None:
                left = self.checkpoint_at - time.time() if self.checkpoint_at is not None else None
                if left is not None and left <= 0:
                    self.checkpoint(plan, proc)
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=None if left is None else min(left, 5.0))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.ended = time.time()
        try:
            with open(session_report, encoding="utf-8") as f:
                self.report.take_session(json.load(f))
        except (OSError, ValueError) as exc:
            raise BootstrapError(
                f"dropflow submit exited with status {proc.returncode} and wrote no report ({exc}); "
                f"its log ends:\n{_tail(log)}"
            ) from None
        resumed = (self.report.session or {}).get("resumed")
        if isinstance(resumed, dict):
            self.report.resumed = {"job": _job_record(self.results).get("resumes"), **resumed}
        if not self.report.placement:
            self.report.placement = placement(plan, self.report.session_id)

    def checkpoint(self, plan: ClusterPlan, proc: subprocess.Popen[bytes]) -> None:
        """The walltime is near: cancel the session (its journals keep what finished and what a resume needs)
        and let ``dropflow submit`` report its end."""
        self.report.ended_by = "TIMEOUT"
        self.report.error = (
            f"the job's time limit was {self.margin:g} s away: the session was stopped for a resume"
        )
        # (If the managers cannot be reached, the submit client reports what it can; the journals the rest.)
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
            _request(f"{plan.entry.url}/api/v1/sessions/{self.report.session_id}/cancel", "POST", timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(2.0, self.margin / 2))

    def serve_pilot(self, plan: ClusterPlan) -> None:
        """A pilot: say where the managers are, then take graphs until the walltime or a cancel."""
        write_pilot(self.results, plan.entry.url, self.job_id, self.report.nodes, self.checkpoint_at)
        print(f"pilot up: dropflow submit GRAPH --to slurm:{self.job_id}", flush=True)
        wake, looked = threading.Event(), 0.0
        stop = os.path.join(self.results, STOP_FILE)
        while self.checkpoint_at is None or time.time() < self.checkpoint_at:
            if os.path.exists(stop):  # `dropflow slurm stop`: a clean end, before the walltime
                return
            if time.monotonic() - looked > 5:
                # What it has run so far, looked at now and then: a cancel leaves no time to ask at the end.
                self.pilot_sessions(plan)
                looked = time.monotonic()
            wake.wait(1.0)
        self.report.ended_by = "TIMEOUT"

    def pilot_sessions(self, plan: ClusterPlan) -> None:
        """Count the sessions the pilot ran, by state (drops by state: sessions, for a pilot)."""
        try:
            sessions = _request(f"{plan.entry.url}/api/v1/sessions", timeout=5)
        except (OSError, urllib.error.URLError, ValueError):
            return
        if isinstance(sessions, list):
            states: dict[str, int] = {}
            for s in sessions:
                states[str(s.get("status"))] = states.get(str(s.get("status")), 0) + 1
            self.report.by_state = states
            self.report.drops = len(sessions)

    def signalled(self) -> None:
        """Slurm's SIGTERM: say whether the time limit or a cancel ended the job."""
        self.terminated = True
        self.report.ended_by = walltime.ended_by(self.job_id or "", self.execute, self.end)
        why = "its time limit" if self.report.ended_by == "TIMEOUT" else "a cancel (scancel, preemption)"
        self.report.error = f"the job was terminated by {why} before the session ended"
        if self.report.state == "ERROR":
            self.report.state = "CANCELLED"

    def finish(self) -> None:
        r = self.report
        if self.args.pilot:
            r.exit_status = 0 if r.error is None and r.ended_by in (None, "TIMEOUT") and self.up else 1
            if r.state == "ERROR" and r.error is None and self.up:
                r.state = "FINISHED"
        else:
            r.exit_status = 0 if r.state == "FINISHED" and r.error is None else 1
        t = r.timings
        submitted = _job_record(self.results).get("submitted_at")
        t["started_at"] = self.started
        t["queued_seconds"] = self.started - submitted if isinstance(submitted, int | float) else None
        t["startup_seconds"] = self.up - self.started if self.up is not None else None
        t["run_seconds"] = self.ended - self.up if self.ended is not None and self.up is not None else None
        self._journal_facts()
        write_report(r, self.results)

    def _journal_facts(self) -> None:
        r = self.report
        if self.args.pilot or r.state == "FINISHED":
            return
        r.take_journals(self.journal)
        if r.journal is not None:
            results = os.path.dirname(self.results)
            r.resume_with = f"dropflow slurm submit --resume {self.job_id} --results {results}"

    def chain(self) -> None:
        """After a checkpoint at the walltime: submit the job that resumes this one, if this one got on."""
        from .job import JobError, continuation

        r = self.report
        if not self.args.chain or r.ended_by != "TIMEOUT" or r.state == "FINISHED" or self.args.pilot:
            return
        if (r.finished or 0) <= self.finished_before:
            r.error = (r.error or "") + (
                "; no app finished in this job, so it is not continued (an app that takes longer than the "
                "walltime?)"
            )
            return
        try:
            submitted = continuation(self.results, SlurmProvider(self.execute))
        except (JobError, SchedulerError, OSError, KeyError) as exc:
            r.error = (r.error or "") + f"; the continuation could not be submitted: {exc}"
            return
        r.continuation = submitted.job_id
        print(f"continued by job {submitted.job_id}", flush=True)

    def tear_down(self) -> None:
        t0 = time.time()
        timeout = self.args.teardown_timeout
        if self.terminated:  # Slurm's SIGKILL comes KillWait after its SIGTERM
            timeout = max(1.0, min(timeout, self.kill_wait - 1.5))
        teardown(self.daemons, self.job_id, timeout, self.execute)
        self.report.timings["teardown_seconds"] = time.time() - t0
        self.report.timings["total_seconds"] = time.time() - self.started
        self._journal_facts()  # the nodes' journals are complete now
        self._forget_old_nodes()
        write_report(self.report, self.results)

    def _forget_old_nodes(self) -> None:
        """A resumed session FINISHED: what earlier jobs of the chain left on nodes this job did not use (a
        killed node's files, kept for the resume) is no longer needed."""
        if not self.args.resume or self.report.state != "FINISHED" or self.report.error:
            return
        from ..engine.sweep import LOCK_DIR

        try:
            nodes = os.listdir(self.workspace)
        except OSError:
            return
        sid = self.report.session_id
        for node in nodes:
            if node in self.report.nodes:
                continue  # this job's own: its session cleaned them
            root = os.path.join(self.workspace, node)
            shutil.rmtree(os.path.join(root, sid), ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(root, LOCK_DIR, sid + ".lock"))


def main(argv: list[str] | None = None, execute: Execute = run_command) -> int:
    job = _Job(_args(argv), execute)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        try:
            plan = job.bring_up()
            if job.args.pilot:
                job.serve_pilot(plan)
            else:
                job.run_session(plan)
        except BootstrapError as exc:
            job.report.error = str(exc)
        except Exception as exc:  # a bug here must still leave a report and a torn-down job
            job.report.error = f"the bootstrap failed: {type(exc).__name__}: {exc}"
        except Terminated:
            job.signalled()
        if job.args.pilot and job.plan is not None and not job.terminated:
            job.pilot_sessions(job.plan)  # what it ran, to the end
        job.finish()  # the report now, in case the teardown outlives Slurm's patience
        job.chain()
    except Terminated:
        job.signalled()  # SIGTERM while writing the report: tear down all the same
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the teardown must run to its end
        job.tear_down()
    with open(os.path.join(job.results, SUMMARY_FILE), encoding="utf-8") as f:
        print(f.read(), end="", flush=True)  # into the job's output file too
    return job.report.exit_status


if __name__ == "__main__":
    sys.exit(main())
