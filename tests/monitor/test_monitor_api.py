"""The monitor's JSON, through the REST app in process: an island over two node managers.

Scenario graph (``spread``), nodes in brackets::

    root[n0] -> work#i[n0|n1] -> part#i[same] --> join#0[n1] -> out#0[n1]
    bad[n1]   (a shell command that prints and fails)
    slow[n0] -> s[n0] -> after[n1] -> a[n1]      (slow sleeps; ``after`` waits for ``s``)
"""

from __future__ import annotations

import time

import msgspec
import pytest
from monitorkit import in_process, rest_client

from dropflow.drops import MemorySpec, NoopSpec, ShellSpec, SleepSpec

from conftest import poll_for

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def spread(n: int = 6, slow: float = 600) -> list:
    specs = [MemorySpec(id="root", node="n0")]
    for i in range(n):
        where = f"n{i % 2}"
        specs += [
            NoopSpec(id=f"work#{i}", inputs={"i": "root"}, outputs={"o": f"part#{i}"}, node=where),
            MemorySpec(id=f"part#{i}", node=where),
        ]
    specs += [
        NoopSpec(
            id="join#0", inputs={"p": [f"part#{i}" for i in range(n)]}, outputs={"o": "out#0"}, node="n1"
        ),
        MemorySpec(id="out#0", node="n1"),
        ShellSpec(id="bad", command="echo hello; echo oops >&2; exit 3", node="n1"),
        SleepSpec(id="slow", seconds=slow, outputs={"o": "s"}, node="n0"),
        MemorySpec(id="s", node="n0"),
        NoopSpec(id="after", inputs={"s": "s"}, outputs={"o": "a"}, node="n1"),
        MemorySpec(id="a", node="n1"),
    ]
    return specs


@pytest.fixture
def island(tmp_path):
    with in_process(tmp_path) as (island, nms):
        island.create_session("s")
        island.append("s", spread())
        island.deploy("s")
        with rest_client(island, token=TOKEN) as client:
            try:
                yield island, nms, client
            finally:
                island.cancel("s")
                island.wait("s", 30)


def get(client, path, **params):
    r = client.simulate_get(path, headers=AUTH, params=params or None)
    assert r.status_code == 200, (path, r.status, r.text)
    return r.json


def test_the_page_is_public_and_the_data_needs_the_token(island):
    _, _, client = island
    page = client.simulate_get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert b'src="static/app.js"' in page.content  # relative: works behind a path prefix too
    for asset in ("app.js", "app.css"):
        assert client.simulate_get(f"/static/{asset}").status_code == 200
    assert client.simulate_get("/static/secret.py").status_code == 404
    for path in ("/api/monitor", "/api/sessions/s/monitor", "/api/sessions/s/why", "/metrics"):
        assert client.simulate_get(path).status_code == 401, path
        assert client.simulate_get(path, headers={"Authorization": "Bearer nope"}).status_code == 401


def test_overview_lists_the_session_with_its_progress_and_the_nodes(island):
    _, _, client = island
    o = poll_for(lambda: (o := get(client, "/api/monitor"))["sessions"][0]["settled"] >= 16 and o, timeout=10)
    (s,) = o["sessions"]
    assert s["sessionId"] == "s" and s["status"] == "RUNNING" and s["size"] == 20
    assert o["manager"]["role"] == "dim"
    assert {m["name"]: m["status"] for m in o["members"]} == {"n0": "ok", "n1": "ok"}
    assert all(m["load"]["threads"]["size"] == 4 for m in o["members"])


def test_session_view_counts_by_logical_node_and_by_node_without_proxies(island):
    _, _, client = island
    v = poll_for(lambda: (v := get(client, "/api/sessions/s/monitor"))["settled"] >= 16 and v, timeout=10)
    groups = {g["key"]: g for g in v["groups"]}
    assert groups["work"]["counts"] == {"FINISHED": 6} and groups["part"]["counts"] == {"COMPLETED": 6}
    # Drops with no logical node (no "#" in their id) and no name are grouped by kind.
    assert groups["sleep"]["counts"] == {"RUNNING": 1} and groups["noop"]["counts"] == {"NOT_RUN": 1}
    # Each drop counted once, by its owner: proxies on the other node are not counted again.
    assert sum(sum(g["counts"].values()) for g in v["groups"]) == v["size"] == 20
    assert sum(v["nodes"]["n0"]["totals"].values()) == 9 and sum(v["nodes"]["n1"]["totals"].values()) == 11
    assert v["failure_count"] == 1 and v["failures"][0]["uid"] == "bad" and v["failures"][0]["node"] == "n1"
    assert "exit status 3" in v["failures"][0]["message"]


def test_drops_are_paged_across_nodes_and_filtered(island):
    _, _, client = island
    poll_for(lambda: get(client, "/api/sessions/s/monitor")["settled"] >= 16, timeout=10)
    page = get(client, "/api/sessions/s/monitor/drops", group="part", offset=2, limit=3)
    assert page["total"] == 6 and len(page["drops"]) == 3
    every = get(client, "/api/sessions/s/monitor/drops", group="part", limit=100)["drops"]
    assert sorted(d["uid"] for d in every) == sorted(f"part#{i}" for i in range(6))
    assert [d["uid"] for d in page["drops"]] == [d["uid"] for d in every[2:5]]
    on_n1 = get(client, "/api/sessions/s/monitor/drops", node="n1", state="ERROR")
    assert [(d["uid"], d["node"]) for d in on_n1["drops"]] == [("bad", "n1")]
    r = client.simulate_get("/api/sessions/s/monitor/drops", headers=AUTH, params={"state": "BOGUS"})
    assert r.status_code == 400


