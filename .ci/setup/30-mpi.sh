#!/usr/bin/env bash
# MPI for the MPI app drop tests: Open MPI and MPICH from Debian, with their compilers (the tests build a tiny
# C MPI program) -- both, because Open MPI is what most sites run under mpirun and MPICH is what runs under
# srun --mpi=pmi2 on the emulated Slurm nodes without further setup.
set -euo pipefail
apt-get install -y -qq --no-install-recommends openmpi-bin libopenmpi-dev mpich libmpich-dev >/dev/null
# Capture each version text whole, then print the line wanted: piped into head, the writer could die of SIGPIPE
# when head exits first, and pipefail turned that into a failed setup (~7% of runs).
openmpi_version=$(mpirun.openmpi --version)
mpich_version=$(mpirun.mpich --version)
sed -n 1p <<<"$openmpi_version"
sed -n 2p <<<"$mpich_version"
