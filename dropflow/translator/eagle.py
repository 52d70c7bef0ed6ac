"""EAGLE ``.graph`` files (schema "OJS") to the logical graph model.

Theory of operation
-------------------
An EAGLE graph lists components in ``nodeDataArray`` (each with ``category``, ``categoryType``, a
``parentId`` for construct membership and typed ``fields``) and links in ``linkDataArray`` between *field
ids* that serve as ports. Reading it takes four passes over plain dicts:

1. Parameters. ``GlobalVariable`` components declare graph parameters, which ``--param`` overrides and
   field values use as ``{name}``; the active graph configuration then overrides field values by id.
2. Components. Constructs keep their size parameter (``num_of_copies``, ``num_of_inputs``, ``num_of_iter``);
   an application embedded in a construct (``inputApplication*``) becomes an app node with the construct's
   id, living outside a scatter (it feeds the copies) and inside a gather or group-by (one per instance).
   Comments, descriptions and unlinked embedded apps are dropped.
3. Links. Ports are resolved from field ids to port names; a port that DALiuGE lets an app use both ways
   gets an ``_out`` name on its output side, since dropflow ports have one direction. ``closesLoop`` links
   are loop-carried; a loop with none is closed DALiuGE's way, from its ``group_end`` data to its
   ``group_start`` apps, and ``group_start`` apps get outside links in the first iteration only.
4. Kinds. Each component's category and ``dropclass`` map onto a dropflow kind (:mod:`.dlgclasses`).

Every refusal names the component (name, id, category) and what is missing.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..drops.errors import GraphError, Problem
from . import dlgclasses
from .model import Construct, ConstructKind, Direction, Link, LogicalGraph, Node, Role
from .params import convert
from .specs import check_fields, spec_class

__all__ = ["parse_eagle"]

_CONSTRUCTS: dict[str, tuple[ConstructKind, str | None]] = {
    "Scatter": ("scatter", "num_of_copies"),
    "Gather": ("gather", "num_of_inputs"),
    "Loop": ("loop", "num_of_iter"),
    "GroupBy": ("groupby", None),
    "SubGraph": ("subgraph", None),
    "ExclusiveForceNode": ("subgraph", None),
}
_UNSUPPORTED_CONSTRUCTS = {
    "MKN": "unsupported: dropflow has no MKN construct (DALiuGE 6.6 does not translate it either); "
    "draw it as a Gather of M inputs feeding a Scatter of K copies"
}
_IGNORED = frozenset({"Comment", "Description"})
_GLOBALS = frozenset({"GlobalVariable", "GlobalVariables"})
_PORT_USAGE: dict[str, Direction] = {"InputPort": "in", "OutputPort": "out", "InputOutput": "inout"}
_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: A loop closed DALiuGE's way links each group_end node to each group_start node: a few links, not a square.
_MAX_LOOP_LINKS = 10_000


@dataclass(slots=True)
class _Comp:
    """One EAGLE component (or an app embedded in a construct) before mapping."""

    id: str
    name: str
    category: str
    category_type: str
    parent: str | None
    fields: list[dict[str, Any]]
    where: str
    #: field id -> (port name, direction)
    ports: dict[str, tuple[str, Direction]] = field(default_factory=dict)


def _where(name: Any, node_id: str, category: Any) -> str:
    label = str(name).replace("\n", " ") if name else ""
    return f"node {label!r} ({category}, id {node_id})" if label else f"node {node_id} ({category})"


def _raw_value(f: Mapping[str, Any]) -> Any:
    value = f.get("value")
    if value is None or value == "":
        return f.get("defaultValue", value)
    return value


def _list(value: Any) -> list[Any]:
    """A list from the document, or an empty one: a value of another type is reported where it is used."""
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _globals(doc: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for n in _list(doc.get("nodeDataArray")):
        if isinstance(n, dict) and str(n.get("category")) in _GLOBALS:
            for f in _list(n.get("fields")):
                if isinstance(f, dict) and isinstance(f.get("name"), str):
                    values[f["name"]] = _raw_value(f)
    problems: list[Problem] = []
    for name, text in overrides.items():
        if name not in values:
            known = ", ".join(sorted(values)) or "none"
            problems.append(
                Problem(
                    f"--param {name}",
                    None,
                    f"the graph has no global variable {name!r} (its GlobalVariable fields: {known})",
                )
            )
            continue
        old = values[name]
        kind = (
            "bool"
            if isinstance(old, bool)
            else "int"
            if isinstance(old, int)
            else ("float" if isinstance(old, float) else "str")
        )
        try:
            values[name] = convert(text, kind)
        except ValueError as exc:
            problems.append(Problem(f"--param {name}", None, str(exc)))
    if problems:
        raise GraphError(problems)
    return values


def _config(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Field id -> value from the active graph configuration."""
    active = doc.get("activeGraphConfigId")
    configs = doc.get("graphConfigurations") or {}
    if not active or not isinstance(configs, dict):
        return {}
    config = configs.get(active) if isinstance(active, str) else None
    if not isinstance(config, dict):
        raise GraphError.one(
            "graph", "activeGraphConfigId", f"names no configuration in graphConfigurations: {active!r:.80}"
        )
    out: dict[str, Any] = {}
    for node in _dict(config.get("nodes")).values():
        for field_id, setting in _dict(_dict(node).get("fields")).items():
            if isinstance(setting, dict) and "value" in setting:
                out[field_id] = setting["value"]
    return out


