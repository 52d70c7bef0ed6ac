"""Site options without a template, allowed paths, and what ``status`` says of a job that died before its
report -- against fake sbatch/scontrol (fakeslurm.py): no Slurm needed.

Flags and a site preset (TOML) render ``#SBATCH`` lines, module loads and set-up lines; a flag wins over the
preset and lists add up; ``--exclusive`` is asked for only when given. ``--allow-path`` (and the preset's
``allow_paths``) is checked before anything is submitted and reaches every node manager. A bad preset or
value is refused with the file and the key, and nothing is submitted.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fakeslurm import FakeSlurm

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "examples", "scatter_gather.lg.json")


@pytest.fixture
def slurm(tmp_path):
    fake = FakeSlurm(tmp_path / "bin")
    fake.command("sbatch", stdout="4242\n")
    return fake


def dropflow(fake: FakeSlurm, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "import sys; from dropflow.cli import main; sys.exit(main())", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=fake.env(**env), timeout=60)


def test_flags_and_a_site_preset_render_the_site_options(slurm, tmp_path):
    project, scratch = tmp_path / "project", tmp_path / "scratch"
    project.mkdir()
    scratch.mkdir()
    preset = tmp_path / "site.toml"
    preset.write_text(
        'partition = "cpu"\naccount = "astro42"\nqos = "normal"\nconstraint = "haswell"\nmem = "64G"\n'
        'cpus_per_node = 32\nmodules = ["gcc/12"]\nenv_setup = ["export OMP_NUM_THREADS=1"]\n'
        f'sbatch = ["--mail-type=FAIL"]\nallow_paths = ["{project}"]\n'
    )
    done = dropflow(
        slurm, "slurm", "submit", EXAMPLE, "--nodes", "2", "--site", str(preset), "--partition", "gpu",
        "--gres", "gpu:4", "--module", "cuda/12", "--allow-path", str(scratch),
        "--results", str(tmp_path / "r"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = slurm.script.splitlines()
    for expected in (
        "#SBATCH --partition=gpu",  # the flag wins over the preset
        "#SBATCH --account=astro42",
        "#SBATCH --qos=normal",
        "#SBATCH --constraint=haswell",
        "#SBATCH --gres=gpu:4",
        "#SBATCH --mem=64G",
        "#SBATCH --cpus-per-task=32",
        "#SBATCH --mail-type=FAIL",
        "module load gcc/12",
        "module load cuda/12",  # lists add up
        "export OMP_NUM_THREADS=1",
    ):
        assert expected in lines, f"{expected!r} not in:\n{slurm.script}"
    assert "#SBATCH --exclusive" not in lines  # not forced
    assert "#SBATCH --partition=cpu" not in lines
    exec_line = lines[-1]
    assert f"--allow-path {project}" in exec_line and f"--allow-path {scratch}" in exec_line


def test_exclusive_only_when_asked_and_the_default_preset_is_found(slurm, tmp_path):
    config = tmp_path / "config"
    (config / "dropflow").mkdir(parents=True)
    (config / "dropflow" / "site.toml").write_text('qos = "long"\nexclusive = true\n')
    done = dropflow(
        slurm, "slurm", "submit", EXAMPLE, "--nodes", "2", "--results", str(tmp_path / "r"),
        XDG_CONFIG_HOME=str(config),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "#SBATCH --qos=long" in slurm.script and "#SBATCH --exclusive" in slurm.script.splitlines()
    plain = dropflow(
        slurm, "slurm", "submit", EXAMPLE, "--nodes", "2", "--results", str(tmp_path / "r"), "--no-site",
        XDG_CONFIG_HOME=str(config),
    )  # fmt: skip
    lines = slurm.script.splitlines()
    assert plain.returncode == 0 and "#SBATCH --exclusive" not in lines and "#SBATCH --qos=long" not in lines


BAD = {
    "missing allowed path": (lambda t: ["--allow-path", str(t / "nowhere")], "is not a directory"),
    "relative allowed path in a preset": (
        lambda t: ["--site", _preset(t, 'allow_paths = ["data"]\n')], "'data' must be an absolute path"
    ),
    "bad memory": (lambda t: ["--mem", "lots"], "--mem 'lots' is not a size"),
    "bad gres": (lambda t: ["--gres", "gpu 4"], "--gres 'gpu 4'"),
    "sbatch line that is not an option": (lambda t: ["--sbatch", "mail"], "--sbatch 'mail'"),
    "unknown preset key": (
        lambda t: ["--site", _preset(t, 'colour = "blue"\n')], "'colour' is not a site option"
    ),
    "preset of the wrong type": (
        lambda t: ["--site", _preset(t, 'cpus_per_node = "many"\n')], "must be an integer"
    ),
    "preset that is not TOML": (lambda t: ["--site", _preset(t, "partition = \n")], "is not TOML"),
    "chain without a time limit": (lambda t: ["--chain"], "--chain continues a job that its time limit ends"),
}  # fmt: skip


def _preset(tmp_path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_site_options_are_refused_before_anything_is_submitted(slurm, tmp_path, case):
    make, message = BAD[case]
    results = tmp_path / "results"
    done = dropflow(
        slurm, "slurm", "submit", EXAMPLE, "--nodes", "2", *make(tmp_path), "--results", str(results)
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nothing was submitted" in done.stderr and "Traceback" not in done.stderr
    assert message in done.stderr, done.stderr
    assert slurm.calls("sbatch") == [] and not results.exists()


def test_status_of_a_job_that_died_before_its_report_points_to_its_output(slurm, tmp_path):
    results = tmp_path / "results"
    assert (
        dropflow(slurm, "slurm", "submit", EXAMPLE, "--nodes", "1", "--results", str(results)).returncode == 0
    )
    job_dir = os.path.realpath(results / "4242")
    with open(os.path.join(job_dir, "slurm-4242.out"), "w") as f:
        f.write("starting\nslurmstepd: error: *** JOB 4242 ON node1 CANCELLED DUE TO TIME LIMIT ***\n")
    slurm.command("scontrol", stdout="JobId=4242 JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15\n")
    done = dropflow(slurm, "slurm", "status", "4242", "--results", str(results))
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == "job 4242: TIMEOUT, exit status 0"
    assert (
        f"the job ended without writing a report; its output ({job_dir}/slurm-4242.out) ends:" in done.stdout
    )
    assert "CANCELLED DUE TO TIME LIMIT" in done.stdout


def test_resume_of_a_finished_or_unknown_job_is_refused(slurm, tmp_path):
    results = tmp_path / "results"
    unknown = dropflow(slurm, "slurm", "submit", "--resume", "99", "--results", str(results))
    assert unknown.returncode == 2 and "no job 99 under" in unknown.stderr
    assert (
        dropflow(slurm, "slurm", "submit", EXAMPLE, "--nodes", "1", "--results", str(results)).returncode == 0
    )
    from dropflow.deploy.report import JobReport, write_report

    write_report(
        JobReport("4242", "x", ["node1"], "x-4242", state="FINISHED", exit_status=0), str(results / "4242")
    )
    finished = dropflow(slurm, "slurm", "submit", "--resume", "4242", "--results", str(results))
    assert finished.returncode == 2 and "FINISHED; there is nothing to resume" in finished.stderr
    assert len(slurm.calls("sbatch")) == 1
