"""What a graph may touch: no built-in app or store writes, truncates or deletes outside the workspace and the
allowed directories, even through a symbolic link that an earlier app of the same graph made.

The attacks run the real ``dropflow run`` (a subprocess, as a user would), with the victim directory outside
the workspace; the unit tests below them pin each store operation that walks a path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dropflow.drops import beneath
from dropflow.drops.spec import FileSpec
from dropflow.drops.stores import DirectoryStore, FileStore
from dropflow.engine.workspace import PathNotAllowed, Workspace

PG = {"format": "dropflow/physical-graph", "version": 1}


def run_graph(tmp_path, drops: list[dict], *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "graph.json"
    path.write_text(json.dumps({**PG, "drops": drops}))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dropflow.cli",
            "run",
            str(path),
            "--workspace",
            str(tmp_path / "ws"),
            "--json",
            *extra,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def victim(tmp_path):
    """A directory outside the workspace holding a file that must survive: ``victim/x`` = "precious"."""
    d = tmp_path / "victim"
    d.mkdir()
    (d / "x").write_text("precious")
    return d


def test_writes_through_a_link_made_by_an_earlier_app_are_refused(tmp_path, victim):
    """The attack of issue 10, item 5: a shell app makes ``sub/link -> victim``; then built-in apps write
    ``sub/link/x`` (overwrite), ``sub/link/deeper/y`` (new directories), a directory drop ``sub/link/dd``
    and an array ``sub/link/arr``. The graph validates (the link does not exist yet); every write is
    refused when it opens the path, the apps fail saying why, and the victim directory is untouched."""
    drops = [
        {
            "id": "mk",
            "kind": "shell",
            "command": f"mkdir -p sub && ln -s {victim} sub/link",
            "outputs": {"done": "ready"},
        },
        {"id": "ready", "kind": "null"},
        {"id": "hi", "kind": "hello", "greet": "attacker", "inputs": {"a": "ready"}, "outputs": {"o": "x"}},
        {"id": "x", "kind": "file", "path": "sub/link/x"},
        {"id": "hi2", "kind": "hello", "inputs": {"a": "ready"}, "outputs": {"o": "y"}},
        {"id": "y", "kind": "file", "path": "sub/link/deeper/y"},
        {"id": "hi3", "kind": "hello", "inputs": {"a": "ready"}, "outputs": {"o": "dd"}},
        {"id": "dd", "kind": "directory", "path": "sub/link/dd"},
        {"id": "rand", "kind": "random_array", "size": 4, "inputs": {"a": "ready"}, "outputs": {"o": "arr"}},
        {"id": "arr", "kind": "file", "path": "sub/link/arr"},
    ]
    result = run_graph(tmp_path, drops)
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "FAILED", summary
    failed = {f["uid"]: f["message"] for f in summary["failures"]}
    for app in ("hi", "hi2", "hi3", "rand"):
        assert "symbolic link" in failed.get(app, ""), failed
    assert sorted(os.listdir(victim)) == ["x"]
    assert (victim / "x").read_text() == "precious"


def test_deletion_does_not_follow_a_link_swapped_in_after_the_write(tmp_path, victim):
    """A hello app writes ``sub/real/x`` in the workspace; a shell app then moves ``sub/real`` away and puts a
    link to the victim directory in its place. When the session ends, the lifecycle manager deletes the
    drop's file ``sub/real/x`` -- which, through the link, is ``victim/x``. It must not follow the link."""
    drops = [
        {"id": "w", "kind": "hello", "outputs": {"o": "x"}},
        {"id": "x", "kind": "file", "path": "sub/real/x"},
        {
            "id": "swap",
            "kind": "shell",
            "command": f"test -s {{x}} && mv sub/real sub/moved && ln -s {victim} sub/real",
            "inputs": {"x": "x"},
        },
    ]
    result = run_graph(tmp_path, drops)
    summary = json.loads(result.stdout)
    assert summary["state"] == "FINISHED", summary
    assert (victim / "x").read_text() == "precious"


