"""DALiuGE drops made into specs, each kind of drop mapped once: the physical-graph importer's inner loop.

Theory of operation
-------------------
A physical graph of a million drops is mostly a few components repeated, so mapping every drop on its own
(:func:`dlgclasses.map_app` / ``map_data``, the spec class, its field check: tens of microseconds) would
cost far more than the rest of the import. A :class:`SpecMaker` maps a drop the first time its kind is
seen and makes the next drops of that kind from the result, a *plan* (spec class, fields, port renames),
by one constructor call.

What is "the same kind" is decided by what the mapping read, not by a list kept beside the mappers. A
mapping is a deterministic function of the drop's category and dropclass, its application arguments, its
port names, and the parameters it looks up by name. The parameters are handed to it behind a
:class:`_Reads` mapping that records every name looked up (present or not). A plan is then filed under
the drop's category, class, arguments and ports (the *class key*) and, within that, under the values of
the names that were read; a later drop of the same class key whose parameters agree on those names would
make the mapping run the same steps to the same result, so it takes the plan. A mapping that reads
different names for different values (an MPI app tries ``num_of_procs``, then ``maxprocs``) simply files
its plans under more than one list of names. One that walks all the parameters, or sees a value with no
exact key (a list, an object), is not filed at all: the drop is mapped on its own -- unless the walk (through
``items()``) only makes fields that the mapping declares per drop (``Mapped.per_drop``: the values a
PyFuncApp's function may take by name), which are then made again for each drop that shares the plan.

The mapping is made with a stand-in for the drop's place (``drop 'x' (Class)``); if that stand-in shows
up in the result (a foreign component records its origin) or the mapping fails, the plan says so and each
such drop is mapped on its own, with its own place in the result and in any error.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from msgspec.structs import replace

from ..drops.errors import GraphError
from ..drops.spec import DropSpec
from . import dlgclasses
from .specs import check_fields, spec_class

__all__ = ["Params", "SpecMaker", "params"]

#: A drop's application arguments that are not ports: (name, value, positional).
Args = list[tuple[str, Any, bool]]
#: A port name -> the oid, or oids, on it.
Ports = dict[str, Any]

#: Stands for the drop's place while a shared plan is made; found in the result, the plan is not shared.
_WHERE = "dropflow0where0b7e41c9"
#: Separates an app's input port names from its output port names in a class key.
_PORTS = object()


class _Absent:
    """The value of a parameter a drop does not have (None is a value a drop can have)."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()
#: A value with no exact key: the drop is mapped on its own.
_UNKEYED = object()


def _key_part(value: Any) -> Any:
    """A parameter value as part of a lookup key, telling apart what a mapping may tell apart.

    A string, an int or None stands for itself; a float or a bool carries its type and text, so that
    ``1``, ``1.0``, ``True`` and ``0.0`` / ``-0.0`` map apart; a list or an object is not keyed.
    """
    kind = type(value)
    if kind is str or kind is int or value is None or value is ABSENT:
        return value
    if kind is float or kind is bool:
        return (kind.__name__, repr(value))
    return _UNKEYED


@dataclass(slots=True)
class Params:
    """A drop's parameters as the mappers see them: by name (see :func:`params`), and its arguments."""

    #: The drop dict itself when it has no ``fields`` or ``applicationArgs`` (its flat keys are the
    #: parameters), else the merged parameters.
    values: Mapping[str, Any]
    args: Args
    flat: bool

    def get(self, name: str) -> Any:
        value = self.values.get(name, ABSENT)
        if self.flat and isinstance(value, dict | list):
            return ABSENT  # a flat key holding a list or object is not a parameter
        return value

    def mapping(self) -> Mapping[str, Any]:
        """The parameters as one dict (what the mappers get)."""
        if self.flat:
            return {k: v for k, v in self.values.items() if not isinstance(v, dict | list)}
        return self.values


def params(d: Mapping[str, Any], where: str) -> Params:
    """A drop's parameters: flat keys, then ``fields`` (where not already set), then ``applicationArgs``.

    Application arguments that are not ports and have a value are also the drop's arguments. The DALiuGE
    ``encoding`` and ``type`` of an application argument (else of a field, else of a ``componentParams``
    entry) are parameters too, named ``<arg>/encoding`` and ``<arg>/type`` (no DALiuGE name holds a
    slash), so that a mapping reads them as it reads any other, and plans are filed under them. Raises
    GraphError if ``fields`` or ``applicationArgs`` has the wrong shape.
    """
    fields = d.get("fields")
    app_args = d.get("applicationArgs")
    if fields is None and app_args is None:
        return Params(d, [], True)
    values: dict[str, Any] = {k: v for k, v in d.items() if not isinstance(v, dict | list)}
    args: Args = []
    fields = fields or []
    if not isinstance(fields, list):
        raise GraphError.one(where, "fields", "must be a list of fields")
    for f in fields:
        if isinstance(f, dict) and isinstance(f.get("name"), str):
            values.setdefault(f["name"], f.get("value"))
            _meta(values, f["name"], f)
    component = d.get("componentParams")
    if isinstance(component, dict):
        for name, f in component.items():
            if isinstance(f, dict):
                _meta(values, name, f)
    app_args = app_args or {}
    if not isinstance(app_args, dict):
        raise GraphError.one(where, "applicationArgs", "must be an object of name: argument")
    for name, arg in app_args.items():
        if not isinstance(arg, dict):
            values[name] = arg
            if arg not in (None, ""):
                args.append((name, arg, False))
            continue
        value = arg.get("value")
        values[name] = value
        _meta(values, name, arg, True)
        if arg.get("usage", "NoPort") == "NoPort" and value not in (None, ""):
            args.append((name, value, bool(arg.get("positional"))))
    return Params(values, args, False)


