"""Errors raised for bad graphs: each names the place (drop or node) and the field."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["GraphError", "Problem"]


class Problem(NamedTuple):
    """One thing wrong with a graph."""

    #: The place: ``drop 'a3'``, ``drops[5]``, ``node 12 (Scatter)``, or ``graph``.
    where: str
    #: The field at fault, if one is.
    field: str | None
    message: str

    def __str__(self) -> str:
        if self.field:
            return f"{self.where}, field '{self.field}': {self.message}"
        return f"{self.where}: {self.message}"


class GraphError(ValueError):
    """A graph that cannot be run, with every problem found (up to a limit)."""

    MAX_SHOWN = 20

    def __init__(self, problems: Iterable[Problem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(self._render())

    @classmethod
    def one(cls, where: str, field: str | None, message: str, source: str | None = None) -> GraphError:
        return cls([Problem(where, field, message)], source)

    def with_source(self, source: str) -> GraphError:
        return GraphError(self.problems, source)

    def _render(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        shown = [prefix + str(p) for p in self.problems[: self.MAX_SHOWN]]
        hidden = len(self.problems) - len(shown)
        if hidden > 0:
            shown.append(f"{prefix}... and {hidden} more problems")
        return "\n".join(shown)
