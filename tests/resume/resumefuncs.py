"""Apps for the resume tests: each counts its own executions in a file, so a test can tell what ran twice."""

from __future__ import annotations

import os


def counted(name: str, counts: str) -> None:
    """Append one line to ``counts/name``: one execution of app ``name``."""
    with open(os.path.join(counts, name), "a") as f:
        f.write("run\n")


def step(x: int, name: str, counts: str) -> int:
    counted(name, counts)
    return x + 1


def total(xs: list[int], name: str, counts: str) -> int:
    counted(name, counts)
    return sum(xs)


def runs(counts: str) -> dict[str, int]:
    """App name -> how many times it ran."""
    out = {}
    for name in os.listdir(counts):
        with open(os.path.join(counts, name)) as f:
            out[name] = len(f.read().splitlines())
    return out
