"""Reading a graph file of any supported format into drop specs.

Theory of operation
-------------------
The bytes of a graph file are sniffed once: a JSON object whose ``format`` is ``dropflow/physical-graph``
is a native physical graph and decodes straight into specs; anything else (a native or EAGLE logical graph,
a DALiuGE physical graph) is handed to the translator, which returns specs. Every failure becomes a
:class:`GraphError` that names the file, so callers print one message and never a traceback.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass

from .drops.errors import GraphError
from .drops.graph import FORMAT, decode_physical
from .drops.spec import DropSpec

__all__ = ["LoadedGraph", "decode_graph_bytes", "load_graph", "read_graph_bytes"]

_NATIVE_PG = re.compile(rb'"format"\s*:\s*"' + re.escape(FORMAT.encode()) + rb'"')


@dataclass(slots=True)
class LoadedGraph:
    drops: list[DropSpec]
    name: str
    #: What the file was: "physical", or the logical format the translator read.
    kind: str


def read_graph_bytes(path: str) -> bytes:
    """The bytes of a graph file (``-`` for standard input), or GraphError saying why not."""
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise GraphError.one("graph", None, f"cannot read {path!r}: {exc.strerror}") from None


def _name(path: str) -> str:
    base = os.path.basename(path) if path != "-" else "stdin"
    return re.sub(r"[^A-Za-z0-9._-]", "_", base.split(".")[0]) or "graph"


def decode_graph_bytes(data: bytes, source: str) -> list[DropSpec]:
    """The drop specs of a physical graph in any format dropflow reads (native, DALiuGE) or a logical one."""
    return _decode(data, source, {}, source)[0]


def load_graph(path: str, params: dict[str, str] | None = None) -> LoadedGraph:
    """Load a graph file of any supported format as physical drop specs."""
    data = read_graph_bytes(path)
    source = path if path != "-" else "<stdin>"
    drops, name, kind = _decode(data, source, params or {}, _name(path))
    return LoadedGraph(drops, name, kind)


def _decode(
    data: bytes, source: str, params: dict[str, str], default_name: str
) -> tuple[list[DropSpec], str, str]:
    head = data[:4096]
    if _NATIVE_PG.search(head) or (_NATIVE_PG.search(data) and head.lstrip()[:1] == b"{"):
        if params:
            raise GraphError.one(
                "graph", None, "--param applies to logical graphs; this is a physical graph", source
            )
        graph = decode_physical(data, source)
        return graph.drops, graph.name or default_name, "physical"
    load_logical = getattr(importlib.import_module(".translator", __package__), "load_logical", None)
    if load_logical is None:
        raise GraphError.one(
            "graph",
            "format",
            f'not a dropflow physical graph ("format": {FORMAT!r}); '
            "logical graphs need the translator, which is not installed",
            source,
        )
    drops, kind = load_logical(data, source, params)
    return drops, default_name, kind
