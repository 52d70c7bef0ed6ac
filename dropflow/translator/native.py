"""The native logical graph format (``"format": "dropflow/logical-graph"``): JSON to the model.

Theory of operation
-------------------
The document (see ``docs/logical-graph.md``; JSON Schema ``dropflow/schemas/logical-graph-1.schema.json``)
lists ``nodes`` -- each an ``app``, a ``data`` node or a ``construct`` -- and ``links`` between an app's
named port and a data node. Parameters are resolved first, so that every later check sees final values;
then each node is turned into a model object, its spec fields checked once against its kind. Problems are
collected per node and raised together, each naming the node (by id, and index when the id is unusable)
and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..drops.errors import GraphError, Problem
from . import params as params_mod
from .model import CONSTRUCT_KINDS, Construct, Direction, Link, LogicalGraph, Node
from .specs import check_fields, spec_class

__all__ = ["FORMAT", "VERSION", "parse_native"]

FORMAT = "dropflow/logical-graph"
VERSION = 1

#: Node ids become drop ids: readable, no whitespace, and no '#' (which separates the copy index).
_ID = re.compile(r"^[^\s#]{1,200}$")
_NODE_KEYS = frozenset({"id", "name", "parent", "app", "data", "construct"})
_APP_KEYS = frozenset({"inputs", "outputs", "time"})
_DATA_KEYS = frozenset({"volume"})
_CONSTRUCT_SIZE = {"scatter": "copies", "loop": "iterations", "gather": "width"}
_LINK_KEYS = frozenset({"from", "from_port", "to", "to_port", "loop"})


def _where(raw: Any, index: int, what: str = "") -> str:
    node_id = raw.get("id") if isinstance(raw, dict) else None
    label = f"node {node_id!r}" if isinstance(node_id, str) else f"nodes[{index}]"
    return f"{label} ({what})" if what else label


def _positive_int(value: Any, where: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GraphError.one(where, field, f"must be an integer, not {value!r}")
    if value < 1:
        raise GraphError.one(where, field, f"must be at least 1, not {value}")
    return value


def _ports(raw: Any, where: str, field: str, direction: Direction, into: dict[str, Direction]) -> None:
    if raw is None:
        return
    if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
        raise GraphError.one(where, field, "must be a list of port names")
    for port in raw:
        if port in into and into[port] != direction:
            raise GraphError.one(where, field, f"port {port!r} is declared both as input and as output")
        into[port] = direction


def _weight(value: Any, where: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise GraphError.one(where, field, f"must be a non-negative number, not {value!r}")
    return float(value)


def _node(raw: Any, index: int, values: Mapping[str, Any]) -> Node | Construct:
    if not isinstance(raw, dict):
        raise GraphError.one(f"nodes[{index}]", None, "must be an object")
    where = _where(raw, index)
    node_id = raw.get("id")
    if not isinstance(node_id, str) or not _ID.match(node_id):
        raise GraphError.one(where, "id", "must be a string of 1-200 characters without whitespace or '#'")
    roles = [k for k in ("app", "data", "construct") if k in raw]
    if len(roles) != 1:
        raise GraphError.one(where, None, 'needs exactly one of "app", "data" or "construct" (its kind)')
    role = roles[0]
    kind = raw[role]
    parent = raw.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise GraphError.one(where, "parent", "must be the id of a construct")
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise GraphError.one(where, "name", "must be a string")
    resolved = {k: params_mod.substitute(v, values, where, k) for k, v in raw.items()}
    if role == "construct":
        if kind not in CONSTRUCT_KINDS:
            raise GraphError.one(
                where, "construct", f"unknown construct {kind!r} (known: {', '.join(CONSTRUCT_KINDS)})"
            )
        where = _where(raw, index, kind)
        size_key = _CONSTRUCT_SIZE.get(kind)
        allowed = (
            _NODE_KEYS | ({size_key} if size_key else set()) | ({"clamp"} if kind == "gather" else set())
        )
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise GraphError.one(where, unknown[0], f"unknown field for a {kind} construct")
        size = 1
        if size_key is not None:
            if size_key not in resolved:
                raise GraphError.one(where, size_key, "missing required construct parameter")
            size = _positive_int(resolved[size_key], where, size_key)
        clamp = resolved.get("clamp", False)
        if not isinstance(clamp, bool):
            raise GraphError.one(where, "clamp", "must be true or false")
        return Construct(node_id, kind, where, parent, size, clamp, size_key)
    if not isinstance(kind, str):
        raise GraphError.one(where, role, "must be the name of a drop kind")
    where = _where(raw, index, kind)
    cls = spec_class(kind, role, where, role)
    own = _NODE_KEYS | (_APP_KEYS if role == "app" else _DATA_KEYS)
    fields = {k: v for k, v in resolved.items() if k not in own}
    if name is not None:
        fields["name"] = name
    check_fields(cls, fields, where)
    fields.pop("name", None)
    ports: dict[str, Direction] = {}
    if role == "app":
        _ports(resolved.get("inputs"), where, "inputs", "in", ports)
        _ports(resolved.get("outputs"), where, "outputs", "out", ports)
        weight = _weight(resolved.get("time", 1.0), where, "time")
    else:
        weight = _weight(resolved.get("volume", 1.0), where, "volume")
    return Node(node_id, "app" if role == "app" else "data", kind, where, parent, name, fields, ports, weight)


def _link(raw: Any, index: int) -> Link:
    where = f"links[{index}]"
    if not isinstance(raw, dict):
        raise GraphError.one(where, None, 'must be an object with "from" and "to"')
    unknown = sorted(set(raw) - _LINK_KEYS)
    if unknown:
        raise GraphError.one(where, unknown[0], f"unknown field (use {', '.join(sorted(_LINK_KEYS))})")
    for key in ("from", "to"):
        if not isinstance(raw.get(key), str):
            raise GraphError.one(where, key, "missing; must be a node id")
    for key in ("from_port", "to_port"):
        if key in raw and not isinstance(raw[key], str):
            raise GraphError.one(where, key, "must be a port name")
    carried = raw.get("loop", False)
    if not isinstance(carried, bool):
        raise GraphError.one(where, "loop", "must be true or false")
    where = f"link {raw['from']!r} -> {raw['to']!r} (links[{index}])"
    return Link(raw["from"], raw["to"], raw.get("from_port"), raw.get("to_port"), where, carried)


def parse_native(doc: Any, overrides: Mapping[str, str]) -> LogicalGraph:
    """Parse a native logical graph document (decoded JSON); ``overrides`` are ``--param`` values."""
    if not isinstance(doc, dict):
        raise GraphError.one("graph", None, "a logical graph is a JSON object")
    if doc.get("format") != FORMAT:
        raise GraphError.one("graph", "format", f"is {doc.get('format')!r}, expected {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise GraphError.one(
            "graph",
            "version",
            f"{doc.get('version')!r} is not supported (this dropflow reads version {VERSION})",
        )
    unknown = sorted(set(doc) - {"format", "version", "name", "description", "params", "nodes", "links"})
    if unknown:
        raise GraphError.one("graph", unknown[0], "unknown field")
    values = params_mod.resolve(params_mod.declare(doc.get("params")), overrides)
    raw_nodes = doc.get("nodes")
    raw_links = doc.get("links", [])
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise GraphError.one("graph", "nodes", "the graph is empty: it needs at least one node")
    if not isinstance(raw_links, list):
        raise GraphError.one("graph", "links", "must be a list")
    nodes: dict[str, Node] = {}
    constructs: dict[str, Construct] = {}
    problems: list[Problem] = []
    for index, raw in enumerate(raw_nodes):
        try:
            item = _node(raw, index, values)
        except GraphError as exc:
            problems += exc.problems
            continue
        if item.id in nodes or item.id in constructs:
            problems.append(Problem(item.where, "id", "duplicate id"))
        elif isinstance(item, Construct):
            constructs[item.id] = item
        else:
            nodes[item.id] = item
    links: list[Link] = []
    for index, raw in enumerate(raw_links):
        try:
            links.append(_link(raw, index))
        except GraphError as exc:
            problems += exc.problems
    if problems:
        raise GraphError(problems)
    name = doc.get("name")
    return LogicalGraph(name if isinstance(name, str) else None, nodes, constructs, links, "logical")
