"""The process pool: warm workers; crashes, kills and start-up failures fail one task only; no orphans."""

from __future__ import annotations

import errno
import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from dropflow.drops import PythonSpec
from dropflow.drops.apps.base import Outcome, Task
from dropflow.engine import procpool
from dropflow.engine.procpool import ProcessPool

from conftest import HERE, poll_for

APPS = os.path.join(HERE, "apps")


def gone(pid: int) -> bool:
    """Dead; an orphan killed in a container may linger as a zombie nobody reaps, which counts as dead."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def task(tmp_path: Any, func: str, **kwargs: Any) -> Task:
    return Task("s", str(tmp_path), PythonSpec(id=func, func=f"poolfuncs:{func}", kwargs=kwargs), [], [])


class Pool:
    """A pool whose outcomes land in a queue, closed (and checked for leftovers) by the fixture."""

    def __init__(self, size: int) -> None:
        self.outcomes: queue.SimpleQueue[tuple[int, Outcome]] = queue.SimpleQueue()
        self.pool = ProcessPool(size, lambda task_id, outcome: self.outcomes.put((task_id, outcome)))
        self.next_id = 0

    def submit(self, t: Task) -> int:
        self.next_id += 1
        self.pool.submit(self.next_id, t)
        return self.next_id

    def outcome(self, task_id: int, timeout: float = 30) -> Outcome:
        got, outcome = self.outcomes.get(timeout=timeout)
        assert got == task_id
        return outcome

    def run(self, t: Task) -> Outcome:
        return self.outcome(self.submit(t))


def pid_of(tmp_path: Any, pool: Pool) -> int:
    """Run write_pid in the pool: the pid of the worker that ran it."""
    path = str(tmp_path / f"pid-{pool.next_id + 1}")
    outcome = pool.run(task(tmp_path, "write_pid", path=path))
    assert outcome.ok, outcome.error
    with open(path) as f:
        return int(f.read())


@pytest.fixture
def make_pool() -> Iterator[Any]:
    pools: list[Pool] = []
    kids_before = {p.pid for p in psutil.Process().children(recursive=True)}

    def make(size: int = 1) -> Pool:
        pools.append(Pool(size))
        return pools[-1]

    yield make
    for p in pools:
        assert p.pool.close(30), "slot threads did not end"
    assert not [t for t in threading.enumerate() if t.name == "dropflow-proc"]
    poll_for(lambda: {p.pid for p in psutil.Process().children(recursive=True)} <= kids_before, timeout=10)


def test_start_warms_workers_that_serve_many_tasks(make_pool, tmp_path):
    """start() spawns every worker before any task; those same workers then run task after task."""
    p = make_pool(2)
    assert p.pool.pids() == []  # the constructor starts nothing
    p.pool.start()
    warm = set(poll_for(lambda: len(p.pool.pids()) == 2 and p.pool.pids(), timeout=10))
    used = {pid_of(tmp_path, p) for _ in range(6)}
    assert used <= warm
    assert set(p.pool.pids()) == warm


def test_workers_survive_the_thread_that_started_the_pool(make_pool, tmp_path):
    """
    PR_SET_PDEATHSIG fires when the *thread* that started a child exits. start() called from a short-lived
    thread must not tie the workers to it: they belong to the slot threads, which live as long as the pool.
    """
    p = make_pool(1)
    starter = threading.Thread(target=p.pool.start)
    starter.start()
    starter.join()
    (warm,) = poll_for(lambda: p.pool.pids(), timeout=10)
    assert pid_of(tmp_path, p) == warm
    assert not gone(warm)


@pytest.mark.parametrize(
    ("func", "message"),
    [
        ("abort", "worker process died of SIGABRT"),
        ("segfault", "worker process died of SIGSEGV"),
        ("exit3", "worker process died (exit status 3)"),
    ],
)
def test_a_dying_worker_fails_only_its_task(make_pool, tmp_path, func, message):
    """os.abort(), a segfault, os._exit(3): the task fails saying how; a fresh worker serves the next one."""
    p = make_pool(1)
    before = pid_of(tmp_path, p)
    outcome = p.run(task(tmp_path, func))
    assert not outcome.ok and outcome.error == message
    assert gone(before)
    after = pid_of(tmp_path, p)
    assert after != before


def test_sys_exit_in_an_app_fails_the_app_not_the_worker(make_pool, tmp_path):
    p = make_pool(1)
    before = pid_of(tmp_path, p)
    outcome = p.run(task(tmp_path, "system_exit"))
    assert not outcome.ok and "SystemExit: 7" in (outcome.error or "")
    assert pid_of(tmp_path, p) == before


def test_kill_frees_the_slot_and_kills_the_workers_group(make_pool, tmp_path):
    """
    A task that never returns, and started a `sleep 1000` of its own, is killed: the caller is not held,
    the task is reported cancelled, the sleep dies with the worker, and the only slot runs the next task.
    """
    p = make_pool(1)
    path = str(tmp_path / "running")
    task_id = p.submit(task(tmp_path, "forever", path=path, child=True))
    poll_for(lambda: os.path.exists(path), timeout=30)
    with open(path) as f:
        worker, sleeper = map(int, f.read().split())
    assert p.pool.kill(task_id) is True
    outcome = p.outcome(task_id)
    assert not outcome.ok and outcome.error == "cancelled"
    poll_for(lambda: gone(worker) and gone(sleeper), timeout=5)
    assert p.pool.kill(task_id) is False  # not running any more
    assert pid_of(tmp_path, p) != worker


def test_failing_worker_start_fails_the_task_and_keeps_the_slot(make_pool, tmp_path, monkeypatch):
    """Popen failing (here injected) fails the task with its cause; the same slot thread serves on."""
    real = procpool._popen
    fail = [True]

    def popen(argv: list[str], pass_fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
        if fail[0]:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real(argv, pass_fds)

    monkeypatch.setattr(procpool, "_popen", popen)
    p = make_pool(1)
    fds = psutil.Process().num_fds()
    outcome = p.run(task(tmp_path, "write_pid", path=str(tmp_path / "x")))
    assert not outcome.ok and outcome.error == "cannot start a worker process: [Errno 24] Too many open files"
    assert psutil.Process().num_fds() == fds  # the pipes made for it were closed
    (slot_thread,) = [t for t in threading.enumerate() if t.name == "dropflow-proc"]
    fail[0] = False
    pid_of(tmp_path, p)
    assert [t for t in threading.enumerate() if t.name == "dropflow-proc"] == [slot_thread]


@pytest.mark.timeout(120)
def test_running_out_of_file_descriptors_fails_the_task_not_the_pool(tmp_path):
    """The real thing, in a child process whose RLIMIT_NOFILE is lowered: EMFILE fails one task only."""
    script = textwrap.dedent(
        """
        import json, os, queue, resource, sys
        from dropflow.drops import PythonSpec
        from dropflow.drops.apps.base import Task
        from dropflow.engine.procpool import ProcessPool

        out = queue.SimpleQueue()
        pool = ProcessPool(1, lambda i, o: out.put((i, o.ok, o.error)))
        spec = PythonSpec(id="p", func="poolfuncs:write_pid", kwargs={"path": sys.argv[1]})
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")), hard))
        pool.submit(1, Task("s", ".", spec, [], []))
        first = out.get(timeout=60)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        pool.submit(2, Task("s", ".", spec, [], []))
        second = out.get(timeout=60)
        pool.close()
        print(json.dumps([first, second]))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "pid")],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "PYTHONPATH": APPS},
    )
    assert proc.returncode == 0, proc.stderr
    first, second = json.loads(proc.stdout)
    assert first[:2] == [1, False] and "Too many open files" in first[2]
    assert second == [2, True, None]


