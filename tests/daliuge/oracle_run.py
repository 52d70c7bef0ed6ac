"""Run by DALiuGE's own interpreter (never imported by dropflow): run graphs on a DALiuGE node manager.

``oracle_run.py NM_PORT OUT GRAPH...``: for each logical graph, ``dlg unroll`` it (oid prefix ``1``), submit
it to the node manager on 127.0.0.1:NM_PORT with DALiuGE's client (create, append, deploy with the roots as
completed), wait until the session ends, and write ``OUT/<i>.json``: ``{"session": state, "drops":
{oid: {"status": int, "execStatus": int}}, "pgt": [...]}`` or ``{"error": "..."}``.
"""

import json
import logging
import os
import sys
import threading

logging.disable(logging.CRITICAL)

from dlg.clients import NodeManagerClient  # noqa: E402
from dlg.common import get_roots  # noqa: E402
from dlg.dropmake.pg_generator import unroll  # noqa: E402

port, out = int(sys.argv[1]), sys.argv[2]
client = NodeManagerClient("127.0.0.1", port, timeout=60)
pause = threading.Event()
for i, path in enumerate(sys.argv[3:]):
    result = {}
    try:
        with open(path) as f:
            pgt = [d for d in unroll(f, oid_prefix="1") if d.get("oid")]
        for d in pgt:
            d["node"] = "127.0.0.1"
            d["island"] = "127.0.0.1"
        session = f"oracle-{i}-{os.getpid()}"
        client.create_session(session)
        client.append_graph(session, pgt)
        client.deploy_session(session, completed_uids=list(get_roots(pgt)))
        for _ in range(1200):  # at most two minutes
            state = client.session_status(session)
            if state in (4, 5, 6):  # FINISHED, CANCELLED, FAILED
                break
            pause.wait(0.1)
        result = {"session": state, "drops": client.graph_status(session), "pgt": pgt}
    except Exception as exc:  # DALiuGE could not run the graph: record why
        result = {"error": f"{type(exc).__name__}: {exc}"}
    with open(os.path.join(out, f"{i}.json"), "w") as f:
        json.dump(result, f, default=str)
