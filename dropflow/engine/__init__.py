"""Running one node's share of a graph: sessions, the owner loop, app pools, lifecycle and workspaces.

The engine has no network code; the managers drive it through :class:`Node` and :class:`Session`. The names
below are imported on first use, so that a light module of the engine (the worker zygote, started first
thing by ``dropflow run``) can be imported without the rest of it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import Core
    from .eventlog import Event, EventLog
    from .graph import AppNode, DataNode, Graph, build
    from .node import Node
    from .session import Failure, Session, Summary
    from .workspace import Workspace

__all__ = [
    "AppNode",
    "Core",
    "DataNode",
    "Event",
    "EventLog",
    "Failure",
    "Graph",
    "Node",
    "Session",
    "Summary",
    "Workspace",
    "build",
]

_HOME = {
    "Core": "core",
    "Event": "eventlog",
    "EventLog": "eventlog",
    "AppNode": "graph",
    "DataNode": "graph",
    "Graph": "graph",
    "build": "graph",
    "Node": "node",
    "Failure": "session",
    "Session": "session",
    "Summary": "session",
    "Workspace": "workspace",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)
