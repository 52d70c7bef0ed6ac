"""App functions for the monitor's tests (they run in the nodes' worker processes)."""

from __future__ import annotations

import sys
import threading


def shout_and_fail(x=None):
    print("starting the shout")
    print("shouting to standard error", file=sys.stderr)
    raise ValueError("boom: the shout failed")


def chatty(x=None):
    for i in range(2000):
        print(f"line {i} of a chatty app")
    print("chatty's last words", file=sys.stderr)
    return 1


def never_returns(x=None):
    threading.Event().wait()  # a hung app: only killing its process ends it
