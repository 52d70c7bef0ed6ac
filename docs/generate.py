"""Regenerate the documents that are derived from code: ``python docs/generate.py``.

- docs/states.md, from the transition tables in dropflow/drops/states.py;
- dropflow/schemas/physical-graph-1.schema.json, from the drop spec classes.

tests/test_formats.py fails when a committed copy differs from what this script would write.
"""

from __future__ import annotations

import json
import os

from dropflow.drops.graph import physical_schema
from dropflow.drops.states import diagrams

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
    with open(os.path.join(ROOT, "docs", "states.md"), "w") as f:
        f.write(diagrams())
    with open(os.path.join(ROOT, "dropflow", "schemas", "physical-graph-1.schema.json"), "w") as f:
        json.dump(physical_schema(), f, indent=2)
        f.write("\n")
