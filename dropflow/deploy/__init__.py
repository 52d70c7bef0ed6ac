"""Getting the engine onto machines: local clusters, SLURM jobs, containers (see issue 5)."""
