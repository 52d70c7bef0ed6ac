"""Launchers: pure functions that return the command lines of an engine-as-a-job, and nothing else.

Theory of operation
-------------------
Every process the job starts is described here as an argument list, built from the :class:`ClusterPlan`
and plain values, so that tests check exact command lines without a scheduler. The job script runs
:func:`bootstrap_command`; the bootstrap starts :func:`node_managers_command` (one ``srun`` step with one task
per node: each task finds its own line of the plan by ``SLURMD_NODENAME`` and becomes that node's manager,
see :mod:`dropflow.deploy.node_entry`), island managers (on the batch node directly, elsewhere through
:func:`srun_on`), the master manager when there are several islands, and finally :func:`submit_command`.

Steps carry names (``--job-name``) so that the teardown can find them and send their tasks SIGTERM through
``scancel --signal`` -- a SIGTERM to srun itself would kill the tasks outright, with no clean shutdown. Steps
are started with ``--overlap`` so that the node managers' steps do not hold the nodes' CPUs against
the steps that MPI apps start later inside the same allocation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from .cluster import ClusterPlan, DaemonPlan, IslandPlan

#: Name of the job step that runs the node managers (teardown signals the step by it).
NM_STEP = "dropflow-nm"

__all__ = [
    "NM_STEP",
    "bootstrap_command",
    "daemon_entry_command",
    "dropflow_command",
    "island_manager_command",
    "master_manager_command",
    "node_manager_command",
    "node_managers_command",
    "srun_on",
    "submit_command",
]


def dropflow_command(python: str) -> list[str]:
    """How to run the ``dropflow`` command with this interpreter's installation.

    >>> dropflow_command("/nonexistent/venv/bin/python")[:2]
    ['/nonexistent/venv/bin/python', '-c']
    """
    script = os.path.join(os.path.dirname(python), "dropflow")
    if os.path.isfile(script) and os.access(script, os.X_OK):
        return [script]
    return [python, "-c", "import sys; from dropflow.cli import main; sys.exit(main())"]


def bootstrap_command(
    python: str,
    *,
    results_dir: str,
    graph: str | None,
    port_base: int,
    islands: int,
    workspace: str | None = None,
    journal: str | None = None,
    pythonpath: Sequence[str] = (),
    params: Mapping[str, str] | None = None,
    startup_timeout: float | None = None,
    allow_paths: Sequence[str] = (),
    session_id: str | None = None,
    resume: bool = False,
    chain: bool = False,
    checkpoint_margin: float | None = None,
) -> list[str]:
    """The job script's last line: the in-allocation bootstrap (no graph: a pilot).

    >>> bootstrap_command("/v/bin/python", results_dir="/r/j", graph="/r/j/g.json", port_base=0, islands=1)
    ['/v/bin/python', '-m', 'dropflow.deploy.bootstrap', '--results', '/r/j', '--graph', '/r/j/g.json', \
'--port-base', '0', '--islands', '1']
    """
    cmd = [python, "-m", "dropflow.deploy.bootstrap", "--results", results_dir]
    cmd += ["--graph", graph] if graph is not None else ["--pilot"]
    cmd += ["--port-base", str(port_base), "--islands", str(islands)]
    if workspace is not None:
        cmd += ["--workspace", workspace]
    if journal is not None:
        cmd += ["--journal", journal]
    for path in pythonpath:
        cmd += ["--pythonpath", path]
    for key, value in (params or {}).items():
        cmd += ["--param", f"{key}={value}"]
    if startup_timeout is not None:
        cmd += ["--startup-timeout", f"{startup_timeout:g}"]
    for path in allow_paths:
        cmd += ["--allow-path", path]
    if session_id is not None:
        cmd += ["--session-id", session_id]
    if resume:
        cmd.append("--resume")
    if chain:
        cmd.append("--chain")
    if checkpoint_margin is not None:
        cmd += ["--checkpoint-margin", f"{checkpoint_margin:g}"]
    return cmd


def node_managers_command(
    python: str,
    plan: ClusterPlan,
    plan_file: str,
    workspace: str,
    logs_dir: str,
    cpus_per_node: int | None,
    nm_args: Sequence[str] = (),
) -> list[str]:
    """One srun step, one task per node, each task becoming its node's manager (``nm_args``: more options
    of ``dropflow nm``, the same on every node).

    >>> from .cluster import plan_cluster
    >>> plan = plan_cluster([("n1", "a1"), ("n2", "a2")], 8000)
    >>> node_managers_command("py", plan, "/r/nodes.json", "/ws", "/r/logs", 4, ["--journal", "/r/j"])
    ... # doctest: +NORMALIZE_WHITESPACE
    ['srun', '--job-name=dropflow-nm', '--nodes=2', '--ntasks=2', '--ntasks-per-node=1', '--nodelist=n1,n2',
     '--overlap',
     '--kill-on-bad-exit=0', '--cpus-per-task=4', '--output=/r/logs/srun-nm-%t.log',
     'py', '-m', 'dropflow.deploy.node_entry', '--plan', '/r/nodes.json', '--workspace', '/ws',
     '--logs', '/r/logs', '--', '--journal', '/r/j']
    """
    n = len(plan.node_managers)
    cmd = ["srun", f"--job-name={NM_STEP}", f"--nodes={n}", f"--ntasks={n}", "--ntasks-per-node=1"]
    cmd.append("--nodelist=" + ",".join(nm.node for nm in plan.node_managers))
    # --kill-on-bad-exit=0: a node manager that dies must not take the others down before the report is out.
    cmd += ["--overlap", "--kill-on-bad-exit=0"]
    if cpus_per_node is not None:
        cmd.append(f"--cpus-per-task={cpus_per_node}")
    # What the tasks print before they open their own logs (nm-NODE.log) goes to one file per task.
    cmd.append(f"--output={os.path.join(logs_dir, 'srun-nm-%t.log')}")
    cmd += [python, "-m", "dropflow.deploy.node_entry", "--plan", plan_file, "--workspace", workspace]
    cmd += ["--logs", logs_dir]
    if nm_args:
        cmd += ["--", *nm_args]
    return cmd


def daemon_entry_command(
    python: str, name: str, address: str, announce: str, command: Sequence[str]
) -> list[str]:
    """Run ``command`` (a manager that lacks ``--port``) on a node through the entry point, which gives it a
    free port of that node and records where it listens in ``announce`` (a directory).

    >>> daemon_entry_command("py", "island 1", "a3", "/r/daemons", ["dropflow", "dim", "--host", "a3"])
    ... # doctest: +NORMALIZE_WHITESPACE
    ['py', '-m', 'dropflow.deploy.node_entry', '--daemon', 'island 1', '--address', 'a3',
     '--announce', '/r/daemons', '--', 'dropflow', 'dim', '--host', 'a3']
    """
    return [python, "-m", "dropflow.deploy.node_entry", "--daemon", name, "--address", address,
            "--announce", announce, "--", *command]  # fmt: skip


def node_manager_command(
    dropflow: Sequence[str], nm: DaemonPlan, workspace: str, extra: Sequence[str] = ()
) -> list[str]:
    """What a node's entry point executes: the node manager daemon, its workspace its own.

    Emulated nodes may share a host and a workspace root; each gets a directory of its own so that one
    node cleaning a session's directory never removes another node's files.

    >>> node_manager_command(["dropflow"], DaemonPlan("n1", "10.0.0.1", 8000), "/ws")
    ['dropflow', 'nm', '--host', '10.0.0.1', '--port', '8000', '--workspace', '/ws/n1', '--name', 'n1']
    """
    return [
        *dropflow,
        "nm",
        "--host",
        nm.address,
        "--port",
        str(nm.port),
        "--workspace",
        os.path.join(workspace, nm.node),
        "--name",
        nm.node,
        *extra,
    ]


def island_manager_command(dropflow: Sequence[str], island: IslandPlan, port: bool = True) -> list[str]:
    """(``port`` False: without ``--port``, for the entry point to add one it chose.)

    >>> from .cluster import plan_cluster
    >>> island_manager_command(["dropflow"], plan_cluster([("n1", "a"), ("n2", "b")], 9000).islands[0])
    ['dropflow', 'dim', '--host', 'a', '--nodes', 'http://a:9000,http://b:9001', '--port', '9002']
    """
    m = island.manager
    nodes = ",".join(nm.url for nm in island.members)
    cmd = [*dropflow, "dim", "--host", m.address, "--nodes", nodes]
    return [*cmd, "--port", str(m.port)] if port else cmd


def master_manager_command(dropflow: Sequence[str], plan: ClusterPlan) -> list[str]:
    assert plan.master is not None
    m = plan.master
    islands = ",".join(i.manager.url for i in plan.islands)
    return [*dropflow, "mm", "--host", m.address, "--port", str(m.port), "--islands", islands]


def srun_on(node: str, command: Sequence[str], log: str, step_name: str) -> list[str]:
    """Run one task of ``command`` on ``node`` of the current allocation, as a step named ``step_name``."""
    return [
        "srun",
        f"--job-name={step_name}",
        "--nodes=1",
        "--ntasks=1",
        f"--nodelist={node}",
        "--overlap",
        f"--output={log}",
        *command,
    ]


def submit_command(
    dropflow: Sequence[str],
    graph: str,
    url: str,
    session_id: str,
    report: str,
    params: Mapping[str, str] | None = None,
    resume: str | None = None,
) -> list[str]:
    """(``resume``: the journal directory of the session to resume.)

    >>> submit_command(["dropflow"], "g.json", "http://a:8003", "g-12", "/r/session.json", {"n": "3"})
    ... # doctest: +NORMALIZE_WHITESPACE
    ['dropflow', 'submit', 'g.json', '--to', 'http://a:8003', '--wait', '--progress', 'never',
     '--session-id', 'g-12', '--report', '/r/session.json', '--param', 'n=3']
    """
    cmd = [*dropflow, "submit", graph, "--to", url, "--wait", "--progress", "never"]
    if resume is not None:
        cmd += ["--resume", session_id, "--journal", resume]
    else:
        cmd += ["--session-id", session_id]
    cmd += ["--report", report]
    for key, value in (params or {}).items():
        cmd += ["--param", f"{key}={value}"]
    return cmd
