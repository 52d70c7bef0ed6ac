"""The systems under test: how each one is started, fed a workload, measured, and checked.

Every system turns one run of one workload into a :class:`Row`. ``e2e_s`` -- the number the ratios compare --
is load + deploy + run as the system itself goes through them (graph file read and parsed, graph handed to the
engine, engine finished), excluding what a user does once per many graphs: starting an interpreter, a node
manager daemon or a Dask cluster. Those appear in ``total_s`` (the whole command, or daemon start to client
end) and ``startup_s``.

- ``dropflow``: ``dropflow run GRAPH --json`` (phases from its own summary); numpy through ``shm`` drops.
- ``dropflow-memory``: the numpy pipeline through ``memory`` drops (npy codec) instead.
- ``dropflow-cluster``: a local cluster of daemons (``dropflow cluster up``), ``dropflow submit --wait``.
- ``daliuge``: a fresh ``dlg nm`` per run (on loopback, DLG_ROOT in the run's temp dir, the request size limit
  raised from 10 MB so that large graphs can be appended, as its users must do), driven over REST by
  ``drivers/daliuge_client.py``; its RSS is sampled, its CPU read over the client's window.
- ``dask``: ``drivers/dask_driver.py``, a LocalCluster and a Client.
- ``loop`` and ``threadpool``: ``drivers/floors.py``.

A run that exceeds the timeout is killed (its whole process group) and recorded as ``dnf``; a run whose
result is wrong (a drop not completed, a checksum that differs) is ``wrong``, never a time.
"""

from __future__ import annotations

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

__all__ = ["SYSTEMS", "Context", "Row", "System"]

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

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([HERE, DRIVERS])
        env.pop("PYTHONSTARTUP", None)
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

    def unavailable(self, ctx: Context) -> str | None:
        """Why this system cannot run here, or None."""
        if self.env != "dropflow" and not ctx.pythons.get(self.env):
            return f"the {self.env} virtualenv is not installed (run without --smoke to install it)"
        return None

    def supports(self, workload: str) -> bool:
        return True

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
        graph = files[f"dropflow_{self.numpy_kind}"] if workload == "numpy" else files["dropflow"]
        run_dir = os.path.join(ctx.workdir, f"{self.name}-{workload}-{n}-{repeat}")
        argv = [
            self.python(ctx), "-m", "dropflow.cli", "run", graph, "--json", "--progress", "never",
            "--workspace", os.path.join(run_dir, "ws"), "--pythonpath", HERE,
        ]  # fmt: skip
        m = measure.run(argv, env=ctx.env(), timeout=ctx.timeout, output_dir=run_dir)
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
        if workload == "numpy":
            row.intact = row.intact and out["values"].get("crc") == str(ctx.expected_checksum)
        if not row.intact:
            row.status, row.detail = "wrong", json.dumps(out)[-1500:]
        shutil.rmtree(run_dir, ignore_errors=True)
        return row


class DropflowMemory(Dropflow):
    name = "dropflow-memory"
    numpy_kind = "memory"

    def supports(self, workload: str) -> bool:
        return workload == "numpy"


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
        env = ctx.env()
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
                row.status, row.detail = "wrong", json.dumps(out)[-1500:]
            elif workload == "numpy":
                row.detail = f"placement {out.get('placement')}"
        finally:
            down = self._dropflow(ctx, "cluster", "down", "--dir", state, env=env)
            if up.returncode == 0 and down.returncode != 0:
                row.detail += f" cluster down failed: {down.stderr[-500:]}"
        if row.status == "ok":
            shutil.rmtree(run_dir, ignore_errors=True)
        return row


class Floor(System):
    def __init__(self, name: str, mode: str) -> None:
        self.name = name
        self.mode = mode

    def run(self, ctx: Context, files: dict[str, Any], workload: str, n: int, repeat: int) -> Row:
        row = Row(self.name, workload, n, repeat, "ok", files["tasks"], files["drops"], cpu_scope="command")
        arg = f"numpy:{n}" if workload == "numpy" else files["dag"]
        run_dir = os.path.join(ctx.workdir, f"{self.name}-{workload}-{n}-{repeat}")
        argv = [self.python(ctx), os.path.join(DRIVERS, "floors.py"), self.mode, arg]
        m = measure.run(argv, env=ctx.env(), timeout=ctx.timeout, output_dir=run_dir)
        _memory(row, m)
        row.cpu_s = m.cpu_s
        if not m.ok:
            return _failed(row, m, ctx.timeout)
        out = _json_line(m.stdout)
        _phases(row, out)
        row.total_s = m.wall_s
        row.startup_s = max(0.0, m.wall_s - (row.e2e_s or 0.0))
        row.intact = out["tasks"] == row.tasks
        if workload == "numpy":
            row.intact = row.intact and out["checksum"] == ctx.expected_checksum
        if not row.intact:
            row.status, row.detail = "wrong", json.dumps(out)
        shutil.rmtree(run_dir, ignore_errors=True)
        return row


