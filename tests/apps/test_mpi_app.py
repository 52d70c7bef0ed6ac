"""MPI app drops with real MPI: 2 ranks under mpirun (Open MPI, MPICH) and under srun in a Slurm allocation.

The program is ``mpi/mpi_probe.c``, compiled once per test module with each MPI's own ``mpicc``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import psutil
import pytest

from dropflow.drops import FileSpec, MemorySpec, PythonSpec
from dropflow.drops.apps.mpi import MpiSpec, launch_command, launcher_for
from dropflow.drops.errors import GraphError

from conftest import poll_for, require, run, write_graph

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "mpi", "mpi_probe.c")
FLAVOURS = {
    "openmpi": "Open MPI (apt-get install openmpi-bin libopenmpi-dev)",
    "mpich": "MPICH (apt-get install mpich libmpich-dev)",
}


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    """flavour -> (compiled probe program, that flavour's mpirun), compiled on first use."""
    out = tmp_path_factory.mktemp("mpi")
    made: dict[str, tuple[str, str]] = {}

    def get(flavour: str) -> tuple[str, str]:
        if flavour not in made:
            mpicc, mpirun = f"mpicc.{flavour}", f"mpirun.{flavour}"
            require(FLAVOURS[flavour], bool(shutil.which(mpicc) and shutil.which(mpirun)), f"{mpicc} on PATH")
            program = str(out / f"mpi_probe_{flavour}")
            subprocess.run([mpicc, "-O1", "-o", program, SOURCE], check=True)
            made[flavour] = (program, mpirun)
        return made[flavour]

    return get


def probe_graph(program: str, mode: str = "ok", **mpi: object) -> list:
    """
    mpi_probe (N ranks) --stdout--> lines (memory)
                        --{out}---> sums.txt -> keep (python) -> sums (memory)
    """
    return [
        MpiSpec(
            id="probe",
            command=f"{program} {{out}} {mode}",
            outputs={"stdout": "lines", "out": "sums_file"},
            **mpi,
        ),
        MemorySpec(id="lines", codec="utf-8", persist=True),
        FileSpec(id="sums_file", path="sums.txt", codec="utf-8"),
        PythonSpec(id="keep", func="testfuncs:const", inputs={"value": "sums_file"}, outputs={"o": "sums"}),
        MemorySpec(id="sums", codec="utf-8", persist=True),
    ]


@pytest.mark.parametrize("flavour", ["openmpi", "mpich"])
def test_two_ranks_under_mpirun(node, probes, flavour):
    """Both ranks run, talk (an allreduce) and their output reaches the drops."""
    program, mpirun = probes(flavour)
    s = run(
        node, probe_graph(program, ranks=2, launcher="mpirun", mpirun=mpirun), session_id=f"mpi-{flavour}"
    )
    assert s.state == "FINISHED", s.summary()
    assert sorted(s.value("lines").splitlines()) == ["rank 0 of 2 on -", "rank 1 of 2 on -"]
    assert s.value("sums") == "size=2 sum=1\n"


def test_a_failing_rank_fails_the_app_with_its_stderr(node, probes):
    program, mpirun = probes("openmpi")
    s = run(
        node, probe_graph(program, "fail", ranks=2, launcher="mpirun", mpirun=mpirun), session_id="mpi-fail"
    )
    assert s.state == "FAILED"
    [failure] = s.failures()
    assert failure.uid == "probe"
    assert failure.message.startswith("mpirun of 2 ranks failed (exit status 7)")
    assert "rank 1: bad input, giving up" in failure.message
    assert s.drop_state("sums") in ("ERROR", "SKIPPED")


def _ranks_of(program: str) -> list[psutil.Process]:
    """Live processes running ``program`` (an orphaned rank's zombie may wait for PID 1 to reap it)."""
    found = []
    for p in psutil.process_iter(["exe", "status"]):
        if p.info["exe"] == program and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def test_cancel_kills_every_rank(node, probes):
    """Ranks blocked for ten minutes die when the session is cancelled; none is left behind."""
    program, mpirun = probes("openmpi")
    session = node.create_session("mpi-cancel")
    session.add(probe_graph(program, "sleep", ranks=2, launcher="mpirun", mpirun=mpirun))
    session.deploy()
    poll_for(lambda: len(_ranks_of(program)) == 2, timeout=30)
    session.cancel()
    assert session.wait(30) == "CANCELLED"
    poll_for(lambda: not _ranks_of(program), timeout=15)


def test_missing_launcher_is_a_clear_error(node):
    s = run(
        node,
        [
            MpiSpec(
                id="m",
                command="true",
                launcher="mpirun",
                mpirun="/nonexistent/mpirun",
                outputs={"stdout": "o"},
            ),
            MemorySpec(id="o"),
        ],
        session_id="mpi-nolauncher",
    )
    assert s.state == "FAILED"
    assert (
        "'/nonexistent/mpirun' (the MPI launcher outside a Slurm allocation) is not on PATH"
        in s.failures()[0].message
    )


def test_graph_checks(node):
    session = node.create_session("mpi-bad")
    session.add(
        [
            MemorySpec(id="m", data=1),
            MpiSpec(
                id="p",
                command="prog {inp} {missing}",
                ranks=2,
                nodes=3,
                inputs={"inp": "m"},
                outputs={"stdout": "o"},
            ),
            MemorySpec(id="o"),
        ]
    )
    with pytest.raises(GraphError) as err:
        session.deploy()
    text = str(err.value)
    assert "placeholder {missing} names no port" in text
    assert "'m' is a memory drop" in text
    assert "3 nodes for 2 ranks" in text


def test_launch_command_is_srun_inside_an_allocation_and_mpirun_outside():
    spec = MpiSpec(id="a", command="x", ranks=4, launcher_args=["--mpi=pmi2"])
    assert launcher_for(spec, {"SLURM_JOB_ID": "12"}) == "srun"
    assert launcher_for(spec, {}) == "mpirun"
    assert launcher_for(MpiSpec(id="a", command="x", launcher="srun"), {}) == "srun"
    assert launch_command(spec, ["./p", "a b"], "srun") == [
        "srun",
        "--ntasks=4",
        "--overlap",
        "--kill-on-bad-exit=1",
        "--mpi=pmi2",
        "./p",
        "a b",
    ]
    mpich = MpiSpec(id="a", command="x", ranks=2, mpirun="mpirun.mpich")
    assert launch_command(mpich, ["./p"], "mpirun") == ["mpirun.mpich", "-n", "2", "./p"]


def test_two_ranks_under_srun_on_two_slurm_nodes(tmp_path, probes):
    """
    Inside a Slurm allocation of 2 nodes (salloc runs ``dropflow run`` there), the MPI app launches its ranks
    with srun, one per node, and MPICH wires them up through PMI2.
    """
    require("Slurm", bool(shutil.which("salloc")) and _slurm_up(), "start Slurm (.ci/setup/20-slurm.sh)")
    program, _ = probes("mpich")
    out = tmp_path / "out"
    out.mkdir()
    drops = [
        MpiSpec(
            id="probe",
            command=f"{program} {{out}}",
            ranks=2,
            nodes=2,
            launcher_args=["--mpi=pmi2"],
            outputs={"stdout": "lines", "out": "sums"},
        ),
        FileSpec(id="lines", path=str(out / "lines.txt"), persist=True),
        FileSpec(id="sums", path=str(out / "sums.txt"), persist=True),
    ]
    graph = write_graph(tmp_path / "mpi.json", drops, name="mpi-srun")
    cmd = [
        "salloc", "--nodes=2", "--ntasks=2", "--time=5", "--job-name=dropflow-test-mpi",
        sys.executable, "-m", "dropflow.cli", "run", graph,
        "--workspace", str(tmp_path / "ws"), "--allow-path", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    assert sorted((out / "lines.txt").read_text().splitlines()) == [
        "rank 0 of 2 on node1",
        "rank 1 of 2 on node2",
    ]
    assert (out / "sums.txt").read_text() == "size=2 sum=1\n"


def _slurm_up() -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%D"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() != ""
