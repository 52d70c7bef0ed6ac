"""Physical graphs of both engines reduced to what they must agree on: drops and edges per logical node.

A DALiuGE physical graph template names each drop's logical node in ``lg_key``; a dropflow drop's id is
its logical node's id followed by ``#`` and its indices. Edges are read from whichever side lists them
(``inputs``/``outputs``/``producers``/``consumers`` and their streaming variants in DALiuGE, ports in
dropflow) and deduplicated. dropflow links two apps through an implicit null drop (its engine joins apps
through data drops only); such a drop belongs to no logical node, so it is contracted: ``a -> null -> b``
counts as the edge ``a -> b``, as DALiuGE draws it.

The comparison is by logical node: how many drops each has, and for every pair of logical nodes, how many
edges join their drops and the sorted in- and out-degrees of the drops on both ends (so that a gather fed
by 30 drops instead of 150 shows, even where totals agree).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dropflow.drops.spec import AppSpec, DropSpec, NullSpec, port_drops

_OUT_KEYS = ("outputs", "consumers", "streamingConsumers")
_IN_KEYS = ("inputs", "producers", "streamingInputs")


@dataclass
class Structure:
    """Drops per logical node, and edges between drops labelled by their logical nodes."""

    drops: collections.Counter[str] = field(default_factory=collections.Counter)
    node_of: dict[str, str] = field(default_factory=dict)
    edges: set[tuple[str, str]] = field(default_factory=set)

    def edge_counts(self) -> collections.Counter[tuple[str, str]]:
        return collections.Counter((self.node_of[a], self.node_of[b]) for a, b in self.edges)

    def degrees(self) -> dict[tuple[str, str], tuple[list[int], list[int]]]:
        """Per pair of logical nodes: sorted out-degrees of the sources, sorted in-degrees of the targets."""
        outs: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
        ins: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for a, b in self.edges:
            key = (self.node_of[a], self.node_of[b])
            outs[key][a] += 1
            ins[key][b] += 1
        return {k: (sorted(outs[k].values()), sorted(ins[k].values())) for k in outs}


def _oids(value: Any) -> Iterable[str]:
    for item in value or ():
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            yield from (str(k) for k in item)


def from_daliuge(pgt: list[Any], by_oid: bool = False) -> Structure:
    """The structure of a DALiuGE physical graph (template), as ``dlg unroll`` writes it; ``by_oid`` groups
    by drop instead of logical node (to compare a physical graph with its import, drop by drop)."""
    s = Structure()
    drops = [d for d in pgt if isinstance(d, dict) and "oid" in d]
    for d in drops:
        node = str(d["oid"] if by_oid else (d.get("lg_key") or d["oid"]))
        s.node_of[d["oid"]] = node
        s.drops[node] += 1
    for d in drops:
        oid = d["oid"]
        for key in _OUT_KEYS:
            s.edges.update((oid, o) for o in _oids(d.get(key)) if o in s.node_of)
        for key in _IN_KEYS:
            s.edges.update((o, oid) for o in _oids(d.get(key)) if o in s.node_of)
    return s


def from_dropflow(specs: list[DropSpec], logical_ids: Iterable[str]) -> Structure:
    """The structure of dropflow's unrolled specs; null drops outside the logical graph are contracted."""
    known = set(logical_ids)
    s = Structure()
    implicit: set[str] = set()
    for spec in specs:
        node = spec.id.split("#", 1)[0]
        if node not in known and isinstance(spec, NullSpec):
            implicit.add(spec.id)
            continue
        s.node_of[spec.id] = node
        s.drops[node] += 1
    into: dict[str, list[str]] = collections.defaultdict(list)  # implicit drop -> its producers
    out_of: dict[str, list[str]] = collections.defaultdict(list)  # implicit drop -> its consumers
    for spec in specs:
        if not isinstance(spec, AppSpec):
            continue
        for value in spec.inputs.values():
            for d in port_drops(value):
                (out_of[d].append(spec.id) if d in implicit else s.edges.add((d, spec.id)))
        for value in spec.outputs.values():
            for d in port_drops(value):
                (into[d].append(spec.id) if d in implicit else s.edges.add((spec.id, d)))
    for d in implicit:
        s.edges.update((a, b) for a in into[d] for b in out_of[d])
    return s


def differences(expected: Structure, got: Structure, names: Mapping[str, str] | None = None) -> list[str]:
    """What differs, one line per logical node or pair (empty when the structures agree)."""
    names = names or {}

    def label(n: str) -> str:
        return f"{names[n]!r} ({n})" if n in names else n

    out: list[str] = []
    for node in sorted(set(expected.drops) | set(got.drops)):
        if expected.drops[node] != got.drops[node]:
            n, m = expected.drops[node], got.drops[node]
            out.append(f"{label(node)}: {n} drops in DALiuGE, {m} in dropflow")
    ec, gc = expected.edge_counts(), got.edge_counts()
    ed, gd = expected.degrees(), got.degrees()
    for pair in sorted(set(ec) | set(gc)):
        what = f"edges {label(pair[0])} -> {label(pair[1])}"
        if ec[pair] != gc[pair]:
            out.append(f"{what}: {ec[pair]} in DALiuGE, {gc[pair]} in dropflow")
        elif ed.get(pair) != gd.get(pair):
            out.append(f"{what}: degrees {ed.get(pair)} in DALiuGE, {gd.get(pair)} in dropflow")
    return out
