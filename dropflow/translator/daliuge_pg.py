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
Placement (``node``, ``island``) is kept. A PickOne's rest ports are found last, when every drop is known: as
in DALiuGE, they are the ports of its output drops *named* ``rest_array``.

Speed: a million drops are read in a few plain loops over the decoded list, with no copy of a drop's dict.
The first pass checks the oids and notes which drops are apps. Specs are made by a
:class:`~.dlgplans.SpecMaker`, which maps each *kind* of drop once. When only apps list links (as graphs
written for dropflow's harness and most hand-made ones do) and every link goes from an app to a data drop,
an app's ports are wholly given by its own lists, so they are worked out as its spec is made, in the same
pass (:func:`_own_ports`); any other graph -- links from data drops, app-to-app ordering edges, a link to
nothing -- goes through the edge dict (:class:`_Links`). Both give the same specs, in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from ..drops.apps.daliuge import PickOneSpec
from ..drops.errors import GraphError, Problem
from ..drops.spec import DropSpec, NullSpec, port_drops
from .dlgplans import Ports, SpecMaker

__all__ = ["parse_daliuge_pg", "read_daliuge_pg", "unwrap"]

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


def unwrap(doc: list[Any]) -> list[Any]:
    """The drop list of a physical graph, also when it comes named, as ``["name.graph", [drops...]]``."""
    if len(doc) == 2 and isinstance(doc[0], str) and isinstance(doc[1], list):
        return doc[1]
    return doc


def parse_daliuge_pg(doc: list[Any]) -> list[DropSpec]:
    """Drop specs of a DALiuGE physical graph (decoded JSON list)."""
    doc = unwrap(doc)
    specs = _from_own_links(doc)
    if specs is not None:
        return _rest_by_name(specs)
    drops = [d for d in doc if isinstance(d, dict) and "oid" in d]
    if not drops:
        raise GraphError.one("graph", None, 'the physical graph is empty: no element has an "oid"')
    return _rest_by_name(_from_edges(drops, _roles(drops)))


def _rest_by_name(specs: list[DropSpec]) -> list[DropSpec]:
    """DALiuGE's PickOne writes the rest of its sequence to each output *drop named* ``rest_array`` (and the
    picked value to every other one), whatever its port is called: its rest ports are those of such drops."""
    picks = [i for i, s in enumerate(specs) if type(s) is PickOneSpec]
    if not picks:
        return specs
    named = {s.id for s in specs if s.name == _REST and s.CATEGORY == "data"}
    for i in picks:
        pick = specs[i]
        assert isinstance(pick, PickOneSpec)
        rest = [p for p, ids in pick.outputs.items() if not named.isdisjoint(port_drops(ids))]
        if rest != pick.rest_ports:
            specs[i] = msgspec.structs.replace(pick, rest_ports=rest)
    return specs


_REST = "rest_array"


_ELEMENTS = msgspec.json.Decoder(list[msgspec.Raw])
_ELEMENT = msgspec.json.Decoder()


def read_daliuge_pg(data: bytes) -> list[DropSpec] | None:
    """Drop specs of a DALiuGE physical graph's JSON text, decoded a drop at a time, which keeps no more than
    one drop's dict alive at once; None for a graph :func:`parse_daliuge_pg` must read (the decoded list).

    None is also the answer for malformed JSON or bad drops: :func:`parse_daliuge_pg` then reports them.
    """
    try:
        raws = _ELEMENTS.decode(data)
        if len(raws) == 2 and bytes(raws[0])[:1] == b'"' and bytes(raws[1])[:1] == b"[":
            raws = _ELEMENTS.decode(raws[1])  # named: ["name.graph", [drops...]]
        specs = _from_own_links(map(_ELEMENT.decode, raws))
        return None if specs is None else _rest_by_name(specs)
    except (msgspec.DecodeError, RecursionError):
        return None


def _roles(drops: list[dict[str, Any]]) -> dict[str, bool]:
    """Whether each drop is an app, by oid; GraphError naming every bad or duplicate oid."""
    problems: list[Problem] = []
    is_app: dict[str, bool] = {}
    for index, d in enumerate(drops):
        oid = d["oid"]
        if not isinstance(oid, str) or not 0 < len(oid) <= 512:
            message = f"must be a string of 1-512 characters, not {oid!r:.80}"
            problems.append(Problem(f"[{index}]", "oid", message))
            continue
        if oid in is_app:
            problems.append(Problem(f"drop {oid!r} ([{index}])", "oid", "duplicate oid"))
        is_app[oid] = d.get("categoryType") == "Application" or d.get("type") == "app"
    if problems:
        raise GraphError(problems)
    return is_app


def _from_own_links(elements: Iterable[Any]) -> list[DropSpec] | None:
    """Specs of a graph whose links are all listed by apps, to data drops, in one pass; None for any other
    graph, or for one with a problem (:func:`_from_edges` reports every problem, in the graph's order).

    An app's ports are then given by its own lists, so its spec is made as soon as it is read; the links are
    checked at the end, when every drop is known.
    """
    maker = SpecMaker()
    specs: list[DropSpec] = []
    apps: set[str] = set()
    data: set[str] = set()
    #: Every oid an app links to: each must be a data drop of the graph.
    targets: list[str] = []
    no_ports: Ports = {}
    try:
        for d in elements:
            if not isinstance(d, dict) or "oid" not in d:
                continue
            oid = d["oid"]
            if type(oid) is not str or not 0 < len(oid) <= 512:
                return None
            get = d.get
            if get("categoryType") == "Application" or get("type") == "app":
                apps.add(oid)
                inputs, outputs, streaming = get("inputs"), get("outputs"), get("streamingInputs")
                if (
                    type(inputs) is list
                    and type(outputs) is list
                    and len(inputs) == 1
                    and len(outputs) == 1
                    and type(inputs[0]) is str
                    and type(outputs[0]) is str
                    and streaming is None
                ):
                    # The usual case: one unnamed input, one unnamed output.
                    targets += (inputs[0], outputs[0])
                    specs.append(maker.spec(oid, d, True, {"in": inputs[0]}, {"out": outputs[0]}))
                    continue
                ins = _own_ports(inputs, streaming, "in", targets)
                outs = _own_ports(outputs, None, "out", targets)
                if ins is None or outs is None:
                    return None
                specs.append(maker.spec(oid, d, True, ins, outs))
            else:
                data.add(oid)
                if ("consumers" in d or "streamingConsumers" in d or "producers" in d) and _lists_links(d):
                    return None
                specs.append(maker.spec(oid, d, False, no_ports, no_ports))
    except GraphError:
        return None
    if not specs or len(apps) + len(data) < len(specs) or not apps.isdisjoint(data):
        return None  # empty, or an oid given twice
    if not data.issuperset(targets):
        return None  # a link to nothing, or to an app: an ordering edge
    return specs


def _lists_links(d: Mapping[str, Any]) -> bool:
    """Whether a data drop lists links (or something that is not a list of none)."""
    for key in (*_CONSUMERS, *_PRODUCERS):
        value = d.get(key)
        if value is not None and value != []:
            return True
    return False


def _own_ports(first: Any, second: Any, unnamed: str, targets: list[str]) -> Ports | None:
    """An app's ports on one side (port -> oid, or oids), from its own link lists; each oid goes to
    ``targets``. None if a list is not what :func:`_entries` accepts.

    An edge listed twice counts once, on the first port named for it.
    """
    seen: dict[str, str | None] = {}
    for value in (first, second):
        if value is None:
            continue
        if type(value) is not list:
            return None
        for item in value:
            if type(item) is str:
                pairs: Any = ((item, None),)
            elif type(item) is dict:
                pairs = item.items()
            else:
                return None
            for data, port in pairs:
                if port is not None and type(port) is not str:
                    return None
                if seen.get(data) is None:
                    seen[data] = port
    targets += seen
    grouped: dict[str, list[str]] = {}
    for data, port in seen.items():
        grouped.setdefault(port or unnamed, []).append(data)
    return {p: v[0] if len(v) == 1 else v for p, v in grouped.items()}


def _from_edges(drops: list[dict[str, Any]], is_app: dict[str, bool]) -> list[DropSpec]:
    """Specs of any graph, its links merged from both sides in one dict keyed by the edge."""
    problems: list[Problem] = []
    links = _Links(is_app, problems)
    for d in drops:
        oid = d["oid"]
        try:
            if is_app[oid]:
                for key in _IN:
                    links.from_app(oid, d.get(key), True, key)
                for key in _OUT:
                    links.from_app(oid, d.get(key), False, key)
            else:
                for key in _CONSUMERS:
                    links.from_data(oid, d.get(key), True, key)
                for key in _PRODUCERS:
                    links.from_data(oid, d.get(key), False, key)
        except GraphError as exc:
            problems += exc.problems
    if problems:
        raise GraphError(problems)
    ports = links.ports()
    maker = SpecMaker()
    specs: list[DropSpec] = []
    no_ports: tuple[Ports, Ports] = ({}, {})
    for d in drops:
        oid = d["oid"]
        ins, outs = ports.get(oid, no_ports)
        try:
            specs.append(maker.spec(oid, d, is_app[oid], ins, outs))
        except GraphError as exc:
            problems += exc.problems
    if problems:
        raise GraphError(problems)
    specs += [NullSpec(id=event) for event in links.events if event not in is_app]
    return specs


class _Links:
    """Every edge of the graph once, keyed ``(app oid, data oid, is input)``, valued by its port name.

    Insertion order is the order the graph first lists an edge in, which is DALiuGE's port order; the first
    port name given for an edge wins over a later one, and over none.
    """

    def __init__(self, is_app: Mapping[str, bool], problems: list[Problem]) -> None:
        self.is_app = is_app
        self.edges: dict[tuple[str, str, bool], str | None] = {}
        #: Null data drops put between two directly linked apps, by oid.
        self.events: dict[str, None] = {}
        #: Where dangling links are reported, in the order they are found among other problems.
        self.problems = problems

    def _dangling(self, oid: str, other: str) -> None:
        message = f"dangling link to {other!r}, which is not in the graph"
        self.problems.append(Problem(f"drop {oid!r}", None, message))

    def from_app(self, app: str, value: Any, is_input: bool, field: str) -> None:
        """The links an app lists (inputs or outputs): to data drops, or to apps (ordering edges)."""
        edges = self.edges
        for data, port in _entries(value, f"drop {app!r}", field):
            other_is_app = self.is_app.get(data)
            if other_is_app is None:
                self._dangling(app, data)
            elif other_is_app:
                # DALiuGE links apps directly for pure ordering; dropflow puts a null data drop between them.
                # The port named is the listing app's (a branch's outputs are often apps).
                producer, consumer = (data, app) if is_input else (app, data)
                event = f"{producer}-{consumer}"
                self.events[event] = None
                for key in ((producer, event, False), (consumer, event, True)):
                    if edges.get(key) is None:
                        edges[key] = port if key[0] == app else None
            else:
                key = (app, data, is_input)
                if edges.get(key) is None:
                    edges[key] = port

    def from_data(self, data: str, value: Any, is_input: bool, field: str) -> None:
        """The links a data drop lists (consumers or producers)."""
        edges = self.edges
        for app, port in _entries(value, f"drop {data!r}", field):
            if app not in self.is_app:
                self._dangling(data, app)
                continue
            key = (app, data, is_input)
            if edges.get(key) is None:
                edges[key] = port

    def ports(self) -> dict[str, tuple[Ports, Ports]]:
        """Each app's input and output ports: port name -> data oid (or oids), in the graph's order."""
        grouped: dict[str, tuple[dict[str, list[str]], dict[str, list[str]]]] = {}
        for (app, data, is_input), port in self.edges.items():
            ins, outs = grouped.setdefault(app, ({}, {}))
            (ins if is_input else outs).setdefault(port or ("in" if is_input else "out"), []).append(data)
        return {
            app: (
                {p: v[0] if len(v) == 1 else v for p, v in ins.items()},
                {p: v[0] if len(v) == 1 else v for p, v in outs.items()},
            )
            for app, (ins, outs) in grouped.items()
        }
