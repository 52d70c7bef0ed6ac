"""How a value of a pipeline is held: the data drop behind a handle, and what type hints say about it.

Theory of operation
-------------------
Every value that flows between two calls of a pipeline is a data drop. The API picks one unless told: a
Python function's result lives in memory, encoded by what its return annotation says (``int``, ``list``,
``dict`` ... as JSON, ``str`` as UTF-8, ``bytes`` as they are, a numpy array as ``.npy``, anything else
pickled); a shell command's declared outputs are files. :class:`Data` says otherwise -- the kind (``shm``
for a large array that worker processes map without a copy), the codec, whether it persists, when it
expires, where it is placed -- given as an option (``returns=shm()``), as a port (``out=file("x.gz")``) or in
a type hint (``-> Annotated[np.ndarray, shm()]``, or the alias :data:`SharedArray`).

Nothing here builds graphs: :mod:`.graph` reads these decisions and writes them into the logical graph.
"""

from __future__ import annotations

import inspect
import os
import types
import typing
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal, Union

import numpy as np

from ..drops.spec import Codec

__all__ = [
    "Data",
    "Kind",
    "SharedArray",
    "codec_for",
    "data_hint",
    "directory",
    "file",
    "is_path_hint",
    "memory",
    "shm",
]

Kind = Literal["memory", "shm", "file", "directory", "null"]


@dataclass(frozen=True, slots=True)
class Data:
    """A data drop's kind and lifecycle, as the pipeline's author wants them."""

    kind: Kind = "memory"
    #: How the bytes encode the value for Python functions (None: from the type hint, else the kind's).
    codec: Codec | None = None
    #: Files and directories: where (relative paths are inside the session's workspace).
    path: str | None = None
    #: Keep after the session (None: the API decides -- results that nothing consumes are kept).
    persist: bool | None = None
    #: Delete as soon as every consumer has finished.
    expire_after_use: bool = False
    #: Delete this many seconds after completing.
    lifespan: float | None = None
    #: A label for displays; also the drop's id when given to an output.
    name: str | None = None
    #: Placement: the node (and island) that holds the drop (the translator maps the rest).
    node: str | None = None
    island: str | None = None

    def fields(self) -> dict[str, Any]:
        """The spec fields of the logical data node (without its id)."""
        out: dict[str, Any] = {}
        if self.codec is not None:
            out["codec"] = self.codec
        if self.path is not None:
            out["path"] = self.path
        if self.persist:
            out["persist"] = True
        if self.expire_after_use:
            out["expire_after_use"] = True
        if self.lifespan is not None:
            out["lifespan"] = self.lifespan
        for key in ("node", "island"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def with_codec(self, codec: Codec | None) -> Data:
        return self if self.codec is not None or codec is None else replace(self, codec=codec)


def memory(
    *,
    codec: Codec | None = None,
    persist: bool | None = None,
    expire_after_use: bool = False,
    lifespan: float | None = None,
    name: str | None = None,
    node: str | None = None,
    island: str | None = None,
) -> Data:
    """Bytes in the memory of the node manager that holds the drop (the default for Python values)."""
    return Data("memory", codec, None, persist, expire_after_use, lifespan, name, node, island)


def shm(
    *,
    codec: Codec | None = None,
    expire_after_use: bool = False,
    lifespan: float | None = None,
    name: str | None = None,
    node: str | None = None,
    island: str | None = None,
) -> Data:
    """POSIX shared memory: worker processes map a numpy array without copying it (cannot persist)."""
    return Data("shm", codec, None, False, expire_after_use, lifespan, name, node, island)


def file(
    path: str | None = None,
    *,
    codec: Codec | None = None,
    persist: bool | None = None,
    expire_after_use: bool = False,
    lifespan: float | None = None,
    name: str | None = None,
    node: str | None = None,
    island: str | None = None,
) -> Data:
    """A file; a relative ``path`` (or none: named after the drop) is inside the session's workspace."""
    return Data("file", codec, path, persist, expire_after_use, lifespan, name, node, island)


def directory(
    path: str | None = None,
    *,
    persist: bool | None = None,
    expire_after_use: bool = False,
    lifespan: float | None = None,
    name: str | None = None,
    node: str | None = None,
    island: str | None = None,
) -> Data:
    """A directory that its producer fills; consumers get its path."""
    return Data("directory", None, path, persist, expire_after_use, lifespan, name, node, island)


#: A numpy array in shared memory: ``def make(n: int) -> SharedArray: ...``.
SharedArray = Annotated[np.ndarray, Data("shm")]

_JSON_TYPES: tuple[Any, ...] = (int, float, bool, str, dict, list, type(None))


def _strip(hint: Any) -> tuple[Any, Data | None]:
    """The type inside ``Annotated[...]`` and the :class:`Data` it carries, if any."""
    if typing.get_origin(hint) is Annotated:
        base, *extra = typing.get_args(hint)
        data = next((e for e in extra if isinstance(e, Data)), None)
        return base, data
    return hint, None


def _json(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint in _JSON_TYPES:
        return True
    if origin is list:
        return all(_json(a) for a in typing.get_args(hint))
    if origin is dict:
        args = typing.get_args(hint)
        return not args or (args[0] is str and _json(args[1]))
    if origin in (Union, types.UnionType):
        return all(_json(a) for a in typing.get_args(hint))
    return False


def codec_for(hint: Any) -> Codec | None:
    """The codec a return annotation suggests (None: no hint, the kind's default).

    >>> codec_for(int), codec_for(dict[str, float]), codec_for(str), codec_for(np.ndarray), codec_for(set)
    ('json', 'json', 'utf-8', 'npy', 'pickle')
    """
    hint, _ = _strip(hint)
    if hint is None or hint is typing.Any or hint is inspect.Parameter.empty:
        return None
    if isinstance(hint, str):
        return None  # an unresolved forward reference says nothing we can trust
    if hint is str:
        return "utf-8"
    if hint is bytes:
        return "bytes"
    if hint is np.ndarray or typing.get_origin(hint) is np.ndarray:
        return "npy"
    if _json(hint):
        return "json"
    return "pickle"


def data_hint(hint: Any) -> Data | None:
    """The :class:`Data` a type hint carries (``Annotated[T, shm()]``), with the codec T suggests."""
    base, data = _strip(hint)
    if data is None:
        return None
    return data.with_codec(codec_for(base))


def is_path_hint(hint: Any) -> bool:
    """Does a parameter's annotation ask for a path (``str``, ``os.PathLike``, ``pathlib.Path``)?"""
    hint, _ = _strip(hint)
    if hint in (str, os.PathLike) or typing.get_origin(hint) is os.PathLike:
        return True
    return getattr(hint, "__module__", None) == "pathlib"
