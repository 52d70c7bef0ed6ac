"""A local cluster as a new user meets it: started by the CLI, given a graph it refuses, followed to its end.

The cluster is started with ``dropflow cluster up --pythonpath --allow-path`` (its ports chosen free); a
second ``cluster up`` on the same ports is refused before it starts anything; a submit refused with 400
leaves no session behind; ``dropflow submit --wait`` counts progress on the island; ``status`` exits 1 for
a failed session.
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from dropflow.api import Pipeline, input_file
from dropflow.drops import MemorySpec, PythonSpec, ShellSpec
from dropflow.managers.client import RestClient

from apitools import EXAMPLES, HERE, dropflow, free_ports
from conftest import poll_for, write_graph
from pipelinefuncs import count_lines


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("cluster"))
    data = tmp_path_factory.mktemp("data")
    (data / "lines.txt").write_text("1\n2\n3\n")
    base = free_ports(3)
    up = dropflow(
        "cluster",
        "up",
        "--dir",
        directory,
        "--nodes",
        "2",
        "--port",
        str(base),
        "--node-port",
        str(base + 1),
        "--pythonpath",
        HERE,
        "--pythonpath",
        EXAMPLES,
        "--allow-path",
        str(data),
    )
    assert up.returncode == 0, up.stderr
    try:
        yield f"http://127.0.0.1:{base}", directory, data, base
    finally:
        down = dropflow("cluster", "down", "--dir", directory)
        assert down.returncode == 0, down.stderr


def test_cluster_up_refuses_ports_in_use(cluster, tmp_path):
    """Another cluster holds the ports: refused at once, naming them, with nothing started or recorded."""
    _url, _directory, _data, base = cluster
    with socket.socket() as extra:  # and one more port held by something that is not a cluster
        extra.bind(("127.0.0.1", 0))
        extra.listen()
        other = extra.getsockname()[1]
        done = dropflow(
            "cluster",
            "up",
            "--dir",
            str(tmp_path / "c2"),
            "--nodes",
            "1",
            "--port",
            str(other),
            "--node-port",
            str(base + 1),
        )
    assert done.returncode == 2
    assert f"port(s) {other}, {base + 1} on 127.0.0.1 are in use" in done.stderr
    assert not (tmp_path / "c2" / "cluster.json").exists() and not (tmp_path / "c2" / "logs").exists()


def test_cluster_up_options_reach_the_node_managers(cluster):
    """--pythonpath: the nodes import the tests' functions; --allow-path: they read the user's file."""
    url, _directory, data, _base = cluster
    with Pipeline("options") as p:
        n = count_lines(input_file(str(data / "lines.txt")))
    run = p.submit(url)
    assert run.ok, run.failures
    assert n.result() == 3


def test_a_refused_submit_leaves_no_session(cluster, tmp_path):
    """
    A graph the nodes refuse (its function cannot be imported) is a 400: the CLI says why, and deletes the
    session it made -- no FAILED session without an error, no node marked LOST, and the id is free again.
    """
    url = cluster[0]
    graph = write_graph(
        tmp_path / "bad.json",
        [PythonSpec(id="f", func="no_such_module:f", outputs={"r": "r"}), MemorySpec(id="r")],
    )
    done = dropflow("submit", graph, "--to", url, "--session-id", "refused-1", "--wait")
    assert done.returncode == 2
    assert "cannot import module 'no_such_module'" in done.stderr
    with RestClient(url) as client:
        assert "refused-1" not in [s["sessionId"] for s in client.sessions()]
    good = write_graph(tmp_path / "good.json", [ShellSpec(id="s", command="true")])
    again = dropflow("submit", good, "--to", url, "--session-id", "refused-1", "--wait")
    assert again.returncode == 0, again.stderr


def test_progress_on_an_island_and_status_of_a_failure(cluster, tmp_path):
    """
    ``submit --wait --progress always`` on an island fills its bar in whole drops; ``status`` of a session
    that FAILED exits 1 (it exited 0).
    """
    url = cluster[0]
    graph = write_graph(
        tmp_path / "fails.json",
        [
            ShellSpec(id="a", command="echo x", outputs={"stdout": "o"}),
            MemorySpec(id="o", codec="utf-8"),
            ShellSpec(id="b", command="cat >/dev/null; exit 4", inputs={"stdin": "o"}),
        ],
    )
    done = dropflow(
        "submit", graph, "--to", url, "--session-id", "progress-1", "--wait", "--progress", "always"
    )
    assert done.returncode == 1
    assert "3/3" in done.stderr and ".0/" not in done.stderr
    status = dropflow("status", "progress-1", "--to", url)
    assert status.returncode == 1 and "FAILED" in status.stdout
    summary = json.loads(dropflow("status", "progress-1", "--to", url, "--json").stdout)
    assert summary["by_state"]["ERROR"] >= 1 and not summary["lost_nodes"]
    assert os.path.isdir(cluster[1])


def test_an_islands_progress_counts_drops_while_it_runs(cluster, tmp_path):
    """The island's session info has no settled count; the client adds up its nodes' drops by state, so
    ``submit --wait`` moves while the session runs (it showed 0 until the end)."""
    from dropflow.cli.client import settled

    url = cluster[0]
    flag = tmp_path / "go"
    drops = [
        ShellSpec(id="a", command="echo x", outputs={"stdout": "o"}, node="node-0"),
        MemorySpec(id="o", codec="utf-8", node="node-1"),
        ShellSpec(
            node="node-1",
            id="wait",
            command=f"cat >/dev/null; while [ ! -e {flag} ]; do sleep 0.05; done",
            inputs={"stdin": "o"},
        ),
    ]
    with RestClient(url) as client:
        client.create_session("progress-2")
        client.append("progress-2", drops)
        client.deploy("progress-2")
        try:
            assert poll_for(lambda: settled(client, "progress-2") == 2, timeout=30)
            assert client.status("progress-2") == "RUNNING"
        finally:
            flag.write_text("")
        assert client.wait("progress-2", 30)["status"] == "FINISHED"
        assert settled(client, "progress-2") == 3
