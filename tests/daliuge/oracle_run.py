"""Run by DALiuGE's own interpreter (never imported by dropflow): run physical graphs in DALiuGE 6.6.

``python oracle_run.py OUT GRAPH...`` -- each GRAPH is a DALiuGE physical graph (or template) file, or a
logical graph, which goes through DALiuGE's pipeline first as its tools chain it (``dlg fill``,
``dlg unroll``, one partition, ``dlg map`` onto this host, with the reproducibility data each step
initialises -- without which DALiuGE's session fails on the first completed drop). Each runs in a node
manager of this process, the way DALiuGE's own engine tests run their graphs (an in-process
``NodeManager``) and the way ``dlg submit`` deploys: ``deploySession`` with the graph's roots as
``completedDrops``. Writes ``OUT/<i>.json``: the physical graph that ran, the session's end state, every
drop's ``status`` and ``execStatus``, and the content (hex) of every file a file drop left behind; or why
DALiuGE could not run it.
"""

import contextlib
import copy
import json
import logging
import os
import socket
import sys
import time

logging.disable(logging.CRITICAL)

from dlg import droputils, shared_memory  # noqa: E402
from dlg.common.reproducibility import reproducibility as repro  # noqa: E402
from dlg.dropmake import pg_generator  # noqa: E402
from dlg.manager.node_manager import NodeManager  # noqa: E402

ENDED = (4, 5, 6)  # FINISHED, CANCELLED, FAILED
TIMEOUT = float(os.environ.get("ORACLE_RUN_TIMEOUT", "60"))


# DALiuGE never unlinks the POSIX shared-memory blocks of its SharedMemoryDROPs (and names them after a
# random session id when no manager set one): note each block's name as it is made, unlink them all once
# the graph has run, so the oracle leaves nothing in /dev/shm.
MADE = set()
_made_init = shared_memory.DlgSharedMemory.__init__


def _noting_init(self, *args, **kwargs):
    _made_init(self, *args, **kwargs)
    MADE.add(self._name)


shared_memory.DlgSharedMemory.__init__ = _noting_init


def unlink_made():
    for name in sorted(MADE):
        with contextlib.suppress(OSError):  # already unlinked, by DALiuGE or an earlier graph
            shared_memory._posixshmem.shm_unlink(name)
    MADE.clear()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(path):
    with open(path) as f:
        doc = json.load(f)
    if isinstance(doc, dict):  # a logical graph: fill, unroll, partition (one), map
        lg = repro.init_lg_repro_data(repro.init_lgt_repro_data(doc, "0"))
        pgt = repro.init_pgt_unroll_repro_data(pg_generator.unroll(lg, oid_prefix="1"))
        for drop in pgt[:-1]:
            drop["node"], drop["island"] = "#0", "#0"
        pgt = repro.init_pgt_partition_repro_data(pgt)
        data = pgt.pop()
        pg = pg_generator.resource_map(pgt, ["127.0.0.1", "127.0.0.1"], 1)
        pg.append(data)
        return repro.init_pg_repro_data(pg)
    if len(doc) == 2 and isinstance(doc[0], str) and isinstance(doc[1], list):
        return doc[1]
    return doc


def files_of(session):
    out = {}
    for uid, drop in session.drops.items():
        path = getattr(drop, "path", None)
        if isinstance(path, str) and path and os.path.isfile(path):
            with open(path, "rb") as f:
                out[uid] = f.read().hex()
    return out


def run(nm, sid, pg):
    drops = [d for d in pg if isinstance(d, dict) and "oid" in d]
    # DALiuGE's drops change the specs they are built from (a PyFuncApp pops its applicationArgs): what
    # dropflow is given is the graph as it was before.
    given = copy.deepcopy(drops)
    nm.createSession(sid)
    nm.addGraphSpec(sid, drops)
    nm.deploySession(sid, completedDrops=sorted(droputils.get_roots(drops)))
    deadline = time.monotonic() + TIMEOUT
    status = nm.getSessionStatus(sid)
    while status not in ENDED and time.monotonic() < deadline:
        time.sleep(0.05)
        status = nm.getSessionStatus(sid)
    # A session whose leaves all ended may still be RUNNING a moment: let the states settle.
    graph_status = nm.getGraphStatus(sid)
    return {
        "ok": True,
        "session": status,
        "pg": given,
        "roots": sorted(droputils.get_roots(given)),
        "drops": {uid: dict(s) for uid, s in graph_status.items()},
        "files": files_of(nm.sessions[sid]),
    }


def main():
    out = sys.argv[1]
    nm = NodeManager(host="127.0.0.1", rpc_port=free_port(), events_port=free_port(), max_threads=4)
    try:
        for i, path in enumerate(sys.argv[2:]):
            try:
                result = run(nm, f"graph{i}", load(path))
            except Exception as exc:  # DALiuGE cannot run it: record why
                result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
            finally:
                unlink_made()
            with open(os.path.join(out, f"{i}.json"), "w") as f:
                json.dump(result, f, default=str)
    finally:
        nm.shutdown()


main()
