"""From a template (and optionally a placement) to the drop specs of a physical graph.

Theory of operation
-------------------
This is the only step that does Python work per drop, so it does as little as it can: oids are built a
dimension at a time by list comprehension (``clean#3`` + ``.1``), each app's ports are turned into plain
lists once, and every spec is created by its class constructor from fields checked once per logical node.
Placement, when given, is a partition number per drop and the node and island of each partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..drops.spec import DropSpec
from .specs import spec_class
from .unroll import Block, PortDrops, Template

__all__ = ["Placement", "block_ids", "to_specs"]

#: (partition number per drop, node of each partition, island of each partition)
Placement = tuple[np.ndarray, Sequence[str | None], Sequence[str | None]]


def block_ids(block: Block) -> list[str]:
    """The oids of a block's copies: the node id, then ``#i.j.k`` (one index per dimension)."""
    node_id = block.node.id
    if not block.dims:
        return [node_id]
    ids = [f"{node_id}#{i}" for i in range(block.dims[0])]
    for n in block.dims[1:]:
        suffixes = [f".{i}" for i in range(n)]
        ids = [prefix + s for prefix in ids for s in suffixes]
    return ids


def _port_values(ports: list[PortDrops], count: int, ids: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{} for _ in range(count)]
    for pd in ports:
        starts = pd.starts
        drops = pd.drops.tolist()
        if not pd.many and len(drops) == count:
            # One drop per copy: the common case, with no slicing.
            for d, drop in zip(out, drops, strict=True):
                d[pd.port] = ids[drop]
            continue
        bounds = starts.tolist()
        for i in range(count):
            lo, hi = bounds[i], bounds[i + 1]
            if lo == hi:
                continue
            if pd.many:
                out[i][pd.port] = [ids[x] for x in drops[lo:hi]]
            else:
                out[i][pd.port] = ids[drops[lo]]
    return out


def to_specs(template: Template, placement: Placement | None = None) -> list[DropSpec]:
    """The drop specs of an unrolled template, placed if a placement is given."""
    all_ids: list[str] = []
    for block in template.blocks:
        all_ids += block_ids(block)
    parts: list[int] | None = placement[0].tolist() if placement is not None else None
    specs: list[DropSpec] = []
    for block in template.blocks:
        node = block.node
        cls: Any = spec_class(node.kind, node.role, node.where, node.role)
        fields = node.fields
        name = node.name
        lo, hi = block.base, block.base + block.count
        ids = all_ids[lo:hi]
        if parts is not None and placement is not None:
            nodes_of, islands_of = placement[1], placement[2]
            where = [(nodes_of[p], islands_of[p]) for p in parts[lo:hi]]
        else:
            where = [(None, None)] * block.count
        if "node" in fields or "island" in fields:  # pinned by the graph's author: every copy goes there
            fields = dict(fields)
            pin = (fields.pop("node", None), fields.pop("island", None))
            where = [(pin[0] or n, pin[1] or isl) for n, isl in where]
        if node.role == "data":
            specs += [
                cls(id=i, name=name, node=n, island=isl, **fields)
                for i, (n, isl) in zip(ids, where, strict=True)
            ]
            continue
        ins = _port_values(template.inputs.get(node.id, []), block.count, all_ids)
        outs = _port_values(template.outputs.get(node.id, []), block.count, all_ids)
        specs += [
            cls(id=i, name=name, node=n, island=isl, inputs=a, outputs=b, **fields)
            for i, (n, isl), a, b in zip(ids, where, ins, outs, strict=True)
        ]
    return specs
