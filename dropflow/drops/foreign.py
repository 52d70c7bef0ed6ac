"""Components of imported graphs that dropflow cannot run: kept by translation, refused at deploy.

Theory of operation
-------------------
Translating a graph needs only its structure, so a DALiuGE component without a dropflow equivalent -- a
user's own app class, NGAS or S3 storage, a Plasma store, a component left incomplete in EAGLE -- still
becomes a drop: a ``foreign_app`` or ``foreign_data`` spec that records what the component was (its
category and class) and why dropflow cannot run it. Unrolling, partitioning and mapping treat it like any
other drop, so drop counts and edges match DALiuGE's. The kinds' checks refuse such a drop when a session
builds its graph -- before anything runs -- with the message translation used to give, naming the component.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from .apps.base import CancelToken, Outcome, Task
from .errors import Problem
from .spec import AppSpec, DataSpec, DataTraits
from .stores import NullStore, Store

__all__ = [
    "ForeignAppSpec",
    "ForeignDataSpec",
    "check_foreign",
    "check_foreign_data",
    "foreign_store",
    "problem",
    "run_foreign",
]


class ForeignAppSpec(AppSpec, tag="foreign_app", frozen=True, gc=False, kw_only=True):
    """An application dropflow cannot run (translated for its structure; refused at deploy)."""

    EXECUTORS: ClassVar[tuple[str, ...]] = ("inline",)
    DEFAULT_EXECUTOR: ClassVar[str] = "inline"

    #: The component's DALiuGE category and class, as the graph gave them.
    category: str = ""
    dropclass: str = ""
    #: The component in the logical graph (``node 'x' (Plasma, id 12)``), the field at fault, and why.
    origin: str = ""
    field: str | None = None
    reason: str


class ForeignDataSpec(DataSpec, tag="foreign_data", frozen=True, gc=False, kw_only=True):
    """Data in a storage dropflow does not have (translated for its structure; refused at deploy)."""

    TRAITS: ClassVar[DataTraits] = DataTraits("foreign_data")

    category: str = ""
    dropclass: str = ""
    origin: str = ""
    field: str | None = None
    reason: str


def problem(spec: ForeignAppSpec | ForeignDataSpec) -> Problem:
    """The refusal of a foreign drop, naming the drop and the component it came from."""
    where = f"drop {spec.id!r}" + (f" from {spec.origin}" if spec.origin else "")
    return Problem(where, spec.field, spec.reason)


def check_foreign(spec: AppSpec, kinds: Mapping[str, DataTraits]) -> list[Problem]:
    assert isinstance(spec, ForeignAppSpec)
    return [problem(spec)]


def check_foreign_data(spec: DataSpec, ctx: object) -> list[Problem]:
    assert isinstance(spec, ForeignDataSpec)
    return [problem(spec)]


def run_foreign(task: Task, token: CancelToken) -> Outcome:
    """Never reached through a session (the check refuses first); fails with the reason if called."""
    spec = task.spec
    assert isinstance(spec, ForeignAppSpec)
    return Outcome.failed(str(problem(spec)))


def foreign_store(spec: DataSpec, ctx: object) -> Store:
    """A store that holds nothing (the check refuses the drop before any store is used)."""
    return NullStore()
