"""What an application runner receives and returns, wherever it runs.

Theory of operation
-------------------
The owner loop turns a ready app into a :class:`Task`: the app's spec, one :class:`InputRef` per linked input
drop (with its store, or ``None`` if that input failed or was skipped and the app tolerates it), one
:class:`OutputRef` per output drop, and the session's identity and working directory. A task is plain
picklable data, so the same ``execute`` runs it in the owner loop, in a thread, or in a worker process. The
runner answers with an :class:`Outcome`: success or an error message, the output stores it wrote (a memory
store carries its bytes back from a worker process), and for a branch the output ports to skip. An outcome
also carries, for the monitor, the seconds the runner took and the last :data:`OUTPUT_TAIL` characters its
app wrote to standard output and error where the runner can capture them (shell commands; any app in a
worker process, through :class:`OutputCapture`). A :class:`CancelToken` lets the owner stop a running app's
subprocesses from outside.

Every process group an app starts is also announced to the *group hooks* (:func:`add_group_hook`): the
engine registers a watchdog there that kills the groups still running if the node manager dies. ``drops``
never imports the engine, so the engine plugs itself in here rather than the other way round.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from ..spec import AppSpec, DataTraits
from ..stores import Store

__all__ = [
    "OUTPUT_TAIL",
    "AppError",
    "CancelToken",
    "GroupHook",
    "InputRef",
    "Outcome",
    "OutputCapture",
    "OutputRef",
    "Task",
    "add_group_hook",
    "format_exception",
    "group_ended",
    "group_started",
    "remove_group_hook",
    "tail_of",
]


class AppError(Exception):
    """An app failed in a way its runner explains with a message (no traceback needed)."""


class InputRef(NamedTuple):
    port: str
    drop_id: str
    traits: DataTraits
    codec: str
    #: ``None`` when the input is in ERROR or SKIPPED and the app runs anyway.
    store: Store | None
    #: The port takes a list of values.
    many: bool

    @property
    def kind(self) -> str:
        return self.traits.kind


class OutputRef(NamedTuple):
    port: str
    drop_id: str
    traits: DataTraits
    codec: str
    store: Store
    many: bool

    @property
    def kind(self) -> str:
        return self.traits.kind


@dataclass(slots=True)
class Task:
    session_id: str
    workdir: str
    spec: AppSpec
    inputs: list[InputRef]
    outputs: list[OutputRef]
    attempt: int = 0

    def env(self) -> dict[str, str]:
        """Environment variables naming the session and drop, for subprocesses."""
        return {
            "DROPFLOW_SESSION_ID": self.session_id,
            "DROPFLOW_DROP_ID": self.spec.id,
            "DROPFLOW_WORKDIR": self.workdir,
        }


@dataclass(slots=True)
class Outcome:
    ok: bool
    error: str | None = None
    #: Output stores as written (memory stores carry their bytes back from another process).
    stores: dict[str, Store] = field(default_factory=dict)
    #: Output ports whose drops are SKIPPED (a branch's untaken side).
    skip_ports: tuple[str, ...] = ()
    #: The end of what the app wrote to standard output and error that no drop received (at most
    #: OUTPUT_TAIL characters each), where its runner captures them; empty otherwise. For the drop's log.
    stdout: str = ""
    stderr: str = ""
    #: Seconds the runner took (measured by ``execute`` where it ran, without garbage-collector pauses).
    seconds: float = 0.0

    @classmethod
    def failed(cls, error: str) -> Outcome:
        return cls(False, error)


#: Characters of an app's standard output and error kept for its drop's log (each).
OUTPUT_TAIL = 4096


def tail_of(fd: int, size: int, limit: int = OUTPUT_TAIL) -> str:
    """The last ``limit`` characters (about) of the first ``size`` bytes of an open file."""
    start = max(0, size - limit)
    data = os.pread(fd, size - start, start)
    return data.decode(errors="replace")[-limit:]


class OutputCapture:
    """Standard output and error of this whole process, captured while one app runs: for worker processes,
    which run one app at a time. File descriptors 1 and 2 are pointed at two temporary files (made once,
    emptied before each app) so that what C code and subprocesses write is caught as well as ``print``;
    afterwards everything written is passed on to the original descriptors -- the daemon's log sees what it
    saw before -- and the tails are kept for the outcome."""

    def __init__(self) -> None:
        # Kept open for the worker's life (closed by close()): made once, emptied before each app.
        self._files = [tempfile.TemporaryFile(prefix="dropflow-out-") for _ in range(2)]  # noqa: SIM115
        self._saved: list[int] = []
        #: (stdout, stderr) tails of the last app.
        self.tails: list[str] = ["", ""]

    def __enter__(self) -> OutputCapture:
        self.tails = ["", ""]
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        self._saved = [os.dup(1), os.dup(2)]
        for fd, f in zip((1, 2), self._files, strict=True):
            f.truncate(0)
            f.seek(0)
            os.dup2(f.fileno(), fd)
        return self

    def __exit__(self, *exc: object) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for fd, saved in zip((1, 2), self._saved, strict=True):
            os.dup2(saved, fd)
        self.tails = []
        for f, saved in zip(self._files, self._saved, strict=True):
            size = os.fstat(f.fileno()).st_size
            sent = 0
            with contextlib.suppress(OSError):  # the daemon's log may be gone; the tail is still kept
                while sent < size:
                    n = os.sendfile(saved, f.fileno(), sent, size - sent)
                    if n == 0:
                        break
                    sent += n
            self.tails.append(tail_of(f.fileno(), size))
            os.close(saved)
        self._saved = []

    def fill(self, outcome: Outcome) -> Outcome:
        """Add the tails written to the file descriptors (C code, subprocesses) to what the runner captured
        itself (a Python function's prints), keeping the end of each."""
        outcome.stdout = (outcome.stdout + self.tails[0])[-OUTPUT_TAIL:]
        outcome.stderr = (outcome.stderr + self.tails[1])[-OUTPUT_TAIL:]
        return outcome

    def close(self) -> None:
        for f in self._files:
            f.close()


class GroupHook(Protocol):
    """Told of every process group an app starts and of its end; must not block and must not raise."""

    def group_started(self, pgid: int) -> None: ...

    def group_ended(self, pgid: int) -> None: ...


# Replaced as a whole, never mutated: the per-app path reads it without a lock.
_group_hooks: tuple[GroupHook, ...] = ()
_hooks_lock = threading.Lock()


def add_group_hook(hook: GroupHook) -> None:
    global _group_hooks
    with _hooks_lock:
        _group_hooks = (*_group_hooks, hook)


def remove_group_hook(hook: GroupHook) -> None:
    global _group_hooks
    with _hooks_lock:
        _group_hooks = tuple(h for h in _group_hooks if h is not hook)


def group_started(pgid: int) -> None:
    """A process group of an app now runs (called by runners and pools, from any thread)."""
    for hook in _group_hooks:
        hook.group_started(pgid)


def group_ended(pgid: int) -> None:
    """A process group announced with :func:`group_started` is gone (or killed)."""
    for hook in _group_hooks:
        hook.group_ended(pgid)


class CancelToken:
    """Shared between the owner and one running app: cancel flag and the app's process group."""

    __slots__ = ("_callbacks", "_lock", "_pgid", "cancelled")

    KILL_GRACE = 2.0

    def __init__(self) -> None:
        self.cancelled = False
        self._pgid: int | None = None
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (from the cancelling thread) when the app is cancelled; at once if it was."""
        with self._lock:
            if not self.cancelled:
                self._callbacks.append(callback)
                return
        callback()

    def attach(self, pgid: int) -> None:
        """Record a started process group; kill it at once if the app was cancelled meanwhile."""
        group_started(pgid)
        with self._lock:
            self._pgid = pgid
            cancelled = self.cancelled
        if cancelled:
            _signal_group(pgid, signal.SIGKILL)

    def detach(self) -> None:
        with self._lock:
            pgid, self._pgid = self._pgid, None
        if pgid is not None:
            # Stragglers the command left in the background end with the app, so nothing leaks.
            _signal_group(pgid, signal.SIGKILL)
            group_ended(pgid)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            pgid = self._pgid
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()
        if pgid is not None:
            _signal_group(pgid, signal.SIGTERM)
            timer = threading.Timer(self.KILL_GRACE, _signal_group, (pgid, signal.SIGKILL))
            timer.daemon = True
            timer.start()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def format_exception(exc: BaseException, skip_frames: int = 0) -> str:
    """``Type: message`` plus the app's own frames (not the runner's), most recent last."""
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None:
            tb = tb.tb_next
    frames = traceback.format_list(traceback.extract_tb(tb)[-5:]) if tb is not None else []
    head = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return head + ("\n" + "".join(frames).rstrip() if frames else "")