def test_a_link_in_an_allowed_directory_that_leads_out_is_refused_at_validation(tmp_path, victim):
    """``--allow-path data`` grants ``data``, not wherever a link inside it points."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "out").symlink_to(victim)
    graph = tmp_path / "graph.json"
    graph.write_text(
        json.dumps(
            {
                **PG,
                "drops": [
                    {"id": "hi", "kind": "hello", "outputs": {"o": "x"}},
                    {"id": "x", "kind": "file", "path": str(data / "out" / "x")},
                ],
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "dropflow.cli", "validate", str(graph), "--allow-path", str(data)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert "file drop 'x', field 'path'" in result.stderr and "through symbolic links" in result.stderr
    assert "Traceback" not in result.stderr


def workspace(tmp_path) -> Workspace:
    ws = Workspace(str(tmp_path / "root"), "s1", [str(tmp_path / "allowed")])
    os.makedirs(ws.dir)
    (tmp_path / "allowed").mkdir()
    return ws


def test_resolve_refuses_links_below_the_workspace_and_nul(tmp_path, victim):
    ws = workspace(tmp_path)
    os.makedirs(os.path.join(ws.dir, "sub"))
    os.symlink(victim, os.path.join(ws.dir, "sub", "link"))
    with pytest.raises(PathNotAllowed, match="symbolic link"):
        ws.resolve(FileSpec(id="f"), "sub/link/x")
    # After validation (a store being made), links are left to the store, which refuses them when it opens.
    path, owned, anchor = ws.resolve(FileSpec(id="f"), "sub/link/x", links=False)
    assert owned and anchor == ws.dir
    with pytest.raises(beneath.LinkRefused, match="symbolic link"):
        FileStore(path, owned, anchor).writer()
    with pytest.raises(PathNotAllowed, match="NUL"):
        ws.resolve(FileSpec(id="f"), "a\0b")
    with pytest.raises(PathNotAllowed, match="empty"):
        ws.resolve(FileSpec(id="f"), "")


def test_allowed_paths_are_real_paths(tmp_path, victim):
    ws = workspace(tmp_path)
    allowed = tmp_path / "allowed"
    (allowed / "inner").mkdir()
    (allowed / "alias").symlink_to(allowed / "inner")  # a link that stays inside: fine, taken for real
    path, owned, anchor = ws.resolve(FileSpec(id="f"), str(allowed / "alias" / "x"))
    assert (path, owned, anchor) == (str(allowed / "inner" / "x"), False, str(allowed))
    (allowed / "out").symlink_to(victim)
    with pytest.raises(PathNotAllowed, match="through symbolic links"):
        ws.resolve(FileSpec(id="f"), str(allowed / "out" / "x"))
    # A link made after validation: the store is anchored at the allowed directory and refuses it.
    path, owned, anchor = ws.resolve(FileSpec(id="f"), str(allowed / "out" / "x"), links=False)
    with pytest.raises(beneath.LinkRefused):
        FileStore(path, owned, anchor).writer()
    assert (victim / "x").read_text() == "precious"


@pytest.mark.parametrize("op", ["writer", "array", "buffer", "chunks", "prepare", "exists"])
def test_every_file_store_operation_refuses_a_link_on_the_way(tmp_path, victim, op):
    anchor = tmp_path / "ws"
    (anchor / "sub").mkdir(parents=True)
    (anchor / "sub" / "link").symlink_to(victim)
    store = FileStore(str(anchor / "sub" / "link" / "x"), True, str(anchor))
    if op == "exists":
        assert not store.exists()
    elif op == "prepare":
        (victim / "x").unlink()
        store2 = FileStore(str(anchor / "sub" / "link" / "new" / "x"), True, str(anchor))
        with pytest.raises(beneath.LinkRefused):
            store2.prepare(False)
        assert not (victim / "new").exists()
        return
    else:
        with pytest.raises(beneath.LinkRefused):
            if op == "array":
                store.array((3,), np.int8)
            elif op == "chunks":
                list(store.chunks())
            else:
                getattr(store, op)()
    assert (victim / "x").read_text() == "precious"


def test_a_link_as_the_file_itself_is_refused_and_deleting_it_removes_only_the_link(tmp_path, victim):
    anchor = tmp_path / "ws"
    anchor.mkdir()
    (anchor / "x").symlink_to(victim / "x")
    store = FileStore(str(anchor / "x"), True, str(anchor))
    with pytest.raises(beneath.LinkRefused):
        store.writer()
    store.delete()
    assert not os.path.lexists(anchor / "x") and (victim / "x").read_text() == "precious"


def test_directory_store_neither_follows_nor_deletes_through_links(tmp_path, victim):
    anchor = tmp_path / "ws"
    (anchor / "d").mkdir(parents=True)
    (anchor / "d" / "real.txt").write_text("abc")
    (anchor / "d" / "alias.txt").symlink_to(victim / "x")  # a link inside the drop: neither read nor counted
    (anchor / "d" / "sub").symlink_to(victim)
    store = DirectoryStore(str(anchor / "d"), True, str(anchor))
    assert store.exists() and store.size() == 3
    store.checksum()
    store.delete()
    assert not (anchor / "d").exists()
    assert (victim / "x").read_text() == "precious"
    (anchor / "e").symlink_to(victim)
    via_link = DirectoryStore(str(anchor / "e" / "inner"), True, str(anchor))
    with pytest.raises(beneath.LinkRefused):
        via_link.writer()
    via_link.delete()
    assert sorted(os.listdir(victim)) == ["x"]


def test_a_fifo_at_a_drop_path_is_refused_not_waited_on(tmp_path):
    """A FIFO planted where a file drop lives would block its reader (and writer) for ever."""
    anchor = tmp_path / "ws"
    anchor.mkdir()
    os.mkfifo(anchor / "x")
    store = FileStore(str(anchor / "x"), True, str(anchor))
    with pytest.raises(OSError):
        store.buffer()
    with pytest.raises(OSError):
        store.writer()
    assert not store.exists()
