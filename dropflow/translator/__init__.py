"""Logical graph -> physical graph: parse, unroll, partition, map (pure functions, no I/O).

Theory of operation
-------------------
The pipeline is four steps over plain data. *Read* parses a document of any supported format -- the native
logical graph (:mod:`.native`), EAGLE ``.graph`` (:mod:`.eagle`), DALiuGE physical graphs
(:mod:`.daliuge_pg`) -- into the model of :mod:`.model`, checked by :mod:`.check`. *Unroll*
(:mod:`.unroll`) expands constructs into a compact template of numbered drops and edges. *Partition*
(:mod:`.partition`) groups drops, *map* (:mod:`.mapping`) puts groups on machines, and only then are drop
specs made (:mod:`.materialize`), once, already placed. Every bad input raises
:class:`~dropflow.drops.errors.GraphError` naming the node and field; nothing here reads files or opens
sockets -- the CLI (``dropflow translate``) and ``dropflow run`` are the shells that do.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..drops.errors import GraphError, Problem
from ..drops.graph import NESTED_TOO_DEEPLY
from ..drops.spec import DropSpec
from .partition import ALGORITHMS
from .pipeline import Read, Translation, place, read, translate

__all__ = ["ALGORITHMS", "Read", "Translation", "load_logical", "place", "read", "translate"]


def load_logical(
    data: bytes, source: str, params: dict[str, str] | Mapping[str, str]
) -> tuple[list[DropSpec], str]:
    """Drop specs of a logical (or DALiuGE physical) graph document, and the name of its format.

    Raises :class:`GraphError` -- never anything else -- for input it cannot translate.
    """
    try:
        r = read(data, params)
        return translate(r).specs, r.format
    except GraphError as exc:
        raise exc.with_source(source) from None
    except RecursionError:
        raise GraphError([Problem("graph", None, NESTED_TOO_DEEPLY)], source) from None
