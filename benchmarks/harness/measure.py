"""Running a command and measuring its process tree: wall time, peak RSS, CPU seconds.

Two sources, both recorded:

- ``wait4``: when the command ends, the kernel's resource usage of the process we started, including every
  descendant it reaped -- exact CPU seconds of the whole tree, and the largest single process's peak RSS
  (``ru_maxrss`` is a maximum over processes, not a sum). Linux carries the peak-RSS counter across fork and
  exec, so the harness process keeps itself small (it never holds a graph).
- sampling: a loop reads the RSS of the process and its descendants (``/proc/<pid>/statm`` through psutil)
  every ``interval`` seconds and keeps the largest *sum*. This is the peak RSS of a multi-process engine
  (Dask's scheduler, nannies and workers; a node manager and its helpers). It can miss a peak shorter than
  the interval and counts pages shared between processes once per process.

``peak_rss`` is the larger of the two. Descendants are rediscovered every ``rescan`` seconds (a scan of /proc
is too costly to do at every sample on a shared 2-core machine).

A :class:`Daemon` is a long-lived process (a node manager) that the harness starts, samples while a client
drives it, and stops by its PID; its CPU over a window comes from psutil, as daemons are not reaped between
jobs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

__all__ = ["Daemon", "Measured", "TreeSampler", "run", "stop_pids", "unmapped"]


class TreeSampler:
    """Peak of the summed RSS of a process and its descendants, sampled on demand."""

    def __init__(self, pid: int, rescan: float = 0.25) -> None:
        self.pid = pid
        self.rescan = rescan
        self.peak = 0
        self._procs: dict[int, psutil.Process] = {}
        self._scanned = 0.0
        self._scan()

    def _scan(self) -> None:
        self._scanned = time.monotonic()
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        self._procs = {p.pid: p for p in procs}

    def sample(self) -> int:
        if time.monotonic() - self._scanned > self.rescan:
            self._scan()
        total = 0
        for pid, proc in list(self._procs.items()):
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                del self._procs[pid]
        self.peak = max(self.peak, total)
        return total

    def cpu_seconds(self) -> float:
        """CPU seconds so far of the live processes of the tree (their own and their reaped children's)."""
        self._scan()
        total = 0.0
        for proc in self._procs.values():
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total


@dataclass
class Measured:
    argv: list[str]
    returncode: int | None
    wall_s: float
    stdout: str
    stderr: str
    timed_out: bool
    #: wait4's ru_maxrss (bytes): the largest single process of the tree
    wait4_rss: int
    #: peak of the sampled sum over the tree (bytes)
    sampled_rss: int
    #: wait4's user + system CPU seconds of the tree
    cpu_s: float

    @property
    def peak_rss(self) -> int:
        return max(self.wait4_rss, self.sampled_rss)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def _interrupt(proc: subprocess.Popen[bytes], grace: float) -> tuple[int, Any]:
    """SIGINT the process (so it can stop what it started: a Dask cluster, running apps), wait up to
    ``grace`` seconds, then kill its whole process group. Returns wait4's status and usage."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            return status, usage
        time.sleep(0.05)
    _kill_group(proc.pid)
    _, status, usage = os.wait4(proc.pid, 0)
    return status, usage


def _kill_group(pid: int) -> None:
    """Kill the process group that ``pid`` leads (we started it with a new session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = 600.0,
    interval: float = 0.02,
    output_dir: str,
    also: Sequence[TreeSampler] = (),
    grace: float = 20.0,
) -> Measured:
    """Run ``argv`` to completion (or interrupt it after ``timeout`` s) and measure it.

    ``also``: samplers of other processes (a daemon that the command drives) to sample in the same loop.
    """
    os.makedirs(output_dir, exist_ok=True)
    out_path, err_path = os.path.join(output_dir, "stdout"), os.path.join(output_dir, "stderr")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=err,
            env=dict(env) if env else None,
            cwd=cwd,
            start_new_session=True,
        )
    sampler = TreeSampler(proc.pid)
    timed_out = False
    try:
        while True:
            sampler.sample()
            for other in also:
                other.sample()
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                timed_out = True
                status, usage = _interrupt(proc, grace)
                break
            time.sleep(interval)
    except BaseException:  # interrupted (Ctrl-C): leave nothing running
        _interrupt(proc, grace)
        raise
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    _kill_group(proc.pid)  # anything the command left behind in its group
    with open(out_path, errors="replace") as f:
        stdout = f.read()
    with open(err_path, errors="replace") as f:
        stderr = f.read()
    return Measured(
        argv=list(argv),
        returncode=None if timed_out else proc.returncode,
        wall_s=wall,
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
        wait4_rss=usage.ru_maxrss * 1024,
        sampled_rss=sampler.peak,
        cpu_s=usage.ru_utime + usage.ru_stime,
    )


def stop_pids(pids: Sequence[int], started: tuple[float, float]) -> list[int]:
    """Kill the processes of ``pids`` still alive that were started within ``started`` (wall-clock seconds:
    the window of the command that listed them, so that a PID reused since by another process is left
    alone); the PIDs killed."""
    killed = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if not started[0] <= proc.create_time() <= started[1]:
                continue
            proc.kill()
            killed.append(pid)
        except psutil.Error:
            continue
    return killed


SHM = "/dev/shm"


def shm_names() -> set[str]:
    try:
        return set(os.listdir(SHM))
    except OSError:
        return set()


def unmapped(names: list[str]) -> list[str]:
    """Those of ``names`` (entries of /dev/shm) that no live process has mapped: leaked, not in use. On a
    shared machine, a segment another user's live process holds is not a leak of ours."""
    if not names:
        return []
    mapped: set[str] = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/maps") as f:
                    maps = f.read()
            except OSError:
                continue
            mapped.update(n for n in names if n in maps)
    return [n for n in names if n not in mapped]


def reap_semaphores(before: set[str]) -> list[str]:
    """Remove multiprocessing semaphores (``sem.mp-*``) that appeared since ``before`` and that no live
    process has mapped: what a killed Python process tree (a Dask cluster past its timeout) leaves behind."""
    reaped = []
    for name in unmapped([n for n in shm_names() - before if n.startswith("sem.mp-")]):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(SHM, name))
        reaped.append(name)
    return reaped


class Daemon:
    """A long-lived process started by the harness, in its own process group, stopped by its PID."""

    def __init__(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None, cwd: str | None, output_dir: str
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env) if env else None
        self.cwd = cwd
        self.output_dir = output_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.sampler: TreeSampler | None = None
        self.wait4_rss = 0
        self.cpu_total = 0.0

    def start(self) -> int:
        os.makedirs(self.output_dir, exist_ok=True)
        with (
            open(os.path.join(self.output_dir, "daemon.out"), "wb") as out,
            open(os.path.join(self.output_dir, "daemon.err"), "wb") as err,
        ):
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=err, env=self.env, cwd=self.cwd, start_new_session=True
            )
        self.sampler = TreeSampler(self.proc.pid)
        return self.proc.pid

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            with open(os.path.join(self.output_dir, "daemon.err"), errors="replace") as f:
                return f.read()[-chars:]
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` s; then kill whatever is left in its process group."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
                if pid:
                    break
                time.sleep(0.05)
            else:
                self.proc.kill()
                pid, status, usage = os.wait4(self.proc.pid, 0)
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            self.wait4_rss = usage.ru_maxrss * 1024
            self.cpu_total = usage.ru_utime + usage.ru_stime
        _kill_group(self.proc.pid)
