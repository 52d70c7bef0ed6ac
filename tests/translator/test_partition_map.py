"""Partitioning (none, metis, min_num_parts) and mapping onto nodes and islands."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from lgtools import app, construct, data, doc, into, out

from dropflow.drops.errors import GraphError
from dropflow.translator import read, translate
from dropflow.translator.mapping import map_partitions, workers_and_islands
from dropflow.translator.partition import Weighted, partition
from dropflow.translator.pipeline import weighted


def chains(n: int, length: int) -> dict[str, Any]:
    """
    +-- s (n) ---------------------------------+
    |  a0 --> d0 --> a1 --> d1 --> ... --> dL  |
    +------------------------------------------+

    n independent chains: a good partitioning cuts nothing.
    """
    nodes: list[dict[str, Any]] = [construct("s", "scatter", copies=n)]
    links: list[dict[str, Any]] = []
    for i in range(length):
        nodes += [
            app(f"a{i}", ["i"] if i else [], ["o"], parent="s", time=1.0),
            {**data(f"d{i}", parent="s"), "volume": 10},
        ]
        links.append(out(f"a{i}", "o", f"d{i}"))
        if i:
            links.append(into(f"d{i - 1}", f"a{i}", "i"))
    return doc(nodes, links)


def template_of(d: dict[str, Any]) -> Any:
    return read(json.dumps(d).encode())


def test_metis_keeps_chains_whole_and_balances() -> None:
    r = template_of(chains(8, 6))
    p = partition(weighted(r), "metis", 4, seed=1)
    assert p.count == 4
    assert p.cut == 0
    assert np.all(p.loads == p.loads[0])  # 8 equal chains in 4 parts


def test_metis_is_deterministic_for_a_seed() -> None:
    r = template_of(chains(16, 5))
    a = partition(weighted(r), "metis", 5, seed=7).parts
    b = partition(weighted(template_of(chains(16, 5))), "metis", 5, seed=7).parts
    assert np.array_equal(a, b)


def test_min_num_parts_meets_the_critical_path_with_fewest_partitions() -> None:
    """
    8 chains of 3 one-second apps, 2 apps at a time per partition: the critical path (3 s) needs all 8
    chains in parallel, so 4 partitions; with a 6 s deadline, 2 partitions do.
    """
    g = weighted(template_of(chains(8, 3)))
    assert partition(g, "min_num_parts", max_dop=2).count == 4
    assert partition(g, "min_num_parts", max_dop=2, deadline=6.0).count == 2


def test_min_num_parts_refuses_an_impossible_deadline() -> None:
    g = weighted(template_of(chains(2, 3)))
    with pytest.raises(GraphError, match="shorter than the graph's critical path"):
        partition(g, "min_num_parts", max_dop=2, deadline=1.0)


def test_data_drops_follow_their_producer() -> None:
    g = weighted(template_of(chains(4, 3)))
    p = partition(g, "min_num_parts", max_dop=1)
    producers = g.src[g.is_app[g.src]]
    assert np.array_equal(p.parts[g.dst[g.is_app[g.src]]], p.parts[producers])


def test_islands_first_nodes_host_managers() -> None:
    workers, islands = workers_and_islands(["m1", "m2", "w1", "w2", "w3", "w4"], 2)
    assert workers == ["w1", "w2", "w3", "w4"]
    assert islands == ["m1", "m1", "m2", "m2"]


def test_single_machine_island_manager_also_runs_drops() -> None:
    assert workers_and_islands(["localhost"], 1) == (["localhost"], ["localhost"])


def test_map_balances_partition_loads() -> None:
    nodes, islands = map_partitions([5, 1, 4, 2, 3, 3], ["a", "b", "c"], 0)
    load = {n: 0.0 for n in "abc"}
    for p, n in enumerate(nodes):
        load[n] += [5, 1, 4, 2, 3, 3][p]
    assert sorted(load.values()) == [6, 6, 6]
    assert islands == [None] * 6


def test_map_errors_name_the_option() -> None:
    with pytest.raises(GraphError, match="3 islands need at least 3 nodes"):
        workers_and_islands(["a", "b"], 3)
    with pytest.raises(GraphError, match="'a' appears twice"):
        workers_and_islands(["a", "a"], 0)


def test_translate_places_every_drop_on_a_worker() -> None:
    r = template_of(chains(6, 2))
    specs = translate(r, algorithm="metis", parts=3, nodes=["dim", "n1", "n2", "n3"], islands=1).specs
    assert {s.node for s in specs} == {"n1", "n2", "n3"}
    assert {s.island for s in specs} == {"dim"}


def test_weights_reach_metis_from_the_logical_graph() -> None:
    """One heavy app (time 300) and 30 light ones (10 each) in two parts: the heavy one is alone."""
    d = doc(
        [
            app("heavy", outputs=["o"], time=300),
            data("h"),
            construct("s", "scatter", copies=30),
            app("light", outputs=["o"], parent="s", time=10),
            data("l", parent="s"),
        ],
        [out("heavy", "o", "h"), out("light", "o", "l")],
    )
    p = partition(weighted(template_of(d)), "metis", 2, seed=0)
    assert sorted(p.loads.tolist()) == [300.0, 300.0]


def test_unknown_algorithm() -> None:
    g = Weighted(
        0,
        np.zeros(0, dtype=np.int64),
        np.zeros(0, dtype=np.int64),
        np.zeros(0, dtype=bool),
        np.zeros(0),
        np.zeros(0),
    )
    with pytest.raises(GraphError, match="unknown algorithm 'pso'"):
        partition(g, "pso")
