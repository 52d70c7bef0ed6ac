"""Planning a resume: which finished apps need not run again, and where the bytes they made are now.

Theory of operation
-------------------
A pure function over the graph's specs and a session's merged journal (:class:`~.journal.Records`). An app
recorded FINISHED is *done* -- it will not run again -- as long as every drop it made that is still *needed*
can be found. A drop is needed when one of its consumers is not done (that consumer will read it), or when
it is persisted (it is a result). A needed drop that cannot be found (its file was removed, it lived in shared
memory or was too large to record, and the run was killed) undoes its producers: they run again. Undoing an
app makes its own inputs needed (it will read them) and its outputs incomplete, so the decision spreads
backwards until it settles -- a worklist, each drop looked at again only when a neighbour changed, so a chain
of a million drops is planned in one pass. A drop with several producers is done only if all of them are (a
partly made drop is made again whole), and a drop that every producer skipped (a branch's untaken side)
needs no bytes.

    x --> A --> y --> B --> z        A, B finished; z is persisted and exists; y is gone:
                                     B's input y is not needed (B is done), so nothing runs again.
    x --> A --> y --> B --> z --> C  ... but C did not finish and z is gone: B runs again, so y is needed;
                                     y is gone too: A runs again (its input x is a root: always there).

The plan (:class:`ResumePlan`) names the done apps (with the ports they skipped) and where each needed
drop's bytes are; the part of it that concerns one node travels to that node as plain JSON.
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..drops.spec import AppSpec, DataSpec, DropSpec, port_drops
from .journal import Location, Records

__all__ = ["ResumePlan", "plan"]


@dataclass(slots=True)
class ResumePlan:
    #: Apps that finished earlier and will not run again: id -> the output ports they skipped.
    finished: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Needed drops made by those apps -> where their bytes are.
    data: dict[str, Location] = field(default_factory=dict)
    #: Apps recorded finished that run again, because something they made is gone.
    rerun: list[str] = field(default_factory=list)

    def part(self, uids: Iterable[str]) -> ResumePlan:
        """The plan restricted to the drops ``uids`` (one node's part of the graph)."""
        wanted = set(uids)
        return ResumePlan(
            {u: s for u, s in self.finished.items() if u in wanted},
            {u: loc for u, loc in self.data.items() if u in wanted},
            [u for u in self.rerun if u in wanted],
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: values travel in base64."""
        return {
            "finished": {u: list(s) for u, s in self.finished.items()},
            "data": {
                u: {"path": loc.path}
                if loc.value is None
                else {"value": base64.b64encode(loc.value).decode("ascii")}
                for u, loc in self.data.items()
            },
            "rerun": list(self.rerun),
        }

    @classmethod
    def from_dict(cls, raw: Any) -> ResumePlan:
        """Raises ValueError (naming what) for anything that is not a plan."""
        if not isinstance(raw, dict):
            raise ValueError("a resume plan is a JSON object")
        finished, data, rerun = raw.get("finished", {}), raw.get("data", {}), raw.get("rerun", [])
        if not isinstance(finished, dict) or not isinstance(data, dict) or not isinstance(rerun, list):
            raise ValueError("a resume plan has objects 'finished' and 'data' and a list 'rerun'")
        out = cls()
        for uid, ports in finished.items():
            if not isinstance(ports, list) or not all(isinstance(p, str) for p in ports):
                raise ValueError(f"finished[{uid!r}]: a list of port names")
            out.finished[str(uid)] = tuple(ports)
        for uid, where in data.items():
            if isinstance(where, dict) and set(where) == {"path"} and isinstance(where["path"], str):
                out.data[str(uid)] = Location(path=where["path"])
            elif isinstance(where, dict) and set(where) == {"value"} and isinstance(where["value"], str):
                try:
                    value = base64.b64decode(where["value"], validate=True)
                except ValueError:
                    raise ValueError(f"data[{uid!r}].value: not base64") from None
                out.data[str(uid)] = Location(value=value)
            else:
                raise ValueError(f"data[{uid!r}]: {{'path': ...}} or {{'value': base64}}")
        out.rerun = [str(u) for u in rerun]
        return out

    def describe(self) -> str:
        rerun = f", {len(self.rerun)} of them to run again (outputs gone)" if self.rerun else ""
        return f"{len(self.finished)} finished app(s) kept{rerun}, {len(self.data)} drop(s) restored"


def plan(
    specs: Sequence[DropSpec],
    records: Records,
    find: Callable[[str], Location | None] | None = None,
) -> ResumePlan:
    """What a resume of ``specs`` can keep from ``records``. ``find(uid)`` says where a drop's bytes are now
    (default: the newest recorded place that exists)."""
    find = find or records.location
    apps: dict[str, AppSpec] = {}
    data: dict[str, DataSpec] = {}
    for spec in specs:
        if isinstance(spec, AppSpec):
            apps[spec.id] = spec
        elif isinstance(spec, DataSpec):
            data[spec.id] = spec
    producers: dict[str, list[str]] = {}
    consumers: dict[str, list[str]] = {}
    links: dict[str, list[str]] = {}  # app -> its inputs and outputs
    for uid, app in apps.items():
        ins = [d for v in app.inputs.values() for d in port_drops(v)]
        outs = [d for v in app.outputs.values() for d in port_drops(v)]
        for d in ins:
            consumers.setdefault(d, []).append(uid)
        for d in outs:
            producers.setdefault(d, []).append(uid)
        links[uid] = ins + outs
    done = {uid: skips for uid, skips in records.finished.items() if uid in apps}
    skipped: dict[str, set[str]] = {
        uid: {d for port in skips for d in port_drops(apps[uid].outputs.get(port, []))}
        for uid, skips in done.items()
        if skips
    }
    found: dict[str, Location] = {}
    rerun: list[str] = []
    queue = deque(data)
    queued = set(data)

    def undo(app: str) -> None:
        if app in done:
            del done[app]
            rerun.append(app)
            for d in links[app]:
                if d not in queued:
                    queued.add(d)
                    queue.append(d)

    while queue:
        d = queue.popleft()
        queued.discard(d)
        made_by = producers.get(d)
        if not made_by:
            continue  # a root: prepared when the session starts
        made = [p for p in made_by if p in done]
        if not made:
            continue  # made again by the resumed run
        if len(made) < len(made_by):
            for p in made:
                undo(p)  # partly made: made again whole
            continue
        if all(d in skipped.get(p, ()) for p in made_by):
            continue  # a branch's untaken side: no bytes
        dspec = data.get(d)
        if dspec is None or dspec.TRAITS.discards:
            continue
        if not dspec.persist and all(c in done for c in consumers.get(d, ())):
            continue  # nobody will read it
        where = find(d)
        if where is None:
            for p in made_by:
                undo(p)
        else:
            found[d] = where
    kept = {d: loc for d, loc in found.items() if all(p in done for p in producers.get(d, ()))}
    return ResumePlan(done, kept, rerun)
