"""One client per outside system, and nothing else."""