def test_a_drop_has_its_log_with_wall_clock_times_its_output_and_its_links(island):
    _, _, client = island
    d = poll_for(
        lambda: (d := get(client, "/api/sessions/s/monitor/drop", uid="bad"))["state"] == "ERROR" and d, 10
    )
    assert d["node"] == "n1" and d["kind"] == "shell" and "exit status 3" in d["error"]
    assert [(e["from"], e["to"]) for e in d["events"]] == [("NOT_RUN", "RUNNING"), ("RUNNING", "ERROR")]
    assert abs(d["events"][0]["time"] - time.time()) < 600  # wall clock, not a monotonic reading
    assert d["stdout"] == "hello\n" and d["stderr"] == "oops\n"
    assert d["timing"]["seconds"] >= 0
    data = get(client, "/api/sessions/s/monitor/drop", uid="part#1")
    assert [p["uid"] for p in data["producers"]] == ["work#1"] and data["consumers"][0]["uid"] == "join#0"
    r = client.simulate_get("/api/sessions/s/monitor/drop", headers=AUTH, params={"uid": "nope"})
    assert r.status_code == 404


def test_why_names_the_running_app_and_the_input_others_wait_for(island):
    _, _, client = island
    # Once the short apps are over (the failing shell command may still be running at first), only slow runs.
    r = poll_for(
        lambda: (
            (r := get(client, "/api/sessions/s/why"))["blockers"]
            and [x["uid"] for x in r["running"]] == ["slow"]
            and r
        ),
        timeout=30,
    )
    (b,) = r["blockers"]
    assert b["input"] == "s" and b["node"] == "n0" and b["waiting"] == ["after"] and b["waiting_node"] == "n1"
    assert [(p["uid"], p["node"], p["state"]) for p in b["producers"]] == [("slow", "n0", "RUNNING")]
    assert r["running"][0]["seconds"] >= 0
    text = "\n".join(r["verdict"])
    assert "wait for input s (on n0), being written by slow on n0, running for" in text, text
    assert r["critical_path"] is None  # still running


def test_timings_list_the_slowest_apps_and_durations_by_group(island):
    _, _, client = island

    def ready():
        t = get(client, "/api/sessions/s/monitor/timings")
        groups = t["by_group"]
        # join runs on n1 once every part has arrived: after the work apps, maybe after a first look.
        return groups.get("work", {}).get("count") == 6 and "shell" in groups and "join" in groups and t

    t = poll_for(ready, timeout=10)
    assert t["by_group"]["shell"]["count"] == 1 and t["by_group"]["join"]["count"] == 1
    assert "sleep" not in t["by_group"]  # still running: not timed yet
    slowest = [row["seconds"] for row in t["slowest"]]
    assert slowest == sorted(slowest, reverse=True) and len(slowest) == 8


def test_the_critical_path_of_a_finished_session_crosses_nodes(tmp_path):
    """
    a[n0] -> d1[n0] -> b[n1] -> d2[n1] -> c[n0] -> d3[n0]     (b sleeps longest)
    quick[n1] -> q[n1]
    """
    graph = [
        SleepSpec(id="a", seconds=0.05, outputs={"o": "d1"}, node="n0"),
        MemorySpec(id="d1", node="n0"),
        SleepSpec(id="b", seconds=0.3, inputs={"i": "d1"}, outputs={"o": "d2"}, node="n1"),
        MemorySpec(id="d2", node="n1"),
        SleepSpec(id="c", seconds=0.05, inputs={"i": "d2"}, outputs={"o": "d3"}, node="n0"),
        MemorySpec(id="d3", node="n0"),
        NoopSpec(id="quick", outputs={"o": "q"}, node="n1"),
        MemorySpec(id="q", node="n1"),
    ]
    with in_process(tmp_path) as (island, _):
        island.create_session("p")
        island.append("p", graph)
        island.deploy("p")
        assert island.wait("p", 30) == "FINISHED"
        with rest_client(island) as client:
            r = client.simulate_get("/api/sessions/p/why").json
        path = r["critical_path"]
        assert [(s["uid"], s["node"]) for s in path["steps"]] == [
            ("a", "n0"),
            ("d1", "n0"),
            ("b", "n1"),
            ("d2", "n1"),
            ("c", "n0"),
            ("d3", "n0"),
        ]
        assert path["complete"] and path["steps"][2]["seconds"] >= 0.3
        assert any("critical path: 3 app(s)" in line for line in r["verdict"]), r["verdict"]
        ends = [s["end"] for s in path["steps"]]
        assert ends == sorted(ends)


def test_the_monitor_answers_for_a_master_too(tmp_path):
    from dropflow.managers.master import MasterManager

    with in_process(tmp_path) as (island, _):
        master = MasterManager("master", [island])
        try:
            specs = [msgspec.structs.replace(s, island="island") for s in spread(2, slow=0.01)]
            master.create_session("m")
            master.append("m", specs)
            master.deploy("m")
            assert master.wait("m", 30) == "FAILED"  # "bad" fails
            with rest_client(master) as client:
                v = client.simulate_get("/api/sessions/m/monitor").json
                d = client.simulate_get("/api/sessions/m/monitor/drop", params={"uid": "bad"}).json
                o = client.simulate_get("/api/monitor").json
                why = client.simulate_get("/api/sessions/m/why").json
            assert v["size"] == 12 and set(v["nodes"]) == {"n0", "n1"}
            assert v["nodes"]["n0"]["island"] == "island"
            assert d["node"] == "n1" and d["stderr"] == "oops\n"
            assert o["sessions"][0]["sessionId"] == "m" and o["members"][0]["name"] == "island"
            assert why["status"] == "FAILED" and why["critical_path"]["steps"]
        finally:
            master.close()
