"""The native physical graph format: decoding, encoding, and errors that name the drop and field.

Theory of operation
-------------------
A physical graph is ``{"format": "dropflow/physical-graph", "version": 1, "drops": [...]}`` (see
``docs/physical-graph.md`` and the JSON Schema in ``dropflow/schemas``). It is decoded by msgspec straight
into spec structs, in one pass with no intermediate dicts; the decoder's type is the tagged union of every
registered kind, rebuilt when a kind is registered. Decoding stops at the first problem; the error is then
explained by looking at the raw document again (only on that path), so that it names the drop by id, not
just by position. Checks that need the whole graph -- duplicate ids, links, cycles -- belong to the engine's
graph build, which sees every drop anyway.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import re
from collections.abc import Iterator, Sequence
from typing import Any, Union

import msgspec

from . import kinds
from .errors import GraphError, Problem
from .spec import DropSpec

__all__ = [
    "FORMAT",
    "NESTED_TOO_DEEPLY",
    "VERSION",
    "PhysicalGraph",
    "collection_paused",
    "decode_physical",
    "encode_physical",
    "json_position",
    "physical_schema",
]

FORMAT = "dropflow/physical-graph"
VERSION = 1
#: The refusal of JSON nested deeper than the decoder's recursion allows (about a thousand levels).
NESTED_TOO_DEEPLY = "nested too deeply: JSON arrays and objects may nest a few hundred levels at most"


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """No garbage collection meanwhile: around decoding JSON, which may recurse to the interpreter's limit.

    There, a collection would run objects' finalizers with no stack left; each would fail, printing
    "Exception ignored ... RecursionError" to stderr beside the refusal.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class PhysicalGraph(msgspec.Struct, frozen=True, kw_only=True):
    """A decoded physical graph."""

    drops: list[DropSpec]
    name: str | None = None
    format: str = FORMAT
    version: int = VERSION


class _Header(msgspec.Struct):
    format: Any = None
    version: Any = None


_decoders: dict[tuple[type[DropSpec], ...], msgspec.json.Decoder[Any]] = {}


def _decoder() -> msgspec.json.Decoder[Any]:
    types = kinds.spec_types()
    dec = _decoders.get(types)
    if dec is None:
        # A union built at run time from the registered kinds: the tagged union msgspec decodes by "kind".
        drop_union = Union[types]  # type: ignore[valid-type]  # noqa: UP007
        graph_type = msgspec.defstruct(
            "PhysicalGraphDoc",
            [("format", str), ("version", int), ("drops", list[drop_union]), ("name", str | None, None)],
            kw_only=True,
            forbid_unknown_fields=True,
        )
        dec = _decoders[types] = msgspec.json.Decoder(graph_type)
    return dec


def json_position(data: bytes, offset: int) -> str:
    """``line L, column C`` of a byte offset."""
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def _malformed(data: bytes, exc: msgspec.DecodeError) -> Problem:
    msg = str(exc)
    m = re.search(r"\(byte (\d+)\)$", msg)
    if m:
        msg = msg[: m.start()].strip() + " at " + json_position(data, int(m.group(1)))
    return Problem("graph", None, msg)


_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_DROP = re.compile(r"^\.drops\[(?P<index>\d+)\](?:\.(?P<field>[^\[.]+))?(?P<rest>.*)$")


