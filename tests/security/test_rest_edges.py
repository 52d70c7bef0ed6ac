"""Item 8 of issue 10: hostile HTTP against a real node manager -- never a 5xx, never a hang, bounded memory.

- a 3 MB gzip body that inflates to 3 GiB is refused with 413, and the daemon's peak RSS barely moves;
- JSON nested 10^5 deep is a 400;
- 200 connections that send half a request, and 100 open long polls, on a daemon with only 4 request
  threads: ``/api/health`` and a session's status still answer at once (the latencies are printed);
- a connection that never finishes its request head is closed by the daemon.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import os
import socket
import sys
import time

import httpx
import psutil
import pytest

from dropflow.drops import SleepSpec
from dropflow.managers.client import RestClient
from dropflow.managers.serve import HEAD_TIMEOUT

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "managers"))
from daemons import auth, start  # noqa: E402

MiB = 1 << 20


def _peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def nm(tmp_path):
    daemon = start(
        "nm", "--threads", "4", "--workspace", str(tmp_path / "ws"), logdir=str(tmp_path), name="edges"
    )
    yield daemon
    daemon.stop()


def _worker(nm) -> int:
    (worker,) = psutil.Process(nm.proc.pid).children()  # gunicorn's one worker holds the manager
    return worker.pid


def test_a_gzip_bomb_is_refused_at_small_memory(nm):
    member = gzip.compress(bytes(64 * MiB), compresslevel=9)
    bomb = member * 48  # 48 gzip members of 64 MiB of zeros: 3 GiB inflated
    assert len(bomb) < 4 * MiB
    with RestClient(nm.url) as client:
        client.create_session("bomb")
    pid = _worker(nm)
    before = _peak_rss(pid)
    r = httpx.post(
        f"{nm.url}/api/v1/sessions/bomb/graph/append",
        content=bomb,
        headers={**auth(), "Content-Encoding": "gzip", "Content-Type": "application/json"},
        timeout=120,
    )
    grew = _peak_rss(pid) - before
    print(
        f"\ngzip bomb ({len(bomb) / MiB:.1f} MiB -> 3 GiB): {r.status_code}, peak RSS +{grew / MiB:.0f} MiB"
    )
    assert r.status_code == 413 and "decompression bomb" in r.json()["error"]["message"]
    assert grew < 128 * MiB
    # An honest gzip body still goes through.
    graph = b'{"format": "dropflow/physical-graph", "version": 1, "drops": [{"kind": "memory", "id": "m"}]}'
    r = httpx.post(
        f"{nm.url}/api/v1/sessions/bomb/graph/append",
        content=gzip.compress(graph),
        headers={**auth(), "Content-Encoding": "gzip"},
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["appended"] == 1


def test_deeply_nested_json_is_a_400(nm):
    body = b'{"sessionId": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = httpx.post(f"{nm.url}/api/v1/sessions", content=body, headers=auth(), timeout=30)
    assert r.status_code == 400  # decoded into its type: the array is refused at once, nothing recurses
    assert (
        httpx.post(f"{nm.url}/api/v1/sessions", json={"sessionId": "deep"}, headers=auth()).status_code == 201
    )
    deep = b"[" * 100_000 + b"]" * 100_000
    r = httpx.post(f"{nm.url}/api/v1/sessions/deep/graph/append", content=deep, headers=auth(), timeout=30)
    assert r.status_code == 400 and "nested too deep" in r.json()["error"]["message"]
    r = httpx.post(f"{nm.url}/api/sessions/x/peers", content=b"[" * 100_000, headers=auth(), timeout=30)
    assert r.status_code in (400, 404)


def test_stalled_connections_and_long_polls_do_not_starve_the_daemon(nm):
    with RestClient(nm.url) as client:
        client.create_session("long")
        client.append("long", [SleepSpec(id="z", seconds=600)])
        client.deploy("long")
    host, port = nm.url.removeprefix("http://").split(":")
    stalled = []
    pool = concurrent.futures.ThreadPoolExecutor(100)
    try:
        for _ in range(200):
            s = socket.create_connection((host, int(port)))
            s.sendall(b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Le")
            stalled.append(s)
        polls = [
            pool.submit(
                httpx.get,
                f"{nm.url}/api/sessions/long/wait",
                params={"timeout": 60},
                headers=auth(),
                timeout=120,
            )
            for _ in range(100)
        ]
        with httpx.Client(base_url=nm.url, headers=auth(), timeout=30) as http:
            # Once every poll is in (the daemon holds them all), ask for health and status.
            for _ in range(3):
                t0 = time.perf_counter()
                health = http.get("/api/health")
                t1 = time.perf_counter()
                status = http.get("/api/v1/sessions/long/status")
                t2 = time.perf_counter()
                assert health.status_code == 200 and status.json()["status"] == "RUNNING"
                print(
                    f"\nwith 200 stalled connections and 100 long polls: health {1000 * (t1 - t0):.1f} ms, "
                    f"status {1000 * (t2 - t1):.1f} ms"
                )
            assert not any(p.done() for p in polls)  # the long polls are still waiting
            http.post("/api/v1/sessions/long/cancel")
        for p in polls:  # the session's end answers every long poll
            answer = p.result(timeout=60)
            assert answer.status_code == 200 and answer.json()["ended"]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for s in stalled:
            s.close()


def test_a_request_head_that_never_ends_is_cut_off(nm):
    host, port = nm.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        s.settimeout(HEAD_TIMEOUT * 3)
        assert s.recv(100) == b""  # closed by the daemon, without an answer
