"""Run by DALiuGE's own interpreter (never imported by dropflow): ``dlg unroll`` of many graphs at once.

``dlg unroll -L GRAPH`` is ``dlg.dropmake.pg_generator.unroll(open(GRAPH), oid_prefix="1")`` followed by a
JSON dump; calling it here for every graph saves one interpreter start (two seconds) per graph. Writes
``OUT/<i>.json`` for the i-th graph: ``{"ok": true, "pgt": [...]}`` or ``{"ok": false, "error": "..."}``.
"""

import json
import logging
import os
import sys

logging.disable(logging.CRITICAL)

from dlg.dropmake.pg_generator import unroll  # noqa: E402

out = sys.argv[1]
for i, path in enumerate(sys.argv[2:]):
    try:
        with open(path) as f:
            result = {"ok": True, "pgt": unroll(f, oid_prefix="1")}
    except Exception as exc:  # DALiuGE refuses the graph: record why
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    with open(os.path.join(out, f"{i}.json"), "w") as f:
        json.dump(result, f, default=str)