def _explain(data: bytes, exc: msgspec.ValidationError) -> Problem:
    m = _PATH.match(str(exc))
    assert m is not None
    msg, path = m.group("msg"), m.group("path") or ""
    dm = _DROP.match(path)
    if dm is None:
        missing = re.match(r"Object (missing required|contains unknown) field `(.+)`", msg)
        if missing:
            return Problem("graph", missing.group(2), f"{missing.group(1)} field")
        return Problem("graph", path.lstrip(".") or None, msg)
    index = int(dm.group("index"))
    field = dm.group("field")
    raw: Any = None
    try:
        raw = msgspec.json.decode(data)["drops"][index]
    except Exception:  # only used to enrich the message
        raw = None
    drop_id = raw.get("id") if isinstance(raw, dict) else None
    where = f"drop {drop_id!r} (drops[{index}])" if isinstance(drop_id, str) else f"drops[{index}]"
    missing = re.match(r"Object missing required field `(.+)`", msg)
    unknown = re.match(r"Object contains unknown field `(.+)`", msg)
    if field == "kind" and msg.startswith("Invalid value"):
        kind = raw.get("kind") if isinstance(raw, dict) else None
        close = difflib.get_close_matches(str(kind), kinds.kind_names(), n=1)
        hint = (
            f"; did you mean {close[0]!r}?" if close else f" (known kinds: {', '.join(kinds.kind_names())})"
        )
        return Problem(where, "kind", f"unknown drop kind {kind!r}{hint}")
    if missing:
        return Problem(where, missing.group(1), "missing required field")
    if unknown:
        name = unknown.group(1)
        kind_name = raw.get("kind") if isinstance(raw, dict) else None
        return Problem(where, name, f"unknown field for a {kind_name} drop")
    rest = dm.group("rest").replace("[...]", "")
    if field is not None and rest:
        field = field + rest
    return Problem(where, field, msg)


def decode_physical(data: bytes, source: str | None = None) -> PhysicalGraph:
    """Decode a native physical graph, or raise :class:`GraphError` naming the drop and field."""
    with collection_paused():  # decoding, and re-reading to explain a refusal, may recurse to the limit
        return _decode_physical(data, source)


def _decode_physical(data: bytes, source: str | None) -> PhysicalGraph:
    try:
        doc = _decoder().decode(data)
    except RecursionError:
        raise GraphError.one("graph", None, NESTED_TOO_DEEPLY, source) from None
    except msgspec.DecodeError as exc:
        problem = _malformed(data, exc) if not isinstance(exc, msgspec.ValidationError) else None
        if problem is not None:
            raise GraphError([problem], source) from None
        header = _header(data)
        if header is not None:
            raise GraphError([header], source) from None
        assert isinstance(exc, msgspec.ValidationError)
        raise GraphError([_explain(data, exc)], source) from None
    if doc.format != FORMAT:
        raise GraphError.one("graph", "format", f"is {doc.format!r}, expected {FORMAT!r}", source)
    if doc.version != VERSION:
        raise GraphError.one(
            "graph",
            "version",
            f"{doc.version} is not supported (this dropflow reads version {VERSION})",
            source,
        )
    return PhysicalGraph(drops=doc.drops, name=doc.name, format=doc.format, version=doc.version)


def _header(data: bytes) -> Problem | None:
    """A problem with the document's shape or header, which explains a failed decode better."""
    try:
        header = msgspec.json.decode(data, type=_Header)
    except msgspec.ValidationError:
        return Problem("graph", None, f'expected a JSON object with "format": {FORMAT!r}')
    except (msgspec.DecodeError, RecursionError):
        return None  # malformed past the first invalid value: that value is the problem to report
    if header.format is None:
        return Problem("graph", "format", f'missing; a dropflow physical graph has "format": {FORMAT!r}')
    if header.format != FORMAT:
        return Problem("graph", "format", f"is {header.format!r}, expected {FORMAT!r}")
    if header.version != VERSION:
        return Problem(
            "graph", "version", f"{header.version!r} is not supported (this dropflow reads version {VERSION})"
        )
    return None


def physical_schema() -> dict[str, Any]:
    """The JSON Schema of the format, generated from the spec classes of every registered kind."""
    doc_type = _decoder().type
    schema = msgspec.json.schema(doc_type)
    top = schema["$defs"]["PhysicalGraphDoc"]
    top["title"] = "dropflow physical graph"
    top["description"] = "A list of drop specs placed on nodes; see docs/physical-graph.md."
    top["properties"]["format"] = {"const": FORMAT}
    top["properties"]["version"] = {"const": VERSION}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def encode_physical(drops: Sequence[DropSpec], name: str | None = None) -> bytes:
    """Encode drops as a native physical graph document."""
    doc: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    if name is not None:
        doc["name"] = name
    doc["drops"] = drops
    return msgspec.json.encode(doc)
