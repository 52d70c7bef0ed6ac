"""What a session reports: drops by state, the failures that caused the others, timings, kept results.

``failures`` lists root causes only: drops that failed by themselves (an app that raised, a command that
exited non-zero, a root input that is missing), not those in ERROR because an input was. Proxies of other
nodes' drops are left out: their owners count them. Persisted in-memory results get a short preview, so
``dropflow run`` can show a small answer without another command.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..drops.states import DropState

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Failure", "Summary", "kept", "summarize"]


@dataclass(frozen=True, slots=True)
class Failure:
    uid: str
    kind: str
    message: str


@dataclass(slots=True)
class Summary:
    session_id: str
    state: str
    drops: int
    by_state: dict[str, int]
    #: Root causes: drops that failed by themselves (not because an input failed).
    failures: list[Failure]
    #: Seconds spent deploying (link, check, prepare roots) and running.
    deploy_seconds: float | None
    run_seconds: float | None
    persisted: list[str] = field(default_factory=list)
    #: Short previews of persisted in-memory results (drop id -> repr).
    values: dict[str, str] = field(default_factory=dict)
    #: App id -> the tail of what it printed that no drop received.
    outputs: dict[str, str] = field(default_factory=dict)


def summarize(session: Session) -> Summary:
    graph = session.graph
    nodes: Iterable[Any] = graph.by_id.values() if graph is not None else ()
    # Proxies are other nodes' drops: their owners count them.
    by_state = Counter(str(n.state) for n in nodes if type(n.peer) is not str)
    t = session.times
    return Summary(
        session_id=session.id,
        state=str(session.state),
        drops=sum(by_state.values()) if graph is not None else session.progress()[1],
        by_state=dict(sorted(by_state.items())),
        failures=session.failures(),
        deploy_seconds=t["running"] - t["deploy"] if "running" in t else None,
        run_seconds=(t.get("end", time.time()) - t["run"]) if "run" in t else None,
        persisted=kept(session),
        values=previews(session),
        outputs=session.outputs.texts(),
    )


def kept(session: Session) -> list[str]:
    """The kept paths that hold a result: those of persisted drops that COMPLETED and exist."""
    graph = session.graph
    if graph is None:
        return list(session.persisted)
    done = {
        path
        for data in graph.data
        if data.spec.persist
        and data.state is DropState.COMPLETED
        and data.store is not None
        and (path := data.store.fspath()) is not None
    }
    return [p for p in session.persisted if p in done and os.path.exists(p)]


def previews(session: Session, limit: int = 10, width: int = 200) -> dict[str, str]:
    """Short reprs of persisted in-memory results of an ended session."""
    graph = session.graph
    if graph is None or not session.ended:
        return {}
    out: dict[str, str] = {}
    for data in graph.data:
        if data.spec.persist and data.store is not None and data.spec.TRAITS.value:
            try:
                text = repr(session.value(data.spec.id))
            except Exception as exc:  # a preview must never break a summary
                text = f"<cannot decode: {exc}>"
            out[data.spec.id] = text if len(text) <= width else text[: width - 3] + "..."
            if len(out) >= limit:
                break
    return out
