"""The native physical graph format: its JSON Schema and state diagrams stay true to the code."""

from __future__ import annotations

import glob
import json
import os

import jsonschema
import pytest

from dropflow.drops import MemorySpec, NoopSpec, PythonSpec, decode_physical, encode_physical
from dropflow.drops.graph import physical_schema
from dropflow.drops.states import APP_TRANSITIONS, DROP_TRANSITIONS, diagrams

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(ROOT, "dropflow", "schemas", "physical-graph-1.schema.json")


def test_committed_schema_is_the_generated_one():
    with open(SCHEMA) as f:
        assert json.load(f) == physical_schema(), "regenerate: python docs/generate.py"


def _physical_examples() -> list[str]:
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "*.json"))):
        with open(path) as f:
            if json.load(f).get("format") == "dropflow/physical-graph":
                found.append(path)
    assert found
    return found


@pytest.mark.parametrize("path", _physical_examples())
def test_physical_examples_satisfy_the_schema(path):
    with open(path) as f:
        jsonschema.validate(json.load(f), physical_schema())


@pytest.mark.parametrize(
    "drop",
    [
        {"id": "a", "kind": "memroy"},
        {"id": "a", "kind": "memory", "colour": "red"},
        {"id": "a", "kind": "noop", "retries": -1},
        {"kind": "memory"},
        {"id": "a", "kind": "shell"},
    ],
)
def test_schema_and_decoder_agree_on_bad_drops(drop):
    doc = {"format": "dropflow/physical-graph", "version": 1, "drops": [drop]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, physical_schema())
    from dropflow.drops import GraphError

    with pytest.raises(GraphError):
        decode_physical(json.dumps(doc).encode())


def test_encode_decode_round_trip_omits_defaults():
    drops = [
        MemorySpec(id="m", data=[1, 2], codec="json"),
        PythonSpec(id="p", func="m:f", inputs={"x": "m"}, outputs={"y": ["a", "b"]}, retries=2),
        NoopSpec(id="n", node="host1", island="isl0"),
    ]
    data = encode_physical(drops, "rt")
    assert b"expire_after_use" not in data  # defaults are left out
    back = decode_physical(data)
    assert back.drops == drops and back.name == "rt"


def test_state_diagrams_are_generated_from_the_tables():
    with open(os.path.join(ROOT, "docs", "states.md")) as f:
        assert f.read() == diagrams(), "regenerate: python docs/generate.py"


def test_every_transition_effect_is_implemented():
    """Each effect named by a table is a Core method, or one of the effects that only record."""
    from dropflow.engine.core import Core

    for table, prefix in ((DROP_TRANSITIONS, "_data_"), (APP_TRANSITIONS, "_app_")):
        for effect in table.values():
            assert effect in Core.RECORD_ONLY or hasattr(Core, prefix + effect), effect
