"""Resume over REST: ``POST /api/sessions/{sid}/resume`` gives a session, before deploy, what to keep.

Theory of operation
-------------------
A resumed session is created and built like any other; before it is deployed, the client that planned the
resume (from the session's journals, see :mod:`dropflow.engine.resume`) posts the plan -- the apps that
finished and will not run again, and where the bytes of the drops they made are. A node manager hands it to
the session's journal, which restores it at deploy; an island (or master) keeps it and, at deploy, gives each
member the part that concerns the drops placed there. A node manager that keeps no journal refuses (409):
it could neither restore the plan nor record the resumed run. ``DELETE /api/sessions/{sid}/journal`` forgets
a journal: an island does it to its members when a session it ran FINISHED. The resources' code lives here;
:mod:`.rest` only registers the routes.
"""

from __future__ import annotations

from typing import Any

import falcon
import msgspec

from ..engine.resume import ResumePlan
from .errors import BadRequest

__all__ = ["JOURNAL_PATH", "PATH", "Journal", "Resume", "openapi_paths", "parse"]

PATH = "/api/sessions/{sid}/resume"
JOURNAL_PATH = "/api/sessions/{sid}/journal"


def parse(body: Any) -> ResumePlan:
    """A plan from a request body, or 400 naming what is wrong."""
    try:
        return ResumePlan.from_dict(body)
    except ValueError as exc:
        raise BadRequest(f"not a resume plan: {exc}") from None


class Resume:
    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_post(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        self.m.status(sid)  # 404 for an unknown session, before looking at the body
        plan = parse(req.context.body)
        self.m.resume(sid, plan)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = msgspec.json.encode(
            {"sessionId": sid, "finished": len(plan.finished), "data": len(plan.data)}
        )


class Journal:
    """``DELETE``: forget a session's journal (it FINISHED, or its user gave it up)."""

    def __init__(self, manager: Any) -> None:
        self.m = manager

    def on_delete(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        self.m.discard_journal(sid)
        resp.status = falcon.HTTP_204


def openapi_paths(errors: Any, ok: Any, sid: dict[str, Any]) -> dict[str, Any]:
    """This resource's entry in the OpenAPI document (the document's helpers are passed in)."""
    plan = {
        "type": "object",
        "properties": {
            "finished": {
                "type": "object",
                "description": "app id -> the output ports it skipped",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
            "data": {
                "type": "object",
                "description": "drop id -> where its bytes are: a path, or the bytes (base64)",
                "additionalProperties": {
                    "oneOf": [
                        {
                            "type": "object",
                            "required": ["path"],
                            "properties": {"path": {"type": "string"}},
                            "additionalProperties": False,
                        },
                        {
                            "type": "object",
                            "required": ["value"],
                            "properties": {"value": {"type": "string", "format": "byte"}},
                            "additionalProperties": False,
                        },
                    ]
                },
            },
            "rerun": {"type": "array", "items": {"type": "string"}},
        },
    }
    answer = {
        "type": "object",
        "properties": {
            "sessionId": {"type": "string"},
            "finished": {"type": "integer"},
            "data": {"type": "integer"},
        },
    }
    return {
        PATH: {
            "parameters": [sid],
            "post": {
                "summary": "Before deploy: what a resumed session keeps from its earlier runs",
                "requestBody": {"required": True, "content": {"application/json": {"schema": plan}}},
                "responses": {**ok(answer), **errors(400, 401, 404, 409, 413)},
            },
        },
        JOURNAL_PATH: {
            "parameters": [sid],
            "delete": {
                "summary": "Forget the session's journal and what it kept for a resume",
                "responses": {"204": {"description": "Forgotten"}, **errors(401, 404, 409, 502)},
            },
        },
    }
