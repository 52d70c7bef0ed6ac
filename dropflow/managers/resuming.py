"""Resume over REST: ``POST /api/v1/sessions/{sid}/resume`` gives a session, before deploy, what to keep.

Theory of operation
-------------------
A resumed session is created and built like any other; before it is deployed, the client that planned the
resume (from the session's journals, see :mod:`dropflow.engine.resume`) posts the plan -- the apps that
finished and will not run again, and where the bytes of the drops they made are. A node manager hands it to
the session's journal, which restores it at deploy; an island (or master) keeps it and, at deploy, gives each
member the part that concerns the drops placed there. A node manager that keeps no journal refuses (409):
it could neither restore the plan nor record the resumed run. ``DELETE /api/v1/sessions/{sid}/journal``
forgets a journal: an island does it to its members when a session it ran FINISHED. Neither has a DALiuGE
counterpart, so both are also served under ``/api``. The body is decoded into :class:`.wire.ResumePlan` (the
OpenAPI document's schema), then checked by :meth:`ResumePlan.from_dict`. The resources' code lives here;
:mod:`.rest` only registers the routes and :mod:`.openapi` lists the operations.
"""

from __future__ import annotations

from typing import Any

import falcon
import msgspec

from ..engine.resume import ResumePlan
from . import wire
from .errors import BadRequest

__all__ = ["JOURNAL_PATH", "PATH", "Journal", "Resume", "parse"]

#: Under the prefix (``/api/v1``, and ``/api``).
PATH = "/sessions/{sid}/resume"
JOURNAL_PATH = "/sessions/{sid}/journal"
PLAN = 'a resume plan: {"finished": {app: [ports]}, "data": {drop: {"path": ...} or {"value": base64}}}'


def parse(raw: bytes) -> ResumePlan:
    """A plan from a request body, or 400 naming what is wrong."""
    body = wire.decode_body(raw, wire.ResumePlan, PLAN)
    try:
        return ResumePlan.from_dict(msgspec.to_builtins(body))
    except ValueError as exc:
        raise BadRequest(f"not a resume plan: {exc}") from None


class Resume:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def before(self, sid: str) -> None:
        self.m.status(sid)  # 404 for an unknown session, before reading the body

    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        plan = parse(req.context.raw)
        self.m.resume(sid, plan)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = wire.encode(
            {"sessionId": sid, "finished": len(plan.finished), "data": len(plan.data)}, wire.Resumed
        )


class Journal:
    """``DELETE``: forget a session's journal (it FINISHED, or its user gave it up)."""

    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_delete(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        self.m.discard_journal(sid)
        resp.status = falcon.HTTP_204
