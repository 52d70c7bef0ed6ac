"""The app thread pool: bounded daemon threads, abandoning a thread stuck in user code, bounded close."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

from dropflow.engine.threadpool import Abandoned, ThreadPool

from conftest import poll_for


def app_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dropflow-app")]


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at teardown: lets every "never-returning" task of the test return, so no thread outlives it."""
    event = threading.Event()
    yield event
    event.set()
    poll_for(lambda: not app_threads(), timeout=10)


def test_results_and_exceptions_reach_the_futures(release):
    pool = ThreadPool(2)
    ok = pool.submit(lambda a, b: a + b, 2, 3)
    bad = pool.submit(lambda: 1 / 0)
    assert ok.result(10) == 5
    with pytest.raises(ZeroDivisionError):
        bad.result(10)
    assert pool.close(10)


def test_threads_are_bounded_named_daemons(release):
    """Five blocked tasks on a pool of two: two threads, both daemons named dropflow-app-*; three wait."""
    pool = ThreadPool(2)
    started = threading.Semaphore(0)

    def block() -> None:
        started.release()
        release.wait()

    futures = [pool.submit(block) for _ in range(5)]
    for _ in range(2):
        assert started.acquire(timeout=10)
    assert pool.threads() == 2
    threads = app_threads()
    assert len(threads) == 2 and all(t.daemon for t in threads), threads
    assert sum(f.running() for f in futures) == 2
    release.set()
    concurrent.futures.wait(futures, 10)
    assert all(f.done() for f in futures)
    assert pool.close(10)


def test_abandoned_threads_free_their_capacity(release):
    """
    The issue's scenario: on a pool of 4, four apps that never return are cancelled (abandoned). A fifth,
    trivial app must still run: the abandoned threads no longer count and replacements start at once.
    """
    pool = ThreadPool(4)
    running = threading.Semaphore(0)

    def stuck() -> str:
        running.release()
        release.wait()
        return "late"

    stuck_futures = [pool.submit(stuck) for _ in range(4)]
    for _ in range(4):
        assert running.acquire(timeout=10)
    waiting = pool.submit(lambda: "waited")  # queued behind the stuck ones
    returned = threading.Semaphore(0)
    for f in stuck_futures:
        assert pool.abandon(f, on_return=returned.release)
        with pytest.raises(Abandoned):
            f.result(0)  # resolved at once: nobody waits on the stuck code
    assert waiting.result(10) == "waited"  # a replacement started for it
    assert len([t for t in app_threads() if "abandoned" in t.name]) == 4
    assert pool.submit(lambda: "fresh").result(10) == "fresh"
    # The stuck code returning later changes nothing: its result is discarded and its thread ends.
    release.set()
    for _ in range(4):
        assert returned.acquire(timeout=10)  # told, e.g. to clean what the late code wrote
    poll_for(lambda: not [t for t in app_threads() if "abandoned" in t.name], timeout=10)
    assert all(isinstance(f.exception(0), Abandoned) for f in stuck_futures)
    assert pool.threads() <= 4
    assert pool.close(10)


def test_abandoning_a_queued_task_cancels_it(release):
    pool = ThreadPool(1)
    ran: list[str] = []
    blocker = pool.submit(release.wait)
    queued = pool.submit(ran.append, "queued")
    assert pool.abandon(queued) and queued.cancelled()
    release.set()
    assert blocker.result(10)
    assert pool.submit(ran.append, "later").result(10) is None
    assert ran == ["later"]
    assert not pool.abandon(blocker)  # finished: nothing to give up
    assert pool.close(10)


@pytest.mark.timeout(60)
def test_close_returns_within_its_timeout_despite_stuck_code(release):
    """A task that never returns (and was not abandoned) does not hold close(); queued tasks are cancelled."""
    pool = ThreadPool(1)
    running = threading.Event()

    def stuck() -> None:
        running.set()
        release.wait()

    stuck_future = pool.submit(stuck)
    queued = pool.submit(lambda: None)
    assert running.wait(10)
    assert pool.close(0.2) is False  # gave up waiting on the stuck thread
    assert queued.cancelled() and not stuck_future.done()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(lambda: None)


@pytest.mark.timeout(60)
def test_stuck_app_thread_does_not_block_interpreter_exit(tmp_path):
    """With concurrent.futures' pool, the interpreter waits for its threads at exit: Ctrl-C never exits."""
    script = textwrap.dedent(
        """
        import threading
        from dropflow.engine.threadpool import ThreadPool

        pool = ThreadPool(2)
        started = threading.Event()
        pool.submit(lambda: (started.set(), threading.Event().wait()))
        started.wait()
        print("stuck", flush=True)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "stuck"
