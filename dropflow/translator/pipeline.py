"""The translator's steps put together: read (any format), unroll, partition, map, make specs.

Theory of operation
-------------------
:func:`read` sniffs a document once: a native logical graph, an EAGLE ``.graph`` (``nodeDataArray``), a
DALiuGE physical graph (a JSON list of drop specs) or a native physical graph. Logical graphs come back as
an unrolled :class:`~.unroll.Template` -- compact arrays, weights kept -- and physical graphs as specs.
:func:`translate` then partitions and maps either kind and makes the final specs, so a graph of a million
drops is turned into spec objects exactly once, already placed. Without a node list, partitions are
recorded as DALiuGE does, ``node = "#<partition>"``, for a later :func:`place` (``dropflow map``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

from ..drops.errors import GraphError
from ..drops.graph import FORMAT as PHYSICAL_FORMAT
from ..drops.graph import NESTED_TOO_DEEPLY, collection_paused, decode_physical
from ..drops.spec import AppSpec, DropSpec, port_drops
from . import daliuge_pg, eagle, native
from .mapping import map_partitions
from .materialize import Placement, to_specs
from .partition import Partitioning, Weighted, partition
from .unroll import Template, unroll

__all__ = ["Read", "Translation", "place", "read", "translate", "weighted"]


@dataclass(slots=True)
class Read:
    """A document read: a template (logical graphs) or specs (physical graphs), and the format's name."""

    format: str
    template: Template | None = None
    specs: list[DropSpec] | None = None

    @property
    def size(self) -> int:
        if self.template is not None:
            return self.template.total
        return len(self.specs or ())


@dataclass(slots=True)
class Translation:
    specs: list[DropSpec]
    format: str
    partitioning: Partitioning | None = None


def read(data: bytes, params: Mapping[str, str] | None = None) -> Read:
    """Read any supported graph document; raise GraphError (never anything else) for bad input.

    A value nested about as deep as the decoder allows still takes the readers' own walks over values (a
    parameter's substitution, a type check) past the interpreter's recursion limit: it is refused like JSON
    too deep to decode. Nothing is collected meanwhile, so that no finalizer or collector callback runs at
    that limit (each would fail, printing "Exception ignored ... RecursionError" beside the refusal).
    """
    try:
        with collection_paused():
            return _read(data, params or {})
    except RecursionError:
        raise GraphError.one("graph", None, NESTED_TOO_DEEPLY) from None


#: A JSON document that is a list: a DALiuGE physical graph (JSON's whitespace only before it).
_LIST = re.compile(rb"[ \t\n\r]*\[")


def _read(data: bytes, params: Mapping[str, str]) -> Read:
    if not params and _LIST.match(data):
        # Read a drop at a time, so that a million drops' dicts never exist at once; a graph this cannot
        # read (links from data drops, ordering edges, any problem) is decoded whole, below.
        specs = daliuge_pg.read_daliuge_pg(data)
        if specs is not None:
            return Read("daliuge-physical", specs=specs)
    try:
        doc = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise GraphError.one("graph", None, f"malformed JSON: {exc}") from None
    if isinstance(doc, list):
        if params:
            raise GraphError.one("graph", None, "--param applies to logical graphs; this is a physical graph")
        return Read("daliuge-physical", specs=daliuge_pg.parse_daliuge_pg(doc))
    if not isinstance(doc, dict):
        raise GraphError.one(
            "graph", None, "expected a JSON object (a logical graph) or list (a DALiuGE physical graph)"
        )
    fmt = doc.get("format")
    if fmt == native.FORMAT:
        return Read("logical", template=unroll(native.parse_native(doc, params)))
    if fmt == PHYSICAL_FORMAT:
        if params:
            raise GraphError.one("graph", None, "--param applies to logical graphs; this is a physical graph")
        return Read("physical", specs=decode_physical(data).drops)
    if "nodeDataArray" in doc:
        return Read("eagle", template=unroll(eagle.parse_eagle(doc, params)))
    if fmt is not None:
        raise GraphError.one(
            "graph",
            "format",
            f"unknown format {fmt!r} (dropflow reads {native.FORMAT!r}, "
            f"{PHYSICAL_FORMAT!r}, EAGLE .graph files and DALiuGE physical graphs)",
        )
    raise GraphError.one(
        "graph",
        "format",
        f'not a graph dropflow knows: no "format" ({native.FORMAT!r}) and no EAGLE "nodeDataArray"',
    )


