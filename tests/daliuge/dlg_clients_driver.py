"""Run by DALiuGE's own interpreter (never imported by dropflow): DALiuGE 6.6's REST clients, unchanged,
driving one manager through a full round, exactly as a DALiuGE user's script would.

``python dlg_clients_driver.py ROLE HOST PORT PLAN.json`` -- ``PLAN`` holds the graphs to run (DALiuGE
physical graphs, lists of drop specs) and the node addresses. Prints one JSON object: what each call
answered, or the class name of the exception DALiuGE's client rebuilt from the error.
"""

import json
import logging
import sys
import time

logging.disable(logging.CRITICAL)

from dlg import droputils  # noqa: E402
from dlg.clients import DataIslandManagerClient, MasterManagerClient, NodeManagerClient  # noqa: E402

role, host, port, plan_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(plan_path) as f:
    plan = json.load(f)
client_class = {"nm": NodeManagerClient, "dim": DataIslandManagerClient, "mm": MasterManagerClient}[role]
out = {}


def call(name, fn, *args, **kw):
    """Record what a client call returned, or which typed exception it raised."""
    try:
        value = fn(*args, **kw)
    except Exception as exc:  # the client rebuilt it from the error body: its class is the point
        out[name] = {"error": type(exc).__name__, "message": str(exc)[:300]}
        return None
    out[name] = {"ok": value}
    return value


def ended(status):
    """dlg submit -w's test: every value FINISHED (4) or CANCELLED (5)."""
    if isinstance(status, dict):
        return all(ended(s) for s in status.values())
    return status in (4, 5)


def wait(client, sid, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.session_status(sid)
        if ended(status) or status == 6 or (isinstance(status, dict) and 6 in _flat(status)):
            return status
        time.sleep(0.1)
    return client.session_status(sid)


def _flat(status):
    if isinstance(status, dict):
        return [x for s in status.values() for x in _flat(s)]
    return [status]


c = client_class(host, port, timeout=30)
sid = plan["session"]
graph = plan["graph"]
call("submission_method", c.get_submission_method)
call("session_unknown", c.session, "ghost")
call("status_unknown", c.session_status, "ghost")
call("create", c.create_session, sid)
call("create_again", c.create_session, sid)
call("sessions_pristine", c.sessions)
call("status_pristine", c.session_status, sid)
call("append_bad", c.append_graph, sid, [{"oid": "x", "categoryType": "Data", "consumers": ["nowhere"]}])
call("append", c.append_graph, sid, graph)  # zlib-compressed, labelled gzip, chunked
call("status_building", c.session_status, sid)
call("deploy_wrong_roots", c.deploy_session, sid, completed_uids=["ghost"])
roots = sorted(droputils.get_roots(graph))
out["roots"] = roots
call("deploy", c.deploy_session, sid, completed_uids=roots)
out["final_status"] = wait(c, sid)
call("sessions", c.sessions)
call("session", c.session, sid)
call("graph_status", c.graph_status, sid)
call("graph_size", c.graph_size, sid)
call("graph", c.graph, sid)
call("session_dir", c.session_dir, sid)
call("drop_status", c.get_drop_status, sid, plan["app"])
call("drop_data", c.get_drop_data, sid, plan["data"])
call("append_after_deploy", c.append_graph, sid, graph)
if role == "nm":
    stream, resp = c.get_log_file(sid)
    out["log"] = stream.read() if stream is not None else None
else:
    call("nodes", c.nodes)
    node = plan["nodes"][0]
    call("node_sessions", c._get_json, f"/node/{node}/sessions")
    call("node_status", c._get_json, f"/node/{node}/sessions/{sid}/status")
    call("node_graph_status", c._get_json, f"/node/{node}/sessions/{sid}/graph/status")
    call("info", c._get_json, "/")
    call("past_sessions", c._get_json, "/past_sessions")
if role == "mm":
    call("islands", c.dims)
# cancel a running session
cancel_sid = sid + "-cancel"
call("create_long", c.create_session, cancel_sid)
call("append_long", c.append_graph, cancel_sid, plan["long"])
call("deploy_long", c.deploy_session, cancel_sid, completed_uids=sorted(droputils.get_roots(plan["long"])))
call("status_long", c.session_status, cancel_sid)
call("cancel", c.cancelSession, cancel_sid)
out["cancelled_status"] = wait(c, cancel_sid)
call("destroy_long", c.destroy_session, cancel_sid)
call("destroy", c.destroy_session, sid)
call("session_destroyed", c.session, sid)
if role == "dim":
    node = plan["nodes"][1]
    call("remove_node", c.remove_node, node)
    call("nodes_after_remove", c.nodes)
    call("add_node", c.add_node, node)
    call("nodes_after_add", c.nodes)
print(json.dumps(out, default=str))
