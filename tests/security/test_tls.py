"""Item 4 of issue 10: the REST API over TLS, with a self-signed certificate made by the test.

Two node managers and an island manager serve https only (``--certfile``/``--keyfile``); the island checks
its nodes against the certificate (``--ca-file``), and so does ``dropflow submit``, which runs a graph whose
data crosses the (CURVE-encrypted) bus. Plain http to a TLS port gets no answer, and a client that does not
trust the certificate refuses to talk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import httpx
import pytest

from dropflow.drops import MemorySpec, PythonSpec, SharedMemorySpec, encode_physical

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(os.path.dirname(HERE), "apps")
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "managers"))
from daemons import auth, start  # noqa: E402

from conftest import require  # noqa: E402


@pytest.fixture
def cert(tmp_path):
    require("openssl", shutil.which("openssl") is not None, "apt-get install openssl")
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    os.chmod(key, 0o600)
    return str(crt), str(key)


def test_a_cluster_over_tls(tmp_path, cert):
    crt, key = cert
    tls = ["--certfile", crt, "--keyfile", key]
    daemons = []
    try:
        for i in range(2):
            daemons.append(
                start("nm", *tls, "--workspace", str(tmp_path / f"ws{i}"), logdir=str(tmp_path),
                      name=f"n{i}", ca_file=crt, env={"PYTHONPATH": APPS})
            )  # fmt: skip
        nodes = ",".join(d.url for d in daemons)
        dim = start(
            "dim", *tls, "--ca-file", crt, "--nodes", nodes, logdir=str(tmp_path), name="i", ca_file=crt
        )
        daemons.append(dim)
        assert dim.url.startswith("https://")

        # Plain http to the TLS port: no answer. An https client that does not trust the certificate: refused.
        with pytest.raises(httpx.HTTPError):
            httpx.get(dim.url.replace("https://", "http://") + "/api/health", timeout=10)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(dim.url + "/api/health", timeout=10)

        graph = tmp_path / "g.json"
        graph.write_bytes(
            encode_physical(
                [
                    MemorySpec(id="n", data=1 << 16, codec="json", node="n0"),
                    PythonSpec(id="fill", func="testfuncs:random_bytes", inputs={"n": "n"},
                               outputs={"out": "arr"}, node="n0"),
                    SharedMemorySpec(id="arr", node="n0"),
                    PythonSpec(id="crc", func="testfuncs:crc", inputs={"arr": "arr"}, outputs={"out": "c"},
                               node="n1"),
                    MemorySpec(id="c", node="n1"),
                ]
            )
        )  # fmt: skip
        report = tmp_path / "report.json"
        result = subprocess.run(
            [sys.executable, "-m", "dropflow", "submit", str(graph), "--to", dim.url, "--ca-file", crt,
             "--wait", "--report", str(report)],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": APPS},
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        outcome = json.loads(report.read_text())
        assert outcome["state"] == "FINISHED" and outcome["placement"] == {"n0": 3, "n1": 2}
        nodes_seen = httpx.get(dim.url + "/api/v1/nodes", headers=auth(), verify=crt_context(crt), timeout=30)
        assert {n["name"]: n["reachable"] for n in nodes_seen.json()} == {"n0": True, "n1": True}
    finally:
        for d in reversed(daemons):
            d.stop()


def crt_context(crt: str):
    import ssl

    return ssl.create_default_context(cafile=crt)
