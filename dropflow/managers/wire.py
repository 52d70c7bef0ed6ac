"""The typed request and response bodies of the managers' REST API, in both of its representations.

Theory of operation
-------------------
Every body that crosses the REST boundary is one of these ``msgspec`` structures (or a list or map of
them). Requests are decoded into them at the edge -- a body that does not fit is a 400 naming the field --
and answers are converted through them before they are encoded, so what a manager returns is checked
against the same types that :mod:`.openapi` turns into the OpenAPI document's JSON Schema. The document
therefore cannot drift from the code: there is no hand-written schema.

Two families live here. The plain names are dropflow's own representation (``/api/v1``: states by name,
summaries, drop logs). The ``Dlg`` names are DALiuGE's (``/api``: states as DALiuGE's integers, its
session and island shapes), served by :mod:`.dlgcompat`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from ..engine.workspace import check_session_id
from .errors import BadRequest
from .heartbeat import LEASE

__all__ = [
    "CREATE_SESSION",
    "SESSION_ID",
    "AddNode",
    "Appended",
    "CreateSession",
    "DlgCreated",
    "DlgDir",
    "DlgDropData",
    "DlgDropLogs",
    "DlgIslands",
    "DlgManagerInfo",
    "DlgMethods",
    "DlgNodes",
    "DlgPastSession",
    "DlgSession",
    "DlgSessionItem",
    "DlgStatus",
    "DlgSuccess",
    "DropData",
    "DropEvent",
    "DropLog",
    "DropStatus",
    "Error",
    "ErrorDetail",
    "Event",
    "Failure",
    "Health",
    "Heartbeat",
    "HeartbeatAnswer",
    "Node",
    "Peer",
    "PeersAnswer",
    "Problem",
    "ResumePlan",
    "Resumed",
    "SessionDirs",
    "SessionInfo",
    "SessionState",
    "Status",
    "Summary",
    "Wait",
    "Where",
    "decode_body",
    "encode",
]

SESSION_ID = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
CREATE_SESSION = 'a JSON object with a string "sessionId"'

SessionState = Literal["PRISTINE", "BUILDING", "DEPLOYING", "RUNNING", "FINISHED", "FAILED", "CANCELLED"]
DropStateName = Literal[
    "INITIALIZED", "WRITING", "COMPLETED", "ERROR", "EXPIRED", "DELETED", "CANCELLED", "SKIPPED"
]
AppStateName = Literal["NOT_RUN", "RUNNING", "FINISHED", "ERROR", "CANCELLED", "SKIPPED"]


class _Body(msgspec.Struct, kw_only=True):
    """Base of every body."""


class _Sparse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of bodies whose optional fields are left out when unset (not sent as null)."""


# -- errors -------------------------------------------------------------------------------------------------


class Problem(_Body, kw_only=True):
    where: str
    field: str | None = None
    message: str


class ErrorDetail(_Sparse, kw_only=True):
    status: int
    title: str
    message: str
    field: str | None = None
    problems: list[Problem] | None = None


class Error(_Body, kw_only=True):
    """Every error, in both representations: dropflow's ``error`` object, and DALiuGE's ``type`` (a class
    of ``dlg.exceptions``) with the ``args`` its clients build it from."""

    error: ErrorDetail
    type: str
    args: list[Any]


# -- dropflow's representation ------------------------------------------------------------------------------


class _Batch(_Sparse, kw_only=True):
    """The Slurm job a daemon runs in, if any."""

    slurm_job_id: str | None = None
    slurm_job_name: str | None = None


class _Identity(_Batch, kw_only=True):
    role: Literal["nm", "dim", "mm"] | None = None
    name: str | None = None
    version: str | None = None
    url: str | None = None
    proof: str | None = None
    bus: str | None = None
    bus_key: str | None = None
    sessions: int | None = None
    uptime_seconds: float | None = None
    #: Where a node manager keeps its sessions' journals (for a resume), if it keeps any.
    journal: str | None = None


class Health(_Identity, kw_only=True):
    """Without the token: status only (and a challenge's answer). With it: identity too (an island's or a
    master's with its members' names)."""

    status: Literal["ok"]
    nodes: list[str] | None = None


