"""Helpers for tests that need a real Docker engine: the engine, a tiny local image, leftover checks.

No registry is reachable where the tests run, so the test image is built ``FROM scratch`` out of the host's
static busybox (apt package busybox-static), with no network: about a second, once per engine.
"""

from __future__ import annotations

import io
import os
import tarfile
from typing import Any

from conftest import require

BUSYBOX = "/bin/busybox"
TEST_IMAGE = "dropflow-test/busybox:local"
APPLETS = (
    "sh",
    "cat",
    "echo",
    "tr",
    "id",
    "sleep",
    "env",
    "ls",
    "wc",
    "printf",
    "test",
    "[",
    "true",
    "false",
)
LABEL_SESSION = "dropflow.session"


def engine() -> Any:
    """A client of the local Docker engine; skips (fails in CI) when there is none."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:  # any failure to reach the engine means: no engine here
        require("a Docker engine", False, f"start dockerd (.ci/setup/10-docker.sh): {exc}")
        raise
    return client


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def busybox_image(client: Any) -> str:
    """Tag of a busybox image on the engine, built from the host's static busybox if missing."""
    import docker

    try:
        client.images.get(TEST_IMAGE)
        return TEST_IMAGE
    except docker.errors.ImageNotFound:
        pass
    require("a static busybox", os.path.exists(BUSYBOX), "apt-get install busybox-static")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "Dockerfile", b"FROM scratch\nCOPY rootfs/ /\n")
        with open(BUSYBOX, "rb") as f:
            _add(tar, "rootfs/bin/busybox", f.read(), 0o755)
        for applet in APPLETS:
            link = tarfile.TarInfo(f"rootfs/bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        tmp = tarfile.TarInfo("rootfs/tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
    buf.seek(0)
    client.images.build(fileobj=buf, custom_context=True, tag=TEST_IMAGE, network_mode="none", rm=True)
    return TEST_IMAGE


def session_containers(client: Any, session_id: str) -> list[Any]:
    """Containers (running or not) that dropflow started for a session. Sparse: the list alone, with no
    inspection of each container, which could race with its removal (404)."""
    return list(
        client.containers.list(all=True, sparse=True, filters={"label": f"{LABEL_SESSION}={session_id}"})
    )
