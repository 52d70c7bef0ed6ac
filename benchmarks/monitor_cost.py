"""What the monitor costs the engine, and how a million-drop session's page behaves in a browser.

Three measurements, printed as JSON (and written to ``--output``):

1. ``engine``: a session of ``--drops`` drops (no-op apps between memory drops, named like the
   translator's copies: ``split#i``, ``part#i``, ``work#i``, ``res#i``, then one gather) runs in a node
   manager in this process, ``--repeats`` times in each of four modes: *alone*; *watched*, with what an
   open monitor page and a Prometheus server do -- the session view and the overview polled every second,
   ``/metrics`` scraped every 5 s, all through the REST app on other threads; *crowd*, twenty pages open on
   the session at once; and *hammered*, the session view asked for in a loop, without pause, by four
   clients (a misbehaving script: the census' cache bounds the counting, not the requests). Reported: the
   run time (start to end, median) of each mode, its overhead against *alone*, and the CPU the monitor's
   threads used (a steadier measure on a shared machine).
   With it, the cost of each monitor answer on the finished session, and of the bookkeeping the engine does
   for the monitor per app (a duration bucket, ``AppStats.record``) against the engine's time per app.
2. ``browser`` (``--browser``): the same session, kept running by one slow app, served over HTTP; headless
   Chromium opens its page. Reported: seconds until the drops-by-graph-node table shows, until a group's
   first page of drops shows after a click, until another tab shows, the longest main-thread task while
   the page polls for ten seconds (Long Tasks API), and the size of the JSON the page polls.
3. ``--screenshots DIR``: pictures of the monitor for the docs (a small demo session on two nodes, with a
   failure and running apps, and the large session's page).

    python benchmarks/monitor_cost.py --drops 1000000 --browser --output benchmarks/results/monitor.json
    python benchmarks/monitor_cost.py --drops 100000 --repeats 1       # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socketserver
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from falcon import testing

from dropflow.drops import MemorySpec, NoopSpec, PythonSpec, ShellSpec, SleepSpec
from dropflow.engine.observe import AppStats
from dropflow.managers.node_manager import NodeManager
from dropflow.managers.rest import make_app

HERE = os.path.dirname(os.path.abspath(__file__))


def graph(drops: int, slow: bool = False) -> list[Any]:
    """root -> split#i -> part#i -> work#i -> res#i (i < k) -> join#0 -> out#0: ``drops`` drops in all."""
    k = max(1, (drops - 3) // 4)
    specs: list[Any] = [MemorySpec(id="root")]
    for i in range(k):
        specs += [
            NoopSpec(id=f"split#{i}", inputs={"i": "root"}, outputs={"o": f"part#{i}"}),
            MemorySpec(id=f"part#{i}"),
            NoopSpec(id=f"work#{i}", inputs={"i": f"part#{i}"}, outputs={"o": f"res#{i}"}),
            MemorySpec(id=f"res#{i}"),
        ]
    specs += [NoopSpec(id="join#0", inputs={"r": [f"res#{i}" for i in range(k)]}, outputs={"o": "out#0"})]
    specs += [MemorySpec(id="out#0")]
    if slow:  # keeps the session running for the browser
        specs += [SleepSpec(id="wait#0", seconds=3600, inputs={"i": "out#0"}, outputs={"o": "done#0"})]
        specs += [MemorySpec(id="done#0")]
    return specs


@contextmanager
def node_manager(root: str) -> Iterator[NodeManager]:
    nm = NodeManager("bench", workspace_root=root, threads=8, processes=1).start()
    try:
        yield nm
    finally:
        nm.close()


#: CPU seconds the watcher threads spent (each adds its own when it stops).
_cpu: list[float] = []


def run_once(
    nm: NodeManager, specs: list[Any], sid: str, watchers: list[Callable[[str, threading.Event], None]]
) -> float:
    """Deploy without starting, start the watchers, run; seconds from start to end."""
    nm.create_session(sid)
    nm.append(sid, specs)
    nm.deploy(sid, start=False)
    stop = threading.Event()
    threads = [threading.Thread(target=w, args=(sid, stop), daemon=True) for w in watchers]
    for t in threads:
        t.start()
    nm.start_session(sid)
    session = nm.node.sessions[sid]
    session.wait()
    stop.set()
    for t in threads:
        t.join()
    seconds = session.times["end"] - session.times["run"]
    assert str(session.state) == "FINISHED", session.state
    nm.delete_session(sid)
    return seconds


def _poller(client: testing.TestClient, path: str, every: float) -> Callable[[str, threading.Event], None]:
    def poll(sid: str, stop: threading.Event) -> None:
        start = time.thread_time()
        while not stop.is_set():
            r = client.simulate_get(path.format(sid=sid))
            assert r.status_code == 200, r.text
            stop.wait(every)
        _cpu.append(time.thread_time() - start)

    return poll


def measure_engine(drops: int, repeats: int, root: str) -> dict[str, Any]:
    specs = graph(drops)
    out: dict[str, Any] = {"drops": len(specs), "apps": sum(1 for s in specs if s.CATEGORY == "app")}
    with node_manager(root) as nm:
        client = testing.TestClient(make_app(nm))
        modes: dict[str, list[Callable[[str, threading.Event], None]]] = {
            "alone": [],
            "watched": [
                _poller(client, "/api/sessions/{sid}/monitor", 1.0),
                _poller(client, "/api/monitor", 1.0),
                _poller(client, "/metrics", 5.0),
            ],
            "crowd": [_poller(client, "/api/sessions/{sid}/monitor", 1.0) for _ in range(20)]
            + [_poller(client, "/metrics", 5.0)],
            "hammered": [_poller(client, "/api/sessions/{sid}/monitor", 0.0) for _ in range(4)],
        }
        runs: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        for r in range(repeats):
            for mode, watchers in modes.items():  # interleaved, so drifts of the machine hit every mode
                _cpu.clear()
                runs[mode].append(run_once(nm, specs, f"{mode}-{r}", watchers))
                cpu[mode].append(sum(_cpu))
                print(
                    f"  {mode} run {r + 1}: {runs[mode][-1]:.2f} s, monitor CPU {cpu[mode][-1]:.3f} s",
                    file=sys.stderr,
                )
        alone = statistics.median(runs["alone"])
        out["run_seconds"] = {m: {"median": statistics.median(v), "all": v} for m, v in runs.items()}
        out["overhead_percent"] = {
            m: round(100 * (statistics.median(v) - alone) / alone, 1) for m, v in runs.items() if m != "alone"
        }
        # The CPU the monitor's threads used, as a share of the run: what it takes from the engine at most.
        out["monitor_cpu_percent_of_run"] = {
            m: round(100 * statistics.median(c) / statistics.median(runs[m]), 1)
            for m, c in cpu.items()
            if m != "alone"
        }
        # Each answer on a finished session of that size (the census is counted afresh each time).
        nm.create_session("done")
        nm.append("done", specs)
        nm.deploy("done")
        nm.node.sessions["done"].wait()
        answers = {}
        for name, path in (
            ("session view, first (groups found)", "/api/sessions/done/monitor"),
            ("session view", "/api/sessions/done/monitor"),
            ("overview", "/api/monitor"),
            ("metrics", "/metrics"),
            ("drops page", f"/api/sessions/done/monitor/drops?group=work&offset={len(specs) // 8}&limit=100"),
            ("why (critical path)", "/api/sessions/done/why"),
            ("timings", "/api/sessions/done/monitor/timings"),
        ):
            times = []
            for _ in range(1 if "first" in name else 3):
                from dropflow.managers.monitor import monitor_for

                for c in monitor_for(nm)._census.values():
                    c._final = False
                    c._at = 0.0  # count afresh: the cost of a census, not of a cached answer
                t0 = time.perf_counter()
                r = client.simulate_get(path)
                times.append(time.perf_counter() - t0)
                assert r.status_code == 200, (path, r.text[:200])
            answers[name] = {"seconds": round(statistics.median(times), 4), "bytes": len(r.content)}
        out["answers_on_finished_session"] = answers
        per_app = alone / out["apps"]
        stats = AppStats()
        n = 1_000_000
        t0 = time.perf_counter()
        for i in range(n):
            stats.record(0.0001 * (i & 1023), True)
        record = (time.perf_counter() - t0) / n
        out["per_app"] = {
            "engine_seconds": per_app,
            "monitor_bookkeeping_seconds": record,
            "bookkeeping_percent": round(100 * record / per_app, 2),
        }
        nm.delete_session("done")
    return out


class _Threaded(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, server_class=_Threaded, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@contextmanager
def chromium(width: int = 1300, height: int = 860) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options
    )
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(predicate: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not met within {timeout} s")
        pause.wait(0.005)


LONG_TASKS = """
window.__long = [];
new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__long.push(e.duration); })
  .observe({type: "longtask", buffered: true});
"""


def measure_browser(drops: int, root: str, shots: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with node_manager(root) as nm, serve(make_app(nm)) as url, chromium() as d:
        nm.create_session("big")
        nm.append("big", graph(drops, slow=True))
        nm.deploy("big")
        wait_for(
            lambda: nm.node.sessions["big"].progress()[0] >= len(nm.node.sessions["big"].graph.by_id) - 2
        )
        out["drops"] = nm.node.sessions["big"].progress()[1]
        t0 = time.perf_counter()
        d.get(url + "/#/session/big")
        wait_for(lambda: len(d.find_elements("css selector", "#groups tbody tr[data-group]")) >= 5)
        out["page_load_seconds"] = round(time.perf_counter() - t0, 3)
        d.execute_script(LONG_TASKS)
        row = d.find_element("css selector", '#groups tr[data-group="work"]')
        t0 = time.perf_counter()
        row.click()
        wait_for(lambda: "of" in d.find_element("id", "drill-info").text)
        out["drill_down_seconds"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        d.find_element("id", "tab-nodes").click()
        wait_for(lambda: d.find_elements("css selector", "#nodes tbody tr[data-node]"))
        out["tab_switch_seconds"] = round(time.perf_counter() - t0, 3)
        d.find_element("id", "tab-graph").click()
        d.execute_script(LONG_TASKS)
        threading.Event().wait(10)  # the page polls meanwhile
        long_tasks = d.execute_script("return window.__long")
        out["polling_10s"] = {
            "long_tasks": len(long_tasks),
            "longest_task_ms": round(max(long_tasks, default=0.0), 1),
        }
        client = testing.TestClient(make_app(nm))
        out["polled_json_bytes"] = len(client.simulate_get("/api/sessions/big/monitor").content)
        if shots:
            d.get(url + "/#/session/big")
            wait_for(lambda: len(d.find_elements("css selector", "#groups tbody tr[data-group]")) >= 5)
            d.find_element("css selector", '#groups tr[data-group="work"]').click()
            wait_for(lambda: "of" in d.find_element("id", "drill-info").text)
            d.execute_script("window.scrollTo(0, 0)")
            d.save_screenshot(os.path.join(shots, "monitor-million.png"))
        nm.cancel("big")
        nm.node.sessions["big"].wait(60)
    return out


def demo_graph() -> list[Any]:
    """A small session on two nodes for the docs' pictures: a scatter of shell commands and Python
    functions, one that fails after printing, a gather, and a slow tail that is still running."""
    specs: list[Any] = [MemorySpec(id="params", data={"n": 8}, codec="json", node="n0")]
    for i in range(12):
        node = f"n{i % 2}"
        specs += [
            ShellSpec(
                id=f"calibrate#{i}",
                command=f"echo calibrating {i}; sleep 0.{i % 4 + 1}",
                inputs={"p": "params"},
                outputs={"out": f"cal#{i}"},
                node=node,
            ),
            MemorySpec(id=f"cal#{i}", node=node),
            SleepSpec(
                id=f"image#{i}", seconds=2 + i, inputs={"c": f"cal#{i}"}, outputs={"o": f"img#{i}"}, node=node
            ),
            MemorySpec(id=f"img#{i}", node=node),
        ]
    specs += [
        NoopSpec(
            id="combine#0",
            inputs={"parts": [f"img#{i}" for i in range(12)]},
            outputs={"o": "cube#0"},
            node="n1",
        ),
        MemorySpec(id="cube#0", node="n1"),
        PythonSpec(
            id="flag#0", func="monfuncs:shout_and_fail", inputs={"x": "params"}, executor="process", node="n1"
        ),
    ]
    return specs


def screenshots(root: str, shots: str) -> None:
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "monitor"))
    from dropflow.engine.bus import InProcBus
    from dropflow.managers.island import DataIslandManager

    bus = InProcBus()
    nms = [
        NodeManager(f"n{i}", workspace_root=os.path.join(root, f"ws{i}"), threads=8, processes=2)
        for i in range(2)
    ]
    for nm in nms:
        bus.add(nm.node)
        nm.start()
    island = DataIslandManager("island", nms)
    try:
        island.create_session("imaging-demo")
        island.append("imaging-demo", demo_graph())
        island.deploy("imaging-demo")
        with serve(make_app(island)) as url, chromium() as d:

            def shot(route: str, name: str, ready: str) -> None:
                d.get(url + "/" + route)
                wait_for(lambda: d.find_elements("css selector", ready))
                threading.Event().wait(0.8)
                d.save_screenshot(os.path.join(shots, name))

            threading.Event().wait(4)
            shot("", "monitor-sessions.png", '#sessions tr[data-session="imaging-demo"]')
            shot("#/session/imaging-demo", "monitor-session.png", "#groups tr[data-group]")
            d.find_element("css selector", '#groups tr[data-group="image"]').click()
            wait_for(lambda: "of" in d.find_element("id", "drill-info").text)
            threading.Event().wait(0.5)
            d.save_screenshot(os.path.join(shots, "monitor-drill.png"))
            shot("#/session/imaging-demo/nodes", "monitor-nodes.png", "#nodes tr[data-node]")
            shot("#/session/imaging-demo/why", "monitor-why.png", "#verdict li")
            shot("#/session/imaging-demo/failures", "monitor-failures.png", ".failure")
            shot("#/session/imaging-demo/drop/flag%230", "monitor-drop.png", "#stderr")
            island.wait("imaging-demo", 120)
            shot("#/session/imaging-demo/timings", "monitor-timings.png", "#critical-path tr")
    finally:
        island.close()
        for nm in nms:
            nm.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--drops", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--browser", action="store_true", help="also measure the page in headless Chromium")
    p.add_argument("--screenshots", metavar="DIR", help="write pictures of the monitor there")
    p.add_argument("--skip-engine", action="store_true")
    p.add_argument("--output", metavar="FILE")
    args = p.parse_args(argv)
    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with tempfile.TemporaryDirectory(prefix="dropflow-monitor-bench-") as root:
        if not args.skip_engine:
            result["engine"] = measure_engine(args.drops, args.repeats, os.path.join(root, "engine"))
        if args.screenshots:
            os.makedirs(args.screenshots, exist_ok=True)
            screenshots(os.path.join(root, "shots"), args.screenshots)
        if args.browser or args.screenshots:
            result["browser"] = measure_browser(args.drops, os.path.join(root, "browser"), args.screenshots)
    text = json.dumps(result, indent=1)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
