"""The README's curl walkthrough works as written, against a real `dropflow nm` daemon."""

from __future__ import annotations

import json
import os
import re
import subprocess

from daemons import start

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def walkthrough() -> list[str]:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text.split("### Submitting with plain curl", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block
    return block.group(1).splitlines()


def curl_lines() -> list[str]:
    return [line for line in walkthrough() if line.startswith("curl ")]


def test_readme_curl_walkthrough(tmp_path):
    """The README's commands, as written: the daemon makes its token in ~/.config/dropflow/token (here a home
    of the test's own), and each curl line reads it there."""
    lines = curl_lines()
    (auth_line,) = [line for line in walkthrough() if line.startswith("AUTH=")]
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    assert all('-H "$AUTH"' in line for line in lines)
    assert [line.split("$URL")[1].split()[0].strip('"') for line in lines] == [
        "/api/v1/sessions",
        "/api/v1/sessions/hello/graph/append",
        "/api/v1/sessions/hello/deploy",
        "/api/v1/sessions/hello/status",
        "/api/v1/sessions/hello/wait?timeout=30",
        "/api/v1/sessions/hello/graph/status",
    ]
    nm = start("nm", "--workspace", str(tmp_path / "ws"), logdir=str(tmp_path), name="readme", env=env)
    try:
        outputs = []
        for line in lines:
            result = subprocess.run(
                ["bash", "-c", f"{auth_line}\n{line}"],
                cwd=ROOT,
                env={**os.environ, **env, "URL": nm.url},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, (line, result.stderr)
            outputs.append(json.loads(result.stdout))
        created, appended, _deployed, _status, waited, graph_status = outputs
        assert created["sessionId"] == "hello" and appended["appended"] == 8
        assert waited["ended"] and waited["status"] == "FINISHED"
        assert waited["summary"]["by_state"] == {"COMPLETED": 3, "DELETED": 1, "FINISHED": 4}
        assert graph_status["top"] == {"status": "FINISHED", "execStatus": "FINISHED"}
        # Without the token: refused.
        bare = subprocess.run(
            ["bash", "-c", lines[3].replace('-H "$AUTH" ', "")],
            env={**os.environ, "URL": nm.url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert json.loads(bare.stdout)["error"]["status"] == 401
    finally:
        nm.stop()