class Dask(System):
    name = "dask"
    env = "dask"

    def run(self, ctx: Context, files: dict[str, Any], workload: str, n: int, repeat: int) -> Row:
        row = Row(self.name, workload, n, repeat, "ok", files["tasks"], files["drops"], cpu_scope="window")
        arg = f"numpy:{n}" if workload == "numpy" else files["dag"]
        run_dir = os.path.join(ctx.workdir, f"{self.name}-{workload}-{n}-{repeat}")
        env = ctx.env()
        env["DASK_TEMPORARY_DIRECTORY"] = os.path.join(run_dir, "dask-tmp")
        argv = [self.python(ctx), os.path.join(DRIVERS, "dask_driver.py"), arg]
        shm_before = measure.shm_names()
        m = measure.run(argv, env=env, cwd=ctx.workdir, timeout=ctx.timeout, output_dir=run_dir)
        _memory(row, m)
        if not m.ok:
            # a cluster killed past its grace period leaves multiprocessing's semaphores behind
            reaped = measure.reap_semaphores(shm_before)
            if reaped:
                print(f"bench: dask: removed {len(reaped)} semaphores left in /dev/shm", file=sys.stderr)
            return _failed(row, m, ctx.timeout)
        out = _json_line(m.stdout)
        _phases(row, out)
        row.cpu_s = out["cpu_window_s"]
        row.total_s = m.wall_s
        row.startup_s = out["startup_s"]
        row.intact = out["tasks"] == row.tasks
        if workload == "numpy":
            row.intact = row.intact and out["checksum"] == ctx.expected_checksum
        if not row.intact:
            row.status, row.detail = "wrong", json.dumps(out)
        shutil.rmtree(run_dir, ignore_errors=True)
        return row


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


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /api/sessions HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False


class Daliuge(System):
    name = "daliuge"
    env = "daliuge"

    def run(self, ctx: Context, files: dict[str, Any], workload: str, n: int, repeat: int) -> Row:
        row = Row(self.name, workload, n, repeat, "ok", files["tasks"], files["drops"], cpu_scope="window")
        run_dir = os.path.join(ctx.workdir, f"{self.name}-{workload}-{n}-{repeat}")
        os.makedirs(run_dir, exist_ok=True)
        py = self.python(ctx)
        rest, rpc, events = _free_ports(3)
        env = ctx.env()
        env["DLG_ROOT"] = os.path.join(run_dir, "dlg-root")
        dlg = os.path.join(os.path.dirname(py), "dlg")
        nm = measure.Daemon(
            [
                dlg,
                "nm",
                "--host",
                "127.0.0.1",
                "--port",
                str(rest),
                "--rpc_port",
                str(rpc),
                "--event_port",
                str(events),
                "--dlg-path",
                os.path.join(run_dir, "dlg-path"),
                "--log-dir",
                os.path.join(run_dir, "logs"),
                "--max-request-size",
                "4096",
            ],
            env=env,
            cwd=run_dir,
            output_dir=run_dir,
        )
        t0 = time.perf_counter()
        nm.start()
        try:
            deadline = t0 + 120
            while not _answers(rest):
                if not nm.alive() or time.perf_counter() > deadline:
                    row.status, row.detail = "failed", f"dlg nm did not start: {nm.log_tail()}"
                    return row
                time.sleep(0.05)
            row.startup_s = time.perf_counter() - t0
            root = "start" if workload == "numpy" else "root"
            argv = [
                py, os.path.join(DRIVERS, "daliuge_client.py"), files["daliuge"], "--port", str(rest),
                "--nm-pid", str(nm.pid), "--root", root,
            ]  # fmt: skip
            assert nm.sampler is not None
            m = measure.run(
                argv,
                env=env,
                timeout=ctx.timeout,
                output_dir=os.path.join(run_dir, "client"),
                also=[nm.sampler],
            )
            row.peak_rss_mb = nm.sampler.peak / MB
            row.sampled_rss_mb = row.peak_rss_mb
            row.total_s = time.perf_counter() - t0
            if m.timed_out or not m.stdout.strip():
                return _failed(row, m, ctx.timeout)
            out = _json_line(m.stdout)
            _phases(row, out)
            row.cpu_s = out["cpu_window_s"]
            done = sum(out["by_state"].get(s, 0) for s in ("COMPLETED", "EXPIRED", "DELETED"))
            row.intact = (
                out["state"] == "FINISHED"
                and out["drops"] == files["daliuge_drops"]
                and done == files["daliuge_drops"]
                and out["apps_finished"] == row.tasks
            )
            if workload == "numpy":
                try:
                    with open(files["daliuge_result"]) as f:
                        got = int(f.read().strip())
                    os.unlink(files["daliuge_result"])
                except (OSError, ValueError):
                    got = None
                row.intact = row.intact and got == ctx.expected_checksum
            if not row.intact:
                row.status, row.detail = "wrong", json.dumps(out)[-1500:]
        finally:
            nm.stop()
            row.wait4_rss_mb = nm.wait4_rss / MB
            row.peak_rss_mb = max(row.peak_rss_mb or 0.0, row.wait4_rss_mb)
        if row.status == "ok":
            shutil.rmtree(run_dir, ignore_errors=True)
        return row


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in [
        Dropflow(),
        DropflowMemory(),
        DropflowCluster(),
        Daliuge(),
        Dask(),
        Floor("loop", "loop"),
        Floor("threadpool", "threads"),
    ]
}