class _Reader:
    def __init__(self, doc: Mapping[str, Any], overrides: Mapping[str, str]) -> None:
        self.doc = doc
        self.globals = _globals(doc, overrides)
        self.config = _config(doc)
        self.problems: list[Problem] = []

    def value(self, f: Mapping[str, Any]) -> Any:
        field_id = f.get("id")
        if isinstance(field_id, str) and field_id in self.config:
            value = self.config[field_id]
        else:
            value = _raw_value(f)
        if isinstance(value, str) and "{" in value:
            whole = _REF.fullmatch(value.strip())
            if whole and whole.group(1) in self.globals:
                return self.globals[whole.group(1)]
            value = _REF.sub(lambda m: str(self.globals.get(m.group(1), m.group(0))), value)
        return value

    def values(self, comp: _Comp) -> dict[str, Any]:
        """A component's fields by name; a field's DALiuGE ``encoding`` and ``type`` are ``<name>/encoding``
        and ``<name>/type`` (as :func:`.dlgplans.params` gives them)."""
        values: dict[str, Any] = {}
        for f in comp.fields:
            name = f.get("name")
            if isinstance(name, str):
                values[name] = self.value(f)
                for meta in ("encoding", "type"):
                    if meta in f:
                        values[f"{name}/{meta}"] = f[meta]
        return values


def _ports(comp: _Comp) -> None:
    for f in comp.fields:
        usage = _PORT_USAGE.get(str(f.get("usage")))
        if usage is not None and isinstance(f.get("name"), str):
            comp.ports[str(f.get("id"))] = (f["name"], usage)


def _size(reader: _Reader, comp: _Comp, key: str) -> int:
    f = next((f for f in comp.fields if f.get("name") == key), None)
    if f is None:
        raise GraphError.one(comp.where, key, "missing required construct parameter")
    value = reader.value(f)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise GraphError.one(comp.where, key, f"must be an integer, not {value!r:.80}") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise GraphError.one(comp.where, key, f"must be an integer, not {value!r:.80}")
    if value < 1:
        raise GraphError.one(comp.where, key, f"must be at least 1, not {value}")
    return value


def _embedded(n: Mapping[str, Any], node_id: str, parent: str | None, side: str) -> _Comp | None:
    app_type = n.get(f"{side}ApplicationType")
    fields = [f for f in _list(n.get(f"{side}AppFields")) if isinstance(f, dict)]
    if app_type in (None, "", "None") and not fields:
        return None
    emb_id = node_id if side == "input" else f"{node_id}/out"
    name = n.get(f"{side}ApplicationName") or f"{n.get('name')} ({side} app)"
    comp = _Comp(
        emb_id,
        str(name),
        str(app_type),
        "Application",
        parent,
        fields,
        f"{side} application {name!r} of {_where(n.get('name'), node_id, n.get('category'))}",
    )
    _ports(comp)
    return comp


def _weight(values: Mapping[str, Any], key: str) -> float:
    try:
        w = float(values.get(key, 1))
    except (TypeError, ValueError, OverflowError):
        return 1.0
    return w if math.isfinite(w) and w >= 0 else 1.0


