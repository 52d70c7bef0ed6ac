"""Serving a manager under gunicorn: ``dropflow nm|dim|mm`` end up here.

Theory of operation
-------------------
A manager holds its drops, threads and sockets in one process, so gunicorn runs exactly one worker. The
worker is asynchronous (:class:`ManagerWorker`: uvicorn's HTTP/1.1 protocol on an asyncio loop, under
gunicorn's process management), so that connections cost no thread while they wait: a client sending
half a request, or a long poll, holds a coroutine. Each connection must deliver a request's head within
``HEAD_TIMEOUT`` seconds of connecting or of its previous response, else it is closed; an idle keep-alive
connection is closed after ``keepalive`` seconds; a body must keep arriving (:mod:`.rest`). The request
handlers that block run on the app's own pool of ``threads`` threads.

The manager is built *in the worker*, after gunicorn forked it: :meth:`ManagerApplication.load` calls a
factory that constructs the manager, starts it (bus bound, owner loop running, zeroconf announced) and
returns the ASGI app. When gunicorn stops the worker -- SIGTERM or SIGINT to the master -- the
``worker_exit`` hook closes the manager: running sessions are cancelled, their apps stopped, their
workspaces cleaned, the bus and announcements withdrawn. Binding is to loopback unless asked otherwise.
With ``certfile`` and ``keyfile`` (gunicorn's own options), the API is served over TLS only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Generator
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import Server

from .rest import MAX_BODY, make_app

__all__ = ["HEAD_TIMEOUT", "ManagerApplication", "ManagerWorker", "Started"]

log = logging.getLogger(__name__)

#: Seconds a connection may take to send a request's head (from connecting, or from its last response).
HEAD_TIMEOUT = 10.0


class Started:
    """What a factory returns: the manager, and what to close when the worker exits."""

    def __init__(self, manager: Any, closers: list[Callable[[], None]], url: str = "") -> None:
        self.manager = manager
        self.closers = closers
        self.url = url

    def close(self) -> None:
        for close in self.closers:
            try:
                close()
            except Exception:  # keep closing the rest
                log.exception("while shutting down")


class _Http(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, plus a deadline for every request's head (slow-loris clients)."""

    _head: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self._head is not None:
            self._head.cancel()
        self._head = self.loop.call_later(HEAD_TIMEOUT, self._head_timeout)

    def _head_timeout(self) -> None:
        self._head = None
        idle = self.cycle is None or self.cycle.response_complete  # no request being served
        if idle and not self.transport.is_closing():
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head is not None:
            self._head.cancel()
            self._head = None
        super().connection_lost(exc)


class _Server(Server):
    """uvicorn's server, minus re-raising the stop signal after a graceful stop: that would kill the worker
    before gunicorn's ``worker_exit`` closes the manager (cancel sessions, clean workspaces). The stop signal
    also starts closing the manager at once (``on_stop``), beside uvicorn's own shutdown: a batch job's
    teardown must end within Slurm's KillWait."""

    def __init__(self, config: Config, on_stop: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    def _stop(self, sig: int, frame: Any) -> None:
        self.handle_exit(sig, frame)
        if self._on_stop is not None:
            self._on_stop()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        original = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


class ManagerWorker(Worker):  # type: ignore[misc]
    """gunicorn worker that serves the manager's ASGI app with uvicorn's server on asyncio."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, source in (("uvicorn.error", self.log.error_log), ("uvicorn.access", self.log.access_log)):
            logger = logging.getLogger(name)
            logger.handlers = source.handlers
            logger.setLevel(source.level)
            logger.propagate = False
        ssl: dict[str, Any] = {}
        if self.cfg.is_ssl:
            options = self.cfg.ssl_options
            ssl = {"ssl_keyfile": options.get("keyfile"), "ssl_certfile": options.get("certfile")}
        self.config = Config(
            app=None,  # type: ignore[arg-type]  # the app, loaded by gunicorn, comes in _serve
            http=_Http,
            loop="asyncio",
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_keep_alive=self.cfg.keepalive,
            # On SIGTERM, requests in flight get a second: long polls would otherwise hold the shutdown, and
            # a batch job's teardown must end within Slurm's KillWait (sessions still have to be cleaned).
            timeout_graceful_shutdown=1,
            timeout_notify=min(self.timeout / 4, 2.0),  # also how soon a dead master is noticed
            callback_notify=self._notify,
            **ssl,
        )

    _server: Server | None = None

    def init_signals(self) -> None:
        # uvicorn's server installs its own handlers (SIGTERM, SIGINT: graceful stop).
        for s in self.SIGNALS:
            signal.signal(s, signal.SIG_DFL)

    async def _notify(self) -> None:
        self.notify()
        if self.ppid != os.getppid() and self._server is not None:  # gunicorn's master died: stop too
            self.log.info("parent changed; shutting down")
            self._server.should_exit = True

    async def _serve(self) -> None:
        self.config.app = self.wsgi  # gunicorn's name for the loaded app; here an ASGI one
        server = self._server = _Server(config=self.config, on_stop=self._closing)
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def _closing(self) -> None:
        close = getattr(self.app, "close_manager", None)
        if close is not None:
            threading.Thread(target=close, name="dropflow-shutdown", daemon=True).start()

    def run(self) -> None:
        asyncio.run(self._serve())


class ManagerApplication(BaseApplication):  # type: ignore[misc]
    """gunicorn application of one manager."""

    def __init__(
        self,
        factory: Callable[[], Started],
        host: str,
        port: int,
        token: str | None = None,
        log_level: str = "info",
        threads: int = 16,
        certfile: str | None = None,
        keyfile: str | None = None,
        max_body: int = MAX_BODY,
        log_format: str = "text",
        trust_local_user: bool = False,
    ) -> None:
        self.factory = factory
        self.trust_local_user = trust_local_user
        self.token = token
        self.threads = threads
        self.max_body = max_body
        self.log_format = log_format
        self.started: Started | None = None
        self._closing = threading.Lock()
        self.app: Any = None
        self.options: dict[str, Any] = {
            "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            "workers": 1,
            "worker_class": f"{__name__}.ManagerWorker",
            "timeout": 120,
            "graceful_timeout": 30,
            "keepalive": 5,
            "loglevel": log_level,
            "accesslog": None,
            "errorlog": "-",
            "worker_exit": self._worker_exit,
            "proc_name": "dropflow",
        }
        if certfile:
            self.options.update(certfile=certfile, keyfile=keyfile)
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn >= 25.1 opens one control socket per user by default: managers sharing a host would
            # fight over it, and nothing of dropflow uses it.
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Any:
        from .logs import configure

        configure(self.cfg.loglevel, self.log_format)  # one line per event, text or JSON (managers.logs)
        self.started = self.factory()
        self.app = make_app(
            self.started.manager,
            token=self.token,
            url=self.started.url,
            max_body=self.max_body,
            threads=self.threads,
            trust_local_user=self.trust_local_user,
        )
        return self.app

    def close_manager(self) -> None:
        """Close the manager once (from the stop signal's thread, or ``worker_exit``, which waits for it)."""
        with self._closing:
            if self.started is not None:
                self.started.close()
                self.started = None

    def _worker_exit(self, server: Any, worker: Any) -> None:
        self.close_manager()
        if self.app is not None:
            self.app.close()
            self.app = None
