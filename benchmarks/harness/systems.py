"""The systems under test, dropflow's and the floors: how each is started, fed a workload, measured, checked.

Every system turns one run of one workload into a :class:`Row`. ``e2e_s`` -- the number the ratios compare --
is load + deploy + run as the system itself goes through them (graph file read and parsed, graph handed to the
engine, engine finished), excluding what a user does once per many graphs: starting an interpreter, a node
manager daemon, a Dask cluster, a Ray instance or a Parsl executor's workers. Those appear in ``total_s`` (the
whole command, or daemon start to client end) and ``startup_s``.

- ``dropflow``: ``dropflow run GRAPH --json`` (phases from its own summary): ``python`` apps on the default
  executor, ``"executor": "process"`` for ``proc``, ``shell`` apps, ``noop`` apps; numpy through ``shm``
  drops.
- ``dropflow-memory``: the numpy pipeline through ``memory`` drops (npy codec) instead.
- ``dropflow-cluster``: a local cluster of daemons (``dropflow cluster up``), ``dropflow submit --wait``.
- ``floor`` and ``loop``: ``drivers/floors.py`` (``floor`` is the one every ratio is taken against).
- the peers (DALiuGE, Dask, Ray, Parsl) are in :mod:`peers`.

Each system says which workloads it runs (:attr:`System.runs`: app kinds, and the numpy pipelines by name). A
run that exceeds the timeout is killed (its whole process group) and recorded as ``dnf``; a run whose result
is wrong (a drop not completed, a sink's value or a checksum that differs) is ``wrong``, never a time. Every
run gets its own ``TMPDIR``; whatever a system leaves there is recorded in ``leftovers`` and removed.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import measure
from workloads import split

__all__ = ["OWN", "Context", "Row", "System", "check_run", "numpy_arg"]

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVERS = os.path.join(HERE, "drivers")
MB = 2**20


@dataclass
class Context:
    """What a run needs: where to work, the interpreters, the limits."""

    workdir: str
    timeout: float
    dropflow_python: str = sys.executable
    expected_checksum: int | None = None
    pythons: dict[str, str | None] = field(default_factory=dict)

    def env(self, run_dir: str | None = None) -> dict[str, str]:
        """The environment of a run; with ``run_dir``, its temporary files go to ``run_dir/tmp``."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([HERE, DRIVERS])
        env.pop("PYTHONSTARTUP", None)
        if run_dir is not None:
            env["TMPDIR"] = os.path.join(run_dir, "tmp")
            os.makedirs(env["TMPDIR"], exist_ok=True)
        return env


