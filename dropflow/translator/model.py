"""The translator's logical graph model: what both parsers (native, EAGLE) produce and unrolling reads.

Theory of operation
-------------------
A logical graph is three plain collections. *Constructs* (scatter, gather, loop, group-by, sub-graph) are
containers: every node and construct names its enclosing construct in ``parent``, so nesting is a tree.
*Nodes* are the things that become drops: an app or data node carries the dropflow kind it unrolls into and
the fields of that kind's spec, already resolved (parameters substituted, types checked by the parser).
*Links* join an app's named port to a data node, or two apps (whose drops the engine joins through an
implicit null drop, see :mod:`.check`); a link marked ``carried`` feeds the next iteration of the innermost
loop around both ends, and ``loop_aware`` says which iterations a link across a loop's boundary reaches.

Nothing here knows JSON: parsers turn documents into this model, raising :class:`GraphError` that names the
node and field, and every later step (checks, unrolling) reports problems through each object's ``where``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CONSTRUCT_KINDS",
    "Construct",
    "ConstructKind",
    "Direction",
    "Link",
    "LogicalGraph",
    "Node",
    "Role",
]

ConstructKind = Literal["scatter", "gather", "loop", "groupby", "subgraph"]
CONSTRUCT_KINDS: tuple[str, ...] = ("scatter", "gather", "loop", "groupby", "subgraph")
Role = Literal["app", "data"]
#: How a node may use a declared port.
Direction = Literal["in", "out", "inout"]


@dataclass(slots=True)
class Construct:
    id: str
    kind: ConstructKind
    #: For messages: ``node 'split' (Scatter)``.
    where: str
    parent: str | None = None
    #: scatter: copies; loop: iterations; gather: items per gather instance. Unused for group-by/sub-graph.
    size: int = 1
    #: gather only: a gather wider than its source takes everything (DALiuGE's behaviour) instead of failing.
    clamp: bool = False
    #: The document's name of the size field (``copies``, ``num_of_copies``, ...), for messages.
    size_field: str | None = None


@dataclass(slots=True)
class Node:
    id: str
    role: Role
    #: The dropflow drop kind this node unrolls into ("python", "memory", ...).
    kind: str
    where: str
    parent: str | None = None
    name: str | None = None
    #: Spec fields other than id/name/node/island/inputs/outputs, already validated against the kind.
    fields: dict[str, Any] = field(default_factory=dict)
    #: Declared ports of an app (name -> direction); links must use them in their direction.
    ports: dict[str, Direction] = field(default_factory=dict)
    #: App: estimated run time (seconds); data: volume (any unit, relative). Partitioning weights.
    weight: float = 1.0
    #: Links from outside its loops reach only the first iteration (the loop's initial value): on every
    #: port (EAGLE's ``group_start``), or on the ports that a loop-carried link also enters.
    loop_start: bool = False
    loop_ports: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Link:
    src: str
    dst: str
    #: The app's port on the source side (``None`` when the source is a data node).
    src_port: str | None
    #: The app's port on the destination side (``None`` when the destination is a data node).
    dst_port: str | None
    where: str
    #: Loop-carried: iteration i of the source feeds iteration i + 1 of the destination.
    carried: bool = False
    #: How the link crosses a loop's boundary. ``None`` (native graphs): out of a loop from the last
    #: iteration, into a port that a carried link enters in the first iteration only. ``True`` (DALiuGE's
    #: ``loop_aware``): out of its innermost loop from the last iteration, into it in the first.
    #: ``False`` (DALiuGE's default): every iteration, both ways.
    loop_aware: bool | None = None


@dataclass(slots=True)
class LogicalGraph:
    name: str | None
    nodes: dict[str, Node]
    constructs: dict[str, Construct]
    links: list[Link]
    #: Which format it was read from ("logical", "eagle").
    format: str = "logical"
    #: Cycles that no loop declares are refused by the engine at deploy rather than by translation
    #: (DALiuGE translates such graphs; dropflow keeps their structure as DALiuGE does).
    cycles_at_deploy: bool = False
