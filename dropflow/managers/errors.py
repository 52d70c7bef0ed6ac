"""Errors of the manager API, each carrying its HTTP status, rendered by one handler as one JSON shape.

``{"error": {"status": 404, "title": "Not Found", "message": "...", "problems": [...]},
"type": "NoSessionException", "args": ["s1", "..."]}`` -- ``problems`` appears for bad graphs and lists each
problem with its place and field. ``type`` and ``args`` are DALiuGE's error shape: its clients rebuild the
exception named by ``type`` (one of ``dlg.exceptions``) from ``args``, so every error carries both and both
kinds of client understand it, whichever representation the request asked for.
"""

from __future__ import annotations

from typing import Any

from ..drops.errors import GraphError

__all__ = [
    "ApiError",
    "BadGraph",
    "BadRequest",
    "Conflict",
    "NoDrop",
    "NoSession",
    "NodeFailure",
    "NotFound",
    "SessionExists",
    "WrongState",
]


class ApiError(Exception):
    status = 500
    title = "Internal Server Error"
    #: The DALiuGE exception (``dlg.exceptions``) its clients rebuild from this error.
    dlg_type = "DaliugeException"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def dlg_args(self) -> list[Any]:
        """The arguments DALiuGE's client passes to ``dlg_type``'s constructor."""
        return [self.message]

    def body(self) -> dict[str, Any]:
        return {
            "error": {"status": self.status, "title": self.title, "message": self.message, **self.extra},
            "type": self.dlg_type,
            "args": self.dlg_args(),
        }


class _SessionError(ApiError):
    """An error about one session: DALiuGE's session exceptions take ``(session_id, reason)``. The id may
    be filled in later by the REST layer, from the request's path."""

    def __init__(self, message: str, session_id: str | None = None, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.session_id = session_id

    def dlg_args(self) -> list[Any]:
        return [self.session_id or "", self.message]


class BadRequest(ApiError):
    status, title = 400, "Bad Request"


class BadGraph(BadRequest):
    """A graph that does not validate; ``problems`` names each place and field."""

    dlg_type = "InvalidGraphException"

    @classmethod
    def from_error(cls, exc: GraphError) -> BadGraph:
        problems = [{"where": p.where, "field": p.field, "message": p.message} for p in exc.problems]
        return cls(str(exc), problems=problems)


class NotFound(ApiError):
    status, title = 404, "Not Found"


class NoSession(_SessionError, NotFound):
    """No session of that id here."""

    dlg_type = "NoSessionException"


class NoDrop(NotFound):
    """No drop of that id in the session."""

    dlg_type = "NoDropException"

    def __init__(self, message: str, uid: str, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.uid = uid

    def dlg_args(self) -> list[Any]:
        return [self.uid, self.message]


class Conflict(ApiError):
    status, title = 409, "Conflict"


class SessionExists(_SessionError, Conflict):
    """A session of that id exists already."""

    dlg_type = "SessionAlreadyExistsException"


class WrongState(_SessionError, Conflict):
    """The session is not in a state that allows the request."""

    dlg_type = "InvalidSessionState"


class NodeFailure(ApiError):
    """A node (or island) under this manager failed to do its part."""

    status, title = 502, "Bad Gateway"
