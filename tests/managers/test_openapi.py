"""The OpenAPI document stays true: schemathesis generates requests from it against the real app.

Every response must match the document (status code, content type, body schema) and none may be a 5xx.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from dropflow.managers.island import DataIslandManager
from dropflow.managers.node_manager import NodeManager
from dropflow.managers.rest import make_app

_nm = NodeManager("schema-node", threads=2, processes=1)
_dim = DataIslandManager("schema-island", [_nm])
node_schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", make_app(_nm))
island_schema = schemathesis.openapi.from_asgi("/api/openapi.json", make_app(_dim))


@pytest.fixture(scope="module", autouse=True)
def running_node(tmp_path_factory):
    _nm.node.workspace_root = str(tmp_path_factory.mktemp("schema-ws"))
    _nm.start()
    yield
    _dim.close()
    _nm.close()


def _short_waits(case):
    """A long poll on a session that is not running waits its whole timeout (default 10 s, as long as the
    test client's own): keep generated waits short."""
    if case.operation.path.endswith("/wait") and isinstance(case.query, dict):
        timeout = case.query.get("timeout")
        if not isinstance(timeout, int | float) or timeout > 1:
            case.query = {**case.query, "timeout": 0.2}
    elif case.operation.path.endswith("/wait"):
        case.query = {"timeout": 0.2}


def _graph_checks(case):
    """A graph's schema cannot say all that makes it valid (links that resolve, roots that exist): a
    schema-valid graph, or deploy's ``completed``, may rightly be refused with 400."""
    if case.operation.path.endswith(("/graph/append", "/deploy")):
        return [positive_data_acceptance]
    return []


@node_schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_node_manager_api(case):
    _short_waits(case)
    case.call_and_validate(excluded_checks=_graph_checks(case))


@island_schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_island_manager_api(case):
    _short_waits(case)
    excluded = _graph_checks(case)
    if case.operation.path == "/api/v1/node/{node}" and case.method == "POST" and isinstance(case.body, dict):
        # Adding a node makes the island call the URL. Tests talk only to loopback, so every generated URL
        # becomes a closed loopback port; the schema-valid request is then rightly refused (400: unreachable).
        case.body = {**case.body, "url": "http://127.0.0.1:9"}
        excluded.append(positive_data_acceptance)
    if case.operation.path == "/api/node/{node}" and case.method == "POST":
        # DALiuGE's form: the node is named in the path; every generated host:port is unreachable here.
        excluded.append(positive_data_acceptance)
    case.call_and_validate(excluded_checks=excluded)
