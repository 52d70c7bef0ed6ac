"""What apps write to standard output and error is kept per drop (bounded), and each app's duration counted.

Shell commands capture their own output; Python functions in worker processes have the worker's file
descriptors captured around each app (and passed on to the daemon's, as before); apps in threads share the
process and are not captured. The tails go into the app's outcome and the session keeps them.
"""

from __future__ import annotations

import monitorkit  # noqa: F401  (puts this directory on sys.path for monfuncs)

from dropflow.drops import MemorySpec, PythonSpec, ShellSpec
from dropflow.drops.apps.base import OUTPUT_TAIL
from dropflow.engine.observe import BUCKETS, AppStats, OutputTails

from conftest import run


def test_a_shell_command_keeps_the_end_of_its_output_and_error(node):
    session = run(
        node,
        [
            ShellSpec(id="talk", command="echo out-line; echo err-line >&2"),
            ShellSpec(id="fail", command="echo before; echo why-it-failed >&2; exit 4"),
            ShellSpec(id="piped", command="echo data", outputs={"stdout": "d"}),
            MemorySpec(id="d"),
        ],
    )
    assert session.outputs.get("talk") == ("out-line\n", "err-line\n")
    assert session.outputs.get("fail") == ("before\n", "why-it-failed\n")
    assert "why-it-failed" in dict((f.uid, f.message) for f in session.failures())["fail"]
    # Standard output that goes to a drop is data, not log.
    assert session.outputs.get("piped") is None


def test_a_function_in_a_worker_process_keeps_its_output_and_the_daemon_still_sees_it(node, capfd):
    session = run(
        node,
        [
            PythonSpec(id="bad", func="monfuncs:shout_and_fail", executor="process"),
            PythonSpec(id="chatty", func="monfuncs:chatty", executor="process", outputs={"o": "n"}),
            MemorySpec(id="n"),
        ],
    )
    out, err = session.outputs.get("bad")
    assert out == "starting the shout\n" and err == "shouting to standard error\n"
    out, err = session.outputs.get("chatty")
    assert len(out) <= OUTPUT_TAIL and out.endswith("line 1999 of a chatty app\n")
    assert "line 0 of" not in out  # only the end is kept
    assert err == "chatty's last words\n"
    # Kept with its drop, not mixed into the process's own output (a progress bar, a daemon's log).
    seen = capfd.readouterr()
    assert "starting the shout" not in seen.out and "shouting to standard error" not in seen.err


def test_a_function_in_a_thread_is_captured_too(node):
    """In a thread, what the function prints is routed to its own buffers (other threads print as usual)."""
    session = run(node, [PythonSpec(id="t", func="monfuncs:chatty", executor="thread")])
    out, err = session.outputs.get("t")
    assert out.endswith("line 1999 of a chatty app\n") and err == "chatty's last words\n"


def test_each_app_is_counted_once_with_its_duration(node):
    before = sum(node.stats.counts)
    run(
        node,
        [ShellSpec(id=f"s{i}", command="true") for i in range(5)]
        + [PythonSpec(id="b", func="testfuncs:boom")],
    )
    assert sum(node.stats.counts) == before + 6
    assert node.stats.failed >= 1 and node.stats.sum > 0


def test_stats_buckets_follow_prometheus_le():
    stats = AppStats()
    stats.record(BUCKETS[0], True)  # on the bound: in that bucket (le)
    stats.record(BUCKETS[-1] * 2, False)  # beyond the last bound: +Inf
    stats.record(None, True)  # not measured: not counted
    assert stats.counts[0] == 1 and stats.counts[-1] == 1 and sum(stats.counts) == 2 and stats.failed == 1


def test_output_tails_stay_within_their_budget_oldest_first():
    tails = OutputTails(budget=100)
    for i in range(10):
        tails.keep(f"a{i}", "x" * 20, "y" * 10)
    assert len(tails) == 3 and tails.get("a9") == ("x" * 20, "y" * 10) and tails.get("a6") is None
    tails.keep("a9", "", "z")  # a retry replaces its tails
    assert tails.get("a9") == ("", "z") and tails.get("a7") is not None
