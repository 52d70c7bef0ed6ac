"""Typed, frozen drop specifications: what the native physical graph format decodes into.

Theory of operation
-------------------
A drop spec is a ``msgspec.Struct`` (frozen, slotted, not tracked by the cyclic GC). The JSON field ``kind``
is the struct's *tag*: decoding a graph picks the spec class of each drop from its kind, checks every field's
type and rejects unknown fields, all in C and in one pass, so a million drops decode in about a second and
cost under 100 bytes each. Every kind-specific parameter is a typed field of its kind's class; no drop ever
reads a raw dict of parameters.

There are two families. :class:`DataSpec` subclasses describe data drops (memory, shared memory, file,
directory, null, and DALiuGE's parameter sets). :class:`AppSpec` subclasses describe application drops;
an app declares its links as *named ports*: ``inputs`` and ``outputs`` map a port name to one data drop id,
or to a list of ids for a port that gathers or fans out. Data drops declare no links; the engine derives
producers and consumers from the apps.

The spec classes of application kinds live beside their implementation (``dropflow.drops.apps``); the kind
registry (:mod:`dropflow.drops.kinds`) collects them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import msgspec

__all__ = [
    "CODECS",
    "EXECUTORS",
    "AppSpec",
    "Codec",
    "DataSpec",
    "DataTraits",
    "DirectorySpec",
    "DropSpec",
    "Executor",
    "FileSpec",
    "MemorySpec",
    "NullSpec",
    "ParameterSetSpec",
    "Ports",
    "SharedMemorySpec",
    "port_drops",
]

Codec = Literal["pickle", "npy", "bytes", "utf-8", "json", "path"]
CODECS: tuple[str, ...] = ("pickle", "npy", "bytes", "utf-8", "json", "path")
Executor = Literal["inline", "thread", "process"]
EXECUTORS: tuple[str, ...] = ("inline", "thread", "process")

#: Port name -> a data drop id, or a list of ids (the argument is then a list).
Ports = dict[str, str | list[str]]

#: Retries of a failed app: a few, not a loop that never ends.
Retries = Annotated[int, msgspec.Meta(ge=0, le=1000)]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Seconds = Annotated[float, msgspec.Meta(gt=0.0)]
DropId = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class DropSpec(
    msgspec.Struct,
    frozen=True,
    gc=False,
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    tag_field="kind",
):
    """Fields common to every drop."""

    #: Unique id of the drop within its session.
    id: DropId
    #: Human-readable label (defaults to the id in displays).
    name: str | None = None
    #: Node and data island this drop is placed on (filled in by the translator's mapping step).
    node: str | None = None
    island: str | None = None

    CATEGORY: ClassVar[str] = ""

    @property
    def kind(self) -> str:
        tag = type(self).__struct_config__.tag
        assert isinstance(tag, str)
        return tag

    def label(self) -> str:
        return f"{self.kind} drop {self.id!r}"


@dataclass(frozen=True, slots=True)
class DataTraits:
    """What a data kind is, as the engine and the apps need to know it -- so that nothing outside a kind's
    own definition tests a kind by its name. One instance per kind, shared."""

    #: The kind's name (for messages).
    kind: str
    #: The bytes live at a filesystem path that programs on the node can open (``{port}`` in commands).
    path: bool = False
    #: That path is a directory, which the producer fills (made before the producer runs).
    directory: bool = False
    #: The path is on the node's host filesystem, so it can be bind-mounted into a container.
    mountable: bool = False
    #: Writes vanish and reads are empty (programs get /dev/null).
    discards: bool = False
    #: Readers see the bytes in place, without a copy (a mapping).
    zero_copy: bool = False
    #: A drop of this kind with no producer must already exist when the session starts.
    must_exist: bool = False
    #: Its value is small enough, and held by the engine, to be shown in summaries and returned.
    value: bool = False


class DataSpec(DropSpec, frozen=True, gc=False, kw_only=True):
    """A data drop: holds bytes written by its producers and read by its consumers."""

    CATEGORY: ClassVar[str] = "data"
    DEFAULT_CODEC: ClassVar[str] = "pickle"
    TRAITS: ClassVar[DataTraits] = DataTraits("data")

    #: Keep the drop after the session ends (files stay on disk, memory values stay with the session).
    persist: bool = False
    #: Delete the data as soon as every consumer has finished.
    expire_after_use: bool = False
    #: Delete the data this many seconds after it completed.
    lifespan: Seconds | None = None
    #: How the bytes encode a value, for Python function apps that read or write it.
    codec: Codec | None = None

    def effective_codec(self) -> str:
        return self.codec or self.DEFAULT_CODEC

    def initial(self) -> Any:
        """The value a drop of this kind holds before anything writes it (a root's content), or None."""
        return None


class MemorySpec(DataSpec, tag="memory", frozen=True, gc=False, kw_only=True):
    """Bytes held in the node manager's memory."""

    TRAITS: ClassVar[DataTraits] = DataTraits("memory", value=True)

    #: Initial content of a root drop (no producer), encoded with the drop's codec when the session starts.
    data: Any = None

    def initial(self) -> Any:
        return self.data


class SharedMemorySpec(DataSpec, tag="shm", frozen=True, gc=False, kw_only=True):
    """Bytes in a POSIX shared-memory segment that other processes map without copying."""

    DEFAULT_CODEC: ClassVar[str] = "npy"
    TRAITS: ClassVar[DataTraits] = DataTraits("shm", path=True, zero_copy=True)


class FileSpec(DataSpec, tag="file", frozen=True, gc=False, kw_only=True):
    """A file. Relative paths live in the session workspace; absolute ones must be allowed explicitly."""

    DEFAULT_CODEC: ClassVar[str] = "bytes"
    TRAITS: ClassVar[DataTraits] = DataTraits(
        "file", path=True, mountable=True, zero_copy=True, must_exist=True
    )

    path: str | None = None


class DirectorySpec(DataSpec, tag="directory", frozen=True, gc=False, kw_only=True):
    """A directory that its producer fills; consumers get its path."""

    DEFAULT_CODEC: ClassVar[str] = "path"
    TRAITS: ClassVar[DataTraits] = DataTraits(
        "directory", path=True, directory=True, mountable=True, must_exist=True
    )

    path: str | None = None


class NullSpec(DataSpec, tag="null", frozen=True, gc=False, kw_only=True):
    """Discards what is written; reads as empty. Used for pure ordering edges."""

    TRAITS: ClassVar[DataTraits] = DataTraits("null", discards=True)


class ParameterSetSpec(DataSpec, tag="parameter_set", frozen=True, gc=False, kw_only=True):
    """A small text file of parameters, written from the spec when the session starts (DALiuGE's
    ParameterSet): ``key=value`` lines (``YANDA``), ``key: value`` lines (``yaml``), or a JSON object."""

    DEFAULT_CODEC: ClassVar[str] = "utf-8"
    TRAITS: ClassVar[DataTraits] = DataTraits("parameter_set", path=True, mountable=True, zero_copy=True)

    parameters: dict[str, Any] = {}
    mode: Literal["YANDA", "yaml", "ini", "json"] = "yaml"

    def initial(self) -> Any:
        if self.mode == "json":
            return json.dumps(self.parameters)
        sep = ": " if self.mode == "yaml" else "="
        return "".join(f"{k}{sep}{v}\n" for k, v in self.parameters.items())


class AppSpec(DropSpec, frozen=True, gc=False, kw_only=True):
    """An application drop: runs when its inputs are complete and writes its outputs."""

    CATEGORY: ClassVar[str] = "app"
    #: Executor used when the spec names none.
    DEFAULT_EXECUTOR: ClassVar[str] = "thread"
    #: Executors this kind can run on.
    EXECUTORS: ClassVar[tuple[str, ...]] = EXECUTORS
    #: Runs code that the graph's author supplies in the engine's own interpreter (a Python function), as
    #: opposed to dropflow's own code or a separate program. A node's default executor (``--executor``;
    #: the daemons isolate user code in worker processes) applies to these kinds only.
    USER_CODE: ClassVar[bool] = False

    inputs: Ports = {}
    outputs: Ports = {}
    #: Where the app runs: in the owner loop (only for trivial apps), a thread, or a worker process.
    executor: Executor | None = None
    #: How many times a failed run is retried before the app is in ERROR.
    retries: Retries = 0
    #: Fraction of inputs that may be in ERROR (or missing) while the app still runs.
    error_tolerance: Fraction = 0.0
    #: Per-port codec overrides, e.g. ``{"image": "path"}`` to receive a file path instead of its bytes.
    codecs: dict[str, Codec] | None = None

    def effective_executor(self) -> str:
        return self.executor or self.DEFAULT_EXECUTOR


def port_drops(value: str | list[str]) -> list[str]:
    """The drop ids a port value names."""
    return [value] if isinstance(value, str) else value
