"""Unrolling: a logical graph to a compact physical graph template, in time linear in its drops.

Theory of operation
-------------------
Every node sits inside a chain of constructs; each construct that multiplies (scatter: copies, loop:
iterations, gather and group-by: instances) is one *dimension*. A node's copies form a block of
``prod(dims)`` consecutive drop numbers in row-major order, and a copy's oid is the node id followed by its
indices (``clean#3.1``). Sub-graphs only group; they add no dimension.

A link between two nodes is classified by the part of their chains they share (the prefix P) and what each
has beyond it (A for the source, B for the destination):

- A and B empty: one to one. A carried link instead joins iteration i to i + 1 of the innermost loop.
- A empty: the source feeds every copy beneath it (the input of a scatter), except that a port that a carried
  link also enters gets a link from outside the loop in the first iteration only (the initial value).
- B empty: every copy of the source feeds the destination (an implicit gather); from a loop, only the last
  iteration does (the loop's result).
- DALiuGE's rules replace these two loop exceptions for EAGLE graphs: a link reaches every iteration both
  ways unless it is ``loop_aware``, which restricts it to the first (into) or last (out of) iteration of
  the innermost loop around its inner end.
- B starts with a gather of width k: the copies of A, flattened in order, go k at a time to the gather's
  instances; there are ceil(|A| / k) of them.
- B starts with a group-by: the copies of A are regrouped by their inner indices (a corner turn): one
  group-by instance per inner index, receiving one item per outer index.
- otherwise A and B are sibling constructs, joined one to one when they have as many copies.

Each rule yields the pairs of copy indices within one prefix instance as numpy arrays, tiled over the
prefix, so the work per link is a few vector operations over its edges: no per-drop Python, no membership
tests, and a gather of 300,000 inputs costs what 300,000 one-to-one links cost. Gather and group-by sizes
depend on the dimensions of what they gather, so construct sizes are resolved first, on demand, with a
check that no construct's size depends on itself.

Sizes are counted before anything is allocated. A few bytes of JSON can ask for 10**9 copies; the number of
drops (and a bound on the number of links) is known from the construct sizes alone, in Python integers that
do not overflow, and a graph past the limit (:func:`max_drops`: 10 million drops by default,
``DROPFLOW_MAX_DROPS`` to change it) is refused naming the construct and its size field -- before a single
array, let alone a drop spec, is made.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..drops.errors import GraphError, Problem
from .check import check_graph, construct_chain
from .model import Construct, Link, LogicalGraph, Node

__all__ = [
    "DEFAULT_MAX_DROPS",
    "LINKS_PER_DROP",
    "MAX_DROPS_ENV",
    "Block",
    "PortDrops",
    "Template",
    "max_drops",
    "unroll",
]

#: The largest logical graph unrolled by default, in drops: a few GB of drop specs.
DEFAULT_MAX_DROPS = 10_000_000
#: The environment variable that sets another limit (a positive integer).
MAX_DROPS_ENV = "DROPFLOW_MAX_DROPS"
#: Links may number this many times the drop limit (a gather links each of its inputs, and so on).
LINKS_PER_DROP = 4


def max_drops() -> int:
    """The limit on a logical graph's unrolled size: ``$DROPFLOW_MAX_DROPS``, or the default."""
    text = os.environ.get(MAX_DROPS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_DROPS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise GraphError.one(
            f"environment variable {MAX_DROPS_ENV}", None, f"{text!r:.40} is not a positive integer"
        )
    return value


Int = np.int64
_EMPTY = np.zeros(0, dtype=Int)


@dataclass(slots=True)
class Block:
    """The copies of one logical node: drop numbers ``base .. base + count - 1``."""

    node: Node
    dims: tuple[int, ...]
    base: int
    count: int


@dataclass(slots=True)
class PortDrops:
    """The drops on one port of every copy of an app, as CSR: copy i has ``drops[starts[i]:starts[i+1]]``."""

    port: str
    #: The port takes a list (a gather, fan-in, fan-out), else one drop id.
    many: bool
    starts: np.ndarray
    drops: np.ndarray


@dataclass(slots=True)
class Template:
    """An unrolled graph: blocks of drops, producer -> consumer edges, and the ports of every app."""

    name: str | None
    blocks: list[Block]
    total: int
    #: Edges from producer to consumer (app -> data, data -> app), as drop numbers.
    src: np.ndarray
    dst: np.ndarray
    #: App node id -> its input (and output) ports.
    inputs: dict[str, list[PortDrops]] = field(default_factory=dict)
    outputs: dict[str, list[PortDrops]] = field(default_factory=dict)

    def app_mask(self) -> np.ndarray:
        """Boolean per drop: is it an app."""
        mask = np.zeros(self.total, dtype=bool)
        for b in self.blocks:
            if b.node.role == "app":
                mask[b.base : b.base + b.count] = True
        return mask

    def node_weights(self) -> np.ndarray:
        """Per drop: the logical node's weight (app time, data volume)."""
        w = np.empty(self.total, dtype=np.float64)
        for b in self.blocks:
            w[b.base : b.base + b.count] = b.node.weight
        return w


def _dim_chain(graph: LogicalGraph, node: Node) -> list[Construct]:
    return [c for c in construct_chain(graph, node.parent) if c.kind != "subgraph"]


def _split(cs: list[Construct], cd: list[Construct]) -> int:
    p = 0
    while p < len(cs) and p < len(cd) and cs[p] is cd[p]:
        p += 1
    return p


class _Sizes:
    """Construct sizes (copies, iterations, instances), derived on demand for gathers and group-bys."""

    def __init__(self, graph: LogicalGraph, chains: dict[str, list[Construct]]) -> None:
        self.graph = graph
        self.chains = chains
        self.sizes: dict[str, int] = {}
        self.pending: set[str] = set()
        self.feeds: dict[str, list[tuple[Link, list[Construct]]]] = defaultdict(list)
        for link in graph.links:
            cs, cd = chains[link.src], chains[link.dst]
            p = _split(cs, cd)
            if len(cs) > p and len(cd) > p and cd[p].kind in ("gather", "groupby"):
                self.feeds[cd[p].id].append((link, cs[p:]))

    def of(self, c: Construct) -> int:
        size = self.sizes.get(c.id)
        if size is not None:
            return size
        if c.kind in ("scatter", "loop"):
            size = c.size
        else:
            if c.id in self.pending:
                raise GraphError.one(c.where, None, "its number of instances depends on itself")
            self.pending.add(c.id)
            size = self._derived(c)
            self.pending.discard(c.id)
        self.sizes[c.id] = size
        return size

    def _derived(self, c: Construct) -> int:
        feeds = self.feeds.get(c.id)
        what = "gather" if c.kind == "gather" else "group-by"
        if not feeds and c.clamp:
            return 1  # DALiuGE makes one instance of a gather that has nothing to gather
        if not feeds:
            raise GraphError.one(
                c.where,
                None,
                f"this {what} gathers nothing: link a node inside a scatter "
                "(or another multiplying construct) to a node inside it",
            )
        widths = set()
        for link, extra in feeds:
            if c.kind == "groupby" and len(extra) < 2:
                raise GraphError.one(
                    link.where,
                    None,
                    f"group-by {c.id!r} regroups nested scatters: the "
                    f"source {link.src!r} must sit at least two constructs deeper",
                )
            dims = [self.of(x) for x in extra]
            widths.add((math.prod(dims), math.prod(dims[1:])))
        if len(widths) > 1:
            raise GraphError.one(
                c.where,
                None,
                f"the {what} is fed from constructs of different sizes "
                f"({', '.join(str(w[0]) for w in sorted(widths))} items)",
            )
        ((width, inner),) = widths
        if c.kind == "groupby":
            return inner
        if c.size > width and not c.clamp:
            raise GraphError.one(
                c.where,
                "width",
                f"the gather takes {c.size} inputs per instance but what it "
                f"gathers has only {width} copies: it is wider than its scatter allows",
            )
        return -(-width // c.size)


def _restrict(dims: list[int], keep: list[tuple[int, int]]) -> np.ndarray:
    """Flat indices over ``dims`` whose index on dimension q equals v, for every (q, v) in ``keep``."""
    n = math.prod(dims)
    flat = np.arange(n, dtype=Int)
    if not keep:
        return flat
    mask = np.ones(n, dtype=bool)
    for q, v in keep:
        stride = math.prod(dims[q + 1 :])
        mask &= (flat // stride) % dims[q] == v
    return flat[mask]


class _Unroller:
    def __init__(self, graph: LogicalGraph, limit: int) -> None:
        self.graph = graph
        self.chains = {nid: _dim_chain(graph, n) for nid, n in graph.nodes.items()}
        self.sizes = _Sizes(graph, self.chains)
        self.blocks: dict[str, Block] = {}
        base = 0
        for nid, node in graph.nodes.items():
            dims = tuple(self.sizes.of(c) for c in self.chains[nid])
            count = math.prod(dims)  # a Python integer: no overflow, however large the sizes
            self.blocks[nid] = Block(node, dims, base, count)
            base += count
        self.total = base
        if base > limit:
            raise self._too_many_drops(limit)
        links = 0
        for link in graph.links:
            edges = self._edge_bound(link)
            links += edges
            if links > limit * LINKS_PER_DROP:
                raise self._too_many_links(link, edges, limit * LINKS_PER_DROP)

    def _culprit(self, chain: list[Construct]) -> Construct | None:
        """The construct to blame for a big block: the largest declared size (scatter copies, loop
        iterations), else the largest derived one."""
        declared = [c for c in chain if c.kind in ("scatter", "loop")] or chain
        return max(declared, key=self.sizes.of, default=None)

    def _factors(self, chain: list[Construct]) -> str:
        return " x ".join(f"{self.sizes.of(c):,} ({c.kind} {c.id!r})" for c in chain)

    def _too_many_drops(self, limit: int) -> GraphError:
        block = max(self.blocks.values(), key=lambda b: b.count)
        chain = self.chains[block.node.id]
        culprit = self._culprit(chain)
        factors = self._factors(chain) or "no construct"
        message = (
            f"the graph would unroll to {self.total:,} drops, more than the limit of {limit:,}: node "
            f"{block.node.id!r} alone makes {block.count:,} copies ({factors}); "
            f"make it smaller, or raise the limit ({MAX_DROPS_ENV}=N)"
        )
        if culprit is None:
            return GraphError.one("graph", "nodes", message)
        return GraphError.one(culprit.where, culprit.size_field, message)

    def _edge_bound(self, link: Link) -> int:
        """At most how many edges :meth:`pairs` makes for a link (computed from sizes, nothing allocated)."""
        bs, bd = self.blocks[link.src], self.blocks[link.dst]
        if link.carried:
            return bs.count
        cs, cd = self.chains[link.src], self.chains[link.dst]
        p = _split(cs, cd)
        npre = math.prod(bs.dims[:p])
        na, nb = math.prod(bs.dims[p:]), math.prod(bd.dims[p:])
        if len(cs) > p and len(cd) > p and cd[p].kind in ("gather", "groupby"):
            return npre * na * math.prod(bd.dims[p + 1 :])
        return npre * max(na, nb)

    def _too_many_links(self, link: Link, edges: int, limit: int) -> GraphError:
        chain = self.chains[link.dst] if len(self.chains[link.dst]) > len(self.chains[link.src]) else []
        chain = chain or self.chains[link.src]
        culprit = self._culprit(chain)
        factors = self._factors(chain) or "no construct"
        message = (
            f"the graph would unroll to more than {limit:,} links ({link.where} alone makes {edges:,}: "
            f"{factors}); make it smaller, or raise the limit ({MAX_DROPS_ENV}=N drops allows "
            f"{LINKS_PER_DROP} N links)"
        )
        if culprit is None:
            return GraphError.one(link.where, None, message)
        return GraphError.one(culprit.where, culprit.size_field, message)

    def pairs(self, link: Link) -> tuple[np.ndarray, np.ndarray, bool]:
        """Edges of a link as drop numbers (producer, consumer), and whether the app side is a fan."""
        cs, cd = self.chains[link.src], self.chains[link.dst]
        bs, bd = self.blocks[link.src], self.blocks[link.dst]
        if link.carried:
            return self._carried(link, bs, bd)
        p = _split(cs, cd)
        dims_a, dims_b = list(bs.dims[p:]), list(bd.dims[p:])
        na, nb = math.prod(dims_a), math.prod(dims_b)
        kinds_a = [c.kind for c in cs[p:]]
        kinds_b = [c.kind for c in cd[p:]]
        app_is_dst = bd.node.role == "app"
        if not dims_a and not dims_b:
            ai, bi, fan = np.zeros(1, dtype=Int), np.zeros(1, dtype=Int), False
        elif not dims_a:
            if link.loop_aware is None:
                first = bd.node.loop_start or (
                    link.dst_port is not None and link.dst_port in bd.node.loop_ports
                )
                keep = [(q, 0) for q, k in enumerate(kinds_b) if k == "loop" and first]
            else:
                keep = [(len(kinds_b) - 1, 0)] if link.loop_aware and kinds_b[-1] == "loop" else []
            bi = _restrict(dims_b, keep)
            ai = np.zeros(len(bi), dtype=Int)
            fan = not app_is_dst and len(bi) > 1
        elif not dims_b:
            if link.loop_aware is None:
                keep = [(q, dims_a[q] - 1) for q, k in enumerate(kinds_a) if k == "loop"]
            elif link.loop_aware and kinds_a[-1] == "loop":
                keep = [(len(kinds_a) - 1, dims_a[-1] - 1)]
            else:
                keep = []
            ai = _restrict(dims_a, keep)
            bi = np.zeros(len(ai), dtype=Int)
            fan = app_is_dst and len(ai) > 1
        elif kinds_b[0] in ("gather", "groupby"):
            ai = np.arange(na, dtype=Int)
            # A gather takes consecutive items; a group-by takes one item per outer index (a corner turn).
            # (A clamped gather wider than what it gathers takes it all: a width above ``na`` groups as ``na``
            # does, and keeps numpy's integers from overflowing on a width of 2**63.)
            width = min(cd[p].size, max(na, 1))
            group = ai // width if kinds_b[0] == "gather" else ai % math.prod(dims_a[1:])
            rest = math.prod(dims_b[1:])
            bi = (group[:, None] * rest + np.arange(rest, dtype=Int)[None, :]).ravel()
            ai = np.repeat(ai, rest)
            fan = app_is_dst
        elif na == nb:
            ai = bi = np.arange(na, dtype=Int)
            fan = False
        else:
            raise GraphError.one(
                link.where,
                None,
                f"joins {link.src!r} inside {cs[p].kind} {cs[p].id!r} "
                f"({na} copies) to {link.dst!r} inside {cd[p].kind} {cd[p].id!r} ({nb} "
                "copies); link through a gather, or give both the same size",
            )
        npre = math.prod(bs.dims[:p])
        if npre > 1:
            pre = np.arange(npre, dtype=Int)[:, None]
            ai = (pre * na + ai[None, :]).ravel()
            bi = (pre * nb + bi[None, :]).ravel()
        return ai + bs.base, bi + bd.base, fan

    def _carried(self, link: Link, bs: Block, bd: Block) -> tuple[np.ndarray, np.ndarray, bool]:
        chain = self.chains[link.src]
        q = max(i for i, c in enumerate(chain) if c.kind == "loop")
        dims = list(bs.dims)
        stride = math.prod(dims[q + 1 :])
        flat = np.arange(bs.count, dtype=Int)
        flat = flat[(flat // stride) % dims[q] < dims[q] - 1]
        return flat + bs.base, flat + stride + bd.base, False

    def run(self) -> Template:
        srcs: list[np.ndarray] = []
        dsts: list[np.ndarray] = []
        # (app id, is input, port) -> [(copy index array, drop array, fan)]
        ports: dict[tuple[str, bool, str], list[tuple[np.ndarray, np.ndarray, bool]]] = defaultdict(list)
        for link in self.graph.links:
            s, d, fan = self.pairs(link)
            srcs.append(s)
            dsts.append(d)
            if self.blocks[link.src].node.role == "app":
                assert link.src_port is not None
                ports[(link.src, False, link.src_port)].append((s - self.blocks[link.src].base, d, fan))
            if self.blocks[link.dst].node.role == "app":
                assert link.dst_port is not None
                ports[(link.dst, True, link.dst_port)].append((d - self.blocks[link.dst].base, s, fan))
        template = Template(
            self.graph.name,
            list(self.blocks.values()),
            self.total,
            np.concatenate(srcs) if srcs else _EMPTY,
            np.concatenate(dsts) if dsts else _EMPTY,
        )
        for (app, is_input, port), parts in ports.items():
            count = self.blocks[app].count
            copies = np.concatenate([p[0] for p in parts])
            drops = np.concatenate([p[1] for p in parts])
            order = np.argsort(copies, kind="stable")
            per_copy = np.bincount(copies, minlength=count)
            starts = np.zeros(count + 1, dtype=Int)
            np.cumsum(per_copy, out=starts[1:])
            many = any(p[2] for p in parts) or (len(per_copy) > 0 and int(per_copy.max()) > 1)
            side = template.inputs if is_input else template.outputs
            side.setdefault(app, []).append(PortDrops(port, many, starts, drops[order]))
        return template


def unroll(graph: LogicalGraph, limit: int | None = None) -> Template:
    """Check and unroll a logical graph (the graph is normalised in place).

    Refuses a graph of more than ``limit`` drops (default: :func:`max_drops`) before allocating anything.
    """
    check_graph(graph)
    unroller = _Unroller(graph, max_drops() if limit is None else limit)
    try:
        return unroller.run()
    except GraphError:
        raise
    except MemoryError:
        raise GraphError([Problem("graph", None, "unrolls to more drops than fit in memory")]) from None
