"""Fault injection on every way work reaches the owner loop: the faulty session FAILS with the cause, the
owner thread survives, and the node's other sessions carry on.

Each test injects one exception at one boundary (monkeypatching the engine method that handles that kind of
event) while a *bystander* session on the same node waits on a gate; after the fault, the gate opens and the
bystander must finish normally.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from dropflow.drops import MemorySpec, PythonSpec
from dropflow.drops.spec import DropSpec
from dropflow.engine import Node, Session
from dropflow.engine.bus import InProcBus
from dropflow.engine.core import Core
from dropflow.engine.transfers import Transfers

import testfuncs
from conftest import poll_for, validate_all


class Injected(Exception):
    pass


def inject(monkeypatch: pytest.MonkeyPatch, cls: type, name: str, when: str) -> None:
    """Make ``cls.name`` raise Injected when its first argument is the drop (or session) called ``when``."""
    original = getattr(cls, name)

    def faulty(self, *args, **kwargs):
        first = args[0] if args else None
        uid = getattr(getattr(first, "spec", None), "id", None)
        if uid == when or getattr(self, "id", None) == when:
            raise Injected(f"injected into {name}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, faulty)


@pytest.fixture
def bystander(node: Node) -> Iterator[None]:
    """A session of the same node that runs an app blocked on a gate until the test opens it. (It yields
    nothing: pytest keeps a fixture's value until the end of teardown, and sessions must be freed by then.)"""
    name = f"bystander-{id(node)}"
    s = node.create_session("bystander")
    s.add(
        [
            PythonSpec(id="wait", func="testfuncs:wait_gate", kwargs={"name": name}, outputs={"out": "w"}),
            MemorySpec(id="w", persist=True),
        ]
    )
    s.deploy()
    yield
    testfuncs.gate(name).set()
    assert s.wait(30) == "FINISHED", s.summary()
    assert s.value("w") is True


def failing(node: Node, drops: list[DropSpec], session_id: str = "faulty") -> Session:
    s = node.create_session(session_id)
    s.add(drops)
    s.deploy()
    assert s.wait(10) == "FAILED", s.summary()
    assert "Injected" in (s.error or "") and "injected into" in (s.error or "")
    validate_all(node)
    return s


def one_app(executor: str, **data: object) -> list[DropSpec]:
    return [
        MemorySpec(id="x", data=1, codec="json"),
        PythonSpec(
            id="app", func="testfuncs:inc", executor=executor, inputs={"x": "x"}, outputs={"out": "y"}
        ),
        MemorySpec(id="y", **data),  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize("executor", ["thread", "process", "inline"])
def test_fault_in_an_app_completion(node, bystander, monkeypatch, executor):
    inject(monkeypatch, Core, "app_finished", "app")
    failing(node, one_app(executor))


def test_fault_in_a_timer(node, bystander, monkeypatch):
    """A lifespan timer whose handler raises fails its session (timers used to run outside the guard and
    kill the owner thread). A gated app keeps the session running until the timer fires."""
    inject(monkeypatch, Core, "lifespan_over", "y")
    name = f"timer-{id(node)}"
    try:
        failing(
            node,
            [
                *one_app("thread", lifespan=0.01),
                PythonSpec(id="hold", func="testfuncs:wait_gate", kwargs={"name": name}),
            ],
        )
    finally:
        testfuncs.gate(name).set()


def test_fault_in_a_command(node, bystander, monkeypatch):
    """A command from another thread (cancel, as the REST API sends it) that raises fails the session."""
    monkeypatch.setattr(Core, "cancel", lambda self: (_ for _ in ()).throw(Injected("injected into cancel")))
    s = node.create_session("faulty")
    name = f"cmd-{id(node)}"
    s.add([PythonSpec(id="w", func="testfuncs:wait_gate", kwargs={"name": name})])
    s.deploy()
    poll_for(lambda: s.drop_state("w") == "RUNNING", timeout=10)
    s.cancel()
    assert s.wait(10) == "FAILED" and "injected into cancel" in (s.error or "")
    testfuncs.gate(name).set()


def test_fault_in_deploy_fails_the_session_and_tells_the_caller(node, bystander, monkeypatch):
    """An unexpected error while deploying (here the workspace cannot be made) reaches the caller and fails
    the session: it is not left DEPLOYING."""
    from dropflow.engine.workspace import Workspace

    def no_disk(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Workspace, "create", no_disk)
    s = node.create_session("faulty")
    s.add(one_app("thread"))
    with pytest.raises(OSError, match="No space"):
        s.deploy()
    assert s.wait(10) == "FAILED" and "No space" in (s.error or "")


def test_owner_survives_a_fault_outside_any_session(node, bystander):
    """An event that belongs to no session and raises is logged; the loop goes on."""
    done = threading.Event()
    node.post(lambda: 1 / 0)
    node.post(done.set)
    assert done.wait(10)


@pytest.fixture
def pair(workspace_root: str) -> Iterator[tuple[Node, Node]]:
    bus = InProcBus()
    a = Node("a", workspace_root=workspace_root + "/a", threads=4, processes=1).start()
    b = Node("b", workspace_root=workspace_root + "/b", threads=4, processes=1).start()
    bus.add(a)
    bus.add(b)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def two_nodes(a: Node, b: Node, drops: list[DropSpec]) -> tuple[Session, Session]:
    sessions = []
    for n in (a, b):
        s = n.create_session("two", distributed=True)
        s.add(drops)
        s.deploy(start=False)
        sessions.append(s)
    for s in sessions:
        s.start()
    return sessions[0], sessions[1]


def remote_input() -> list[DropSpec]:
    """x on a -> app on b reads it: b fetches x's bytes, and learns of x's states through events."""
    return [
        MemorySpec(id="x", data=1, codec="json", node="a"),
        PythonSpec(id="app", func="testfuncs:inc", inputs={"x": "x"}, outputs={"out": "y"}, node="b"),
        MemorySpec(id="y", node="b"),
    ]


def test_fault_in_a_transfer_callback(pair, monkeypatch):
    a, b = pair
    inject(monkeypatch, Transfers, "_fetched", "x")
    sa, sb = two_nodes(a, b, remote_input())
    assert sb.wait(10) == "FAILED" and "injected into _fetched" in (sb.error or "")
    sa.cancel()  # (the island would cancel the other parts; here the test does)
    assert sa.wait(10) in ("FINISHED", "CANCELLED")


def test_fault_in_a_remote_event(pair, monkeypatch):
    a, b = pair
    inject(monkeypatch, Core, "remote_state", "x")
    sa, sb = two_nodes(a, b, remote_input())
    assert sb.wait(10) == "FAILED" and "injected into remote_state" in (sb.error or "")
    sa.cancel()
    assert sa.wait(10) in ("FINISHED", "CANCELLED")


def test_a_lying_peer_fails_only_its_session(pair):
    """An event that no owner could send (a drop COMPLETED that has not been written) is refused: the
    session fails with InvalidTransition naming the drop, and the node goes on."""
    from dropflow.engine.bus import RemoteEvent

    a, b = pair
    name = f"peer-{id(a)}"
    drops = [
        PythonSpec(
            id="slow", func="testfuncs:wait_gate", kwargs={"name": name}, outputs={"out": "x"}, node="a"
        ),
        MemorySpec(id="x", node="a"),
        PythonSpec(id="app", func="testfuncs:inc", inputs={"x": "x"}, node="b"),
    ]
    sa, sb = two_nodes(a, b, drops)
    poll_for(lambda: sa.drop_state("slow") == "RUNNING", timeout=10)
    b.deliver_events("two", [RemoteEvent("x", "DELETED")])
    assert sb.wait(10) == "FAILED" and "invalid transition" in (sb.error or "")
    testfuncs.gate(name).set()
    sa.cancel()
    sa.wait(10)


def test_a_broken_invariant_fails_the_session_as_it_ends(node: Node, bystander: None) -> None:
    """DROPFLOW_VALIDATE=1 (set for the whole suite, daemons included): a session checks the core's
    invariants as it ends. A counter corrupted mid-run -- a consumer count that can never reach zero --
    fails that session naming the drop, not the node's others."""
    name = f"corrupt-{id(node)}"
    s = node.create_session("corrupt")
    s.add(
        [
            MemorySpec(id="x", data=1, codec="json", persist=True),
            PythonSpec(
                id="hold",
                func="testfuncs:wait_gate_with",
                kwargs={"name": name},
                inputs={"x": "x"},
                outputs={"out": "y"},
            ),
            MemorySpec(id="y", persist=True),
        ]
    )
    s.deploy()
    assert s.graph is not None
    x = s.graph.by_id["x"]

    def corrupt() -> None:
        x.unread += 5  # five readers that do not exist

    poll_for(lambda: x.state == "COMPLETED", timeout=10)
    node.call(corrupt)
    testfuncs.gate(name).set()
    assert s.wait(10) == "FAILED", s.summary()
    assert "InvariantError" in (s.error or "") and "'x'" in (s.error or ""), s.error
