"""Running one node's share of a graph: sessions, the owner loop, app pools, lifecycle and workspaces.

The engine has no network code; the managers drive it through :class:`Node` and :class:`Session`.
"""

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