@dataclass
class Row:
    system: str
    workload: str
    n: int
    repeat: int
    status: str  # ok | dnf | failed | wrong
    tasks: int = 0
    drops: int = 0
    e2e_s: float | None = None
    load_s: float | None = None
    deploy_s: float | None = None
    run_s: float | None = None
    total_s: float | None = None
    startup_s: float | None = None
    peak_rss_mb: float | None = None
    wait4_rss_mb: float | None = None
    sampled_rss_mb: float | None = None
    cpu_s: float | None = None
    cpu_scope: str = ""
    intact: bool | None = None
    detail: str = ""
    #: the 1-minute load average when the run started (the machine is shared)
    load1: float | None = None
    #: what the run left in its TMPDIR (removed after it was recorded)
    leftovers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.load1 is None:
            self.load1 = round(os.getloadavg()[0], 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _phases(row: Row, out: dict[str, Any]) -> None:
    row.load_s, row.deploy_s, row.run_s = out["load_s"], out["deploy_s"], out["run_s"]
    row.e2e_s = row.load_s + row.deploy_s + row.run_s


def _memory(row: Row, m: measure.Measured) -> None:
    row.peak_rss_mb = m.peak_rss / MB
    row.wait4_rss_mb = m.wait4_rss / MB
    row.sampled_rss_mb = m.sampled_rss / MB


def _failed(row: Row, m: measure.Measured, timeout: float) -> Row:
    if m.timed_out:
        row.status, row.detail = "dnf", f"did not finish in {timeout:g} s"
    else:
        row.status, row.detail = "failed", f"exit {m.returncode}: {m.stderr[-1500:]}"
    row.total_s = m.wall_s
    return row


def _check_sinks(row: Row, files: dict[str, Any], got: list[Any] | None) -> None:
    """A ``py`` / ``proc`` run is intact only if its sinks ended with the expected values."""
    if files.get("expected") is not None and got != files["expected"]:
        row.intact = False
        row.detail = f"sinks ended with {str(got)[:200]}, expected {files['expected']}"


def _finish(row: Row, run_dir: str) -> None:
    """Record what the run left in its TMPDIR, then remove the run's directory (kept if the run failed)."""
    tmp = os.path.join(run_dir, "tmp")
    try:
        row.leftovers = sorted(os.listdir(tmp))
    except OSError:
        row.leftovers = []
    shutil.rmtree(tmp, ignore_errors=True)
    if row.status == "ok":
        shutil.rmtree(run_dir, ignore_errors=True)


def numpy_arg(workload: str, n: int, files: dict[str, Any]) -> str:
    """The workload argument of a driver: the DAG file, or ``numpy:NBYTES``."""
    return f"numpy:{n}" if workload.startswith("numpy") else str(files["dag"])


def _json_line(stdout: str) -> dict[str, Any]:
    """The last line of output that is a JSON object (or the whole output, for indented JSON)."""
    try:
        value = json.loads(stdout)
        if isinstance(value, dict):
            return value
    except ValueError:
        pass
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            value = json.loads(line)
            assert isinstance(value, dict)
            return value
    raise ValueError(f"no JSON in output: {stdout[-500:]!r}")


class System:
    name = ""
    #: which interpreter runs it: "dropflow" or a peer environment's name
    env = "dropflow"
    #: the app kinds it runs, and the numpy pipelines by name
    runs: frozenset[str] = frozenset({"noop", "py", "proc", "shell", "numpy", "numpy-proc"})

    def unavailable(self, ctx: Context) -> str | None:
        """Why this system cannot run here, or None."""
        if self.env != "dropflow" and not ctx.pythons.get(self.env):
            return f"the {self.env} virtualenv is not installed (run without --smoke to install it)"
        return None

    def supports(self, workload: str) -> bool:
        return (workload if workload.startswith("numpy") else split(workload)[0]) in self.runs

    def python(self, ctx: Context) -> str:
        py = ctx.dropflow_python if self.env == "dropflow" else ctx.pythons.get(self.env)
        assert py is not None
        return py

    def run(self, ctx: Context, files: dict[str, Any], workload: str, n: int, repeat: int) -> Row:
        raise NotImplementedError


class Dropflow(System):
    name = "dropflow"
    numpy_kind = "shm"

    def run(self, ctx: Context, files: dict[str, Any], workload: str, n: int, repeat: int) -> Row:
        row = Row(self.name, workload, n, repeat, "ok", files["tasks"], files["drops"], cpu_scope="command")
        numpy = workload.startswith("numpy")
        graph = files[f"dropflow_{self.numpy_kind}"] if numpy else files["dropflow"]
        run_dir = os.path.join(ctx.workdir, f"{self.name}-{workload}-{n}-{repeat}")
        argv = [
            self.python(ctx), "-m", "dropflow.cli", "run", graph, "--json", "--progress", "never",
            "--workspace", os.path.join(run_dir, "ws"), "--pythonpath", HERE,
        ]  # fmt: skip
        m = measure.run(argv, env=ctx.env(run_dir), timeout=ctx.timeout, output_dir=run_dir)
        _memory(row, m)
        row.cpu_s = m.cpu_s
        if m.timed_out or m.returncode not in (0, 1):
            return _failed(row, m, ctx.timeout)
        out = _json_line(m.stdout)
        _phases(
            row,
            {"load_s": out["load_seconds"], "deploy_s": out["deploy_seconds"], "run_s": out["run_seconds"]},
        )
        row.total_s = m.wall_s
        row.startup_s = max(0.0, m.wall_s - (row.e2e_s or 0.0))
        settled = out["by_state"].get("COMPLETED", 0) + out["by_state"].get("FINISHED", 0)
        row.intact = out["state"] == "FINISHED" and out["drops"] == row.drops and settled == row.drops
        if numpy:
            row.intact = row.intact and out["values"].get("crc") == str(ctx.expected_checksum)
        if not row.intact:
            row.detail = json.dumps(out)[-1500:]
        else:
            _check_sinks(row, files, _previews(out["values"], files))
        if not row.intact:
            row.status = "wrong"
        _finish(row, run_dir)
        return row


def _previews(values: dict[str, Any], files: dict[str, Any]) -> list[Any] | None:
    """The sinks' values from dropflow's summary: each a preview (a repr, or an entry holding one)."""
    if files.get("expected") is None:
        return None
    got = []
    for sink in files["sinks"]:
        v = values.get(sink)
        text = v.get("preview") if isinstance(v, dict) else v
        try:
            got.append(ast.literal_eval(text) if isinstance(text, str) else text)
        except (ValueError, SyntaxError):
            got.append(text)
    return got


class DropflowMemory(Dropflow):
    name = "dropflow-memory"
    numpy_kind = "memory"

    runs = frozenset({"numpy", "numpy-proc"})


class DropflowCluster(System):
    """The multi-node rows: a local cluster of dropflow daemons, fed by ``dropflow submit --wait``.

    A fresh ``dropflow cluster up --nodes NODES`` per run (an island manager and NODES node managers, each a
    gunicorn server, on loopback), then ``drivers/dropflow_submit.py``, which times dropflow's own submit
    command (read, METIS placement on the nodes, create, append, deploy, wait). RSS is the daemons' process
    trees sampled during the submit; CPU is the daemons' CPU over the window (psutil) plus the submit
    command's (wait4). ``cluster down`` stops the daemons by the PIDs the cluster recorded.
    """

    name = "dropflow-cluster"
    nodes = 2
    # the node managers run Python apps in their warm worker processes already: no separate proc rows
    runs = frozenset({"noop", "py", "shell", "numpy"})

    def unavailable(self, ctx: Context) -> str | None:
        probe = subprocess.run(
            [ctx.dropflow_python, "-m", "dropflow.cli", "cluster", "--help"], capture_output=True, text=True
        )
        if probe.returncode != 0:
            return "dropflow has no 'cluster' command yet (the multi-node daemons of issue 4 have not landed)"
        return None

    def _dropflow(self, ctx: Context, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ctx.dropflow_python, "-m", "dropflow.cli", *args], capture_output=True, text=True, env=env
        )

    def run(self, ctx: Context, files: dict[str, Any], workload: str, n: int, repeat: int) -> Row:
        row = Row(
            self.name, workload, n, repeat, "ok", files["tasks"], files["drops"], cpu_scope="window+command"
        )
        # numpy: the consumer itself checks the checksum (the submit report carries no values)
        graph = files["dropflow_checked"] if workload == "numpy" else files["dropflow"]
        run_dir = os.path.join(ctx.workdir, f"{self.name}-{workload}-{n}-{repeat}")
        state = os.path.join(run_dir, "state")
        env = ctx.env(run_dir)
        port, node_port = _free_ports(1)[0], _free_ports(1)[0]
        t0 = time.perf_counter()
        up = self._dropflow(
            ctx, "cluster", "up", "--nodes", str(self.nodes), "--dir", state, "--port", str(port),
            "--node-port", str(node_port), "--workspace", os.path.join(run_dir, "ws"), env=env,
        )  # fmt: skip
        try:
            if up.returncode != 0:
                row.status, row.detail = "failed", f"cluster up: {up.stderr[-1500:]}"
                return row
            row.startup_s = time.perf_counter() - t0
            with open(os.path.join(state, "cluster.json")) as f:
                cluster = json.load(f)
            samplers = [measure.TreeSampler(pid) for pid in cluster["pids"]]
            cpu0 = sum(s.cpu_seconds() for s in samplers)
            argv = [
                self.python(ctx), os.path.join(DRIVERS, "dropflow_submit.py"), cluster["url"], graph,
                os.path.join(run_dir, "report.json"),
            ]  # fmt: skip
            m = measure.run(
                argv, env=env, timeout=ctx.timeout, output_dir=os.path.join(run_dir, "submit"), also=samplers
            )
            daemons_cpu = sum(s.cpu_seconds() for s in samplers) - cpu0
            row.peak_rss_mb = sum(s.peak for s in samplers) / MB
            row.sampled_rss_mb = row.peak_rss_mb
            row.total_s = time.perf_counter() - t0
            if m.timed_out or not m.stdout.strip():
                return _failed(row, m, ctx.timeout)
            out = _json_line(m.stdout)
            run_s = out["run_seconds"] or 0.0
            _phases(
                row,
                {
                    "load_s": out["e2e_s"] - out["wall_seconds"],
                    "deploy_s": out["wall_seconds"] - run_s,
                    "run_s": run_s,
                },
            )
            row.cpu_s = daemons_cpu + m.cpu_s
            settled = out["by_state"].get("COMPLETED", 0) + out["by_state"].get("FINISHED", 0)
            row.intact = out["state"] == "FINISHED" and out["drops"] == row.drops and settled == row.drops
            if not row.intact:
                row.detail = json.dumps(out)[-1500:]
            else:
                _check_sinks(row, files, _previews(out.get("values") or {}, files))
                if workload == "numpy":
                    row.detail = f"placement {out.get('placement')}"
            if not row.intact:
                row.status = "wrong"
        finally:
            down = self._dropflow(ctx, "cluster", "down", "--dir", state, env=env)
            if up.returncode == 0 and down.returncode != 0:
                row.detail += f" cluster down failed: {down.stderr[-500:]}"
        _finish(row, run_dir)
        return row


