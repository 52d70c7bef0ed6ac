"""The OpenAPI 3 document of the managers' REST API, per role (nm, dim, mm).

Kept true by ``tests/managers/test_openapi.py``, which has schemathesis generate requests from it against the
real app and check every response against the document (and that none is a 5xx).
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from . import results, resuming

__all__ = ["openapi"]

_STATES = ["PRISTINE", "BUILDING", "DEPLOYING", "RUNNING", "FINISHED", "FAILED", "CANCELLED"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(schema: dict[str, Any] | None, description: str = "OK", code: str = "200") -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    return {code: response}


def _errors(*codes: int) -> dict[str, Any]:
    names = {
        400: "Bad request or bad graph",
        401: "Missing or wrong bearer token",
        404: "No such session or drop",
        409: "Conflict: duplicate session, or a session in the wrong state",
        413: "Body too large",
        502: "A node or island failed to do its part",
    }
    return {
        str(c): {"description": names[c], "content": {"application/json": {"schema": _ref("Error")}}}
        for c in codes
    }


SESSION_ID = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
SID = {"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}
UID = {"name": "uid", "in": "path", "required": True, "schema": {"type": "string"}}
NODE = {"name": "node", "in": "path", "required": True, "schema": {"type": "string"}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "title", "message"],
                "properties": {
                    "status": {"type": "integer"},
                    "title": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                    "problems": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "where": {"type": "string"},
                                "field": {"type": ["string", "null"]},
                                "message": {"type": "string"},
                            },
                        },
                    },
                },
            }
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "description": "Without the token: status only (and a challenge's answer). With it: identity too.",
        "properties": {
            "status": {"const": "ok"},
            "role": {"enum": ["nm", "dim", "mm"]},
            "name": {"type": "string"},
            "version": {"type": "string"},
            "url": {"type": "string"},
            "proof": {"type": "string"},
            "bus": {"type": ["string", "null"]},
            "bus_key": {"type": ["string", "null"]},
            "sessions": {"type": "integer"},
            "nodes": {"type": "array", "items": {"type": "string"}},
            "uptime_seconds": {"type": "number"},
        },
    },
    "SessionState": {"enum": _STATES},
    "SessionInfo": {
        "type": "object",
        "required": ["sessionId", "status"],
        "properties": {
            "sessionId": {"type": "string"},
            "status": _ref("SessionState"),
            "size": {"type": "integer"},
            "settled": {"type": "integer"},
            "node": {"type": "string"},
            "nodes": {"type": "array", "items": {"type": "string"}},
            "error": {"type": ["string", "null"]},
            "created": {"type": ["number", "null"]},
        },
    },
    "Status": {
        "type": "object",
        "required": ["sessionId", "status"],
        "properties": {"sessionId": {"type": "string"}, "status": _ref("SessionState")},
    },
    "Summary": {
        "type": "object",
        "required": ["sessionId", "status", "drops", "by_state", "failures"],
        "properties": {
            "sessionId": {"type": "string"},
            "status": _ref("SessionState"),
            "drops": {"type": "integer"},
            "by_state": {"type": "object", "additionalProperties": {"type": "integer"}},
            "failures": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["uid", "message"],
                    "properties": {
                        "uid": {"type": "string"},
                        "kind": {"type": "string"},
                        "message": {"type": "string"},
                        "node": {"type": "string"},
                    },
                },
            },
            "deploy_seconds": {"type": ["number", "null"]},
            "run_seconds": {"type": ["number", "null"]},
            "error": {"type": ["string", "null"]},
        },
    },
    "GraphStatus": {
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string"}, "execStatus": {"type": "string"}},
        },
    },
    "DropLog": {
        "type": "object",
        "required": ["uid", "status", "events"],
        "properties": {
            "uid": {"type": "string"},
            "status": {"type": "string"},
            "error": {"type": ["string", "null"]},
            "node": {"type": "string"},
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "time": {"type": "number"},
                        "from": {"type": "string"},
                        "to": {"type": "string"},
                        "cause": {"type": "string"},
                    },
                },
            },
        },
    },
    "Wait": {
        "type": "object",
        "required": ["sessionId", "status", "ended"],
        "properties": {
            "sessionId": {"type": "string"},
            "status": _ref("SessionState"),
            "ended": {"type": "boolean"},
            "summary": {"oneOf": [_ref("Summary"), {"type": "null"}]},
        },
    },
    "Node": {
        "type": "object",
        "required": ["name", "reachable"],
        "properties": {"name": {"type": "string"}, "reachable": {"type": "boolean"}},
    },
}

SCHEMAS["Heartbeat"] = {
    "type": "object",
    "required": ["from"],
    "properties": {
        "from": {"type": "string", "description": "the sender's name"},
        "renew": {
            "type": "array",
            "items": {"type": "string"},
            "description": "sessions whose lease to renew",
        },
        "cancel": {"type": "array", "items": {"type": "string"}, "description": "sessions to cancel"},
        "lease": {"type": "number", "minimum": 0.1, "maximum": 3600, "description": "seconds a lease lasts"},
    },
}
SCHEMAS["HeartbeatAnswer"] = {
    "type": "object",
    "required": ["name", "sessions"],
    "properties": {
        "name": {"type": "string"},
        "sessions": {
            "type": "object",
            "description": "the state of each session named (null: unknown here)",
            "additionalProperties": {"type": ["string", "null"]},
        },
    },
}

GRAPH_BODY = {
    "required": True,
    "description": "A native physical graph (docs/physical-graph.md) or a DALiuGE physical graph (a list). "
    "Content-Encoding: gzip is accepted.",
    "content": {"application/json": {"schema": {"type": ["object", "array"]}}},
}


def _session_paths() -> dict[str, Any]:
    e404 = _errors(401, 404)
    return {
        "/api/sessions": {
            "get": {
                "summary": "List sessions",
                "responses": {**_ok({"type": "array", "items": _ref("SessionInfo")}), **_errors(401)},
            },
            "post": {
                "summary": "Create an empty session",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["sessionId"],
                                "properties": {"sessionId": {"type": "string", "pattern": SESSION_ID}},
                            }
                        }
                    },
                },
                "responses": {**_ok(_ref("SessionInfo"), "Created", "201"), **_errors(400, 401, 409, 413)},
            },
        },
        "/api/sessions/{sid}": {
            "parameters": [SID],
            "get": {"summary": "A session", "responses": {**_ok(_ref("SessionInfo")), **e404}},
            "delete": {
                "summary": "Cancel if running, then forget a session",
                "responses": {"204": {"description": "Deleted"}, **_errors(401, 404, 502)},
            },
        },
        "/api/sessions/{sid}/status": {
            "parameters": [SID],
            "get": {"summary": "State of a session", "responses": {**_ok(_ref("Status")), **e404}},
        },
        "/api/sessions/{sid}/graph/append": {
            "parameters": [SID],
            "post": {
                "summary": "Append drops to a session that is not deployed",
                "requestBody": GRAPH_BODY,
                "responses": {
                    **_ok(
                        {
                            "type": "object",
                            "properties": {"sessionId": {"type": "string"}, "appended": {"type": "integer"}},
                        }
                    ),
                    **_errors(400, 401, 404, 409, 413),
                },
            },
        },
        "/api/sessions/{sid}/deploy": {
            "parameters": [
                SID,
                {
                    "name": "start",
                    "in": "query",
                    "schema": {"type": "boolean"},
                    "description": "start at once (default) or wait for /start",
                },
                {
                    "name": "completed",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "DALiuGE's root list; dropflow triggers every root",
                },
            ],
            "post": {
                "summary": "Check, build and (unless start=false) start the graph",
                "responses": {**_ok(_ref("SessionInfo")), **_errors(400, 401, 404, 409, 502)},
            },
        },
        "/api/sessions/{sid}/start": {
            "parameters": [SID],
            "post": {
                "summary": "Start a session deployed with start=false",
                "responses": {**_ok(_ref("SessionInfo")), **_errors(401, 404, 409)},
            },
        },
        "/api/sessions/{sid}/cancel": {
            "parameters": [SID],
            "post": {
                "summary": "Cancel a session: running apps are stopped, everything is cleaned",
                "responses": {**_ok(_ref("Status")), **_errors(401, 404, 502)},
            },
        },
        "/api/sessions/{sid}/graph": {
            "parameters": [SID],
            "get": {
                "summary": "The session's drops as a native physical graph",
                "responses": {**_ok({"type": "object"}), **e404},
            },
        },
        "/api/sessions/{sid}/graph/size": {
            "parameters": [SID],
            "get": {"summary": "Number of drops", "responses": {**_ok({"type": "integer"}), **e404}},
        },
        "/api/sessions/{sid}/graph/status": {
            "parameters": [
                SID,
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "only drops in these states (comma-separated)",
                },
            ],
            "get": {
                "summary": "State of every drop",
                "responses": {**_ok(_ref("GraphStatus")), **_errors(401, 404, 502)},
            },
        },
        "/api/sessions/{sid}/summary": {
            "parameters": [SID],
            "get": {
                "summary": "Drops by state, failures with causes, timings",
                "responses": {**_ok(_ref("Summary")), **e404},
            },
        },
        "/api/sessions/{sid}/wait": {
            "parameters": [
                SID,
                {"name": "timeout", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 60}},
            ],
            "get": {
                "summary": "Long poll: answers when the session ends or the timeout passes",
                "responses": {**_ok(_ref("Wait")), **_errors(400, 401, 404)},
            },
        },
        "/api/sessions/{sid}/logs/{uid}": {
            "parameters": [SID, UID],
            "get": {
                "summary": "What happened to a drop: its events and error",
                "responses": {**_ok(_ref("DropLog")), **_errors(401, 404, 502)},
            },
        },
    }


def openapi(role: str) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/api/health": {
            "get": {
                "summary": "Liveness (no token needed); identity and bus only with the token",
                "parameters": [
                    {
                        "name": "challenge",
                        "in": "query",
                        "required": False,
                        "description": "32 hex digits: the answer carries the manager's name, URL and proof "
                        "HMAC-SHA256(token, 'dropflow-proof-v1\\n' challenge '\\n' name '\\n' url)",
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                    }
                ],
                "responses": {**_ok(_ref("Health")), **_errors(400)},
            }
        },
        "/api/openapi.json": {
            "get": {"summary": "This document", "responses": {**_ok({"type": "object"}), **_errors(401)}}
        },
        **_session_paths(),
        **results.openapi_paths(_errors, _ok, SID, UID),
        **resuming.openapi_paths(_errors, _ok, SID),
    }
    paths["/api/heartbeat"] = {
        "post": {
            "summary": "Heartbeat from an island (or master): renew session leases, order cancels",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("Heartbeat")}},
            },
            "responses": {**_ok(_ref("HeartbeatAnswer")), **_errors(400, 401, 413)},
        }
    }
    paths["/api/sessions/{sid}/peers"] = {
        "parameters": [SID],
        "post": {
            "summary": "Bus addresses and keys of the nodes holding other parts of a distributed session",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "required": ["bus", "key"],
                                "properties": {
                                    "bus": {"type": "string", "pattern": "^tcp://"},
                                    "key": {"type": "string", "description": "CURVE public key (Z85)"},
                                },
                            },
                        }
                    }
                },
            },
            "responses": {**_ok({"type": "object"}), **_errors(400, 401, 404, 409, 413)},
        },
    }
    if role != "nm":
        member = "node manager" if role == "dim" else "island manager"
        paths["/api/nodes"] = {
            "get": {
                "summary": f"Every {member}, reachable or not",
                "responses": {**_ok({"type": "array", "items": _ref("Node")}), **_errors(401)},
            }
        }
        paths["/api/node/{node}"] = {
            "parameters": [NODE],
            "post": {
                "summary": f"Add a {member} by URL",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["url"],
                                "properties": {"url": {"type": "string", "pattern": "^https?://"}},
                            }
                        }
                    },
                },
                "responses": {**_ok({"type": "object"}, "Added", "201"), **_errors(400, 401, 409, 413, 502)},
            },
            "delete": {
                "summary": f"Forget a {member}",
                "responses": {"204": {"description": "Removed"}, **_errors(401, 404)},
            },
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"dropflow {role} API",
            "version": __version__,
            "description": "DALiuGE-shaped session API of a dropflow manager.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
