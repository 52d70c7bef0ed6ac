"""DALiuGE physical graphs (a JSON list of drop specs) to dropflow drop specs.

Theory of operation
-------------------
Each element with an ``oid`` is a drop: ``categoryType`` (or the older ``type``: ``plain`` / ``app``) says
data or application, ``category`` and ``dropclass`` say which kind (mapped by :mod:`.dlgclasses`), and
parameters are flattened keys, ``applicationArgs`` and/or ``fields``. Elements without an oid (the trailing
``{}`` or ``{"rmode": ...}`` reproducibility record) are skipped; a graph may also come named, as DALiuGE's
translator hands it on: ``["name.graph", [drops...]]``. Links may be given from either side --
``inputs`` / ``outputs`` of an app, ``producers`` / ``consumers`` of a data drop, plus their streaming
variants -- each entry an oid or ``{oid: port}`` (an app listed among an app's links is an ordering edge,
which gets a null data drop); both sides are merged in one dict keyed by the edge, so
an edge listed twice counts once and no list is ever searched. An app's unnamed ports are ``in`` / ``out``.
Placement (``node``, ``island``) is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..drops.errors import GraphError, Problem
from ..drops.spec import DropSpec, NullSpec
from . import dlgclasses
from .specs import check_fields, spec_class

__all__ = ["parse_daliuge_pg", "unwrap"]

_IN = ("inputs", "streamingInputs")
_OUT = ("outputs",)
_CONSUMERS = ("consumers", "streamingConsumers")
_PRODUCERS = ("producers",)


def _entries(value: Any, where: str, field: str) -> list[tuple[str, str | None]]:
    """The links in one of a drop's link lists: each an oid, or ``{oid: port}``."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise GraphError.one(where, field, 'must be a list of oids (or of {"oid": "port"})')
    out: list[tuple[str, str | None]] = []
    for item in value:
        if isinstance(item, str):
            out.append((item, None))
        elif isinstance(item, dict):
            for k, v in item.items():
                if v is not None and not isinstance(v, str):
                    raise GraphError.one(where, field, f"the port of {k!r} must be a name, not {v!r:.80}")
                out.append((k, v))
        else:
            raise GraphError.one(where, field, f'entries are oids or {{"oid": "port"}}, not {item!r:.80}')
    return out


def _params(d: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[tuple[str, Any, bool]]]:
    values: dict[str, Any] = {k: v for k, v in d.items() if not isinstance(v, dict | list)}
    args: list[tuple[str, Any, bool]] = []
    fields = d.get("fields") or []
    if not isinstance(fields, list):
        raise GraphError.one(where, "fields", "must be a list of fields")
    for f in fields:
        if isinstance(f, dict) and isinstance(f.get("name"), str):
            values.setdefault(f["name"], f.get("value"))
    app_args = d.get("applicationArgs") or {}
    if not isinstance(app_args, dict):
        raise GraphError.one(where, "applicationArgs", "must be an object of name: argument")
    for name, arg in app_args.items():
        value = arg.get("value") if isinstance(arg, dict) else arg
        values[name] = value
        usage = arg.get("usage", "NoPort") if isinstance(arg, dict) else "NoPort"
        if usage == "NoPort" and value not in (None, ""):
            args.append((name, value, bool(arg.get("positional")) if isinstance(arg, dict) else False))
    return values, args


def _is_app(d: Mapping[str, Any]) -> bool:
    return d.get("categoryType") == "Application" or d.get("type") == "app"


def unwrap(doc: list[Any]) -> list[Any]:
    """The drop list of a physical graph, also when it comes named, as ``["name.graph", [drops...]]``."""
    if len(doc) == 2 and isinstance(doc[0], str) and isinstance(doc[1], list):
        return doc[1]
    return doc


