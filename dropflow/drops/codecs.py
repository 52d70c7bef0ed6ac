"""Codecs: how a data drop's bytes map to the Python values that function apps take and return.

Theory of operation
-------------------
``encode`` turns a value into a list of byte chunks without joining them, so a numpy array is never copied
on its way to a store (the npy header is one chunk, the array's own buffer the other). ``decode`` works on a
buffer; ``npy`` returns a view of it, so an array decoded from a shared-memory segment *is* the segment
(``bytes`` returns a ``bytes`` object, copied out of mapped storage). ``path`` is not a byte encoding:
the runner passes the drop's filesystem path instead.
"""

from __future__ import annotations

import io
import mmap
import pickle
from typing import Any

import msgspec
import numpy as np

__all__ = ["BytesLike", "CodecError", "decode", "encode", "npy_header", "npy_view"]


#: What stores hand out and codecs accept: anything exposing a byte buffer.
BytesLike = bytes | bytearray | memoryview | mmap.mmap


class CodecError(ValueError):
    """A value that a codec cannot encode, or bytes it cannot decode."""


def npy_header(shape: tuple[int, ...], dtype: np.dtype[Any], fortran_order: bool = False) -> bytes:
    """The .npy header (padded for alignment) for an array of this shape and dtype."""
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran_order, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def npy_view(buf: BytesLike) -> np.ndarray[Any, Any]:
    """An array viewing the .npy-encoded buffer ``buf`` (writable if the buffer is), without copying."""
    mv = memoryview(buf)
    head = io.BytesIO(mv[: min(len(mv), 1 << 16)])
    try:
        major, _minor = np.lib.format.read_magic(head)
        if major == 1:
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
    except ValueError as exc:
        raise CodecError(f"not npy data: {exc}") from None
    if dtype.hasobject:
        raise CodecError("npy data holds Python objects; use the pickle codec")
    count = 1
    for n in shape:
        count *= n
    arr = np.frombuffer(mv, dtype=dtype, count=count, offset=head.tell())
    return arr.reshape(shape, order="F" if fortran else "C")


def _npy_chunks(value: Any) -> list[BytesLike]:
    arr = np.asarray(value)
    if arr.dtype.hasobject:
        raise CodecError("npy cannot encode an array of Python objects; use the pickle codec")
    fortran = bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        arr = np.ascontiguousarray(arr)
    flat = arr.ravel(order="F" if fortran else "C")
    return [npy_header(arr.shape, arr.dtype, fortran), flat.data.cast("B")]


def encode(codec: str, value: Any) -> list[BytesLike]:
    """Encode ``value`` with ``codec`` into byte chunks (not joined)."""
    if codec == "pickle":
        return [pickle.dumps(value, protocol=5)]
    if codec == "npy":
        return _npy_chunks(value)
    if codec == "bytes":
        if isinstance(value, str):
            return [value.encode()]
        try:
            return [memoryview(value).cast("B")]
        except TypeError:
            raise CodecError(f"bytes codec needs a bytes-like value, got {type(value).__name__}") from None
    if codec == "utf-8":
        if not isinstance(value, str):
            raise CodecError(f"utf-8 codec needs a str, got {type(value).__name__}")
        return [value.encode()]
    if codec == "json":
        try:
            return [msgspec.json.encode(value)]
        except TypeError as exc:
            raise CodecError(f"json codec cannot encode {type(value).__name__}: {exc}") from None
    raise CodecError(f"codec {codec!r} does not encode values")


def decode(codec: str, buf: BytesLike) -> Any:
    """Decode a buffer with ``codec``; npy returns a view of ``buf``."""
    if codec == "pickle":
        if not len(memoryview(buf)):
            return None
        return pickle.loads(buf)
    if codec == "npy":
        return npy_view(buf)
    if codec == "bytes":
        return buf if isinstance(buf, bytes) else bytes(buf)
    if codec == "utf-8":
        return str(buf, "utf-8")
    if codec == "json":
        if not len(memoryview(buf)):
            return None
        try:
            return msgspec.json.decode(buf)
        except msgspec.DecodeError as exc:
            raise CodecError(f"not JSON: {exc}") from None
    raise CodecError(f"codec {codec!r} does not decode bytes")
