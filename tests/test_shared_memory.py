"""Shared-memory drops: zero-copy hand-over between processes, and nothing left in /dev/shm afterwards."""

from __future__ import annotations

import os

from dropflow.drops import MemorySpec, NoopSpec, PythonSpec, SharedMemorySpec, SleepSpec
from dropflow.drops.shm import segment_name, session_scope

from conftest import poll_for, run, shm_segments

SIZE = 512 * 1024 * 1024


def test_512_mib_array_crosses_processes_without_a_copy(node):
    """
    n -> fill (process A) -> seg -> touch (process B) -> t -> read (owner's thread)
                               \\___________________________________/

    ``fill`` allocates the array inside the segment and writes arr[0] = 11. ``touch`` runs in another worker
    process, sees 11 through a view that owns no data, and writes 99 through it. ``read`` maps the same
    segment later and sees 99: the write went through shared pages, so neither consumer had a copy.
    """
    s = run(
        node,
        [
            MemorySpec(id="n", data=SIZE, codec="json"),
            PythonSpec(
                id="fill",
                func="testfuncs:fill_array",
                executor="process",
                inputs={"n": "n"},
                outputs={"out": "seg"},
            ),
            SharedMemorySpec(id="seg"),
            PythonSpec(
                id="touch",
                func="testfuncs:touch_first",
                executor="process",
                inputs={"arr": "seg"},
                outputs={"out": "t"},
            ),
            MemorySpec(id="t", persist=True),
            PythonSpec(
                id="read",
                func="testfuncs:read_first",
                inputs={"arr": "seg", "after": "t"},
                outputs={"out": "r"},
            ),
            MemorySpec(id="r", persist=True),
        ],
        session_id="zero-copy",
        timeout=120,
    )
    assert s.state == "FINISHED", s.failures()
    touched = s.value("t")
    assert touched["seen"] == 11 and touched["size"] == SIZE and touched["sum_head"] == 11 + 999
    assert touched["pid"] != os.getpid()
    assert s.value("r") == 99
    assert segment_name(s.workspace.shm_scope, "zero-copy", "seg") not in shm_segments()


def test_segment_names_hash_long_ids_without_collisions():
    """DALiuGE truncated names to 14 characters, so long ids sharing a prefix collided; ours never do."""
    prefix = "x" * 300
    scope = session_scope("/tmp", "session-" + prefix)
    names = {segment_name(scope, "session-" + prefix, f"{prefix}-{i}") for i in range(1000)}
    assert len(names) == 1000
    assert all(len(n) < 255 for n in names)
    assert segment_name(scope, "a", "bc") != segment_name(scope, "ab", "c")
    # The same session id under two roots: two scopes, so a sweep of one never touches the other.
    assert session_scope("/a", "s") != session_scope("/b", "s")


def test_cancelled_session_leaves_no_segment(node):
    session = node.create_session("shm-cancel")
    session.add(
        [
            MemorySpec(id="n", data=4096, codec="json"),
            PythonSpec(id="fill", func="testfuncs:fill_array", inputs={"n": "n"}, outputs={"out": "seg"}),
            SharedMemorySpec(id="seg"),
            SleepSpec(id="hold", seconds=100, inputs={"s": "seg"}),
            NoopSpec(id="after", inputs={"s": "seg"}),
        ]
    )
    session.deploy()
    name = segment_name(session.workspace.shm_scope, "shm-cancel", "seg")
    poll_for(lambda: name in shm_segments(), timeout=10)
    poll_for(lambda: session.drop_state("hold") == "RUNNING", timeout=10)
    session.cancel()
    assert session.wait(10) == "CANCELLED"
    assert name not in shm_segments()
    assert not os.path.exists(session.workspace.dir)
