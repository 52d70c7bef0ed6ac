"""Pure parts of engine-as-a-job: the daemon plan, the launchers' command lines, templates, the bootstrap's
failure report (with fake srun/scontrol)."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys

import pytest
from fakeslurm import FakeSlurm

from dropflow.deploy import cluster, launchers, template, walltime
from dropflow.deploy.cluster import ClusterPlan, plan_cluster
from dropflow.deploy.slurm import STATE_TABLE, JobState


@pytest.mark.parametrize("module", [cluster, launchers, walltime])
def test_doctests(module):
    failures, tried = doctest.testmod(module)
    assert tried > 0 and failures == 0


def test_islands_are_contiguous_groups_of_nearly_equal_size():
    """
    7 nodes, 3 islands:   [n0 n1 n2] [n3 n4] [n5 n6]   -- larger groups first, each manager on its first node
    """
    nodes = [(f"n{i}", f"10.0.0.{i}") for i in range(7)]
    plan = plan_cluster(nodes, 9000, islands=3)
    assert [[m.node for m in i.members] for i in plan.islands] == [
        ["n0", "n1", "n2"],
        ["n3", "n4"],
        ["n5", "n6"],
    ]
    assert [(i.manager.node, i.manager.port) for i in plan.islands] == [
        ("n0", 9007),
        ("n3", 9008),
        ("n5", 9009),
    ]
    assert plan.master is not None and (plan.master.node, plan.master.port) == ("n0", 9010)
    assert ClusterPlan.from_json(plan.to_json()) == plan


def test_one_island_has_no_master_and_emulated_nodes_get_distinct_ports():
    """Three emulated nodes share 127.0.0.1: only distinct ports keep their daemons apart."""
    plan = plan_cluster([("node1", "127.0.0.1"), ("node2", "127.0.0.1"), ("node3", "127.0.0.1")], 8000)
    assert [nm.url for nm in plan.node_managers] == [f"http://127.0.0.1:{p}" for p in (8000, 8001, 8002)]
    assert plan.master is None and plan.entry.url == "http://127.0.0.1:8003"
    assert plan.node_manager("node2").port == 8001
    with pytest.raises(KeyError):
        plan.node_manager("node9")


@pytest.mark.parametrize(
    ("nodes", "islands", "port", "message"),
    [
        (0, 1, 8000, "at least one node"),
        (2, 3, 8000, "3 islands cannot be made of 2 nodes"),
        (2, 0, 8000, "0 islands cannot be made of 2 nodes"),
        (3, 1, 65534, "outside 1..65535"),
    ],
)
def test_impossible_plans_are_refused(nodes, islands, port, message):
    with pytest.raises(ValueError, match=message):
        plan_cluster([(f"n{i}", "h") for i in range(nodes)], port, islands)


def test_ipv6_addresses_are_bracketed_in_urls():
    assert plan_cluster([("n", "fd00::1")], 8000).node_managers[0].url == "http://[fd00::1]:8000"


def test_srun_launchers_name_their_steps_and_overlap():
    plan = plan_cluster([("n1", "a"), ("n2", "b")], 8000, islands=2)
    nm = launchers.node_managers_command("py", plan, "/r/nodes.json", "/ws", "/r/logs", None)
    assert nm[:2] == ["srun", "--job-name=dropflow-nm"] and "--overlap" in nm
    assert not any(a.startswith("--cpus-per-task") for a in nm)
    on = launchers.srun_on("n2", ["dropflow", "dim"], "/r/logs/dim-1.log", "dropflow-dim-1")
    assert on == [
        "srun", "--job-name=dropflow-dim-1", "--nodes=1", "--ntasks=1", "--nodelist=n2", "--overlap",
        "--output=/r/logs/dim-1.log", "dropflow", "dim",
    ]  # fmt: skip
    mm = launchers.master_manager_command(["dropflow"], plan)
    assert mm == [
        "dropflow",
        "mm",
        "--host",
        "a",
        "--port",
        "8004",
        "--islands",
        "http://a:8002,http://b:8003",
    ]


def test_every_slurm_state_maps_to_one_of_ours():
    assert set(STATE_TABLE.values()) <= set(JobState)
    assert {s for s in JobState if s.ended} == {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}


def test_template_rendering():
    text = "a={{a}} b={{ b }} shell=${HOME} $x {not_a_placeholder}\n"
    assert template.render(text, {"a": "1", "b": "2"}) == "a=1 b=2 shell=${HOME} $x {not_a_placeholder}\n"
    with pytest.raises(template.TemplateError, match=r"t, line 2: '\{\{ a-b \}\}' is not a variable name"):
        template.render("x\n{{ a-b }}", {"a": "1"}, "t")
    with pytest.raises(template.TemplateError, match="the template must use"):
        template.render("{{ a }}", {"a": "1", "b": "2"}, "t", required=["b"])


def test_the_built_in_template_uses_only_known_variables():
    from dropflow.deploy.job import REQUIRED_VARIABLES, TEMPLATE_VARIABLES

    text, _ = template.load(None)
    used = {name for _, name in template.placeholders(text)}
    assert used <= set(TEMPLATE_VARIABLES) and set(REQUIRED_VARIABLES) <= used


def test_bootstrap_reports_node_managers_that_cannot_start(tmp_path):
    """
    The allocation's srun refuses to start the node managers: the bootstrap fails at once (no waiting for the
    startup timeout), writes a report that says why with the end of srun's output, and exits non-zero.
    """
    fake = FakeSlurm(tmp_path / "bin")
    nodes = "NodeName=n1 Arch=x86_64 NodeAddr=127.0.0.1 Port=1\nNodeName=n2 NodeAddr=127.0.0.1 Port=2\n"
    fake.command("scontrol", stdout={"show hostnames n[1-2]": "n1\nn2\n", "show node -o n[1-2]": nodes})
    fake.command(
        "srun", stderr="srun: error: Unable to create step for job 77: Invalid generic resource\n", status=1
    )
    fake.command("squeue")
    results = tmp_path / "results"
    env = fake.env(SLURM_JOB_ID="77", SLURM_JOB_NODELIST="n[1-2]", SLURM_JOB_NAME="demo")
    cmd = [sys.executable, "-m", "dropflow.deploy.bootstrap", "--results", str(results), "--graph", "g.json"]
    cmd += ["--startup-timeout", "60", "--port-base", "23400"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    report = json.loads((results / "report.json").read_text())
    assert report["job_id"] == "77" and report["nodes"] == ["n1", "n2"]
    assert report["state"] == "ERROR" and report["exit_status"] == 1
    assert report["error"].startswith("node managers exited with status 1 before the engine was up")
    assert "Unable to create step for job 77" in report["error"]
    assert report["timings"]["startup_seconds"] is None and report["timings"]["teardown_seconds"] is not None
    summary = (results / "summary.txt").read_text()
    assert summary.startswith("job 77 (demo) on 2 node(s) n1,n2: session demo-77 ERROR")
    assert summary == done.stdout
    [srun] = fake.calls("srun")
    assert srun[0] == "--job-name=dropflow-nm" and "--nodelist=n1,n2" in srun
    assert oct(os.stat(results / "token").st_mode & 0o777) == "0o600"


def test_the_example_site_template_renders():
    from dropflow.deploy.job import REQUIRED_VARIABLES, JobRequest, template_values

    example = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "examples")
    text, where = template.load(os.path.join(example, "site-template.sbatch"))
    values = template_values(
        JobRequest(graph=os.path.join(example, "scatter_gather.lg.json"), nodes=2), "/r/j"
    )
    script = template.render(text, values, where, REQUIRED_VARIABLES)
    assert "#SBATCH --nodes=2" in script and "exec " in script and "{{" not in script