def _meta(values: dict[str, Any], name: str, arg: Mapping[str, Any], wins: bool = False) -> None:
    """An argument's ``encoding`` and ``type`` as parameters ``<name>/encoding`` and ``<name>/type``; those of
    an application argument (``wins``) win over a field's or a component parameter's."""
    for meta in ("encoding", "type"):
        if meta in arg:
            if wins:
                values[f"{name}/{meta}"] = arg[meta]
            else:
                values.setdefault(f"{name}/{meta}", arg[meta])


class _Reads(Mapping[str, Any]):
    """A drop's parameters, noting each name a mapping looks up, and whether it walked them all."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values
        self.names: dict[str, None] = {}
        self.everything = False
        #: Walked through ``items()``: for fields the mapping makes per drop (``Mapped.per_drop``).
        self.walked = False

    def __getitem__(self, name: str) -> Any:
        self.names[name] = None
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        self.everything = True
        return iter(self._values)

    def __len__(self) -> int:
        self.everything = True
        return len(self._values)

    def items(self) -> ItemsView[str, Any]:
        self.walked = True
        return self._values.items()


@dataclass(slots=True)
class _Plan:
    """A kind of drop: its spec with every field but the drop's own (id, place, ports), and port renames."""

    template: DropSpec | None
    rename: dict[str, str]
    #: Fields made for each drop from all its parameters (see ``Mapped.per_drop``).
    per_drop: dict[str, Any]


#: A kind of drop whose mapping names the drop, or fails: each such drop is mapped on its own.
_OWN = _Plan(None, {}, {})


class _Table:
    """The plans of one class key filed under the values of the names their mappings read."""

    __slots__ = ("absent", "name_set", "names", "plans")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.name_set = frozenset(names)
        #: The values of a drop that has none of the names.
        self.absent = (ABSENT,) * len(names)
        self.plans: dict[tuple[Any, ...], _Plan] = {}

    def values(self, p: Params) -> tuple[Any, ...]:
        """The key of a drop's parameters in this table."""
        return tuple([_key_part(p.get(n)) for n in self.names])


