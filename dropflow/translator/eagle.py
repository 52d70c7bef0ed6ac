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
_UNSUPPORTED_CONSTRUCTS = {"MKN": "the MKN construct"}
_IGNORED = frozenset({"Comment", "Description"})
_GLOBALS = frozenset({"GlobalVariable", "GlobalVariables"})
_PORT_USAGE: dict[str, Direction] = {"InputPort": "in", "OutputPort": "out", "InputOutput": "inout"}
_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: A loop closed DALiuGE's way links each of its group_end data to each group_start app: a few, not a square.
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
        return {f["name"]: self.value(f) for f in comp.fields if isinstance(f.get("name"), str)}


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
    except (TypeError, ValueError):
        return 1.0
    return w if w >= 0 else 1.0


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
            problems.append(
                Problem(
                    where, "category", f"unsupported: dropflow has no {_UNSUPPORTED_CONSTRUCTS[category]}"
                )
            )
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
    # (src comp, src port, dst comp, dst port, carried, where)
    links: list[tuple[_Comp, str | None, _Comp, str | None, bool, str]] = []
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
        links.append((src, sport, dst, dport, bool(raw.get("closesLoop")), where))
    if problems:
        raise GraphError(problems)
    linked = {id(end) for link in links for end in (link[0], link[2])}
    for emb in embedded.values():
        if id(emb) in linked:
            comps[emb.id] = emb
    return _build(reader, comps, constructs, links)


def _is_data(comp: _Comp) -> bool:
    return comp.category_type == "Data"


def _build(
    reader: _Reader,
    comps: dict[str, _Comp],
    constructs: dict[str, Construct],
    links: list[tuple[_Comp, str | None, _Comp, str | None, bool, str]],
) -> LogicalGraph:
    used_in: dict[str, set[str]] = defaultdict(set)
    used_out: dict[str, dict[str, None]] = defaultdict(dict)  # an ordered set: ports in first-use order
    for src, sport, dst, dport, _carried, _w in links:
        if not _is_data(dst) and dport is not None:
            used_in[dst.id].add(dport)
        if not _is_data(src) and sport is not None:
            used_out[src.id].setdefault(sport)
    problems: list[Problem] = []
    nodes: dict[str, Node] = {}
    renames: dict[str, dict[str, str]] = {}
    for comp in comps.values():
        try:
            node, rename = _node(reader, comp, used_in[comp.id], list(used_out[comp.id]))
        except GraphError as exc:
            problems += exc.problems
            continue
        nodes[comp.id] = node
        renames[comp.id] = rename
    if problems:
        raise GraphError(problems)
    out: list[Link] = []
    for src, sport, dst, dport, carried, where in links:
        sp = renames[src.id].get(sport or "", sport) if not _is_data(src) else None
        dp = dport if not _is_data(dst) else None
        out.append(Link(src.id, dst.id, sp, dp, where, carried))
    _close_loops(reader, comps, constructs, nodes, out)
    name = _dict(reader.doc.get("modelData")).get("filePath")
    return LogicalGraph(str(name).rsplit(".", 1)[0] if name else None, nodes, constructs, out, "eagle")


def _node(reader: _Reader, comp: _Comp, inputs: set[str], outputs: list[str]) -> tuple[Node, dict[str, str]]:
    values = reader.values(comp)
    dropclass = str(values.get("dropclass") or "")
    if _is_data(comp):
        mapped = dlgclasses.map_data(comp.category, dropclass, values, comp.where)
        role: Role = "data"
        weight = _weight(values, "data_volume")
    elif comp.category_type in ("Application", "Control", "Service") or comp.category == "Branch":
        args = [
            (f["name"], reader.value(f), bool(f.get("positional")))
            for f in comp.fields
            if isinstance(f.get("name"), str)
            and f.get("parameterType") == "ApplicationArgument"
            and f.get("usage") in (None, "NoPort")
            and reader.value(f) not in (None, "")
        ]
        mapped = dlgclasses.map_app(comp.category, dropclass, values, args, outputs, comp.where)
        role = "app"
        weight = _weight(values, "execution_time")
    else:
        raise GraphError.one(
            comp.where,
            "category",
            f"unknown category {comp.category!r} (category type {comp.category_type or 'not given'!r})",
        )
    cls = spec_class(mapped.kind, role, comp.where, "category")
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
    loop_start = role == "app" and str(values.get("group_start", "")).lower() in ("1", "true")
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
        loop_start,
    )
    return node, rename


def _close_loops(
    reader: _Reader,
    comps: dict[str, _Comp],
    constructs: dict[str, Construct],
    nodes: dict[str, Node],
    links: list[Link],
) -> None:
    """Close loops that have no ``closesLoop`` link DALiuGE's way: group_end data -> group_start apps."""
    closed = {nodes[link.dst].parent for link in links if link.carried}
    children: dict[str | None, list[Node]] = defaultdict(list)
    for n in nodes.values():
        children[n.parent].append(n)
    for loop in constructs.values():
        if loop.kind != "loop" or loop.id in closed:
            continue
        members = children[loop.id]
        ends = [
            n
            for n in members
            if n.role == "data"
            and str(reader.values(comps[n.id]).get("group_end", "")).lower() in ("1", "true")
        ]
        starts = [
            n for n in members if n.role == "app" and n.loop_start and n.kind not in ("python", "branch")
        ]
        if len(ends) * len(starts) > _MAX_LOOP_LINKS:
            raise GraphError.one(
                loop.where,
                "group_end",
                f"{len(ends)} group_end data nodes and {len(starts)} group_start apps would close the loop "
                f"with {len(ends) * len(starts):,} links (at most {_MAX_LOOP_LINKS:,}); mark fewer of them, "
                'or close the loop with "closesLoop" links',
            )
        for end in ends:
            for start in starts:
                start.ports["loop"] = "in"
                links.append(
                    Link(end.id, start.id, None, "loop", f"loop {loop.id} (group_end -> group_start)", True)
                )
