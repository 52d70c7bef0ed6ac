"""How a node's sessions talk to the other nodes of a distributed session, and an in-process implementation.

Theory of operation
-------------------
A distributed session is a set of per-node sessions with the same id. Each holds its own drops and proxies
of the neighbours that live elsewhere. Three things cross nodes, and :class:`Bus` names them:

- ``send_events``: state changes of boundary drops, to the nodes that hold proxies of them;
- ``fetch``: the bytes of a remote data drop, streamed into a local store before a local app reads them;
- ``push``: the bytes a local app wrote for a remote data drop, streamed to that drop's owner before the
  app's FINISHED event is sent, so data always arrives before the news that it is there.

Receiving is the job of :class:`~dropflow.engine.node.Node` (``deliver_events``, ``data_for``,
``receive_data``), which hands work to the owner loop. The engine defines the interface and
:class:`InProcBus`, which connects nodes living in one process (tests, a cluster in a single process). The
ZeroMQ implementation between daemons lives in ``dropflow.managers``, so the engine has no network code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ..drops.stores import Store

if TYPE_CHECKING:
    from .node import Node

__all__ = ["Bus", "Done", "InProcBus", "RemoteEvent", "copy_store"]

#: Called once when a transfer ends: with None on success, else an error message. Any thread may call it.
Done = Callable[[str | None], None]


class RemoteEvent(NamedTuple):
    """A boundary drop changed state."""

    uid: str
    state: str
    #: For a branch that FINISHED: the output ports it skipped.
    skip_ports: tuple[str, ...] = ()


class Bus(Protocol):
    def address(self, node: str) -> str:
        """Where other nodes reach ``node`` (a local node) through this bus."""
        ...

    def send_events(self, node: str, session_id: str, events: list[RemoteEvent]) -> None: ...

    def fetch(self, node: str, session_id: str, uid: str, into: Store, done: Done) -> None: ...

    def push(self, node: str, session_id: str, uid: str, store: Store, done: Done) -> None: ...


def copy_store(source: Store, into: Store) -> int:
    """Stream ``source`` into ``into``; returns the number of bytes."""
    writer = into.writer()
    try:
        for chunk in source.chunks():
            writer.write(chunk)
    finally:
        writer.close()
    return writer.size


class InProcBus:
    """Nodes of one process, found by name; transfers run on a short-lived thread each."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def add(self, node: Node) -> None:
        self.nodes[node.name] = node
        node.bus = self

    def address(self, node: str) -> str:
        return f"inproc://{node}"

    def _node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise LookupError(f"no node {name!r} on this bus") from None

    def send_events(self, node: str, session_id: str, events: list[RemoteEvent]) -> None:
        self._node(node).deliver_events(session_id, events)

    def _transfer(self, work: Callable[[], object], done: Done) -> None:
        def run() -> None:
            try:
                work()
            except Exception as exc:  # reported to the waiting app, never raised into a stranger's thread
                done(f"{type(exc).__name__}: {exc}")
            else:
                done(None)

        threading.Thread(target=run, name="dropflow-inproc-transfer", daemon=True).start()

    def fetch(self, node: str, session_id: str, uid: str, into: Store, done: Done) -> None:
        owner = self._node(node)
        self._transfer(lambda: copy_store(owner.data_for(session_id, uid), into), done)

    def push(self, node: str, session_id: str, uid: str, store: Store, done: Done) -> None:
        owner = self._node(node)
        self._transfer(lambda: owner.receive_data(session_id, uid, store), done)