class CreateSession(_Body, kw_only=True):
    sessionId: Annotated[str, msgspec.Meta(extra_json_schema={"pattern": SESSION_ID})]

    def __post_init__(self) -> None:
        check_session_id(self.sessionId)  # its message says what a session id may hold


class SessionInfo(_Sparse, kw_only=True):
    sessionId: str
    status: SessionState
    size: int | None = None
    settled: int | None = None
    node: str | None = None
    nodes: list[str] | None = None
    error: str | None = None
    created: float | None = None
    #: Deploy only: the roots a DALiuGE client named in ``completed``.
    completed: list[str] | None = None
    slurm_job_id: str | None = None
    slurm_job_name: str | None = None


class Status(_Body, kw_only=True):
    sessionId: str
    status: SessionState


class Failure(_Body, kw_only=True):
    uid: str
    kind: str | None = None
    message: str
    node: str | None = None


class Summary(_Body, kw_only=True):
    sessionId: str
    status: SessionState
    drops: int
    by_state: dict[str, int]
    failures: list[Failure]
    deploy_seconds: float | None = None
    run_seconds: float | None = None
    persisted: list[str] | None = None
    error: str | None = None
    #: Islands and masters: the state each member's part ended in (LOST: the member was lost).
    nodes: dict[str, str | None] | None = None
    lost_nodes: dict[str, str] | None = None
    slurm_job_id: str | None = None
    slurm_job_name: str | None = None


class DropStatus(_Sparse, kw_only=True):
    """A drop's state; apps also have ``execStatus`` (DALiuGE's shape, with names)."""

    status: DropStateName | AppStateName
    execStatus: AppStateName | None = None


class DropEvent(_Body, kw_only=True):
    time: float
    from_: Annotated[str, msgspec.Meta(description="the state before")] = msgspec.field(name="from")
    to: str
    cause: str


class DropLog(_Body, kw_only=True):
    uid: str
    status: str
    error: str | None = None
    node: str | None = None
    events: list[DropEvent]


class Wait(_Body, kw_only=True):
    sessionId: str
    status: SessionState
    ended: bool
    summary: Summary | None = None


class Appended(_Body, kw_only=True):
    sessionId: str
    appended: int


class Node(_Identity, kw_only=True):
    """A member of an island (a node manager) or of a master (an island, with its own members in
    ``nodes``), with its identity, or why it cannot be reached."""

    reachable: bool
    status: Literal["ok"] | None = None
    error: str | None = None
    nodes: list[str | Node] | None = None


class AddNode(_Body, kw_only=True):
    url: Annotated[str, msgspec.Meta(pattern="^https?://")]


class Heartbeat(_Body, kw_only=True):
    from_: Annotated[str, msgspec.Meta(description="the sender's name")] = msgspec.field(name="from")
    renew: Annotated[list[str], msgspec.Meta(description="sessions whose lease to renew")] = []
    cancel: Annotated[list[str], msgspec.Meta(description="sessions to cancel")] = []
    lease: Annotated[float, msgspec.Meta(ge=0.1, le=3600, description="seconds a lease lasts")] = LEASE


class HeartbeatAnswer(_Body, kw_only=True):
    name: str
    sessions: Annotated[
        dict[str, str | None],
        msgspec.Meta(description="the state of each session named (null: unknown here)"),
    ]


class Peer(_Body, kw_only=True):
    bus: Annotated[str, msgspec.Meta(extra_json_schema={"pattern": "^tcp://"})]
    key: Annotated[str, msgspec.Meta(description="CURVE public key (Z85)")]


class SessionDirs(_Body, kw_only=True):
    sessionId: str
    #: Where each node keeps the session's files.
    dirs: dict[str, str]


class Event(_Body, kw_only=True):
    """A logged state change of a drop (or of the session: ``uid`` ``session:ID``)."""

    time: float
    uid: str
    from_: str = msgspec.field(name="from")
    to: str
    cause: str
    node: str | None = None


class PeersAnswer(_Body, kw_only=True):
    sessionId: str
    peers: list[str]


class DropData(_Body, kw_only=True):
    sessionId: str
    uid: str
    kind: str
    codec: str
    status: str
    node: str | None = None
    path: str | None = None
    size: int | None = None
    data: Annotated[str | None, msgspec.Meta(description="base64")] = None