class SpecMaker:
    """Specs of DALiuGE drops, each kind mapped once (see the module docstring). One per graph."""

    def __init__(self) -> None:
        #: class key -> the tables of plans of that key, one per list of names read.
        self._plans: dict[Any, list[_Table]] = {}
        #: class key -> (the names read, the plan of a drop that has none of them): the first such plan.
        self._quick: dict[Any, tuple[frozenset[str], _Plan]] = {}
        #: One string object for each distinct node, island and name.
        self._strings: dict[str, str] = {}

    def spec(self, oid: str, d: Mapping[str, Any], is_app: bool, ins: Ports, outs: Ports) -> DropSpec:
        """The spec of drop ``oid``: ``d`` is its DALiuGE dict, ``ins`` / ``outs`` its ports if an app.

        Raises GraphError naming the drop if it cannot be mapped.
        """
        get = d.get
        category = get("category") or get("storage") or ""
        if type(category) is not str:
            category = str(category)
        dropclass = get("dropclass") or get("app") or ""
        if type(dropclass) is not str:
            dropclass = str(dropclass)
        if get("fields") is None and get("applicationArgs") is None:
            # Parameters are the flat keys; the arguments, none.
            key: Any = (is_app, category, dropclass, *ins, _PORTS, *outs) if is_app else (category, dropclass)
            quick = self._quick.get(key)
            if quick is not None and quick[0].isdisjoint(d):
                plan = quick[1]  # the usual case: none of the names its kind's mapping read
            else:
                plan = self._find(key, d, None, is_app, category, dropclass, ins, outs)
        else:
            key, p = self._key(d, is_app, category, dropclass, ins, outs)
            plan = self._find(key, d, p, is_app, category, dropclass, ins, outs)
        template: Any = plan.template
        if template is None:
            where = f"drop {oid!r} ({category or dropclass})"
            plan = self._plan(d, params(d, where), is_app, category, dropclass, ins, outs, where)[0]
            template = plan.template
        elif plan.per_drop:
            values = params(d, _WHERE).mapping()  # (read once already, by _key: no error now)
            template = replace(template, **{name: make(values) for name, make in plan.per_drop.items()})
        strings = self._strings
        name, node, island = get("name"), get("node"), get("island")
        # A place the drop does not give (or gives as other than a name) is the template's.
        name = strings.setdefault(name, name) if name and isinstance(name, str) else template.name
        node = strings.setdefault(node, node) if node and isinstance(node, str) else template.node
        island = strings.setdefault(island, island) if island and isinstance(island, str) else template.island
        if not is_app:
            spec: DropSpec = replace(template, id=oid, name=name, node=node, island=island)
            return spec
        rename = plan.rename
        if rename:
            outs = {rename.get(port, port): v for port, v in outs.items()}
        spec = replace(template, id=oid, name=name, node=node, island=island, inputs=ins, outputs=outs)
        return spec

    @staticmethod
    def _key(
        d: Mapping[str, Any], is_app: bool, category: str, dropclass: str, ins: Ports, outs: Ports
    ) -> tuple[Any, Params | None]:
        """The class key and parameters of a drop with ``fields`` or ``applicationArgs``.

        The key is None if the drop is to be mapped on its own.
        """
        try:
            p = params(d, _WHERE)
        except GraphError:
            return None, None  # mapped on its own, which reports the problem with the drop's place
        args = []
        for name, value, positional in p.args:
            part = _key_part(value)
            if part is _UNKEYED:
                return None, None
            args.append((name, part, positional))
        return (is_app, category, dropclass, tuple(args), tuple(ins), tuple(outs)), p

    def _find(
        self,
        key: Any,
        d: Mapping[str, Any],
        p: Params | None,
        is_app: bool,
        category: str,
        dropclass: str,
        ins: Ports,
        outs: Ports,
    ) -> _Plan:
        """The plan of the drop's kind (``p``: its parameters, None when they are its flat keys)."""
        if key is None:
            return _OWN
        for table in self._plans.get(key, ()):
            if p is None and table.name_set.isdisjoint(d):
                plan = table.plans.get(table.absent)
            else:
                plan = table.plans.get(table.values(p or Params(d, [], True)))
            if plan is not None:
                return plan
        return self._first(key, d, p, is_app, category, dropclass, ins, outs)

    def _first(
        self,
        key: Any,
        d: Mapping[str, Any],
        p: Params | None,
        is_app: bool,
        category: str,
        dropclass: str,
        ins: Ports,
        outs: Ports,
    ) -> _Plan:
        """Map the first drop of a kind, and file the plan under what the mapping read, if it can be."""
        if key is None:
            return _OWN
        if p is None:
            p = Params(d, [], True)
        plan, names, everything = self._plan(d, p, is_app, category, dropclass, ins, outs, _WHERE)
        if everything:
            return plan  # good for this drop only
        tables = self._plans.setdefault(key, [])
        table = next((t for t in tables if t.names == names), None)
        if table is None:
            table = _Table(names)
            tables.append(table)
        values = table.values(p)
        if _UNKEYED not in values:
            table.plans[values] = plan
            if p.flat and values == table.absent and key not in self._quick:
                self._quick[key] = (table.name_set, plan)
        return plan

    @staticmethod
    def _plan(
        d: Mapping[str, Any],
        p: Params,
        is_app: bool,
        category: str,
        dropclass: str,
        ins: Ports,
        outs: Ports,
        where: str,
    ) -> tuple[_Plan, tuple[str, ...], bool]:
        """Map one drop: its plan, the parameter names the mapping read, and whether it read them all.

        With the stand-in place, the plan is :data:`_OWN` if the mapping fails or its result holds the place.
        """
        reads = _Reads(p.mapping())
        try:
            if is_app:
                mapped = dlgclasses.map_app(category, dropclass, reads, p.args, list(outs), where, list(ins))
                role = "app"
            else:
                mapped = dlgclasses.map_data(category, dropclass, reads, where, p.args)
                role = "data"
            if mapped.invalid is not None:  # a value no run could use: an invalid graph, as in an EAGLE graph
                raise mapped.invalid
            cls = spec_class(mapped.kind, role, where, "category")
            check_fields(cls, mapped.fields, where)
        except GraphError:
            if where != _WHERE:
                raise
            return _OWN, tuple(reads.names), reads.everything
        # A walk over every parameter is read again for each drop when it only makes per-drop fields.
        everything = reads.everything or (reads.walked and not mapped.per_drop)
        if where == _WHERE and _WHERE in repr((mapped.fields, mapped.rename)):
            return _OWN, tuple(reads.names), everything
        plan = _Plan(cls(id="", **mapped.fields), mapped.rename, mapped.per_drop if where == _WHERE else {})
        return plan, tuple(reads.names), everything
