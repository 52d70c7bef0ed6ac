"""Where ``dropflow run`` spends its time on one workload: py-spy samples, summed by function.

    .venv/bin/python benchmarks/harness/hotspots.py py-chain 100000 [--top 25] [--rate 500]

Writes the workload's graph (:mod:`convert`), runs ``dropflow run`` under ``py-spy record`` (from the
``tools`` environment; all threads, idle samples included) and prints the functions with the most samples --
inclusive (on the stack) and self (the leaf) -- leaving out interpreter start-up (imports). Used for the
profile notes in ``results/NOTES.md``; not part of the timed runs (sampling slows the process down).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

import venvs

HERE = os.path.dirname(os.path.abspath(__file__))
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _frames(stack: str) -> list[str]:
    out = []
    for part in stack.split(";")[1:]:  # first element is the thread
        m = FRAME.match(part)
        if m:
            file = m["file"].split("site-packages/")[-1].removeprefix(HERE + "/")
            out.append(f"{m['func']} ({file})")
    return out


def summarize(raw: str, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if "_find_and_load" in stack or not count.isdigit():
            continue
        frames = _frames(stack)
        if not frames:
            continue
        n = int(count)
        total += n
        for f in set(frames):
            inclusive[f] += n
        leaf[frames[-1]] += n
    lines = [f"{total} samples (imports excluded)", "", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in leaf.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload")
    p.add_argument("n", type=int)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--rate", type=int, default=500)
    args = p.parse_args(argv)
    tools = venvs.ensure("tools")
    pyspy = os.path.join(os.path.dirname(tools), "py-spy")
    with tempfile.TemporaryDirectory(prefix="dropflow-hotspots-") as tmp:
        subprocess.run(
            [sys.executable, os.path.join(HERE, "convert.py"), args.workload, str(args.n), tmp, "--no-peers"],
            check=True,
            capture_output=True,
        )
        numpy = args.workload.startswith("numpy")
        graph = os.path.join(tmp, "dropflow-shm.json" if numpy else "dropflow.json")
        raw = os.path.join(tmp, "raw.txt")
        spy = [pyspy, "record", "--threads", "--idle", "-r", str(args.rate), "-f", "raw", "-o", raw, "--"]
        run = [sys.executable, "-m", "dropflow.cli", "run", graph, "--json", "--progress", "never"]
        run += ["--workspace", os.path.join(tmp, "ws"), "--pythonpath", HERE]
        subprocess.run(
            [*spy, *run],
            check=True,
            capture_output=True,
        )
        with open(raw) as f:
            print(summarize(f.read(), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
