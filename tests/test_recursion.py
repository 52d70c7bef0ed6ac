"""Real apps in long cascades never recurse: inline Python and hello apps, chains and fans, through the node.

The owner's pump is not re-entrant: an inline app that finishes inside it feeds the core, and the running pump
carries the new instructions out. Before this was so, 260 independent ``hello`` apps or a chain of 300 inline
``python`` apps ended FAILED with ``internal error: RecursionError``.
"""

from __future__ import annotations

from dropflow.drops import MemorySpec, PythonSpec
from dropflow.drops.apps.daliuge import HelloSpec
from dropflow.drops.spec import DropSpec

from conftest import run


def inline_chain(n: int) -> list[DropSpec]:
    """x0 -> inc -> x1 -> inc -> ... -> xn, every app inline in the owner loop."""
    drops: list[DropSpec] = [MemorySpec(id="x0", data=0, codec="json")]
    for i in range(1, n + 1):
        drops.append(
            PythonSpec(
                id=f"inc{i}",
                func="testfuncs:inc",
                executor="inline",
                inputs={"x": f"x{i - 1}"},
                outputs={"out": f"x{i}"},
            )
        )
        drops.append(MemorySpec(id=f"x{i}", persist=i == n, expire_after_use=i < n))
    return drops


def test_hello_apps_in_hundreds_do_not_recurse(node):
    """260 independent hello apps (inline by default, as DALiuGE's HelloWorldApp)."""
    drops: list[DropSpec] = []
    for i in range(260):
        drops += [HelloSpec(id=f"h{i}", greet=str(i), outputs={"o": f"m{i}"}), MemorySpec(id=f"m{i}")]
    s = run(node, drops)
    assert s.state == "FINISHED", s.failures()[:3]


def test_a_chain_of_inline_python_apps_does_not_recurse(node):
    s = run(node, inline_chain(300))
    assert s.state == "FINISHED", s.failures()[:3]
    assert s.value("x300") == 300


def test_a_hundred_thousand_inline_python_apps_in_a_chain(node):
    s = run(node, inline_chain(100_000), timeout=600)
    assert s.state == "FINISHED", s.failures()[:3]
    assert s.value("x100000") == 100_000


def test_a_hundred_thousand_inline_python_apps_in_a_fan(node):
    """x -> inc_i -> y_i for 100,000 apps, gathered by one count."""
    n = 100_000
    drops: list[DropSpec] = [MemorySpec(id="x", data=1, codec="json")]
    for i in range(n):
        drops += [
            PythonSpec(
                id=f"inc{i}",
                func="testfuncs:inc",
                executor="inline",
                inputs={"x": "x"},
                outputs={"out": f"y{i}"},
            ),
            MemorySpec(id=f"y{i}", expire_after_use=True),
        ]
    drops += [
        PythonSpec(
            id="count",
            func="testfuncs:total",
            inputs={"xs": [f"y{i}" for i in range(n)]},
            outputs={"out": "s"},
        ),
        MemorySpec(id="s", persist=True),
    ]
    s = run(node, drops, timeout=600)
    assert s.state == "FINISHED", s.failures()[:3]
    assert s.value("s") == 2 * n


def test_ten_thousand_hello_apps(node):
    drops: list[DropSpec] = []
    for i in range(10_000):
        drops += [
            HelloSpec(id=f"h{i}", outputs={"o": f"m{i}"}),
            MemorySpec(id=f"m{i}", expire_after_use=True),
        ]
    s = run(node, drops, timeout=600)
    assert s.state == "FINISHED", s.failures()[:3]
    assert s.summary().by_state == {"DELETED": 10_000, "FINISHED": 10_000}