def parse_daliuge_pg(doc: list[Any]) -> list[DropSpec]:
    """Drop specs of a DALiuGE physical graph (decoded JSON list)."""
    doc = unwrap(doc)
    drops = [d for d in doc if isinstance(d, dict) and "oid" in d]
    if not drops:
        raise GraphError.one("graph", None, 'the physical graph is empty: no element has an "oid"')
    problems: list[Problem] = []
    by_oid: dict[str, dict[str, Any]] = {}
    for index, d in enumerate(drops):
        oid = d["oid"]
        if not isinstance(oid, str) or not 0 < len(oid) <= 512:
            message = f"must be a string of 1-512 characters, not {oid!r:.80}"
            problems.append(Problem(f"[{index}]", "oid", message))
            continue
        if oid in by_oid:
            problems.append(Problem(f"drop {oid!r} ([{index}])", "oid", "duplicate oid"))
        by_oid[oid] = d
    if problems:
        raise GraphError(problems)
    # (app oid, data oid, is input) -> port name; insertion order keeps DALiuGE's port order.
    edges: dict[tuple[str, str, bool], str | None] = {}
    events: dict[str, None] = {}

    def add(app: str, data: str, is_input: bool, port: str | None, where: str) -> None:
        if data not in by_oid or app not in by_oid:
            missing = data if data not in by_oid else app
            problems.append(Problem(where, None, f"dangling link to {missing!r}, which is not in the graph"))
            return
        if _is_app(by_oid[data]):
            # DALiuGE links apps directly for pure ordering; dropflow puts a null data drop between them.
            producer, consumer = (data, app) if is_input else (app, data)
            event = f"{producer}-{consumer}"
            events[event] = None
            edges.setdefault((producer, event, False), None)
            edges.setdefault((consumer, event, True), None)
            return
        key = (app, data, is_input)
        if edges.get(key) is None:
            edges[key] = port

    for oid, d in by_oid.items():
        where = f"drop {oid!r}"
        try:
            if _is_app(d):
                for key in _IN:
                    for other, port in _entries(d.get(key), where, key):
                        add(oid, other, True, port, where)
                for key in _OUT:
                    for other, port in _entries(d.get(key), where, key):
                        add(oid, other, False, port, where)
            else:
                for key in _CONSUMERS:
                    for other, port in _entries(d.get(key), where, key):
                        add(other, oid, True, port, where)
                for key in _PRODUCERS:
                    for other, port in _entries(d.get(key), where, key):
                        add(other, oid, False, port, where)
        except GraphError as exc:
            problems += exc.problems
    if problems:
        raise GraphError(problems)
    ports: dict[str, tuple[dict[str, list[str]], dict[str, list[str]]]] = {}
    for (app, data, is_input), port in edges.items():
        ins, outs = ports.setdefault(app, ({}, {}))
        (ins if is_input else outs).setdefault(port or ("in" if is_input else "out"), []).append(data)
    specs: list[DropSpec] = []
    for oid, d in by_oid.items():
        try:
            specs.append(_spec(oid, d, ports.get(oid, ({}, {}))))
        except GraphError as exc:
            problems += exc.problems
    if problems:
        raise GraphError(problems)
    specs += [NullSpec(id=event) for event in events if event not in by_oid]
    return specs


def _spec(
    oid: str, d: Mapping[str, Any], ports: tuple[dict[str, list[str]], dict[str, list[str]]]
) -> DropSpec:
    category = str(d.get("category") or d.get("storage") or "")
    dropclass = str(d.get("dropclass") or d.get("app") or "")
    where = f"drop {oid!r} ({category or dropclass})"
    values, args = _params(d, where)
    ins, outs = ports
    if _is_app(d):
        mapped = dlgclasses.map_app(category, dropclass, values, args, list(outs), where, list(ins))
        role = "app"
    else:
        mapped = dlgclasses.map_data(category, dropclass, values, where, args)
        role = "data"
    if mapped.invalid is not None:  # a value no run could use: an invalid graph, as in an EAGLE graph
        raise mapped.invalid
    cls = spec_class(mapped.kind, role, where, "category")
    check_fields(cls, mapped.fields, where)
    common: dict[str, Any] = {"id": oid, **mapped.fields}
    for key in ("name", "node", "island"):
        if isinstance(d.get(key), str) and d[key]:
            common[key] = d[key]
    if role == "app":
        common["inputs"] = {p: v[0] if len(v) == 1 else v for p, v in ins.items()}
        common["outputs"] = {mapped.rename.get(p, p): v[0] if len(v) == 1 else v for p, v in outs.items()}
    return cls(**common)
