"""The JSON Schema of the native logical graph format accepts the examples, rejects bad constructs."""

from __future__ import annotations

import json
import os
from typing import Any

import jsonschema
import pytest
from lgtools import EXAMPLES

import dropflow

SCHEMA_PATH = os.path.join(os.path.dirname(dropflow.__file__), "schemas", "logical-graph-1.schema.json")


def schema() -> dict[str, Any]:
    with open(SCHEMA_PATH, "rb") as f:
        loaded: dict[str, Any] = json.load(f)
    return loaded


@pytest.mark.parametrize("name", ["scatter_gather.lg.json", "loop.lg.json"])
def test_examples_match_the_schema(name: str) -> None:
    with open(os.path.join(EXAMPLES, name), "rb") as f:
        jsonschema.validate(json.load(f), schema())


def test_schema_rejects_a_construct_without_a_kind_of_node() -> None:
    bad = {
        "format": "dropflow/logical-graph",
        "version": 1,
        "nodes": [{"id": "x", "construct": "scatter", "copies": 0}],
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema())
