"""Drop, application and session states, and the one transition table of each.

Theory of operation
-------------------
A state is a string enum member so that it prints, serialises and compares as its DALiuGE name. Each enum
has exactly one table mapping every allowed ``(start, end)`` pair to the name of an *effect*. The engine
binds each effect name to a handler once, when a session is built, and every state change goes through
that binding; a pair missing from the table raises :class:`InvalidTransition`. Nothing else assigns a
state. ``docs/states.md`` is generated from these tables (``python docs/generate.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

__all__ = [
    "APP_SETTLED",
    "APP_TRANSITIONS",
    "DATA_SETTLED",
    "DROP_TRANSITIONS",
    "SESSION_ENDED",
    "SESSION_TRANSITIONS",
    "AppState",
    "DropState",
    "InvalidTransition",
    "SessionState",
    "check_transition",
    "diagrams",
    "mermaid",
]


E = TypeVar("E", bound=StrEnum)


class DropState(StrEnum):
    INITIALIZED = "INITIALIZED"
    WRITING = "WRITING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    EXPIRED = "EXPIRED"
    DELETED = "DELETED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"


class AppState(StrEnum):
    NOT_RUN = "NOT_RUN"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"


class SessionState(StrEnum):
    PRISTINE = "PRISTINE"
    BUILDING = "BUILDING"
    DEPLOYING = "DEPLOYING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class InvalidTransition(RuntimeError):
    """A state change that the transition table does not allow."""

    def __init__(self, what: str, start: StrEnum, end: StrEnum) -> None:
        super().__init__(f"{what}: invalid transition {start} -> {end}")
        self.what = what
        self.start = start
        self.end = end


_D = DropState
DROP_TRANSITIONS: Mapping[tuple[DropState, DropState], str] = {
    (_D.INITIALIZED, _D.WRITING): "writing",
    (_D.INITIALIZED, _D.COMPLETED): "completed",  # a root drop, or a producer that wrote nothing yet
    (_D.WRITING, _D.COMPLETED): "completed",
    (_D.INITIALIZED, _D.ERROR): "failed",
    (_D.WRITING, _D.ERROR): "failed",
    (_D.INITIALIZED, _D.SKIPPED): "skipped",
    (_D.WRITING, _D.SKIPPED): "skipped",
    (_D.WRITING, _D.INITIALIZED): "reset",  # the producer is retried
    (_D.COMPLETED, _D.EXPIRED): "expired",
    (_D.EXPIRED, _D.DELETED): "deleted",
    (_D.INITIALIZED, _D.CANCELLED): "cancelled",
    (_D.WRITING, _D.CANCELLED): "cancelled",
}

_A = AppState
APP_TRANSITIONS: Mapping[tuple[AppState, AppState], str] = {
    (_A.NOT_RUN, _A.RUNNING): "started",
    (_A.RUNNING, _A.FINISHED): "finished",
    (_A.RUNNING, _A.ERROR): "failed",
    (_A.NOT_RUN, _A.ERROR): "failed",  # too many inputs failed: never ran
    (_A.RUNNING, _A.NOT_RUN): "retry",
    (_A.NOT_RUN, _A.SKIPPED): "skipped",
    (_A.NOT_RUN, _A.CANCELLED): "cancelled",
    (_A.RUNNING, _A.CANCELLED): "cancelled",
}

_S = SessionState
SESSION_TRANSITIONS: Mapping[tuple[SessionState, SessionState], str] = {
    (_S.PRISTINE, _S.BUILDING): "building",
    (_S.BUILDING, _S.DEPLOYING): "deploying",
    (_S.DEPLOYING, _S.RUNNING): "running",
    (_S.DEPLOYING, _S.FAILED): "failed",
    (_S.RUNNING, _S.FINISHED): "finished",
    (_S.RUNNING, _S.FAILED): "failed",
    (_S.PRISTINE, _S.CANCELLED): "cancelled",
    (_S.BUILDING, _S.CANCELLED): "cancelled",
    (_S.DEPLOYING, _S.CANCELLED): "cancelled",
    (_S.RUNNING, _S.CANCELLED): "cancelled",
}

#: States after which a data drop no longer changes because of execution (expiry and deletion may follow
#: COMPLETED, but they do not change the outcome).
DATA_SETTLED = frozenset({_D.COMPLETED, _D.ERROR, _D.SKIPPED, _D.CANCELLED, _D.EXPIRED, _D.DELETED})
APP_SETTLED = frozenset({_A.FINISHED, _A.ERROR, _A.SKIPPED, _A.CANCELLED})
SESSION_ENDED = frozenset({_S.FINISHED, _S.FAILED, _S.CANCELLED})


def check_transition(table: Mapping[tuple[E, E], str], what: str, start: E, end: E) -> str:
    """Return the effect name of ``start -> end`` or raise :class:`InvalidTransition`."""
    try:
        return table[(start, end)]
    except KeyError:
        raise InvalidTransition(what, start, end) from None


def mermaid(table: Mapping[tuple[E, E], str], title: str) -> str:
    """Render a transition table as a Mermaid state diagram."""
    lines = [f"### {title}", "", "```mermaid", "stateDiagram-v2"]
    lines += [f"    {a} --> {b}: {effect}" for (a, b), effect in table.items()]
    lines += ["```", ""]
    return "\n".join(lines)


def diagrams() -> str:
    """The Markdown page of state diagrams (docs/states.md)."""
    return (
        "# State diagrams\n\nGenerated from `dropflow/drops/states.py` by `python docs/generate.py`; "
        "do not edit by hand.\n\n"
        + mermaid(DROP_TRANSITIONS, "Data drops (DropState)")
        + "\n"
        + mermaid(APP_TRANSITIONS, "Application drops (AppState)")
        + "\n"
        + mermaid(SESSION_TRANSITIONS, "Sessions (SessionState)")
    )
