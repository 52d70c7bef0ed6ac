"""Attack 2 of issue 10: speaking on the bus of a real node manager.

The test plays the island: it deploys node-0's part of a session on a real ``dropflow nm``, whose
neighbours are an app ``a1`` on node-1 (producing node-0's memory drop ``d1``, read with the pickle codec by
``c1``) and an app ``a2`` on node-2 (producing ``d2``, read by ``c2``)::

    node-1: a1 --> d1 (node-0, pickle) --> c1 (node-0) --> o1
    node-2: a2 --> d2 (node-0)          --> c2 (node-0) --> o2

Then, as the issue's attacker did, it pushes pickle bytes that run ``touch`` into ``d1`` and sends a fake
``FINISHED`` of ``a1``: first without any key (a plain DEALER), then with a CURVE key the node was never
given, then as node-2 itself -- authenticated, but neither the owner of ``a1`` nor a producer of ``d1``.
All three are refused: the first two at the handshake, the third by the sender checks. node-2 then does
its own legitimate part (RUNNING, push ``d2``, FINISHED of ``a2``), which goes through: ``c2`` runs, while
``c1`` never ran and the marker was never made.
"""

from __future__ import annotations

import os
import pickle
import sys

import msgspec
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from dropflow.drops import MemorySpec, NoopSpec, PythonSpec
from dropflow.managers.client import RestClient
from dropflow.managers.split import split_by_node

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "managers"))
from daemons import start  # noqa: E402

from conftest import poll_for  # noqa: E402


class _Touch:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _graph() -> list:
    return [
        NoopSpec(id="a1", outputs={"o": "d1"}, node="node-1"),
        MemorySpec(id="d1", codec="pickle", node="node-0"),
        PythonSpec(id="c1", func="json:dumps", inputs={"obj": "d1"}, outputs={"out": "o1"}, node="node-0"),
        MemorySpec(id="o1", node="node-0"),
        NoopSpec(id="a2", outputs={"o": "d2"}, node="node-2"),
        MemorySpec(id="d2", node="node-0"),
        NoopSpec(id="c2", inputs={"i": "d2"}, outputs={"o": "o2"}, node="node-0"),
        MemorySpec(id="o2", node="node-0"),
    ]


def _handshake(sock: zmq.Socket, ctx: zmq.Context) -> int:
    """Connect-side handshake outcome of ``sock``: a zmq.EVENT_HANDSHAKE_* event."""
    monitor = sock.get_monitor_socket(
        zmq.EVENT_HANDSHAKE_SUCCEEDED
        | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    )
    try:
        assert monitor.poll(30_000), "no handshake outcome within 30 s"
        return int(recv_monitor_message(monitor)["event"])
    finally:
        sock.disable_monitor()
        monitor.close(0)


def _dealer(ctx: zmq.Context, identity: bytes, server_key: str | None, keys: tuple[bytes, bytes] | None):
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.LINGER, 0)
    if server_key is not None and keys is not None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_key.encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys[0])
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys[1])
    return sock


def _push(sock: zmq.Socket, req: int, sid: str, uid: str, data: bytes) -> None:
    enc = msgspec.msgpack.encode
    sock.send_multipart([b"put", enc([req, sid, uid])])
    sock.send_multipart([b"pdat", enc(req), data])
    sock.send_multipart([b"pend", enc(req)])


def _event(sock: zmq.Socket, sid: str, uid: str, state: str) -> None:
    sock.send_multipart([b"ev", msgspec.msgpack.encode([sid, [[uid, state, []]]])])


@pytest.fixture
def node0(tmp_path):
    nm = start("nm", "--workspace", str(tmp_path / "ws"), logdir=str(tmp_path), name="node-0")
    yield nm
    nm.stop()


def test_forged_data_and_events_on_the_bus_are_refused(node0, tmp_path):
    marker = str(tmp_path / "pwned")
    evil = pickle.dumps(_Touch(marker))
    ctx = zmq.Context()
    node2_keys = zmq.curve_keypair()
    stranger_keys = zmq.curve_keypair()
    client = RestClient(node0.url)
    try:
        info = client.info()  # the worst case: the attacker knows the bus address and the node's public key
        bus, bus_key = info["bus"], info["bus_key"]
        part = split_by_node(_graph())["node-0"]
        client.create_session("s")
        client.append("s", part)
        client.set_peers(
            "s",
            {
                "node-1": {"bus": "tcp://127.0.0.1:9", "key": zmq.curve_keypair()[0].decode()},
                "node-2": {"bus": "tcp://127.0.0.1:9", "key": node2_keys[0].decode()},
            },
        )
        client.heartbeat("the test", ["s"], lease=600)
        client.deploy("s")

        # 1. No key at all (the attack of the issue, verbatim): the handshake fails, nothing is delivered.
        plain = _dealer(ctx, b"node-1", None, None)
        plain.connect(bus)
        _push(plain, 1, "s", "d1", evil)
        _event(plain, "s", "a1", "RUNNING")
        _event(plain, "s", "a1", "FINISHED")
        assert _handshake(plain, ctx) != zmq.EVENT_HANDSHAKE_SUCCEEDED

        # 2. A key of its own, which the node was never given: refused by the node's ZAP handler.
        stranger = _dealer(ctx, b"node-1", bus_key, stranger_keys)
        stranger.connect(bus)
        _push(stranger, 1, "s", "d1", evil)
        _event(stranger, "s", "a1", "FINISHED")
        assert _handshake(stranger, ctx) == zmq.EVENT_HANDSHAKE_FAILED_AUTH

        # 3. node-2, authenticated, speaking for node-1 (identity claimed: node-1): dropped.
        liar = _dealer(ctx, b"node-1", bus_key, node2_keys)
        liar.connect(bus)
        assert _handshake(liar, ctx) == zmq.EVENT_HANDSHAKE_SUCCEEDED
        _push(liar, 1, "s", "d1", evil)
        _event(liar, "s", "a1", "FINISHED")

        # 4. node-2 as itself: it may not push into d1 (node-1 produces it), nor report a1's state.
        node2 = _dealer(ctx, b"node-2", bus_key, node2_keys)
        node2.connect(bus)
        assert _handshake(node2, ctx) == zmq.EVENT_HANDSHAKE_SUCCEEDED
        _push(node2, 7, "s", "d1", evil)
        assert node2.poll(30_000)
        kind, req, error = node2.recv_multipart()
        assert kind == b"pack" and msgspec.msgpack.decode(req) == 7 and b"runs no producer" in error
        _event(node2, "s", "a1", "RUNNING")
        _event(node2, "s", "a1", "FINISHED")

        # ... but its own part goes through, after (on one connection, in order) all of the above.
        _event(node2, "s", "a2", "RUNNING")
        _push(node2, 8, "s", "d2", b"fine")
        assert node2.poll(30_000)
        kind, req, error = node2.recv_multipart()
        assert (kind, msgspec.msgpack.decode(req), error) == (b"pack", 8, b"")
        _event(node2, "s", "a2", "FINISHED")
        poll_for(lambda: client.graph_status("s").get("o2", {}).get("status") == "COMPLETED", timeout=30)

        status = client.graph_status("s")
        assert status["c1"]["status"] == "NOT_RUN" and status["d1"]["status"] == "INITIALIZED"
        assert status["c2"]["status"] == "FINISHED"
        assert not os.path.exists(marker)
        log = node0.tail()
        assert "unknown key refused" in log and "claiming to be b'node-1' dropped" in log
        assert "does not own" in log
    finally:
        client.cancel("s")
        client.close()
        ctx.destroy(0)
