"""Attack 1 of issue 10: another user of the machine runs code through a node manager on 127.0.0.1.

As ``nobody``, three ``curl`` sessions try to run ``touch`` as the daemon's user: through a ``shell`` app,
a ``python`` app calling ``os:system``, and a memory drop whose ``pickle`` data runs ``os.system`` when it
is read. Against a daemon started with ``--insecure-no-token`` the attack works (so the test is able to
see it); against a default daemon every request is a 401, ``nobody`` cannot read the token file, no
process shows the token on its command line, and the daemon's log does not contain it.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys

import psutil
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "managers"))
from daemons import start, token  # noqa: E402

from conftest import poll_for, require  # noqa: E402


class _Touch:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _graphs(marker_dir: str) -> dict[str, list[dict]]:
    pickled = pickle.dumps(_Touch(f"{marker_dir}/pickle"), protocol=0).decode()  # protocol 0 is text
    return {
        "shell": [
            {"kind": "shell", "id": "a", "command": f"touch {marker_dir}/shell", "outputs": {"stdout": "o"}},
            {"kind": "memory", "id": "o"},
        ],
        "python": [
            {"kind": "memory", "id": "cmd", "data": f"touch {marker_dir}/python", "codec": "utf-8"},
            {"kind": "python", "id": "a", "func": "os:system", "inputs": {"command": "cmd"}, "outputs": {}},
        ],
        "pickle": [
            {"kind": "memory", "id": "evil", "data": pickled, "codec": "bytes"},
            {
                "kind": "python",
                "id": "a",
                "func": "json:dumps",
                "inputs": {"obj": "evil"},
                "codecs": {"obj": "pickle"},
                "outputs": {"out": "r"},
            },
            {"kind": "memory", "id": "r"},
        ],
    }


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", *argv], capture_output=True, text=True, timeout=60, cwd="/"
    )


def _attack(url: str, marker_dir: str) -> list[int]:
    """Each attack as nobody: create a session, append the graph, deploy; the status codes curl saw."""
    codes = []
    for name, drops in _graphs(marker_dir).items():
        graph = json.dumps({"format": "dropflow/physical-graph", "version": 1, "drops": drops})
        for method, path, body in (
            ("POST", "/api/sessions", json.dumps({"sessionId": name})),
            ("POST", f"/api/sessions/{name}/graph/append", graph),
            ("POST", f"/api/sessions/{name}/deploy", ""),
        ):
            r = _as_nobody(
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                method,
                f"{url}{path}",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            )
            codes.append(int(r.stdout or 0))
    return codes


@pytest.fixture
def marker_dir(tmp_path):
    require("another local user", shutil.which("runuser") is not None and os.geteuid() == 0, "root, runuser")
    require("curl", shutil.which("curl") is not None, "apt-get install curl")
    d = tmp_path / "markers"
    d.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(d, 0o777)  # so that a "touch" run as nobody (never expected) could not fail for lack of rights
    return str(d)


def test_the_attack_works_on_an_insecure_daemon(tmp_path, marker_dir):
    """The control: with --insecure-no-token, nobody runs code as root through all three routes."""
    nm = start(
        "nm", "--insecure-no-token", "--workspace", str(tmp_path / "ws"), logdir=str(tmp_path), name="open"
    )
    try:
        _attack(nm.url, marker_dir)
        poll_for(lambda: sorted(os.listdir(marker_dir)) == ["pickle", "python", "shell"], timeout=60)
        assert all(os.stat(os.path.join(marker_dir, m)).st_uid == 0 for m in os.listdir(marker_dir))
    finally:
        nm.stop()


def test_nobody_cannot_run_code_through_a_default_daemon(tmp_path, marker_dir):
    nm = start("nm", "--workspace", str(tmp_path / "ws"), logdir=str(tmp_path), name="default")
    try:
        codes = _attack(nm.url, marker_dir)
        assert codes == [401] * 9
        # Every request was answered: had any of them run code, its marker would be there now.
        assert os.listdir(marker_dir) == []
        # The token file is the daemon's user's alone.
        path = os.path.join(os.environ["XDG_CONFIG_HOME"], "dropflow", "token")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        assert _as_nobody("cat", path).returncode != 0
        # The health check tells nobody nothing useful: no name, no bus address.
        health = json.loads(_as_nobody("curl", "-s", f"{nm.url}/api/health").stdout)
        assert health == {"status": "ok"}
        # The owner of the token gets in.
        owner = subprocess.run(
            ["curl", "-s", "-H", f"Authorization: Bearer {token()}", f"{nm.url}/api/health"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert json.loads(owner.stdout)["bus"].startswith("tcp://")
        # Nothing secret in ps, nor in the log.
        for proc in psutil.process_iter(["cmdline"]):
            assert token() not in " ".join(proc.info["cmdline"] or [])
        assert token() not in nm.tail()
    finally:
        nm.stop()
