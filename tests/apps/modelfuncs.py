"""Apps for the model-based cascade test (tests/engine/test_model_based.py): they do what a script says.

Each app receives its script in ``kwargs``: what each attempt does -- ``finish``, ``raise``, ``true`` or
``false`` (a branch's side), or ``block``. The attempt number is counted with one file per attempt in
``counters``, a directory the test owns, so that counting works wherever the attempt runs (inline, in a
thread, in a worker process) and the test can read how many attempts each app made.

A blocked app waits on its session's *gate*, which the test opens once the session is cancelled; a blocked
app in a worker process, where gates do not reach, waits until the engine kills it. Either way it gives up
after ``BLOCK_LIMIT`` seconds with an error, so that an engine that fails to stop it cannot hang a test run
forever. An app takes its gate before it counts its attempt: the test cancels once every attempt is counted,
and may open the gate at once, before a blocked thread has reached its wait.
"""

from __future__ import annotations

import os
import threading
from typing import Any

#: Longest a blocked app waits for its gate or its end.
BLOCK_LIMIT = 60.0

_gates: dict[str, threading.Event] = {}


class ScriptedFailure(RuntimeError):
    """What a ``raise`` attempt raises."""


def add_gate(name: str) -> None:
    _gates[name] = threading.Event()


def open_gate(name: str) -> None:
    """Let the session's blocked thread apps return (their results come too late to matter)."""
    gate = _gates.get(name)
    if gate is not None:
        gate.set()


def forget_gate(name: str) -> None:
    """The session is gone: drop its gate (opened, so that nothing can still wait on it)."""
    gate = _gates.pop(name, None)
    if gate is not None:
        gate.set()


def attempts(counters: str) -> dict[str, int]:
    """How many attempts each app has started (apps that never started are left out)."""
    counts: dict[str, int] = {}
    for name in os.listdir(counters):
        app = name.rpartition(".")[0]
        counts[app] = counts.get(app, 0) + 1
    return counts


def _attempt(counters: str, app: str) -> int:
    """Claim the next attempt number of ``app``: the first ``<app>.<n>`` file that did not exist yet."""
    n = 0
    while True:
        try:
            fd = os.open(os.path.join(counters, f"{app}.{n}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            n += 1
            continue
        os.close(fd)
        return n


def _play(app: str, script: list[str], counters: str, gate: str) -> str:
    # No gate: in a worker process, where only a kill ends the wait.
    opened = _gates.get(gate) or threading.Event()
    n = _attempt(counters, app)
    what = script[min(n, len(script) - 1)]
    if what == "raise":
        raise ScriptedFailure(f"{app}: attempt {n} fails, as scripted")
    if what == "block" and not opened.wait(BLOCK_LIMIT):
        raise ScriptedFailure(f"{app}: blocked for {BLOCK_LIMIT} s and nobody stopped it")
    return what


def act(app: str, script: list[str], counters: str, gate: str, outs: list[str], **inputs: Any) -> Any:
    """A Python app: play the script, then write a few bytes to every output port."""
    _play(app, script, counters, gate)
    value = app.encode()
    if len(outs) == 1:
        return value
    return {port: value for port in outs}


def decide(app: str, script: list[str], counters: str, gate: str, **inputs: Any) -> bool:
    """A branch's predicate: play the script; the side is what it says (``true`` or ``false``)."""
    return _play(app, script, counters, gate) == "true"
