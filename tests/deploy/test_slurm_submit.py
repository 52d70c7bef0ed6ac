"""``dropflow slurm submit`` against fake sbatch/scontrol: the rendered script, the records, and refusals.

No Slurm is needed: the scheduler commands are small executables first on PATH that record how they were
called (see fakeslurm.py). Every refusal must happen before anything is written or submitted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fakeslurm import FakeSlurm

from dropflow.drops import FileSpec, ShellSpec

from conftest import write_graph

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "examples", "scatter_gather.lg.json")


@pytest.fixture
def slurm(tmp_path):
    fake = FakeSlurm(tmp_path / "bin")
    fake.command("sbatch", stdout="4242\n")
    return fake


def dropflow(fake: FakeSlurm, *args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "import sys; from dropflow.cli import main; sys.exit(main())", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=fake.env(), cwd=cwd, timeout=60)


def test_submit_renders_the_script_submits_it_and_records_the_job(slurm, tmp_path):
    results = tmp_path / "results"
    done = dropflow(
        slurm,
        "slurm", "submit", EXAMPLE, "--nodes", "3", "--partition", "debug", "--time", "0:30:00",
        "--account", "astro42", "--module", "gcc/12", "--module", "openmpi", "--param", "copies=6",
        "--results", str(results),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4242"
    [call] = slurm.calls("sbatch")
    assert call[0] == "--parsable" and call[1].startswith("--chdir=")
    job_dir = call[1].removeprefix("--chdir=")
    assert os.path.dirname(job_dir) == str(results)
    assert call[2] == os.path.join(job_dir, "job.sbatch")

    script = slurm.script
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for expected in (
        "#SBATCH --job-name=dropflow-scatter_gather",
        "#SBATCH --nodes=3",
        "#SBATCH --partition=debug",
        "#SBATCH --time=0:30:00",
        "#SBATCH --account=astro42",
        f"#SBATCH --output={job_dir}/slurm-%j.out",
        "module load gcc/12",
        "module load openmpi",
        f"source {sys.prefix}/bin/activate",
    ):
        assert expected in lines, f"{expected!r} not in:\n{script}"
    assert "{{" not in script
    exec_line = lines[-1]
    assert exec_line.startswith(f"exec {sys.executable} -m dropflow.deploy.bootstrap --results {job_dir} ")
    assert f"--graph {job_dir}/graph.lg.json" in exec_line
    assert "--islands 1" in exec_line and "--param copies=6" in exec_line
    assert f"--pythonpath {os.path.dirname(EXAMPLE)}" in exec_line

    record = json.loads((results / "4242" / "job.json").read_text())
    assert record["job_id"] == "4242" and record["nodes"] == 3
    assert record["options"] == {"partition": "debug", "time": "0:30:00", "account": "astro42"}
    assert os.path.realpath(results / "4242") == job_dir
    with open(EXAMPLE, "rb") as f:
        assert (results / "4242" / "graph.lg.json").read_bytes() == f.read()


def test_a_site_template_replaces_the_built_in_one(slurm, tmp_path):
    site = tmp_path / "site.sbatch"
    site.write_text(
        "#!/bin/bash -l\n#SBATCH --nodes={{nodes}}\n#SBATCH --qos=normal\n#SBATCH --constraint=cpu\n"
        "export OMP_NUM_THREADS=1 SCRATCH=${SCRATCH:-/tmp}\nsrun_hint={{ port_base }}\n{{ bootstrap }}\n"
    )
    done = dropflow(
        slurm,
        "slurm",
        "submit",
        EXAMPLE,
        "--nodes",
        "2",
        "--template",
        str(site),
        "--results",
        str(tmp_path / "r"),
    )
    assert done.returncode == 0, done.stderr
    lines = slurm.script.splitlines()
    assert lines[:4] == [
        "#!/bin/bash -l",
        "#SBATCH --nodes=2",
        "#SBATCH --qos=normal",
        "#SBATCH --constraint=cpu",
    ]
    assert (
        lines[4] == "export OMP_NUM_THREADS=1 SCRATCH=${SCRATCH:-/tmp}"
    )  # the shell's own syntax is left alone
    assert lines[5] == "srun_hint=0"  # ports are chosen when the daemons start, unless --port-base
    assert "-m dropflow.deploy.bootstrap" in lines[6]


def test_dry_run_prints_the_script_and_submits_nothing(slurm, tmp_path):
    done = dropflow(
        slurm, "slurm", "submit", EXAMPLE, "--nodes", "2", "--dry-run", "--results", str(tmp_path / "r")
    )
    assert done.returncode == 0, done.stderr
    assert "#SBATCH --nodes=2" in done.stdout and "dropflow.deploy.bootstrap" in done.stdout
    assert slurm.calls() == []
    assert not (tmp_path / "r").exists()


def _bad_graph(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        '{"format": "dropflow/physical-graph", "version": 1, "drops": [{"id": "a", "kind": "nope"}]}'
    )
    return str(path)


def _template(tmp_path, text):
    path = tmp_path / "t.sbatch"
    path.write_text(text)
    return str(path)


BAD = {
    "zero nodes": (lambda t: [EXAMPLE, "--nodes", "0"], "--nodes must be at least 1 (got 0)"),
    "more islands than nodes": (
        lambda t: [EXAMPLE, "--nodes", "2", "--islands", "3"],
        "--islands 3 needs at least as many nodes (got --nodes 2)",
    ),
    "missing graph": (lambda t: [str(t / "nowhere.json"), "--nodes", "2"], "nowhere.json' does not exist"),
    "graph that does not load": (lambda t: [_bad_graph(t), "--nodes", "2"], "does not load"),
    "bad time": (lambda t: [EXAMPLE, "--nodes", "2", "--time", "soon"], "--time 'soon' is not a Slurm time"),
    "unknown template variable": (
        lambda t: [
            EXAMPLE,
            "--nodes",
            "2",
            "--template",
            _template(t, "#!/bin/sh\n{{ nodez }}\n{{ bootstrap }}\n"),
        ],
        "line 2: unknown template variable 'nodez'",
    ),
    "template without the bootstrap": (
        lambda t: [EXAMPLE, "--nodes", "2", "--template", _template(t, "#!/bin/sh\necho {{ nodes }}\n")],
        "the template must use {{ bootstrap }}",
    ),
    "missing template": (
        lambda t: [EXAMPLE, "--nodes", "2", "--template", str(t / "none.sbatch")],
        "cannot read template",
    ),
    "space in partition": (lambda t: [EXAMPLE, "--nodes", "2", "--partition", "a b"], "--partition 'a b'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments_are_refused_before_anything_is_submitted(slurm, tmp_path, case):
    make_args, message = BAD[case]
    results = tmp_path / "results"
    done = dropflow(slurm, "slurm", "submit", *make_args(tmp_path), "--results", str(results))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nothing was submitted" in done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert slurm.calls() == []
    assert not results.exists()


def test_several_problems_are_reported_together(slurm, tmp_path):
    done = dropflow(slurm, "slurm", "submit", str(tmp_path / "x.json"), "--nodes", "0", "--time", "x")
    assert done.returncode == 2
    assert "--nodes must be at least 1" in done.stderr
    assert "--time 'x'" in done.stderr and "does not exist" in done.stderr


def test_a_refusing_sbatch_leaves_nothing_behind(tmp_path):
    fake = FakeSlurm(tmp_path / "bin")
    fake.command("sbatch", stderr="sbatch: error: invalid partition specified: gpu\n", status=1)
    results = tmp_path / "results"
    done = dropflow(
        fake, "slurm", "submit", EXAMPLE, "--nodes", "2", "--partition", "gpu", "--results", str(results)
    )
    assert done.returncode == 2
    assert "sbatch --parsable failed: sbatch: error: invalid partition specified: gpu" in done.stderr
    assert list(results.iterdir()) == []


def test_no_sbatch_on_path_is_a_clear_error(tmp_path):
    fake = FakeSlurm(tmp_path / "bin")  # no commands at all
    env = fake.env()
    env["PATH"] = str(fake.dir) + os.pathsep + os.path.dirname(sys.executable)
    cmd = [sys.executable, "-c", "import sys; from dropflow.cli import main; sys.exit(main())"]
    done = subprocess.run(
        [*cmd, "slurm", "submit", EXAMPLE, "--nodes", "1", "--results", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 2
    assert "'sbatch' is not on PATH: run this on a Slurm login node" in done.stderr


def test_status_reads_the_scheduler_and_the_report(slurm, tmp_path):
    """A job the scheduler still runs, then one that ended with a report in its results directory."""
    results = tmp_path / "results"
    graph = write_graph(
        tmp_path / "g.json", [ShellSpec(id="a", command="true", outputs={"o": "o"}), FileSpec(id="o")]
    )
    assert (
        dropflow(slurm, "slurm", "submit", graph, "--nodes", "1", "--results", str(results)).returncode == 0
    )
    slurm.command("scontrol", stdout="JobId=4242 JobName=x JobState=RUNNING Reason=None ExitCode=0:0\n")
    done = dropflow(slurm, "slurm", "status", "4242", "--results", str(results))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "job 4242: RUNNING"
    assert "no report yet" in done.stdout

    from dropflow.deploy.report import JobReport, write_report

    report = JobReport("4242", "x", ["node1"], "x-4242", state="FAILED", exit_status=1)
    report.failures = [
        {"uid": "a", "kind": "shell", "message": "command failed (exit status 3); stderr:\nno"}
    ]
    write_report(report, str(results / "4242"))
    slurm.command("scontrol", stdout="JobId=4242 JobState=FAILED Reason=NonZeroExitCode ExitCode=1:0\n")
    done = dropflow(slurm, "slurm", "status", "4242", "--results", str(results))
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == "job 4242: FAILED, exit status 1"
    assert "drop 'a' (shell): command failed (exit status 3); stderr:" in done.stdout


def test_status_falls_back_to_accounting_then_says_it_knows_no_such_job(slurm, tmp_path):
    slurm.command("scontrol", stderr="slurm_load_jobs error: Invalid job id specified\n", status=1)
    slurm.command("sacct", stdout="COMPLETED|0:0\n")
    done = dropflow(slurm, "slurm", "status", "77", "--results", str(tmp_path))
    assert done.returncode == 0 and done.stdout.startswith("job 77: COMPLETED, exit status 0")
    slurm.command("sacct", stdout="")
    done = dropflow(slurm, "slurm", "status", "78", "--results", str(tmp_path))
    assert done.returncode == 2 and "no job 78 known to Slurm or under" in done.stderr