class Where(_Sparse, kw_only=True):
    """Where a resumed drop's bytes are: a path, or the bytes themselves (exactly one of the two)."""

    path: str | None = None
    value: Annotated[str | None, msgspec.Meta(description="base64")] = None


class ResumePlan(_Body, kw_only=True):
    """What a resumed session keeps from its earlier runs (see dropflow.engine.resume)."""

    finished: Annotated[
        dict[str, list[str]], msgspec.Meta(description="app id -> the output ports it skipped")
    ] = {}
    data: Annotated[dict[str, Where], msgspec.Meta(description="drop id -> where its bytes are")] = {}
    rerun: list[str] = []


class Resumed(_Body, kw_only=True):
    sessionId: str
    finished: int
    data: int


# -- DALiuGE's representation -------------------------------------------------------------------------------

#: A session's state as DALiuGE's integer: PRISTINE 0, BUILDING 1, DEPLOYING 2, RUNNING 3, FINISHED 4,
#: CANCELLED 5, FAILED 6.
DlgSessionCode = Annotated[int, msgspec.Meta(ge=0, le=6)]
#: A node manager's state is an integer, an island's ``{node: int}``, a master's ``{island: {node: int}}``.
DlgStatus = DlgSessionCode | dict[str, DlgSessionCode | dict[str, DlgSessionCode]]


class DlgSuccess(_Body, kw_only=True):
    """What DALiuGE answers when there is nothing else to say."""

    Status: Literal["Success"] = "Success"


class DlgCreated(_Body, kw_only=True):
    sessionId: str


class DlgSessionItem(_Body, kw_only=True):
    sessionId: str
    status: DlgStatus
    size: int


class DlgDir(_Sparse, kw_only=True):
    dir: str
    #: Islands: each node's session directory (DALiuGE names one of them only, in ``dir``).
    dirs: dict[str, str] | None = None


class DlgSession(_Body, kw_only=True):
    status: DlgStatus
    graph: dict[str, dict[str, Any]]
    dir: DlgDir | str


class DlgDropStatus(_Sparse, kw_only=True):
    """A drop's state as DALiuGE's integers (``status``: INITIALIZED 0 ... SKIPPED 7; apps' ``execStatus``:
    NOT_RUN 0 ... SKIPPED 5)."""

    status: Annotated[int, msgspec.Meta(ge=0, le=7)]
    execStatus: Annotated[int, msgspec.Meta(ge=0, le=5)] | None = None


class DlgDropLogs(_Body, kw_only=True):
    session: str
    status: DlgSessionCode
    oid: str
    logs: list[dict[str, Any]]


class DlgDropData(_Body, kw_only=True):
    filepath: str


class DlgManagerInfo(_Sparse, kw_only=True):
    """``GET /api``: a node manager's sessions; an island's (or master's) members and session ids."""

    sessions: list[DlgSessionItem] | None = None
    hosts: list[str] | None = None
    sessionIds: list[str] | None = None


class DlgMethods(_Body, kw_only=True):
    methods: list[str]


class DlgPastSession(_Body, kw_only=True):
    sessionId: str


class DlgNodes(_Body, kw_only=True):
    """A master's ``GET /api/nodes``: every node of every island."""

    nodes: list[str]


class DlgIslands(_Body, kw_only=True):
    islands: list[str]


# -- at the edge --------------------------------------------------------------------------------------------

_AT = re.compile(r"(?: - at `\$\.?|missing required field `)([A-Za-z_]\w*)")


def decode_body(data: bytes, kind: Any, what: str = "a JSON document") -> Any:
    """A request body decoded into ``kind``, or a 400 that says what is wrong, where, and ``what`` the body
    must be."""
    if not data:
        raise BadRequest(f"the request has no body; it must be {what}")
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        found = _AT.search(str(exc))
        extra = {"field": found.group(1)} if found else {}
        raise BadRequest(f"the body must be {what}: {exc}", **extra) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body is not JSON ({what}): {exc}") from None
    except RecursionError:
        raise BadRequest("the body is JSON nested too deep") from None


def encode(value: Any, kind: Any) -> bytes:
    """``value`` (a manager's answer) checked against ``kind`` and encoded: what the document promises."""
    return msgspec.json.encode(msgspec.convert(value, kind))
