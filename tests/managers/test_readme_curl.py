"""The README's curl walkthrough works as written, against a real `dropflow nm` daemon."""

from __future__ import annotations

import json
import os
import re
import subprocess

from daemons import start

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def curl_lines() -> list[str]:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text.split("### Submitting with plain curl", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block
    return [line for line in block.group(1).splitlines() if line.startswith("curl ")]


def test_readme_curl_walkthrough(tmp_path):
    lines = curl_lines()
    assert [line.split("$URL")[1].split()[0].strip('"') for line in lines] == [
        "/api/sessions",
        "/api/sessions/hello/graph/append",
        "/api/sessions/hello/deploy",
        "/api/sessions/hello/status",
        "/api/sessions/hello/wait?timeout=30",
        "/api/sessions/hello/graph/status",
    ]
    nm = start("nm", "--workspace", str(tmp_path / "ws"), logdir=str(tmp_path), name="readme")
    try:
        outputs = []
        for line in lines:
            result = subprocess.run(
                ["bash", "-c", line],
                cwd=ROOT,
                env={**os.environ, "URL": nm.url},
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
    finally:
        nm.stop()
