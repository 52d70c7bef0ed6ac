"""Stores and codecs on their own: streaming, buffers, size, checksum, in-place arrays, deletion."""

from __future__ import annotations

import os
import pickle
import zlib

import numpy as np
import pytest

from dropflow.drops.codecs import CodecError, decode, encode
from dropflow.drops.shm import segment_name, session_scope
from dropflow.drops.stores import DirectoryStore, FileStore, MemoryStore, NullStore, SharedMemoryStore

CHUNKS = [b"alpha-", bytearray(b"beta-"), memoryview(b"gamma")]
JOINED = b"alpha-beta-gamma"


def stores(tmp_path):
    return [
        MemoryStore(),
        SharedMemoryStore(segment_name(session_scope(str(tmp_path), "test-stores"), "test-stores", "x")),
        FileStore(str(tmp_path / "sub" / "file.bin")),
    ]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["memory", "shm", "file"])
def test_streaming_write_then_read(tmp_path, index):
    store = stores(tmp_path)[index]
    os.makedirs(tmp_path / "sub", exist_ok=True)
    w = store.writer()
    for c in CHUNKS:
        w.write(c)
    w.close()
    try:
        assert w.size == len(JOINED)
        assert bytes(store.buffer()) == JOINED
        assert b"".join(bytes(c) for c in store.chunks(4)) == JOINED
        assert store.size() == len(JOINED) and store.checksum() == zlib.crc32(JOINED)
        # A pickled copy (what a worker process gets) reads the same storage.
        assert bytes(pickle.loads(pickle.dumps(store)).buffer()) == JOINED
    finally:
        store.delete()
    assert store.size() == 0 if index != 2 else not os.path.exists(store.fspath())


@pytest.mark.parametrize("index", [0, 1, 2], ids=["memory", "shm", "file"])
def test_array_in_place_decodes_as_a_view(tmp_path, index):
    store = stores(tmp_path)[index]
    arr = store.array((3, 4), np.int32)
    arr[:] = np.arange(12).reshape(3, 4)
    if isinstance(arr, np.memmap):
        arr.flush()
    try:
        back = decode("npy", store.buffer())
        assert back.shape == (3, 4) and back[2, 3] == 11
        assert not back.flags.owndata
    finally:
        del arr, back
        store.delete()


def test_null_and_directory_stores(tmp_path):
    null = NullStore()
    w = null.writer()
    w.write(b"ignored")
    w.close()
    assert null.buffer() == b"" and null.size() == 0
    d = DirectoryStore(str(tmp_path / "dir"))
    d.writer()
    (tmp_path / "dir" / "a.txt").write_text("abc")
    assert d.exists() and d.size() == 3
    with pytest.raises(CodecError):
        d.buffer()
    d.delete()
    assert not d.exists()


def test_external_files_are_never_deleted(tmp_path):
    path = tmp_path / "precious.txt"
    path.write_text("keep me")
    FileStore(str(path), owned=False).delete()
    assert path.read_text() == "keep me"


@pytest.mark.parametrize(
    "codec,value",
    [
        ("pickle", {"a": [1, 2.5, None]}),
        ("json", {"a": [1, 2.5, None]}),
        ("utf-8", "héllo"),
        ("bytes", b"\x00\x01raw"),
        ("npy", np.arange(6, dtype=np.float32).reshape(2, 3)),
        ("npy", np.asfortranarray(np.arange(6).reshape(2, 3))),
    ],
)
def test_codecs_round_trip(codec, value):
    buf = b"".join(bytes(c) for c in encode(codec, value))
    back = decode(codec, buf)
    if codec == "npy":
        np.testing.assert_array_equal(back, value)
    else:
        assert back == value


def test_npy_encoding_does_not_copy_the_array():
    arr = np.arange(1000, dtype=np.int64)
    _header, data = encode("npy", arr)
    assert np.shares_memory(np.frombuffer(data, dtype=np.int64), arr)


def test_codec_errors_are_clear():
    with pytest.raises(CodecError, match="pickle"):
        encode("npy", np.array([object()]))
    with pytest.raises(CodecError, match="needs a str"):
        encode("utf-8", 5)
    with pytest.raises(CodecError, match="not npy"):
        decode("npy", b"definitely not npy data")


@pytest.mark.parametrize("index", [0, 1, 2], ids=["memory", "shm", "file"])
def test_a_writer_may_reuse_its_buffer(tmp_path, index):
    """An app that streams through one bytearray, refilled for every chunk, must not corrupt the drop: the
    store keeps what was written when ``write`` returned (the memory store used to keep a view of the
    buffer, ending with b'bbbbbbbb' and a CRC that did not match)."""
    store = stores(tmp_path)[index]
    os.makedirs(tmp_path / "sub", exist_ok=True)
    w = store.writer()
    buf = bytearray(4)
    for byte in b"ab":
        buf[:] = bytes([byte]) * 4
        w.write(buf)
    buf[:] = b"zzzz"  # after the last write too
    w.close()
    try:
        assert bytes(store.buffer()) == b"aaaabbbb"
        assert store.checksum() == zlib.crc32(b"aaaabbbb")
    finally:
        store.delete()


def test_memory_store_keeps_immutable_bytes_without_copying():
    data = b"x" * 1000
    store = MemoryStore()
    w = store.writer()
    w.write(data)
    w.close()
    assert store.buffer() is data


def test_an_unwritten_memory_store_survives_pickling():
    """What a worker process gets for a memory drop nothing wrote (a no-op's output), and sends back."""
    copy = pickle.loads(pickle.dumps(MemoryStore()))
    assert copy.data is None and bytes(copy.buffer()) == b""
    assert bytes(pickle.loads(pickle.dumps(MemoryStore(b"abc"))).buffer()) == b"abc"
