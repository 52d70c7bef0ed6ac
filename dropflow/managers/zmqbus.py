"""The bus between node manager daemons: ZeroMQ sockets, CURVE, msgpack headers, zero-copy data frames.

Theory of operation
-------------------
Each node binds one ROUTER socket and connects one DEALER to every peer's ROUTER, identifying itself by its
node name. All sockets belong to one I/O thread, which blocks in ``zmq.Poller`` on them, on a pipe that
other threads write to after queueing a command (send events, fetch, push, connect), on a monitor
socket per peer, and on the ZAP socket through which libzmq asks who may connect. Nothing sleeps or polls
on a timer.

Every connection is authenticated and encrypted with CURVE. Each bus makes a key pair when it starts (the
secret key never leaves the process; a restart is a rotation). Its island learns the public key over the
authenticated REST API and hands every node of a session the map name -> (bus address, public key)
(``connect``). A DEALER connects with the peer's public key as the server key, so it talks only to the
holder of that peer's secret key; the ROUTER's ZAP handler accepts only client keys it was given, and binds
each connection to the name that goes with its key. Every message is then checked: its routing identity
must be that name, and the engine accepts a drop's state change only from the drop's owner, its bytes only
from a node that produces it, and serves them only to a node that consumes it. A peer's socket is made
when something is first sent to it: by then every node of the session knows every key (an island starts a
session only once all its parts are deployed), so no handshake is refused for want of a key.

Messages are multipart: a kind (``ev``, ``get``, ``dat``, ``end``, ``err``, ``put``, ``pdat``, ``pend``,
``pack``), a msgpack header, and for data a payload frame sent with ``copy=False`` -- a view of the store
(a memory buffer, a mapped shared-memory segment or file), so large arrays are not copied on their way to
the socket.

- events: ``ev`` -> the receiving node's ``deliver_events``;
- fetch: ``get`` -> the owner streams ``dat`` chunks and ``end`` (or ``err``) back to the requester, which
  writes them into the local store and reports ``done``;
- push: ``put``, ``pdat`` chunks, ``pend`` -> the owner writes a fresh store, installs it, and answers
  ``pack``; only then does the pushing app finish.

When a peer's connection drops (its daemon died; heartbeats also catch a silent host), every transfer
pending with it fails at once, so no app waits forever for bytes that will not come.

The I/O thread counts what crosses it (messages and bytes each way, transfers started and failed) in plain
integers that the metrics collector reads when scraped: no cost beyond an addition per message.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import zmq
from zmq.utils import z85

from ..drops.stores import Store, Writer
from ..engine.bus import Done, RemoteEvent

if TYPE_CHECKING:
    from ..engine.node import Node

__all__ = ["ZmqBus"]

log = logging.getLogger(__name__)

CHUNK = 1 << 20
_encode = msgspec.msgpack.encode
_decode = msgspec.msgpack.decode


class _Fetch:
    __slots__ = ("done", "into", "peer", "writer")

    def __init__(self, peer: str, into: Store, done: Done) -> None:
        self.peer, self.into, self.done = peer, into, done
        self.writer: Writer | None = None


class ZmqBus:
    """The node's end of the bus. ``start()`` returns once the ROUTER is bound."""

    def __init__(
        self,
        node: Node,
        host: str = "127.0.0.1",
        port: int = 0,
        advertise: str | None = None,
    ) -> None:
        self.node = node
        self.host, self.port = host, port
        self._advertise = advertise
        public, self._secret = zmq.curve_keypair()
        #: This bus's CURVE public key (Z85 text): what peers must be given to reach it.
        self.public_key = public.decode()
        self.endpoint = ""
        self._commands: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._peers: dict[str, zmq.Socket[bytes]] = {}
        self._addresses: dict[str, tuple[str, str]] = {}
        #: public key (Z85) -> peer name, for the ZAP handler
        self._keys: dict[str, str] = {}
        self._monitors: dict[zmq.Socket[bytes], str] = {}
        self._fetches: dict[int, _Fetch] = {}
        self._pushes: dict[int, tuple[str, Done]] = {}
        #: pushes being received; None for one refused (its chunks are dropped, its end answered with why)
        self._incoming: dict[tuple[bytes, int], tuple[str, str, Store, Writer] | None] = {}
        self._refused: dict[tuple[bytes, int], str] = {}
        self._stop = False
        #: What crossed the bus (written by the I/O thread only; read by the metrics collector).
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "messages_sent",
                "messages_received",
                "bytes_sent",
                "bytes_received",
                "fetches",
                "pushes",
                "transfers_failed",
            ),
            0,
        )

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> ZmqBus:
        self.ctx = zmq.Context()
        # The ZAP handler must be bound before any socket that uses it.
        self._zap = self.ctx.socket(zmq.REP)
        self._zap.setsockopt(zmq.LINGER, 0)
        self._zap.bind("inproc://zeromq.zap.01")
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.CURVE_SERVER, 1)
        self.router.setsockopt(zmq.CURVE_SECRETKEY, self._secret)
        self.router.setsockopt(zmq.CURVE_PUBLICKEY, self.public_key.encode())
        self.router.setsockopt(zmq.ZAP_DOMAIN, b"dropflow")
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.SNDHWM, 0)
        self.router.setsockopt(zmq.RCVHWM, 0)
        self.router.setsockopt(zmq.LINGER, 0)
        if self.port:
            self.router.bind(f"tcp://{self.host}:{self.port}")
            port = self.port
        else:
            port = self.router.bind_to_random_port(f"tcp://{self.host}")
        self.endpoint = f"tcp://{self._advertise or self.host}:{port}"
        self._thread = threading.Thread(target=self._loop, name=f"dropflow-bus-{self.node.name}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is None:
            return
        self._command(self._halt)
        self._thread.join()
        self._thread = None
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.ctx.term()

    def _halt(self) -> None:
        self._stop = True

    # -- the Bus interface (any thread) ---------------------------------------------------------------------

    def address(self, node: str) -> str:
        return self.endpoint

    def connect(self, name: str, address: str, key: str) -> None:
        """Know a peer by name, bus address and public key (idempotent; new values replace the old ones)."""
        if not address.startswith("tcp://"):
            raise ValueError(f"bus address {address!r} of node {name!r} is not tcp://HOST:PORT")
        try:
            if len(z85.decode(key)) != 32:
                raise ValueError
        except Exception:
            raise ValueError(f"bus key of node {name!r} is not a Z85 CURVE public key") from None
        self._command(self._connect, name, address, key)

    def send_events(self, node: str, session_id: str, events: list[RemoteEvent]) -> None:
        payload = _encode([session_id, [list(e) for e in events]])
        self._command(self._send, node, [b"ev", payload])

    def fetch(self, node: str, session_id: str, uid: str, into: Store, done: Done) -> None:
        self._command(self._start_fetch, node, session_id, uid, into, done)

    def push(self, node: str, session_id: str, uid: str, store: Store, done: Done) -> None:
        self._command(self._start_push, node, session_id, uid, store, done)

    def _command(self, fn: Callable[..., None], *args: Any) -> None:
        self._commands.put((fn, args))
        os.write(self._wake_w, b"x")

    # -- the I/O thread -------------------------------------------------------------------------------------

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        poller.register(self._zap, zmq.POLLIN)
        self._poller = poller
        try:
            while not self._stop:
                for sock, _ in poller.poll():
                    if isinstance(sock, int):  # the wake-up pipe
                        os.read(self._wake_r, 4096)
                        while not self._commands.empty():
                            fn, args = self._commands.get()
                            self._guard(fn, *args)
                    elif sock is self.router:
                        self._drain(self.router, self._on_request)
                    elif sock is self._zap:
                        self._drain(self._zap, self._on_zap)
                    elif sock in self._monitors:
                        self._on_monitor(sock)
                    else:
                        self._drain(sock, self._on_reply)
        finally:
            self._fail_all("the node is shutting down")
            for sock in [*self._peers.values(), *self._monitors]:
                sock.close(0)
            self.router.close(0)
            self._zap.close(0)

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # one bad message must not stop the bus
            log.exception("bus %s: %s failed", self.node.name, getattr(fn, "__name__", fn))

    def _drain(self, sock: zmq.Socket[bytes], handle: Callable[[list[Any]], None]) -> None:
        counters = self.counters
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            counters["messages_received"] += 1
            counters["bytes_received"] += sum(len(f) for f in frames)
            self._guard(handle, frames)

    def _counted(self, frames: list[Any]) -> list[Any]:
        self.counters["messages_sent"] += 1
        self.counters["bytes_sent"] += sum(f.nbytes if isinstance(f, memoryview) else len(f) for f in frames)
        return frames

    def _connect(self, name: str, address: str, key: str) -> None:
        if self._addresses.get(name) == (address, key):
            return
        old = self._addresses.get(name)
        if old is not None and self._keys.get(old[1]) == name:
            del self._keys[old[1]]
        self._addresses[name] = (address, key)
        self._keys[key] = name
        self._disconnect(name)  # the socket is made again, with the new address and key, on the next send

    def _disconnect(self, name: str) -> None:
        sock = self._peers.pop(name, None)
        if sock is None:
            return
        for monitor, peer in list(self._monitors.items()):
            if peer == name:
                del self._monitors[monitor]
                self._poller.unregister(monitor)
                monitor.close(0)
        self._poller.unregister(sock)
        sock.close(0)

    def _socket(self, name: str) -> zmq.Socket[bytes]:
        sock = self._peers.get(name)
        if sock is not None:
            return sock
        if name not in self._addresses:
            raise LookupError(f"node {self.node.name!r} does not know node {name!r}")
        address, key = self._addresses[name]
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, self.node.name.encode())
        sock.setsockopt(zmq.CURVE_SERVERKEY, key.encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public_key.encode())
        sock.setsockopt(zmq.CURVE_SECRETKEY, self._secret)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
        monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        sock.connect(address)
        self._peers[name] = sock
        self._monitors[monitor] = name
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(monitor, zmq.POLLIN)
        return sock

    def _send(self, node: str, frames: list[Any]) -> None:
        self._socket(node).send_multipart(self._counted(frames), copy=False)

    def _on_zap(self, frames: list[Any]) -> None:
        """libzmq asks whether a client may connect: only a peer we were given, named by its key."""
        version, request_id, _domain, address, _identity, mechanism, *credentials = (f.bytes for f in frames)
        name = None
        if mechanism == b"CURVE" and credentials:
            name = self._keys.get(z85.encode(credentials[0]).decode())
        if name is None:
            log.warning("bus %s: connection from %s with an unknown key refused", self.node.name, address)
            self._zap.send_multipart([version, request_id, b"400", b"unknown key", b"", b""])
        else:
            self._zap.send_multipart([version, request_id, b"200", b"OK", name.encode(), b""])

    def _start_fetch(self, node: str, session_id: str, uid: str, into: Store, done: Done) -> None:
        req = next(self._ids)
        self.counters["fetches"] += 1
        self._fetches[req] = _Fetch(node, into, done)
        try:
            self._send(node, [b"get", _encode([req, session_id, uid])])
        except Exception as exc:  # no such peer: fail this transfer, not the bus
            self._fetches.pop(req)
            done(str(exc))

    def _start_push(self, node: str, session_id: str, uid: str, store: Store, done: Done) -> None:
        req = next(self._ids)
        self.counters["pushes"] += 1
        try:
            self._send(node, [b"put", _encode([req, session_id, uid])])
            for chunk in store.chunks(CHUNK):
                self._send(node, [b"pdat", _encode(req), memoryview(chunk)])
            self._send(node, [b"pend", _encode(req)])
        except Exception as exc:  # no such peer, or the store cannot be read
            done(f"{type(exc).__name__}: {exc}")
            return
        self._pushes[req] = (node, done)

    # requests on the ROUTER: [identity, kind, header, (payload)]

    def _on_request(self, frames: list[Any]) -> None:
        identity, kind = frames[0].bytes, frames[1].bytes
        sender = frames[1].get("User-Id")  # the name the ZAP handler bound to the connection's key
        if not sender or sender.encode() != identity:
            log.warning("bus %s: message from %r claiming to be %r dropped", self.node.name, sender, identity)
            return
        header = _decode(frames[2].bytes)
        if kind == b"ev":
            session_id, events = header
            self.node.deliver_events(session_id, [RemoteEvent(u, s, tuple(p)) for u, s, p in events], sender)
        elif kind == b"get":
            self._serve(identity, sender, *header)
        elif kind == b"put":
            req, session_id, uid = header
            try:
                store = self.node.incoming_store(session_id, uid, sender)
            except LookupError as exc:
                self._incoming[(identity, req)] = None
                log.warning("bus %s: push refused: %s", self.node.name, exc)
                self._refused[(identity, req)] = str(exc)
                return
            self._incoming[(identity, req)] = (session_id, uid, store, store.writer())
        elif kind == b"pdat":
            entry = self._incoming[(identity, header)]
            if entry is not None:
                entry[3].write(frames[3].buffer)
        elif kind == b"pend":
            entry = self._incoming.pop((identity, header))
            if entry is None:
                error = self._refused.pop((identity, header), "refused").encode()
                self.router.send_multipart([identity, b"pack", _encode(header), error])
                return
            session_id, uid, store, writer = entry
            writer.close()
            error = b""
            try:
                self.node.adopt(session_id, uid, store)
            except LookupError as exc:
                store.delete()
                error = str(exc).encode()
            self.router.send_multipart(self._counted([identity, b"pack", _encode(header), error]))

    def _serve(self, identity: bytes, sender: str, req: int, session_id: str, uid: str) -> None:
        try:
            store = self.node.data_for(session_id, uid, sender)
            for chunk in store.chunks(CHUNK):
                self.router.send_multipart(
                    self._counted([identity, b"dat", _encode(req), memoryview(chunk)]), copy=False
                )
            self.router.send_multipart(self._counted([identity, b"end", _encode(req), b""]))
        except Exception as exc:  # the requester learns why, as the failure of its app
            self.router.send_multipart(
                self._counted([identity, b"err", _encode(req), f"{type(exc).__name__}: {exc}".encode()])
            )

    # replies on a DEALER: [kind, header, payload]

    def _on_reply(self, frames: list[Any]) -> None:
        kind, req = frames[0].bytes, _decode(frames[1].bytes)
        if kind == b"dat":
            fetch = self._fetches.get(req)
            if fetch is not None:
                if fetch.writer is None:
                    fetch.writer = fetch.into.writer()
                fetch.writer.write(frames[2].buffer)
        elif kind in (b"end", b"err"):
            fetch = self._fetches.pop(req, None)
            if fetch is None:
                return
            if fetch.writer is None:
                fetch.writer = fetch.into.writer()
            fetch.writer.close()
            if kind == b"err":
                self.counters["transfers_failed"] += 1
                fetch.into.delete()
                fetch.done(frames[2].bytes.decode())
            else:
                fetch.done(None)
        elif kind == b"pack":
            node_done = self._pushes.pop(req, None)
            if node_done is not None:
                error = frames[2].bytes.decode()
                if error:
                    self.counters["transfers_failed"] += 1
                node_done[1](error or None)

    def _on_monitor(self, monitor: zmq.Socket[bytes]) -> None:
        name = self._monitors[monitor]
        try:
            while True:
                monitor.recv_multipart(zmq.NOBLOCK)
                self._fail_peer(name, f"node {name} disconnected")
        except zmq.Again:
            pass

    def _fail_peer(self, name: str, error: str) -> None:
        for req, fetch in list(self._fetches.items()):
            if fetch.peer == name:
                self.counters["transfers_failed"] += 1
                del self._fetches[req]
                if fetch.writer is not None:
                    fetch.writer.close()
                fetch.into.delete()
                fetch.done(error)
        for req, (node, done) in list(self._pushes.items()):
            if node == name:
                self.counters["transfers_failed"] += 1
                del self._pushes[req]
                done(error)

    def _fail_all(self, error: str) -> None:
        for name in list(self._peers):
            self._fail_peer(name, error)
