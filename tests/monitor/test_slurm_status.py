"""``dropflow slurm status JOBID`` on a real Slurm (3 emulated nodes): a running job's live progress, asked
of the job's own engine with the address and token found in its results directory; and, for a job that
ended before writing a report, the end of its own output file instead of "no report yet"."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from dropflow.deploy.slurm import SlurmProvider
from dropflow.drops import FileSpec, MemorySpec, NoopSpec, ShellSpec

from conftest import poll_for, require, slurm_idle, write_graph

CLI = [sys.executable, "-c", "import sys; from dropflow.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def slurm():
    require(
        "Slurm with 2 idle nodes",
        bool(shutil.which("sbatch")) and slurm_idle(2),
        ".ci/setup/20-slurm.sh",
    )
    return SlurmProvider()


def dropflow(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_status_shows_a_running_jobs_live_progress(slurm, tmp_path):
    graph = write_graph(
        tmp_path / "live.json",
        [
            NoopSpec(id="quick#0", outputs={"o": "q"}),
            MemorySpec(id="q"),
            ShellSpec(id="wait#0", command="sleep 602", inputs={"q": "q"}, outputs={"out": "o"}),
            FileSpec(id="o"),
        ],
        name="live",
    )
    results = str(tmp_path / "results")
    done = dropflow("slurm", "submit", graph, "--nodes", "2", "--results", results)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    try:

        def live() -> str | None:
            out = dropflow("slurm", "status", job_id, "--results", results).stdout
            return out if "2 of 4 drops settled" in out else None

        text = poll_for(live, timeout=120)
        assert f"session dropflow-live-{job_id} RUNNING: 2 of 4 drops settled (50.0%)" in text, text
        assert "drops: WRITING 1, RUNNING 1, COMPLETED 1, FINISHED 1" in text, text
        assert "monitor: http://" in text and f"dropflow why dropflow-live-{job_id} --to http://" in text
        token = os.path.join(os.path.realpath(os.path.join(results, job_id)), "token")
        assert f"--token-file {token}" in text
        as_json = json.loads(dropflow("slurm", "status", job_id, "--results", results, "--json").stdout)
        assert as_json["report"] is None and as_json["live"]["status"] == "RUNNING"
        assert as_json["live"]["groups"]  # the monitor's view: drops by logical-graph node
    finally:
        assert dropflow("slurm", "cancel", job_id).returncode == 0
        poll_for(lambda: slurm.status(job_id).state.ended, timeout=60)
        poll_for(lambda: os.path.exists(os.path.join(results, job_id, "report.json")), timeout=60)


def test_status_points_to_the_output_of_a_job_that_ended_without_a_report(slurm, tmp_path):
    template = tmp_path / "broken.sbatch"
    template.write_text(
        "#!/bin/bash\n"
        "#SBATCH --job-name={{ job_name }}\n"
        "#SBATCH --nodes={{ nodes }}\n"
        "#SBATCH --output={{ results_dir }}/slurm-%j.out\n"
        "echo 'the site setup failed: no such module' >&2\n"
        "exit 3\n"
        "exec {{ bootstrap }}\n"
    )
    graph = write_graph(tmp_path / "g.json", [NoopSpec(id="a")], name="g")
    results = str(tmp_path / "results")
    done = dropflow(
        "slurm", "submit", graph, "--nodes", "1", "--results", results, "--template", str(template)
    )
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    poll_for(lambda: slurm.status(job_id).state.ended, timeout=60)
    status = dropflow("slurm", "status", job_id, "--results", results)
    assert status.returncode == 1
    output = os.path.join(os.path.realpath(os.path.join(results, job_id)), f"slurm-{job_id}.out")
    assert f"the job ended without writing a report; its output ({output}) ends:" in status.stdout
    assert "the site setup failed: no such module" in status.stdout
    assert "no report yet" not in status.stdout
