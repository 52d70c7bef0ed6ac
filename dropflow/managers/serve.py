"""Serving a manager under gunicorn: ``dropflow nm|dim|mm`` end up here.

Theory of operation
-------------------
A manager holds its drops, threads and sockets in one process, so gunicorn runs exactly one worker, of the
``gthread`` class (long polls and graph appends each take a thread while others are served). The manager is
built *in the worker*, after gunicorn forked it: :meth:`ManagerApplication.load` calls a factory that
constructs the manager, starts it (bus bound, owner loop running, zeroconf announced) and returns the falcon
app. When gunicorn stops the worker -- SIGTERM or SIGINT to the master -- the ``worker_exit`` hook closes
the manager: running sessions are cancelled, their apps stopped, their workspaces cleaned, the bus and
announcements withdrawn. Binding is to loopback unless asked otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from .rest import make_app

__all__ = ["ManagerApplication", "Started"]

log = logging.getLogger(__name__)


class Started:
    """What a factory returns: the manager, and what to close when the worker exits."""

    def __init__(self, manager: Any, closers: list[Callable[[], None]]) -> None:
        self.manager = manager
        self.closers = closers

    def close(self) -> None:
        for close in self.closers:
            try:
                close()
            except Exception:  # keep closing the rest
                log.exception("while shutting down")


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
        log_format: str = "text",
    ) -> None:
        self.factory = factory
        self.token = token
        self.log_format = log_format
        self.started: Started | None = None
        self.options = {
            "bind": f"{host}:{port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": threads,
            "timeout": 120,
            "graceful_timeout": 30,
            "loglevel": log_level,
            "accesslog": None,
            "errorlog": "-",
            "worker_exit": self._worker_exit,
            "proc_name": "dropflow",
        }
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
        return make_app(self.started.manager, token=self.token)

    def _worker_exit(self, server: Any, worker: Any) -> None:
        if self.started is not None:
            self.started.close()
            self.started = None