def parse_eagle(doc: Mapping[str, Any], overrides: Mapping[str, str]) -> LogicalGraph:
    """Read an EAGLE graph (decoded JSON) into the model; raise GraphError naming the node."""
    model = doc.get("modelData") or {}
    schema = model.get("schemaVersion") if isinstance(model, dict) else None
    if schema not in (None, "OJS"):
        raise GraphError.one(
            "graph",
            "modelData.schemaVersion",
            f'{schema!r} is not supported; re-save the graph with a current EAGLE (schema "OJS")',
        )
    raw_nodes = doc.get("nodeDataArray")
    if not isinstance(raw_nodes, list):
        raise GraphError.one("graph", "nodeDataArray", "must be a list of components")
    reader = _Reader(doc, overrides)
    comps: dict[str, _Comp] = {}
    embedded: dict[str, _Comp] = {}
    constructs: dict[str, Construct] = {}
    problems: list[Problem] = []
    for index, n in enumerate(raw_nodes):
        if not isinstance(n, dict):
            problems.append(Problem(f"nodeDataArray[{index}]", None, "must be an object"))
            continue
        node_id = str(n.get("id", n.get("key", "")))
        category = str(n.get("category", ""))
        where = _where(n.get("name"), node_id, category)
        if not node_id or re.search(r"[\s#]", node_id):
            problems.append(Problem(where, "id", "missing, or contains whitespace or '#'"))
            continue
        if category in _IGNORED or category in _GLOBALS:
            continue
        parent = n.get("parentId", n.get("group"))
        parent = str(parent) if parent not in (None, "") else None
        comp = _Comp(
            node_id,
            str(n.get("name") or ""),
            category,
            str(n.get("categoryType", "")),
            parent,
            [f for f in _list(n.get("fields")) if isinstance(f, dict)],
            where,
        )
        if category in _UNSUPPORTED_CONSTRUCTS:
            problems.append(Problem(where, "category", _UNSUPPORTED_CONSTRUCTS[category]))
            continue
        if category in _CONSTRUCTS:
            kind, size_key = _CONSTRUCTS[category]
            try:
                size = _size(reader, comp, size_key) if size_key else 1
            except GraphError as exc:
                problems += exc.problems
                continue
            constructs[node_id] = Construct(
                node_id, kind, where, parent, size, clamp=True, size_field=size_key
            )
            inner = parent if kind == "scatter" else node_id
            for side in ("input", "output"):
                emb = _embedded(n, node_id, inner, side)
                if emb is not None:
                    embedded[emb.id] = emb
            continue
        _ports(comp)
        comps[node_id] = comp
    if problems:
        raise GraphError(problems)
    return _finish(doc, reader, comps, embedded, constructs)


def _resolve(
    end: str, port_id: str, comps: dict[str, _Comp], embedded: dict[str, _Comp], where: str
) -> tuple[_Comp, str | None, Direction | None]:
    comp = comps.get(end)
    if comp is None:
        for emb_id in (end, f"{end}/out"):
            emb = embedded.get(emb_id)
            if emb is not None and port_id in emb.ports:
                comp = emb
                break
        else:
            if end in embedded or f"{end}/out" in embedded:
                raise GraphError.one(
                    where,
                    None,
                    f"port {port_id} is not a port of the applications embedded in construct {end}",
                )
            raise GraphError.one(
                where,
                None,
                f"dangling link: there is no component {end!r} (or it is a "
                "construct with no embedded application)",
            )
    port = comp.ports.get(port_id)
    return comp, (port[0] if port else None), (port[1] if port else None)


def _finish(
    doc: Mapping[str, Any],
    reader: _Reader,
    comps: dict[str, _Comp],
    embedded: dict[str, _Comp],
    constructs: dict[str, Construct],
) -> LogicalGraph:
    problems: list[Problem] = []
    raw_links = doc.get("linkDataArray") or []
    if not isinstance(raw_links, list):
        raise GraphError.one("graph", "linkDataArray", "must be a list of links")
    links: list[_RawLink] = []
    for index, raw in enumerate(raw_links):
        where = f"linkDataArray[{index}]"
        if not isinstance(raw, dict):
            problems.append(Problem(where, None, "must be an object"))
            continue
        try:
            src, sport, sdir = _resolve(
                str(raw.get("from")), str(raw.get("fromPort")), comps, embedded, where
            )
            dst, dport, ddir = _resolve(str(raw.get("to")), str(raw.get("toPort")), comps, embedded, where)
        except GraphError as exc:
            problems += exc.problems
            continue
        where = f"link {src.name or src.id!r} -> {dst.name or dst.id!r} ({where})"
        for comp, port, direction, wanted in ((src, sport, sdir, "out"), (dst, dport, ddir, "in")):
            if comp.category_type == "Data" or (comp.id not in comps and comp.id not in embedded):
                continue
            if port is None:
                problems.append(
                    Problem(
                        where,
                        "fromPort" if wanted == "out" else "toPort",
                        f"{comp.where} has no port with this id",
                    )
                )
            elif direction not in (wanted, "inout"):
                problems.append(
                    Problem(
                        where,
                        "fromPort" if wanted == "out" else "toPort",
                        f"port {port!r} of {comp.where} is an "
                        f"{'input' if direction == 'in' else 'output'} port; the link goes "
                        f"{'out of' if wanted == 'out' else 'into'} it",
                    )
                )
        aware = str(raw.get("loop_aware", "0")).strip().lower() in ("1", "true")
        links.append(_RawLink(src, sport, dst, dport, bool(raw.get("closesLoop")), aware, where))
    if problems:
        raise GraphError(problems)
    linked = {id(end) for link in links for end in (link.src, link.dst)}
    for emb in embedded.values():
        if id(emb) in linked:
            comps[emb.id] = emb
    return _build(reader, comps, constructs, links)


