"""Errors of the manager API, each carrying its HTTP status, rendered by one handler as one JSON shape.

``{"error": {"status": 404, "title": "Not Found", "message": "...", "problems": [...]}}`` -- ``problems``
appears for bad graphs and lists each problem with its place and field.
"""

from __future__ import annotations

from typing import Any

from ..drops.errors import GraphError

__all__ = [
    "ApiError",
    "BadGraph",
    "BadRequest",
    "Conflict",
    "NodeFailure",
    "NotFound",
    "WrongState",
]


class ApiError(Exception):
    status = 500
    title = "Internal Server Error"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": {"status": self.status, "title": self.title, "message": self.message, **self.extra}}


class BadRequest(ApiError):
    status, title = 400, "Bad Request"


class BadGraph(BadRequest):
    """A graph that does not validate; ``problems`` names each place and field."""

    @classmethod
    def from_error(cls, exc: GraphError) -> BadGraph:
        problems = [{"where": p.where, "field": p.field, "message": p.message} for p in exc.problems]
        return cls(str(exc), problems=problems)


class NotFound(ApiError):
    status, title = 404, "Not Found"


class Conflict(ApiError):
    status, title = 409, "Conflict"


class WrongState(Conflict):
    """The session is not in a state that allows the request."""


class NodeFailure(ApiError):
    """A node (or island) under this manager failed to do its part."""

    status, title = 502, "Bad Gateway"
