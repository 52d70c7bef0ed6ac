"""The reaper: a watchdog process that kills the apps' process groups once its node's process is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from dropflow.drops.apps.base import CancelToken, group_ended, group_started
from dropflow.engine import reaper

from conftest import poll_for


def gone(pid: int) -> bool:
    """Dead; an orphan killed in a container may linger as a zombie nobody reaps, which counts as dead."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def sleeper() -> subprocess.Popen[bytes]:
    """A `sleep 1000` leading a process group of its own, as shell apps run."""
    return subprocess.Popen(["sleep", "1000"], start_new_session=True)


def test_last_release_kills_registered_groups_only():
    """Groups still registered when the pipe closes are killed; groups that ended are left alone."""
    assert reaper.current() is None
    r = reaper.acquire()
    running, ended = sleeper(), sleeper()
    try:
        group_started(running.pid)
        group_started(ended.pid)
        group_ended(ended.pid)
        assert reaper.acquire() is r  # one reaper per process, counted
        reaper.release()
        assert r.proc.poll() is None and running.poll() is None
        reaper.release()
        assert r.proc.returncode == 0  # release waited for it
        assert running.wait(5) == -signal.SIGKILL
        assert ended.poll() is None
        assert reaper.current() is None
    finally:
        for p in (running, ended):
            p.kill()
            p.wait()


@pytest.mark.timeout(120)
def test_groups_of_a_killed_process_are_killed(tmp_path):
    """
    A process holding the reaper starts an app's process group (a `sh -c` with a background child,
    attached to a CancelToken as the shell runner does) and is SIGKILLed: the whole group dies, and so does
    the reaper.
    """
    script = textwrap.dedent(
        """
        import subprocess, threading
        from dropflow.drops.apps.base import CancelToken
        from dropflow.engine import reaper

        r = reaper.acquire()
        sh = subprocess.Popen(["sh", "-c", "sleep 1000 & echo $!; wait"], stdout=subprocess.PIPE,
                              start_new_session=True)
        CancelToken().attach(sh.pid)
        print(r.pid, sh.pid, sh.stdout.readline().decode().strip(), flush=True)
        threading.Event().wait()
        """
    )
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, start_new_session=True)
    pids: list[int] = []
    try:
        assert host.stdout is not None
        pids = [int(w) for w in host.stdout.readline().split()]
        assert len(pids) == 3 and not any(gone(p) for p in pids)
        host.send_signal(signal.SIGKILL)
        host.wait(10)
        poll_for(lambda: all(gone(p) for p in pids), timeout=5)
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        if host.stdout is not None:
            host.stdout.close()
        for p in pids:
            if not gone(p):
                os.kill(p, signal.SIGKILL)


@pytest.mark.timeout(120)
def test_forked_children_do_not_hold_the_reaper(tmp_path):
    """
    A child forked after the reaper started (user code using multiprocessing's fork, say) must not keep
    its pipe open: the reaper must still see its parent's end of file and exit on its own.
    """
    script = textwrap.dedent(
        """
        import os
        from dropflow.engine import reaper

        r = reaper.acquire()
        hold_r, hold_w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(hold_w)
            os.read(hold_r, 1)  # until the parent is done
            os._exit(0)
        reaper.release(timeout=5)
        print(r.proc.returncode, flush=True)
        os.close(hold_w)
        os.waitpid(child, 0)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"  # exited on EOF, not killed after the timeout


def test_cancel_token_announces_its_group():
    """attach/detach tell the group hooks; detach kills stragglers of the group before saying it ended."""
    calls: list[tuple[str, int]] = []

    class Hook:
        def group_started(self, pgid: int) -> None:
            calls.append(("started", pgid))

        def group_ended(self, pgid: int) -> None:
            calls.append(("ended", pgid))

    from dropflow.drops.apps import base

    hook = Hook()
    base.add_group_hook(hook)
    p = sleeper()
    try:
        token = CancelToken()
        token.attach(p.pid)
        token.detach()
        assert calls == [("started", p.pid), ("ended", p.pid)]
        assert p.wait(5) == -signal.SIGKILL
    finally:
        base.remove_group_hook(hook)
        p.kill()
        p.wait()