def weighted(r: Read) -> Weighted:
    """The graph to partition: weights from the logical graph, or unit weights for physical specs."""
    if r.template is not None:
        t = r.template
        is_app = t.app_mask()
        w = t.node_weights()
        return Weighted(t.total, t.src, t.dst, is_app, w, w, [(b.base, b.dims) for b in t.blocks])
    specs = r.specs or []
    index = {s.id: i for i, s in enumerate(specs)}
    src: list[int] = []
    dst: list[int] = []
    is_app = np.zeros(len(specs), dtype=bool)
    for i, s in enumerate(specs):
        if isinstance(s, AppSpec):
            is_app[i] = True
            for v in s.inputs.values():
                for d in port_drops(v):
                    if d in index:
                        src.append(index[d])
                        dst.append(i)
            for v in s.outputs.values():
                for d in port_drops(v):
                    if d in index:
                        src.append(i)
                        dst.append(index[d])
    ones = np.ones(len(specs))
    return Weighted(
        len(specs), np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64), is_app, ones, ones
    )


def _labels(count: int) -> tuple[list[str | None], list[str | None]]:
    return [f"#{p}" for p in range(count)], [None] * count


def translate(
    r: Read,
    *,
    algorithm: str = "none",
    parts: int | None = None,
    nodes: Sequence[str] | None = None,
    islands: int = 0,
    seed: int = 0,
    imbalance: float = 0.05,
    max_dop: int = 8,
    deadline: float | None = None,
) -> Translation:
    """Partition and map what was read, and make its specs."""
    with collection_paused():
        return _translate(r, algorithm, parts, nodes, islands, seed, imbalance, max_dop, deadline)


def _translate(
    r: Read,
    algorithm: str,
    parts: int | None,
    nodes: Sequence[str] | None,
    islands: int,
    seed: int,
    imbalance: float,
    max_dop: int,
    deadline: float | None,
) -> Translation:
    if algorithm == "metis" and parts is None:
        parts = len(nodes) - islands if nodes and len(nodes) > islands else (len(nodes) if nodes else None)
    result: Partitioning | None = None
    placement: Placement | None = None
    if algorithm != "none" or nodes:
        result = partition(
            weighted(r), algorithm, parts, seed=seed, imbalance=imbalance, max_dop=max_dop, deadline=deadline
        )
        if nodes:
            node_of, island_of = map_partitions(result.loads.tolist(), nodes, islands)
            placement = (result.parts, list[str | None](node_of), island_of)
        else:
            placement = (result.parts, *_labels(result.count))
    if r.template is not None:
        return Translation(to_specs(r.template, placement), r.format, result)
    specs = r.specs or []
    if placement is not None:
        parts_of = placement[0].tolist()
        specs = [
            msgspec.structs.replace(s, node=placement[1][p], island=placement[2][p])
            for s, p in zip(specs, parts_of, strict=True)
        ]
    return Translation(specs, r.format, result)


def place(specs: list[DropSpec], nodes: Sequence[str], islands: int) -> list[DropSpec]:
    """Map a partitioned physical graph (``node = "#<partition>"``) onto machines."""
    labels = sorted({s.node for s in specs if s.node is not None})
    bad = [s for s in specs if s.node is None or not s.node.startswith("#") or not s.node[1:].isdigit()]
    if bad:
        raise GraphError.one(
            f"drop {bad[0].id!r}",
            "node",
            f"is {bad[0].node!r}; map expects a partitioned "
            'graph whose drops have node "#<partition>" (run dropflow partition first)',
        )
    numbers = {label: i for i, label in enumerate(labels)}
    loads = [0.0] * len(labels)
    for s in specs:
        if isinstance(s, AppSpec):
            loads[numbers[s.node or ""]] += 1.0
    node_of, island_of = map_partitions(loads, nodes, islands)
    return [
        msgspec.structs.replace(
            s, node=node_of[numbers[s.node or ""]], island=island_of[numbers[s.node or ""]]
        )
        for s in specs
    ]
