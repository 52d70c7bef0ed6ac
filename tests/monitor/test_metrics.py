"""``/metrics`` of real daemons, scraped over HTTP and parsed with the Prometheus client's own parser.

Two node managers under an island run a graph whose data crosses nodes, so the bus and transfers count.
"""

from __future__ import annotations

import httpx
import pytest
from monitorkit import APPS_PATH, auth, start
from prometheus_client.parser import text_string_to_metric_families

from dropflow.drops import MemorySpec, PythonSpec, ShellSpec, SleepSpec
from dropflow.managers.client import RestClient


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> {sorted labels: value} for every sample."""
    assert httpx.get(f"{url}/metrics", timeout=30).status_code == 401  # like the rest of the API
    resp = httpx.get(f"{url}/metrics", timeout=30, headers=auth())  # (Prometheus: bearer_token_file)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    env = {"PYTHONPATH": APPS_PATH}
    nodes = [
        start(
            "nm",
            "--workspace",
            str(tmp / f"ws{i}"),
            "--processes",
            "1",
            logdir=str(tmp),
            name=f"n{i}",
            env=env,
        )
        for i in range(2)
    ]
    dim = start("dim", "--nodes", ",".join(n.url for n in nodes), logdir=str(tmp), name="island", env=env)
    try:
        yield dim, nodes
    finally:
        for d in (dim, *nodes):
            d.stop()


def test_metrics_of_a_node_and_an_island_after_a_session(cluster):
    dim, (n0, n1) = cluster
    graph = [
        PythonSpec(
            id="make",
            func="testfuncs:const",
            kwargs={"value": list(range(1000))},
            outputs={"o": "d"},
            node="n0",
        ),
        MemorySpec(id="d", node="n0"),
        PythonSpec(id="use", func="testfuncs:total", inputs={"xs": "d"}, outputs={"o": "t"}, node="n1"),
        MemorySpec(id="t", node="n1"),
        ShellSpec(id="fails", command="exit 1", node="n1"),
    ]
    with RestClient(dim.url) as island:
        island.create_session("m")
        island.append("m", graph)
        island.deploy("m")
        assert island.wait("m", 30)["status"] == "FAILED"
    m1 = scrape(n1.url)
    assert m1["dropflow_sessions"][(("state", "FAILED"),)] == 1
    assert m1["dropflow_sessions"][(("state", "RUNNING"),)] == 0
    # n1 owns use, t and fails (the proxy of d is counted by n0).
    assert m1["dropflow_drops"] == {
        (("state", "COMPLETED"),): 1,
        (("state", "ERROR"),): 1,
        (("state", "FINISHED"),): 1,
    }
    assert m1["dropflow_app_duration_seconds_count"][()] == 2
    assert m1["dropflow_app_duration_seconds_bucket"][(("le", "+Inf"),)] == 2
    assert m1["dropflow_apps_failed_total"][()] == 1
    assert m1["dropflow_bus_messages_total"][(("direction", "received"),)] > 0
    assert m1["dropflow_bus_bytes_total"][(("direction", "received"),)] > 1000  # the list crossed nodes
    assert m1["dropflow_transfers_total"][(("direction", "fetch"),)] == 1
    assert m1["dropflow_transfers_failed_total"][()] == 0
    assert m1["dropflow_pool_size"][(("pool", "process"),)] == 1
    assert m1["dropflow_owner_queue_depth"][()] >= 0
    assert m1["dropflow_engine_errors_total"][()] == 0
    assert m1["process_resident_memory_bytes"][()] > 0
    assert ("name", "n1") in next(iter(m1["dropflow_info"]))
    m0 = scrape(n0.url)
    assert m0["dropflow_bus_messages_total"][(("direction", "sent"),)] > 0
    assert m0["dropflow_app_duration_seconds_count"][()] == 1

    mi = scrape(dim.url)
    assert mi["dropflow_sessions"][(("state", "FAILED"),)] == 1
    assert mi["dropflow_members"][()] == 2 and mi["dropflow_lost_members"][()] == 0
    assert ("role", "dim") in next(iter(mi["dropflow_info"]))


def test_a_running_session_has_series_of_its_own(cluster):
    _, (n0, _) = cluster
    with RestClient(n0.url) as nm:
        nm.create_session("live")
        nm.append("live", [SleepSpec(id="zz", seconds=600)])
        nm.deploy("live")
        try:
            m = scrape(n0.url)
            assert m["dropflow_session_drops"][(("session", "live"), ("state", "RUNNING"))] == 1
            assert m["dropflow_session_settled_ratio"][(("session", "live"),)] == 0
            assert m["dropflow_pool_busy"][(("pool", "thread"),)] == 1
        finally:
            nm.cancel("live")
            assert nm.wait("live", 30)["ended"]
        m = scrape(n0.url)
        assert not any(dict(k).get("session") == "live" for k in m.get("dropflow_session_drops", {}))
