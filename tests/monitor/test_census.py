"""Counting drops by logical-graph node and state: a picture of a session that stays readable at any size."""

from __future__ import annotations

import pytest

from dropflow.drops import MemorySpec, NoopSpec, PythonSpec
from dropflow.managers import census
from dropflow.managers.census import Census, group_key

from conftest import run


def fan(n: int) -> list:
    """
    root -> work#i -> part#i (i < n) -> join#0 -> out#0 ; and a function that raises (alone)
    """
    specs = [MemorySpec(id="root")]
    for i in range(n):
        specs += [
            NoopSpec(id=f"work#{i}", inputs={"i": "root"}, outputs={"o": f"part#{i}"}),
            MemorySpec(id=f"part#{i}"),
        ]
    specs += [
        NoopSpec(id="join#0", inputs={"p": [f"part#{i}" for i in range(n)]}, outputs={"o": "out#0"}),
        MemorySpec(id="out#0"),
        PythonSpec(id="bad", name="the bad one", func="testfuncs:boom"),
    ]
    return specs


def test_group_key_follows_the_translator_then_the_name_then_the_kind():
    assert group_key(MemorySpec(id="clean#3.1")) == "clean"
    assert group_key(MemorySpec(id="#odd")) == "memory"  # a leading '#' is no logical node
    assert group_key(MemorySpec(id="x", name="visibilities")) == "visibilities"
    assert group_key(NoopSpec(id="y")) == "noop"


def test_counts_by_group_and_state_match_the_session(node):
    session = run(node, fan(50))
    counts = Census(session).counts()
    by_key = {g["key"]: g for g in counts["groups"]}
    assert by_key["work"]["counts"] == {"FINISHED": 50} and by_key["work"]["kind"] == "noop"
    assert by_key["part"]["counts"] == {"COMPLETED": 50} and by_key["part"]["category"] == "data"
    assert by_key["join"]["counts"] == {"FINISHED": 1}
    assert by_key["the bad one"]["counts"] == {"ERROR": 1}
    # In the graph's reading order (where each group's first drop is), not data first and apps after.
    assert [g["key"] for g in counts["groups"]] == ["memory", "work", "part", "join", "out", "the bad one"]
    assert counts["totals"] == session.summary().by_state
    assert counts["drops"] == len(session.graph.by_id)


def test_a_census_is_reused_while_young_and_final_once_the_session_ended(node):
    session = run(node, fan(10))
    c = Census(session)
    first = c.counts()
    assert first["age"] == 0.0
    again = c.counts()
    assert again["age"] >= 0.0 and again["totals"] == first["totals"]
    assert c._final  # ended: never counted again


def test_too_many_groups_fall_back_to_kinds(node, monkeypatch):
    monkeypatch.setattr(census, "MAX_GROUPS", 5)
    specs = [MemorySpec(id=f"d{i}", name=f"unique {i}") for i in range(20)]
    session = run(node, specs)
    groups = Census(session).counts()["groups"]
    assert [(g["key"], g["counts"]) for g in groups] == [("memory", {"COMPLETED": 20})]


def test_drops_of_a_group_in_a_state_a_page_at_a_time(node):
    session = run(node, fan(30))
    c = Census(session)
    total, rows = c.drops("part", "COMPLETED", offset=10, limit=5)
    assert total == 30
    assert [r["uid"] for r in rows] == [f"part#{i}" for i in range(10, 15)]
    assert c.drops("part", "ERROR", 0, 10) == (0, [])
    total, rows = c.drops(None, "ERROR", 0, 10)
    assert total == 1 and rows[0]["uid"] == "bad"
    assert c.drops("nothing-like-it", None, 0, 10) == (0, [])


@pytest.mark.parametrize("size", [1, 0])
def test_a_session_not_deployed_has_no_groups(node, size):
    session = node.create_session("s")
    if size:
        session.add([MemorySpec(id="a")])
    counts = Census(session).counts()
    assert counts["groups"] == [] and counts["drops"] == size
    session.cancel()
    session.wait(10)
