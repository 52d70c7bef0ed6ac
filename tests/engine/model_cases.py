"""Random graphs with scripted apps, for the model-based cascade test: hypothesis strategies and the specs.

Theory of operation
-------------------
A :class:`Case` is a plan: data drops and apps with their kinds, links, executors, retries, tolerances,
scripts and nodes. :func:`cases` draws them. Most are small and drawn drop by drop, so that hypothesis
shrinks a failure to a handful of drops; a few are big (hundreds to a few thousand drops), generated from a
drawn seed because hypothesis cannot draw thousands of values per example. :meth:`Case.specs` turns a plan
into the drop specs of one session; its ``repr`` draws the graph in text, as a falsifying example shows it.

Graphs are built in topological order: an app reads drops that exist before it, and writes new drops or
existing ones that nothing reads yet (several producers of one drop), so they are acyclic by construction.
Constructs that the data layer, not the cascade, restricts are left out: a drop with several producers is
a memory or null drop (a shared-memory segment is created exclusively; two producers of a file overwrite
each other), and a drop that may be completed with nothing written is not a file (a missing file cannot be
read). An app that blocks never runs inline (it would block the node's owner) nor on the default executor
(which runs code measured trivially short inline); at most three block on threads and one in a worker
process per case, fewer than the nodes' pools hold, so that every other app still gets to run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from model import BLOCK, FALSE, FINISH, RAISE, TRUE

from dropflow.drops import BranchSpec, MemorySpec, NoopSpec, NullSpec, PythonSpec, SharedMemorySpec
from dropflow.drops.spec import DropSpec, FileSpec

__all__ = ["NODES", "AppPlan", "Case", "DataPlan", "cases"]

NODES = ("a", "b", "c")
#: Lifespans: one that runs out at once (the drop may expire before the session ends) and one that never
#: does during a test.
SHORT_LIFE, LONG_LIFE = 0.001, 3600.0
#: Error tolerances that are exact binary fractions: "more than this fraction of n" then has one meaning.
TOLERANCES = (0.0, 0.0, 0.0, 0.25, 0.5, 1.0)
MAX_THREAD_BLOCKS, MAX_PROCESS_BLOCKS = 3, 1
#: What a graph may contain besides apps that finish: failures, blocked apps, branches, expiry, lifespans.
FEATURES = frozenset({"raise", "block", "branch", "expire", "lifespan"})


@dataclass(frozen=True)
class DataPlan:
    id: str
    kind: str  # memory, null, shm or file
    node: int
    root: bool = False
    expire: bool = False
    lifespan: float | None = None

    def spec(self, nodes: int) -> DropSpec:
        where = NODES[self.node] if nodes > 1 else None
        common: dict[str, Any] = {
            "id": self.id,
            "node": where,
            "expire_after_use": self.expire,
            "lifespan": self.lifespan,
        }
        if self.kind == "memory":
            return MemorySpec(**common, codec="bytes", data=b"root" if self.root else None)
        if self.kind == "null":
            return NullSpec(**common, codec="bytes")
        if self.kind == "shm":
            return SharedMemorySpec(**common, codec="bytes")
        return FileSpec(**common, codec="bytes")

    def describe(self) -> str:
        flags = [self.kind, "@" + NODES[self.node], *(["root"] if self.root else [])]
        if self.expire:
            flags.append("expire_after_use")
        if self.lifespan is not None:
            flags.append(f"lifespan={self.lifespan:g}")
        return f"{self.id}: {' '.join(flags)}"


@dataclass(frozen=True)
class AppPlan:
    id: str
    kind: str  # python, branch or noop
    node: int
    inputs: tuple[str, ...] = ()
    #: Inputs on one list port ``xs`` rather than one port each.
    gather: bool = False
    #: (port, data id): ``o<i>`` for Python apps and no-ops, ``true``/``false`` for branches.
    outputs: tuple[tuple[str, str], ...] = ()
    executor: str | None = None
    retries: int = 0
    tolerance: float = 0.0
    script: tuple[str, ...] = (FINISH,)

    def spec(self, nodes: int, counters: str, gate: str) -> DropSpec:
        inputs: dict[str, str | list[str]]
        if self.gather:
            inputs = {"xs": list(self.inputs)} if self.inputs else {}
        else:
            inputs = {f"i{k}": d for k, d in enumerate(self.inputs)}
        outputs: dict[str, str | list[str]] = {}
        for port, d in self.outputs:
            current = outputs.get(port)
            outputs[port] = (
                d if current is None else [*([current] if isinstance(current, str) else current), d]
            )
        common: dict[str, Any] = {
            "id": self.id,
            "node": NODES[self.node] if nodes > 1 else None,
            "inputs": inputs,
            "outputs": outputs,
            "executor": self.executor,
            "retries": self.retries,
            "error_tolerance": self.tolerance,
        }
        args = {"app": self.id, "script": list(self.script), "counters": counters, "gate": gate}
        if self.kind == "python":
            return PythonSpec(**common, func="modelfuncs:act", kwargs={**args, "outs": list(outputs)})
        if self.kind == "branch":
            return BranchSpec(**common, func="modelfuncs:decide", kwargs=args)
        return NoopSpec(**common)

    def describe(self) -> str:
        ins = ("[" + " ".join(self.inputs) + "]") if self.gather else " ".join(self.inputs) or "-"
        outs = " ".join(f"{p}:{d}" for p, d in self.outputs) or "-"
        extra = [self.kind, self.executor or "default", "@" + NODES[self.node]]
        if self.retries:
            extra.append(f"retries={self.retries}")
        if self.tolerance:
            extra.append(f"tolerance={self.tolerance:g}")
        if self.kind != "noop":
            extra.append("script=" + ",".join(self.script))
        return f"{ins} -> {self.id} -> {outs}   ({' '.join(extra)})"


@dataclass(frozen=True)
class Case:
    nodes: int
    data: tuple[DataPlan, ...]
    apps: tuple[AppPlan, ...]
    #: How the case was made, for big ones: their drops are too many to print.
    origin: str = field(default="", compare=False)

    def specs(self, counters: str, gate: str) -> list[DropSpec]:
        return [d.spec(self.nodes) for d in self.data] + [
            a.spec(self.nodes, counters, gate) for a in self.apps
        ]

    def scripts(self) -> dict[str, tuple[str, ...]]:
        return {a.id: a.script for a in self.apps if a.kind != "noop"}

    def uses_processes(self) -> bool:
        return any(a.executor == "process" for a in self.apps)

    def __len__(self) -> int:
        return len(self.data) + len(self.apps)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """How hypothesis prints a falsifying example: the drawing, not the dataclass fields."""
        printer.text(repr(self))

    def __repr__(self) -> str:
        head = f"Case({len(self)} drops on {self.nodes} node(s){', ' + self.origin if self.origin else ''})"
        if len(self) > 60:
            return head
        return "\n    ".join([head, *(d.describe() for d in self.data), *(a.describe() for a in self.apps)])


class _Builder:
    """Grows a graph in topological order from a source of choices (hypothesis draws or a seeded Random)."""

    def __init__(
        self, choose: Any, integer: Any, nodes: int, process: bool, features: frozenset[str] = FEATURES
    ) -> None:
        self.choose = choose  # choose(options) -> one of them
        self.integer = integer  # integer(lo, hi) -> lo <= n <= hi
        self.nodes = nodes
        self.executors: tuple[str | None, ...] = ("inline", "thread", None) + (
            ("process",) if process else ()
        )
        self.data: list[DataPlan] = []
        self.apps: list[AppPlan] = []
        self.read: set[str] = set()
        self.shared: list[str] = []  # drops that may take another producer: memory/null, produced, unread
        self.blocks = {"thread": 0, "process": 0}
        self.features = features

    def node(self) -> int:
        return int(self.integer(0, self.nodes - 1))

    def new_data(self, root: bool) -> str:
        uid = f"d{len(self.data)}"
        kind = (
            self.choose(("memory", "memory", "null"))
            if root
            else self.choose(("memory",) * 3 + ("null", "shm"))
        )
        self.data.append(
            DataPlan(
                uid,
                kind,
                self.node(),
                root=root,
                expire="expire" in self.features and self.choose((False, False, False, True)),
                lifespan=self.choose((None,) * 8 + (SHORT_LIFE, LONG_LIFE))
                if "lifespan" in self.features
                else None,
            )
        )
        return uid

    def attempt(self, kind: str, executor: str | None) -> str:
        results: tuple[str, ...] = (
            (TRUE, FALSE, TRUE, FALSE) if kind == "branch" else (FINISH, FINISH, FINISH)
        )
        if "raise" in self.features:
            results += (RAISE,)
        # Not on the default executor either: code measured trivially short runs inline there.
        where = executor if executor in ("thread", "process") else None
        limit = {"thread": MAX_THREAD_BLOCKS, "process": MAX_PROCESS_BLOCKS}
        if "block" in self.features and where is not None and self.blocks[where] < limit[where]:
            results += (BLOCK,)
        what: str = self.choose(results)
        if what == BLOCK:
            assert where is not None
            self.blocks[where] += 1
        return what

    def app(self, max_inputs: int, window: int) -> None:
        uid = f"a{len(self.apps)}"
        kind = self.choose(
            ("python", "python", "python", "noop") + (("branch",) if "branch" in self.features else ())
        )
        recent = [d.id for d in self.data[-window:]]
        inputs = tuple(self.choose(recent) for _ in range(self.integer(0, max_inputs) if recent else 0))
        self.read.update(inputs)
        self.shared = [d for d in self.shared if d not in self.read]
        executor = self.choose(self.executors)
        script: tuple[str, ...]
        if kind == "noop":
            retries, script = 0, (FINISH,)
        else:
            retries = self.choose((0, 0, 0, 1, 2))
            script = tuple(self.attempt(kind, executor) for _ in range(retries + 1))
        ports = ("true", "false") if kind == "branch" else None
        outputs: list[tuple[str, str]] = []
        fresh = self.integer(0, 3)
        for k in range(fresh):
            uid_d = self.new_data(root=False)
            if kind == "python" and self.choose((True, False, False, False)):
                # Only a Python app always writes its outputs: a file is safe to read only then.
                self.data[-1] = DataPlan(uid_d, "file", self.data[-1].node, expire=self.data[-1].expire)
            outputs.append((self.choose(ports) if ports else f"o{k}", uid_d))
        if self.shared and self.choose((True, False, False)):
            extra = self.choose(self.shared)
            outputs.append((self.choose(ports) if ports else f"o{fresh}", extra))
        self.shared += [d for _, d in outputs if self._shareable(d)]
        self.apps.append(
            AppPlan(
                uid,
                kind,
                self.node(),
                inputs,
                gather=self.choose((False, False, True)),
                outputs=tuple(outputs),
                executor=executor,
                retries=retries,
                tolerance=self.choose(TOLERANCES),
                script=script,
            )
        )

    def _shareable(self, uid: str) -> bool:
        plan = next(d for d in reversed(self.data) if d.id == uid)
        return plan.kind in ("memory", "null") and uid not in self.read and uid not in self.shared

    def case(self, origin: str = "") -> Case:
        return Case(self.nodes, tuple(self.data), tuple(self.apps), origin)


@st.composite
def small_cases(draw: Any) -> Case:
    """Up to a dozen apps, every choice drawn by hypothesis (so that failures shrink well)."""
    nodes = draw(st.sampled_from((1, 1, 1, 2, 3)))
    process = draw(st.integers(0, 7)) == 0
    b = _Builder(
        lambda options: draw(st.sampled_from(options)),
        lambda lo, hi: draw(st.integers(lo, hi)),
        nodes,
        process,
    )
    for _ in range(draw(st.integers(0, 3))):
        b.new_data(root=True)
    for _ in range(draw(st.integers(1, 12))):
        b.app(max_inputs=4, window=50)
    return b.case()


@st.composite
def big_cases(draw: Any) -> Case:
    """Hundreds to a few thousand drops from a drawn seed; reads reach back a bounded window, so that graphs
    are deep as well as wide."""
    seed = draw(st.integers(0, 2**32 - 1))
    apps = draw(st.integers(100, 1500))
    nodes = draw(st.sampled_from((1, 2, 3)))
    window = draw(st.sampled_from((3, 20, 1000)))
    # Long chains of inline apps must not recurse; graphs where every app is a thread stress the owner loop.
    profile = draw(st.sampled_from(("mixed", "inline", "thread")))
    # Each feature is in about half the big graphs: one with all of them rarely runs cleanly to its end.
    features = frozenset(f for f in sorted(FEATURES) if draw(st.booleans()))
    rnd = random.Random(seed)
    b = _Builder(rnd.choice, rnd.randint, nodes, process=False, features=features)
    if profile != "mixed":
        b.executors = (profile,)
    for _ in range(rnd.randint(1, 5)):
        b.new_data(root=True)
    for _ in range(apps):
        b.app(max_inputs=3, window=window)
    origin = (
        f"seed={seed} apps={apps} window={window} executors={profile} features={','.join(sorted(features))}"
    )
    return b.case(origin=origin)


def cases() -> st.SearchStrategy[Case]:
    """Mostly small cases; about one in forty is big."""
    return st.integers(0, 39).flatmap(lambda n: big_cases() if n == 0 else small_cases())