@pytest.mark.timeout(120)
def test_workers_die_with_their_parent_mid_task(tmp_path):
    """
    A process hosting a pool is SIGKILLed while a worker runs a task that never returns: the worker (and
    what it started) must not be orphaned. No reaper here: this is the worker's own PR_SET_PDEATHSIG.
    """
    path = str(tmp_path / "running")
    script = textwrap.dedent(
        """
        import sys, threading
        from dropflow.drops import PythonSpec
        from dropflow.drops.apps.base import Task
        from dropflow.engine.procpool import ProcessPool

        pool = ProcessPool(1, lambda i, o: None)
        spec = PythonSpec(id="p", func="poolfuncs:forever", kwargs={"path": sys.argv[1]})
        pool.submit(1, Task("s", ".", spec, [], []))
        threading.Event().wait()
        """
    )
    host = subprocess.Popen(
        [sys.executable, "-c", script, path], env={**os.environ, "PYTHONPATH": APPS}, start_new_session=True
    )
    worker = None
    try:
        poll_for(lambda: os.path.exists(path) or host.poll() is not None, timeout=60)
        with open(path) as f:
            (worker,) = map(int, f.read().split())
        host.send_signal(signal.SIGKILL)
        host.wait(10)
        poll_for(lambda: gone(worker), timeout=5)
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        if worker is not None and not gone(worker):
            os.kill(worker, signal.SIGKILL)


def test_close_kills_running_tasks_and_ends_every_worker(make_pool, tmp_path):
    p = make_pool(2)
    p.pool.start()
    path = str(tmp_path / "running")
    task_id = p.submit(task(tmp_path, "forever", path=path))
    poll_for(lambda: os.path.exists(path), timeout=30)
    workers = p.pool.pids()
    assert p.pool.close(30)
    assert p.outcome(task_id).error == "cancelled"
    assert all(gone(pid) for pid in workers)
    with pytest.raises(RuntimeError, match="closed"):
        p.pool.submit(99, task(tmp_path, "write_pid", path=path))


def test_death_names_signals_and_exit_statuses():
    assert procpool.death(-signal.SIGKILL) == "worker process died of SIGKILL"
    assert procpool.death(1) == "worker process died (exit status 1)"