@dataclass(slots=True)
class _RawLink:
    src: _Comp
    sport: str | None
    dst: _Comp
    dport: str | None
    closes: bool
    loop_aware: bool
    where: str


def _is_data(comp: _Comp) -> bool:
    return comp.category_type == "Data"


def _build(
    reader: _Reader,
    comps: dict[str, _Comp],
    constructs: dict[str, Construct],
    links: list[_RawLink],
) -> LogicalGraph:
    _close_loops(reader, comps, constructs, links)
    used_in: dict[str, set[str]] = defaultdict(set)
    used_out: dict[str, dict[str, None]] = defaultdict(dict)  # an ordered set: ports in first-use order
    for link in links:
        src, sport, dst, dport = link.src, link.sport, link.dst, link.dport
        if not _is_data(dst) and dport is not None:
            used_in[dst.id].add(dport)
        if not _is_data(src) and sport is not None:
            used_out[src.id].setdefault(sport)
    problems: list[Problem] = []
    nodes: dict[str, Node] = {}
    renames: dict[str, dict[str, str]] = {}
    # DALiuGE's PickOne writes the rest of its sequence to outputs whose data is named rest_array.
    rest: dict[str, list[str]] = defaultdict(list)
    for link in links:
        if link.sport is not None and _is_data(link.dst) and link.dst.name == "rest_array":
            rest[link.src.id].append(link.sport)
    for comp in comps.values():
        try:
            node, rename = _node(reader, comp, used_in[comp.id], list(used_out[comp.id]), rest[comp.id])
        except GraphError as exc:
            problems += exc.problems
            continue
        nodes[comp.id] = node
        renames[comp.id] = rename
    if problems:
        raise GraphError(problems)
    out: list[Link] = []
    for link in links:
        src, dst = link.src, link.dst
        sp = renames[src.id].get(link.sport or "", link.sport) if not _is_data(src) else None
        dp = link.dport if not _is_data(dst) else None
        out.append(Link(src.id, dst.id, sp, dp, link.where, link.closes, link.loop_aware))
    name = _dict(reader.doc.get("modelData")).get("filePath")
    return LogicalGraph(
        str(name).rsplit(".", 1)[0] if name else None,
        nodes,
        constructs,
        out,
        "eagle",
        cycles_at_deploy=True,
    )


def _node(
    reader: _Reader, comp: _Comp, inputs: set[str], outputs: list[str], rest: list[str]
) -> tuple[Node, dict[str, str]]:
    values = reader.values(comp)
    dropclass = str(values.get("dropclass") or "")
    role: Role
    args = [
        (f["name"], reader.value(f), bool(f.get("positional")))
        for f in comp.fields
        if isinstance(f.get("name"), str)
        and f.get("parameterType") == "ApplicationArgument"
        and f.get("usage") in (None, "NoPort")
        and reader.value(f) not in (None, "")
    ]
    if _is_data(comp):
        mapped = dlgclasses.map_data(comp.category, dropclass, values, comp.where, args)
        role = "data"
        weight = _weight(values, "data_volume")
    elif comp.category_type in ("Application", "Control", "Service") or comp.category == "Branch":
        mapped = dlgclasses.map_app(
            comp.category, dropclass, values, args, outputs, comp.where, sorted(inputs)
        )
        role = "app"
        weight = _weight(values, "execution_time")
    else:
        # DALiuGE makes a drop of a component of any category; so does dropflow, which cannot run it.
        role = "app" if inputs or outputs else "data"
        problem = GraphError.one(
            comp.where,
            "category",
            f"unknown category {comp.category!r} (category type {comp.category_type or 'not given'!r})",
        )
        mapped = dlgclasses.foreign(role, comp.category, dropclass, comp.where, problem)
        weight = 1.0
    if mapped.invalid is not None:
        # A value no run could use makes the graph invalid (in DALiuGE too): refused, not left to deploy.
        raise mapped.invalid
    cls = spec_class(mapped.kind, role, comp.where, "category")
    # Fields outside the kind's bounds (a size below zero, ten million MPI ranks) are refused here too,
    # as in the other formats; a component that is only incomplete has become a foreign drop above.
    check_fields(cls, mapped.fields, comp.where)
    ports: dict[str, Direction] = {}
    rename = dict(mapped.rename)
    if role == "app":
        for port in inputs:
            ports[port] = "in"
        for port in outputs:
            # dropflow ports have one direction; DALiuGE's InputOutput ports may be used both ways.
            new = rename.get(port) or (f"{port}_out" if port in inputs else port)
            rename[port] = new
            ports[new] = "out"
        if mapped.kind == "pick_one":
            named = set(mapped.fields.get("rest_ports", ())) | set(rest)
            mapped.fields["rest_ports"] = sorted({rename.get(p, p) for p in named})
    node = Node(
        comp.id,
        role,
        mapped.kind,
        comp.where,
        comp.parent,
        comp.name or None,
        mapped.fields,
        ports,
        weight,
    )
    return node, rename


