"""The Dockerfile builds an image whose node manager answers its health endpoint -- with no registry.

The base image is the locally imported Debian with Python (.ci/setup/11-docker-python-base.sh, or any image
named by $DROPFLOW_TEST_BASE_IMAGE); dropflow and its dependencies go in as wheels built on the host, so
the build itself needs no network at all (``network_mode=none``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request

import pytest
from containers import engine

from conftest import poll_for, require

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = os.environ.get("DROPFLOW_TEST_BASE_IMAGE", "dropflow-ci/python-base:local")
IMAGE = "dropflow-test/dropflow:local"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _context(directory) -> str:
    """The repository's files (tracked, or new and not ignored) plus a wheelhouse, as a build context."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = os.path.join(REPO, name)
        if os.path.isfile(source):
            target = os.path.join(directory, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(source, target)
    wheels = os.path.join(directory, "wheelhouse")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--wheel-dir",
            wheels,
            REPO,
            "setuptools>=68",
            "wheel",
        ],
        check=True,
        capture_output=True,
    )
    return str(directory)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    import docker

    client = engine()
    try:
        client.images.get(BASE)
    except docker.errors.ImageNotFound:
        require(f"the base image {BASE}", False, "run .ci/setup/11-docker-python-base.sh")
    context = _context(tmp_path_factory.mktemp("context"))
    client.images.build(
        path=context,
        tag=IMAGE,
        buildargs={"BASE": BASE, "PIP_OPTIONS": "--no-index --find-links=/src/wheelhouse"},
        network_mode="none",
        rm=True,
        forcerm=True,
    )
    return client, IMAGE


TOKEN = "a-token-for-the-image-test-only"


def _health(port: int) -> dict | None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/health", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            return json.load(resp)
    except OSError:
        return None


def test_a_container_from_the_image_runs_a_node_manager_that_answers(image):
    client, tag = image
    port = _free_port()
    container = client.containers.run(
        tag,
        ["nm", "--host", "127.0.0.1", "--port", str(port), "--name", "in-a-container"],
        network_mode="host",
        environment={"DROPFLOW_TOKEN": TOKEN},
        detach=True,
        labels={"dropflow.test": "image"},
    )
    try:
        health = poll_for(lambda: _health(port), timeout=60)
        assert health["status"] == "ok" and health["role"] == "nm" and health["name"] == "in-a-container"
        container.stop(timeout=10)  # SIGTERM: the daemon stops cleanly
        assert container.wait(timeout=30)["StatusCode"] == 0, container.logs().decode()[-2000:]
    finally:
        container.remove(force=True)


def test_the_image_runs_every_daemon_as_a_non_root_user(image):
    client, tag = image
    for daemon in ("nm", "dim", "mm"):
        out = client.containers.run(tag, [daemon, "--help"], network_mode="none", remove=True).decode()
        assert out.startswith(f"usage: dropflow {daemon}")
    uid = client.containers.run(tag, [], entrypoint=["id", "-u"], network_mode="none", remove=True)
    assert uid.decode().strip() == "1000"
