"""Daemon logs: one line per event, a session's life told with its ids, text with key=value fields or JSON."""

from __future__ import annotations

import json
import logging

from monitorkit import in_process

from dropflow.drops import MemorySpec, NoopSpec, ShellSpec
from dropflow.managers.logs import JsonFormatter, TextFormatter, session_event


def record(message: str, **fields) -> logging.LogRecord:
    rec = logging.LogRecord("dropflow.sessions", logging.WARNING, __file__, 1, message, None, None)
    rec.created = 1_700_000_000.25
    rec.fields = fields
    return rec


def test_text_lines_are_single_lines_with_grep_friendly_fields():
    line = TextFormatter().format(
        record("session s1 FAILED:\ntraceback here", session="s1", first="bad one", n=3)
    )
    assert "\n" not in line
    assert " WARNING dropflow.sessions: session s1 FAILED:\\ntraceback here " in line
    assert line.endswith('session=s1 first="bad one" n=3')
    assert line[:4] == "2023" and ".250" in line[:24]  # wall clock, milliseconds


def test_json_lines_carry_the_same_fields():
    body = json.loads(JsonFormatter().format(record("a\nb", session="s1", drops=4)))
    assert body["message"] == "a\nb" and body["session"] == "s1" and body["drops"] == 4
    assert (
        body["level"] == "WARNING"
        and body["logger"] == "dropflow.sessions"
        and body["time"].startswith("2023")
    )


def test_a_session_life_is_logged_by_the_nodes_and_the_island(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dropflow.sessions")
    with in_process(tmp_path) as (island, _):
        island.create_session("life")
        island.append(
            "life",
            [
                NoopSpec(id="a", outputs={"o": "d"}, node="n0"),
                MemorySpec(id="d", node="n0"),
                NoopSpec(id="b", inputs={"d": "d"}, node="n1"),
                ShellSpec(id="oops", command="echo bad news >&2; exit 2", node="n1"),
            ],
        )
        island.deploy("life")
        assert island.wait("life", 30) == "FAILED"
    events = [
        (r.fields["event"], r.fields.get("node")) for r in caplog.records if r.fields.get("session") == "life"
    ]
    for node in ("n0", "n1"):
        assert [e for e, n in events if n == node][:3] == ["created", "deployed", "started"], events
    island_events = [e for e, n in events if n is None]
    assert island_events[:3] == ["created", "deployed", "started"] and "ended" in island_events
    (end,) = [r for r in caplog.records if r.fields.get("event") == "ended" and "node" not in r.fields]
    assert end.levelno == logging.WARNING and end.fields["state"] == "FAILED" and end.fields["drops"] == 4
    assert end.fields["first_failure"] == "oops"
    assert "first failure: oops on n1: command failed (exit status 2)" in end.getMessage()
    (deployed,) = [
        r for r in caplog.records if r.fields.get("event") == "deployed" and "node" not in r.fields
    ]
    assert deployed.fields["drops"] == 4 and deployed.fields["nodes"] == "n0,n1"


def test_session_events_are_skipped_when_the_level_is_off(caplog):
    caplog.set_level(logging.ERROR, logger="dropflow.sessions")
    session_event("created", "quiet", "session quiet created")
    assert not [r for r in caplog.records if r.name == "dropflow.sessions"]