class Floor(System):
    """``drivers/floors.py``: ``floor`` (a pool of two workers, dependencies counted in done-callbacks) or
    ``loop`` (every task called in order in one thread, which has no process variant)."""

    def __init__(self, name: str, mode: str, runs: frozenset[str] = System.runs) -> None:
        self.name = name
        self.mode = mode
        self.runs = runs

    def run(self, ctx: Context, files: dict[str, Any], workload: str, n: int, repeat: int) -> Row:
        row = Row(self.name, workload, n, repeat, "ok", files["tasks"], files["drops"], cpu_scope="command")
        run_dir = os.path.join(ctx.workdir, f"{self.name}-{workload}-{n}-{repeat}")
        argv = [
            self.python(ctx), os.path.join(DRIVERS, "floors.py"), self.mode, workload,
            numpy_arg(workload, n, files),
        ]  # fmt: skip
        m = measure.run(argv, env=ctx.env(run_dir), timeout=ctx.timeout, output_dir=run_dir)
        _memory(row, m)
        row.cpu_s = m.cpu_s
        if not m.ok:
            return _failed(row, m, ctx.timeout)
        out = _json_line(m.stdout)
        _phases(row, out)
        row.total_s = m.wall_s
        # the warm floor of numpy-proc says how long its pool took to start; else it is interpreter start
        row.startup_s = out.get("startup_s", max(0.0, m.wall_s - (row.e2e_s or 0.0)))
        check_run(row, ctx, files, workload, out)
        _finish(row, run_dir)
        return row


def check_run(row: Row, ctx: Context, files: dict[str, Any], workload: str, out: dict[str, Any]) -> None:
    """Intact: every task ran, and the sinks' values (``py``, ``proc``) or the checksum (numpy) are right."""
    row.intact = out["tasks"] == row.tasks
    if not row.intact:
        row.detail = f"{out['tasks']} tasks ran, not {row.tasks}"
    elif workload.startswith("numpy"):
        row.intact = out["checksum"] == ctx.expected_checksum
        if not row.intact:
            row.detail = f"checksum {out['checksum']}, expected {ctx.expected_checksum}"
    else:
        _check_sinks(row, files, out.get("sinks"))
    if not row.intact:
        row.status = "wrong"


def _free_ports(count: int) -> list[int]:
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


#: dropflow's systems and the floors (the peers are in :mod:`peers`)
OWN: list[System] = [
    Dropflow(),
    DropflowMemory(),
    DropflowCluster(),
    Floor("floor", "pool"),
    Floor("loop", "loop", frozenset({"noop", "py", "shell", "numpy"})),
]