def _flag(reader: _Reader, comp: _Comp, name: str) -> bool:
    return str(reader.values(comp).get(name, "")).strip().lower() in ("1", "true")


def _last_port(comp: _Comp, directions: tuple[str, ...]) -> str | None:
    """The last declared port of ``comp`` in one of ``directions`` (the port DALiuGE gives unnamed links)."""
    names = [name for name, direction in comp.ports.values() if direction in directions]
    return names[-1] if names else None


def _close_loops(
    reader: _Reader, comps: dict[str, _Comp], constructs: dict[str, Construct], links: list[_RawLink]
) -> None:
    """Close every loop DALiuGE's way: its ``group_end`` nodes feed its ``group_start`` nodes' next iteration.

    A link the graph draws from a group_end to a group_start of the same loop is that loop-closing link, not
    a cycle; the others are added, into the start app's last input port (as DALiuGE does), or a port
    ``loop`` of its own if it has none. A ``closesLoop`` link is loop-carried too, wherever it goes.
    """
    # Every pass below is linear in the graph: members are grouped by loop once, links are read once.
    ends: dict[str, list[_Comp]] = defaultdict(list)
    starts: dict[str, list[_Comp]] = defaultdict(list)
    end_of: dict[str, str] = {}
    start_of: dict[str, str] = {}
    for c in comps.values():
        loop = constructs.get(c.parent) if c.parent is not None else None
        if loop is None or loop.kind != "loop":
            continue
        if _flag(reader, c, "group_end"):
            ends[loop.id].append(c)
            end_of[c.id] = loop.id
        if _flag(reader, c, "group_start"):
            starts[loop.id].append(c)
            start_of[c.id] = loop.id
    drawn: set[tuple[str, str]] = set()
    for link in links:
        loop_id = end_of.get(link.src.id)
        if loop_id is not None and start_of.get(link.dst.id) == loop_id:
            link.closes = True
            drawn.add((link.src.id, link.dst.id))
    for loop in constructs.values():
        if loop.kind != "loop" or not ends[loop.id] or not starts[loop.id]:
            continue
        loop_ends, loop_starts = ends[loop.id], starts[loop.id]
        data_pairs = sum(map(_is_data, loop_ends)) * sum(map(_is_data, loop_starts))
        pairs = len(loop_ends) * len(loop_starts) - data_pairs
        if pairs > _MAX_LOOP_LINKS:
            raise GraphError.one(
                loop.where,
                "group_end",
                f"{len(loop_ends)} group_end and {len(loop_starts)} group_start nodes would close the loop "
                f"with {pairs:,} links (at most {_MAX_LOOP_LINKS:,}); mark fewer of them",
            )
        # The port DALiuGE gives each end and start, found once per node (not once per pair).
        out_port = {
            c.id: None if _is_data(c) else (_last_port(c, ("out", "inout")) or "loop") for c in loop_ends
        }
        in_port = {
            c.id: None if _is_data(c) else (_last_port(c, ("in", "inout")) or "loop") for c in loop_starts
        }
        for end in loop_ends:
            for start in loop_starts:
                if (end.id, start.id) in drawn or (_is_data(end) and _is_data(start)):
                    continue
                where = f"{loop.where}: group_end {end.where} -> group_start {start.where}"
                links.append(_RawLink(end, out_port[end.id], start, in_port[start.id], True, False, where))
