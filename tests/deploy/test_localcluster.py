"""The local cluster as a library (:mod:`dropflow.deploy.localcluster`): up, its state, down; a failed up.

``dropflow cluster up|down`` end to end, with a graph submitted to the cluster, is in
tests/managers/test_local_cluster.py.
"""

from __future__ import annotations

import os
import socket
import sys

import psutil
import pytest

from dropflow.deploy import localcluster
from dropflow.deploy.localcluster import ClusterError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "managers"))
# The daemons find their token in this test run's config directory (set up by importing daemons).
from daemons import token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemons_on(port: int) -> list[psutil.Process]:
    """Our running child processes whose command line names ``port`` (the daemons `up` started)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and str(port) in proc.cmdline():
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


def test_up_records_the_cluster_and_down_stops_every_daemon(tmp_path):
    """Scenario: a node manager and an island manager over it come up; the state file names both; a
    second up in the same directory is refused and starts nothing; down stops both and forgets the
    cluster."""
    directory = str(tmp_path / "cluster")
    port, node_port = free_port(), free_port()
    cluster = localcluster.up(directory, nodes=1, port=port, node_port=node_port, timeout=60)
    try:
        assert cluster.url == f"http://127.0.0.1:{port}"
        assert cluster.nodes == (f"http://127.0.0.1:{node_port}",)
        assert len(cluster.pids) == 2 and cluster.alive() == list(cluster.pids)
        assert localcluster.read_state(directory) == cluster
        health = localcluster.wait_healthy(cluster.url, 10, token())
        assert health is not None and health["name"] == "island"
        other = free_port()
        with pytest.raises(ClusterError, match="already up"):
            localcluster.up(directory, nodes=1, port=other, node_port=other)
        assert daemons_on(other) == []
        assert os.path.exists(os.path.join(directory, "logs", "nm-0.log"))
    finally:
        stopped, killed = localcluster.down(directory, timeout=30)
    assert stopped == cluster and killed == []
    assert localcluster.read_state(directory) is None
    assert cluster.alive() == []
    with pytest.raises(ClusterError, match="no cluster state"):
        localcluster.down(directory)


def test_a_daemon_that_does_not_answer_in_time_is_stopped_and_no_cluster_is_recorded(tmp_path):
    """Scenario: with no time to wait, the node manager (still starting) cannot have answered: up raises
    ClusterError naming it and stops it itself (left alone, that daemon would run on), recording nothing."""
    directory = str(tmp_path / "cluster")
    node_port = free_port()
    try:
        with pytest.raises(ClusterError, match=f"node manager http://127.0.0.1:{node_port} did not start"):
            localcluster.up(directory, nodes=1, port=free_port(), node_port=node_port, timeout=0)
        assert daemons_on(node_port) == []
        assert localcluster.read_state(directory) is None
    finally:
        for proc in daemons_on(node_port):  # only if the test failed
            proc.kill()
            proc.wait(10)
