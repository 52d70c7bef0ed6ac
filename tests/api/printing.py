"""Functions that print, for the tests of captured output (imported by name by the engine)."""

from __future__ import annotations

import sys


def chatty(n: int) -> int:
    for i in range(n):
        print(f"CHATTY line {i}")
    print("CHATTY on stderr", file=sys.stderr)
    return n


def noisy_failure(n: int) -> int:
    print("NOISY before the failure")
    raise ValueError("bad n")


def wants_path(data: str) -> int:
    with open(data) as f:  # given the file's bytes, open() fails: the hint says how to get the path
        return len(f.read())
