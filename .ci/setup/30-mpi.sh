#!/usr/bin/env bash
# MPI for the MPI app drop tests: Open MPI and MPICH from Debian, with their compilers (the tests build a tiny
# C MPI program) -- both, because Open MPI is what most sites run under mpirun and MPICH is what runs under
# srun --mpi=pmi2 on the emulated Slurm nodes without further setup.
set -euo pipefail
apt-get install -y -qq --no-install-recommends openmpi-bin libopenmpi-dev mpich libmpich-dev >/dev/null
mpirun.openmpi --version | head -1
mpirun.mpich --version | head -2 | tail -1
