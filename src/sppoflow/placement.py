"""Where a cluster puts a job, read from the environment (local runs ignore these resources).

SPPO_SLURM_ACCOUNT and SPPO_SLURM_PARTITION apply to every job; jobs with GPUs go to
SPPO_SLURM_GPU_PARTITION when it is set and ask for SPPO_SLURM_GPU_MODEL GPUs (e.g. a100,
giving sbatch --gpus=a100:N). Every job asks for one node (sbatch --nodes=1): --gpus=N alone
lets SLURM spread a job's GPUs over several nodes, and a training job's processes are
started on one. A profile's default-resources or set-resources override them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

EVERY_JOB = {"slurm_account": "SPPO_SLURM_ACCOUNT", "slurm_partition": "SPPO_SLURM_PARTITION"}
GPU_JOBS = {"slurm_partition": "SPPO_SLURM_GPU_PARTITION", "gpu_model": "SPPO_SLURM_GPU_MODEL"}


def placement(gpus: int, environ: Mapping[str, str] = os.environ) -> dict[str, str | int]:
    """The node count, slurm_* resources (and gpu_model) of a job asking for ``gpus`` GPUs."""
    variables = {**EVERY_JOB, **(GPU_JOBS if gpus > 0 else {})}
    found = {key: environ.get(var, "") for key, var in variables.items()}
    if gpus > 0 and not found["slurm_partition"]:
        found["slurm_partition"] = environ.get(EVERY_JOB["slurm_partition"], "")
    return {"nodes": 1, **{key: value for key, value in found.items() if value}}


def runtime_for(minutes: int) -> Callable[[object, int], int]:
    """A Snakemake resource callable: ``minutes`` on the first attempt, times the attempt after."""

    def runtime(wildcards, attempt: int) -> int:
        return minutes * attempt

    return runtime
