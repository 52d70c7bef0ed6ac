"""The peers: DALiuGE, Dask, Ray and Parsl, each run the way its users run it, in its own virtualenv.

- ``daliuge``: a fresh ``dlg nm`` per run (on loopback, DLG_ROOT in the run's temp dir, the request size limit
  raised from 10 MB so that large graphs can be appended, as its users must do), driven over REST by
  ``drivers/daliuge_client.py``; its RSS is sampled, its CPU read over the client's window.
- ``dask``: ``drivers/dask_driver.py``, a LocalCluster (worker processes) and a Client.
- ``ray``: ``drivers/ray_driver.py``, ``ray.init(num_cpus=2, include_dashboard=False)`` on loopback and remote
  functions chained through object references.
- ``parsl-threads`` / ``parsl-htex``: ``drivers/parsl_driver.py``, Parsl's ThreadPoolExecutor (2 threads) or
  HighThroughputExecutor (a local block of 2 worker processes, interchange on loopback).

Dask, Ray and Parsl are one-shot drivers (:class:`Driver`): the driver starts the system, times its phases
itself, leaves the system's start-up out of ``e2e_s`` (``startup_s``), stops it, and prints one JSON object,
listing the PIDs of the processes it started; any of those still alive afterwards is killed by PID (and the
driver's process group is killed as for every run). Those whose every task runs in a worker process (Dask,
Ray, Parsl's HTEX) run the ``py`` workloads and not the ``proc`` ones, which would measure the same path
again; they run the numpy pipeline across processes (``numpy-proc``).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from typing import Any

import measure
from systems import (
    DRIVERS,
    MB,
    Context,
    Row,
    System,
    _check_sinks,
    _failed,
    _finish,
    _free_ports,
    _json_line,
    _memory,
    _phases,
    check_run,
    numpy_arg,
)

__all__ = ["PEERS", "Daliuge", "Driver"]

#: what runs in worker processes: the Python and shell workloads, the numpy pipeline across processes
IN_PROCESSES = frozenset({"noop", "py", "shell", "numpy-proc"})


class Driver(System):
    """A peer run by one command of its own environment that prints one JSON object (see the module doc)."""

    script = ""
    cpu_scope = "window"

    def argv(self, ctx: Context, workload: str, arg: str, run_dir: str) -> list[str]:
        return [self.python(ctx), os.path.join(DRIVERS, self.script), workload, arg]

    def environment(self, ctx: Context, run_dir: str) -> dict[str, str]:
        env = ctx.env(run_dir)
        # the environment's scripts (Parsl's interchange and worker pool) found as in an activated venv
        env["PATH"] = os.path.dirname(self.python(ctx)) + os.pathsep + env.get("PATH", "")
        return env

    def run(self, ctx: Context, files: dict[str, Any], workload: str, n: int, repeat: int) -> Row:
        row = Row(self.name, workload, n, repeat, "ok", files["tasks"], files["drops"], cpu_scope="window")
        run_dir = os.path.join(ctx.workdir, f"{self.name}-{workload}-{n}-{repeat}")
        os.makedirs(run_dir, exist_ok=True)
        env = self.environment(ctx, run_dir)
        argv = self.argv(ctx, workload, numpy_arg(workload, n, files), run_dir)
        shm_before = measure.shm_names()
        m = measure.run(argv, env=env, cwd=run_dir, timeout=ctx.timeout, output_dir=run_dir)
        _memory(row, m)
        if not m.ok:
            # a tree killed past its grace period leaves multiprocessing's semaphores behind
            reaped = measure.reap_semaphores(shm_before)
            if reaped:
                print(
                    f"bench: {self.name}: removed {len(reaped)} semaphores left in /dev/shm", file=sys.stderr
                )
            _failed(row, m, ctx.timeout)
            _finish(row, run_dir)
            return row
        out = _json_line(m.stdout)
        ended = time.time()
        survivors = measure.stop_pids(out.get("pids", []), started=(ended - m.wall_s - 1.0, ended))
        if survivors:
            row.detail = f"stopped {len(survivors)} processes left running: {survivors}"
        _phases(row, out)
        row.cpu_s = out["cpu_window_s"]
        row.total_s = m.wall_s
        row.startup_s = out["startup_s"]
        check_run(row, ctx, files, workload, out)
        _finish(row, run_dir)
        return row


class Dask(Driver):
    name = "dask"
    env = "dask"
    script = "dask_driver.py"
    runs = IN_PROCESSES

    def environment(self, ctx: Context, run_dir: str) -> dict[str, str]:
        env = super().environment(ctx, run_dir)
        env["DASK_TEMPORARY_DIRECTORY"] = os.path.join(run_dir, "dask-tmp")
        return env


class Ray(Driver):
    name = "ray"
    env = "ray"
    script = "ray_driver.py"
    runs = IN_PROCESSES

    def run(self, ctx: Context, files: dict[str, Any], workload: str, n: int, repeat: int) -> Row:
        # Ray's session directory holds Unix sockets, whose paths may not exceed 107 bytes: a short one
        self._temp = tempfile.mkdtemp(prefix="dropflow-ray-")
        try:
            return super().run(ctx, files, workload, n, repeat)
        finally:
            shutil.rmtree(self._temp, ignore_errors=True)

    def argv(self, ctx: Context, workload: str, arg: str, run_dir: str) -> list[str]:
        return [*super().argv(ctx, workload, arg, run_dir), "--temp-dir", self._temp]


class Parsl(Driver):
    env = "parsl"
    script = "parsl_driver.py"

    def __init__(self, executor: str) -> None:
        self.executor = executor
        self.name = f"parsl-{executor}"
        # threads: in this process (numpy in-process); htex: worker processes
        self.runs = IN_PROCESSES if executor == "htex" else frozenset({"noop", "py", "shell", "numpy"})

    def argv(self, ctx: Context, workload: str, arg: str, run_dir: str) -> list[str]:
        script = os.path.join(DRIVERS, self.script)
        return [
            self.python(ctx),
            script,
            self.executor,
            workload,
            arg,
            "--run-dir",
            os.path.join(run_dir, "parsl"),
        ]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /api/sessions HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False


class Daliuge(System):
    """A fresh ``dlg nm`` per run, driven over REST by ``drivers/daliuge_client.py``."""

    name = "daliuge"
    env = "daliuge"
    # apps run in the node manager's threads: no process variant
    runs = frozenset({"noop", "py", "shell", "numpy"})

    def run(self, ctx: Context, files: dict[str, Any], workload: str, n: int, repeat: int) -> Row:
        row = Row(self.name, workload, n, repeat, "ok", files["tasks"], files["drops"], cpu_scope="window")
        run_dir = os.path.join(ctx.workdir, f"{self.name}-{workload}-{n}-{repeat}")
        os.makedirs(run_dir, exist_ok=True)
        py = self.python(ctx)
        rest, rpc, events = _free_ports(3)
        env = ctx.env(run_dir)
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
            elif files.get("expected") is not None:
                _check_sinks(row, files, _daliuge_sinks(files))
                if not row.intact:
                    row.status = "wrong"
        finally:
            nm.stop()
            row.wait4_rss_mb = nm.wait4_rss / MB
            row.peak_rss_mb = max(row.peak_rss_mb or 0.0, row.wait4_rss_mb)
        _finish(row, run_dir)
        return row


def _daliuge_sinks(files: dict[str, Any]) -> list[Any]:
    """The values the ``py`` sinks wrote (``daliuge_apps.PyTask``'s ``result_path``), then removed."""
    got: list[Any] = []
    for sink in files["sinks"]:
        path = os.path.join(files["daliuge_results"], f"a{sink[1:]}.txt")
        try:
            with open(path) as f:
                got.append(ast.literal_eval(f.read()))
            os.unlink(path)
        except (OSError, ValueError, SyntaxError):
            got.append(None)
    return got


PEERS: list[System] = [Daliuge(), Dask(), Ray(), Parsl("threads"), Parsl("htex")]
