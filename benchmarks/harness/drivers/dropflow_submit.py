"""``dropflow submit GRAPH --to URL --wait --report FILE``, timed from inside the process.

The command is dropflow's own (``dropflow.cli.main``); this wrapper only imports it first and times the call,
so that the measured window -- read and place the graph, create, append, deploy, run to the end -- leaves out
interpreter start-up, as ``dropflow run``'s own summary does. Prints one JSON object: the command's report
plus ``e2e_s``.

Usage: ``python dropflow_submit.py URL GRAPH REPORT``.
"""

from __future__ import annotations

import json
import sys
import time

from dropflow.cli import main as dropflow


def main(argv: list[str]) -> int:
    url, graph, report = argv
    t0 = time.perf_counter()
    code = dropflow(["submit", graph, "--to", url, "--wait", "--report", report, "--progress", "never"])
    e2e = time.perf_counter() - t0
    with open(report) as f:
        out = json.load(f)
    out["e2e_s"] = e2e
    out["exit"] = code
    print(json.dumps(out))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
