"""Drop kinds as the translator sees them: spec classes by name, and field checks done once per node.

Theory of operation
-------------------
A logical node names a dropflow kind and gives its spec fields. Rather than discovering bad fields after
unrolling a million copies, each node's fields are checked once, by converting them (with a placeholder
id) into the kind's spec class with msgspec: types, required fields and unknown fields are reported then,
naming the node and field. Unrolling later creates the copies with the class constructor, which does not
re-validate, so a copy costs one struct allocation.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import msgspec

from ..drops import kinds
from ..drops.errors import GraphError, Problem
from ..drops.spec import AppSpec, DataSpec, DropSpec

__all__ = ["RESERVED_FIELDS", "check_fields", "spec_class"]

#: Spec fields the translator fills in itself. (``node`` and ``island`` may be given: they pin every copy of
#: the node there, whatever the mapping says.)
RESERVED_FIELDS = frozenset({"id", "kind", "inputs", "outputs"})


def _classes() -> dict[str, type[DropSpec]]:
    out: dict[str, type[DropSpec]] = {}
    for cls in kinds.spec_types():
        tag = cls.__struct_config__.tag
        if isinstance(tag, str):
            out[tag] = cls
    return out


def spec_class(kind: str, role: str, where: str, field: str) -> type[DropSpec]:
    """The spec class of an app or data kind, or GraphError naming the unknown kind."""
    classes = _classes()
    base = AppSpec if role == "app" else DataSpec
    names = sorted(k for k, c in classes.items() if issubclass(c, base))
    cls = classes.get(kind)
    if cls is None or not issubclass(cls, base):
        close = difflib.get_close_matches(str(kind), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(names)})"
        raise GraphError.one(where, field, f"unknown {role} kind {kind!r}{hint}")
    return cls


_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def check_fields(cls: type[DropSpec], fields: dict[str, Any], where: str) -> None:
    """Raise GraphError unless ``fields`` make a valid spec of ``cls`` (naming the field at fault)."""
    reserved = RESERVED_FIELDS & fields.keys()
    if reserved:
        name = sorted(reserved)[0]
        raise GraphError.one(where, name, "is set by the translator, not in a logical node")
    try:
        msgspec.convert({"id": "x", **fields}, type=cls)
    except msgspec.ValidationError as exc:
        m = _PATH.match(str(exc))
        assert m is not None
        msg, path = m.group("msg"), (m.group("path") or "").lstrip(".")
        missing = re.match(r"Object missing required field `(.+)`", msg)
        unknown = re.match(r"Object contains unknown field `(.+)`", msg)
        if missing:
            raise GraphError.one(where, missing.group(1), "missing required field") from None
        if unknown:
            tag = cls.__struct_config__.tag
            raise GraphError.one(where, unknown.group(1), f"unknown field for a {tag} drop") from None
        raise GraphError([Problem(where, path or None, msg)]) from None
