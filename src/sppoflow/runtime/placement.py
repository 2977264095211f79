"""Where a cluster puts a job, read from the environment (local runs ignore these resources).

SPPO_SLURM_ACCOUNT and SPPO_SLURM_PARTITION apply to every job; jobs with GPUs go to
SPPO_SLURM_GPU_PARTITION when it is set and ask for SPPO_SLURM_GPU_MODEL GPUs (e.g. a100,
giving sbatch --gpus=a100:N). A job asks for one node (sbatch --nodes=1) unless it says
otherwise: --gpus=N alone lets SLURM spread a job's GPUs over several nodes, where its
processes would not find them. A job over several nodes (resources.train.nodes) asks for
N GPUs on each (--gres=gpu:N) and one task per node, and starts its launchers itself with
srun (the plugin's ``mpi`` resource). A profile's default-resources or set-resources override
them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sppoflow.errors import UserError

EVERY_JOB = {"slurm_account": "SPPO_SLURM_ACCOUNT", "slurm_partition": "SPPO_SLURM_PARTITION"}
GPU_JOBS = {"slurm_partition": "SPPO_SLURM_GPU_PARTITION", "gpu_model": "SPPO_SLURM_GPU_MODEL"}


def placement(
    gpus: int, environ: Mapping[str, str] = os.environ, nodes: int = 1
) -> dict[str, str | int]:
    """The SLURM resources of a job asking for ``gpus`` GPUs on each of ``nodes`` nodes: node
    count, GPUs, tasks, and slurm_* resources from the environment."""
    variables = {**EVERY_JOB, **(GPU_JOBS if gpus > 0 else {})}
    found = {key: environ.get(var, "") for key, var in variables.items()}
    if gpus > 0 and not found["slurm_partition"]:
        found["slurm_partition"] = environ.get(EVERY_JOB["slurm_partition"], "")
    where = {key: value for key, value in found.items() if value}
    if nodes == 1:
        return {"nodes": 1, "gpu": gpus, **where}
    model = where.pop("gpu_model", "")
    return {
        "nodes": nodes,
        "tasks": nodes,  # with --nodes=N, one task on each
        "tasks_per_gpu": 0,  # no --ntasks-per-gpu (the plugin's default for GPU jobs)
        "mpi": "srun",  # the job's shell starts its tasks; the plugin adds no srun of its own
        "gres": f"gpu:{model}:{gpus}" if model else f"gpu:{gpus}",  # per node
        "gpus_per_node": gpus,
        # no --gpus beside --gres, whatever a profile's default-resources say
        "gpu": 0,
        "gpu_model": "",
        **where,
    }


# what sizes a train job's sbatch and srun lines; with several nodes the config alone does
SIZES = {"gpu", "gpus", "gpu_model", "gres", "nodes", "tasks", "tasks_per_gpu", "tasks_per_node",
         "mpi", "gpus_per_node"}  # fmt: skip
SPREADS = {"nodes", "tasks", "tasks_per_node", "mpi"}  # what would spread a job over nodes


def check_overrides(train_nodes: int, overrides: Mapping[str, Mapping]) -> None:
    """Refuse a profile's set-resources that would make the train job's allocation and its
    launchers disagree: its sizes when it spans nodes (resources.train.nodes), and a spread
    over nodes that the config does not declare."""
    given = set(overrides.get("train", {}))
    clash = sorted(given & (SIZES if train_nodes > 1 else SPREADS))
    if clash:
        raise UserError(
            f"set-resources train: {', '.join(clash)}: a train job over several nodes is sized "
            "in the config (resources.train.nodes, resources.train.gpu per node, "
            "SPPO_SLURM_GPU_MODEL), which its srun line follows; set them there"
        )


def runtime_for(minutes: int) -> Callable[[object, int], int]:
    """A Snakemake resource callable: ``minutes`` on the first attempt, times the attempt after."""

    def runtime(wildcards, attempt: int) -> int:
        return minutes * attempt

    return runtime


def stage_resources(resources: Mapping[str, Any]) -> dict[str, Any]:
    """The Snakemake resources of a job of a stage (its config section ``resources.<stage>``):
    its GPUs (on each of its nodes), memory, a time limit that grows with each retry, and
    its SLURM account, partition and GPU model (SPPO_SLURM_*)."""
    return {
        **placement(resources["gpu"], nodes=resources.get("nodes", 1)),
        "mem_mb": resources["mem_mb"],
        "runtime": runtime_for(resources["runtime"]),
    }


# The SLURM executor plugin (2.x) writes a job's paths (working directory, Snakefile, inputs)
# into sbatch's --wrap="..." argument, quoted as Python quotes strings (repr) or, for a job
# array, for a shell (shlex) but inside those double quotes, and has a shell run it: there a $
# or a backtick runs as a command on the submitting host, a backslash changes the path, and a
# quote ends the quoting early. Spaces and parentheses pass (seen with the plugin's 2.8).
SBATCH_UNSAFE = ("$", "`", "\\", "'", '"')


def sbatch_unsafe_path(paths: Iterable[str | os.PathLike]) -> str | None:
    """The first of ``paths`` that the SLURM executor plugin cannot pass to sbatch safely."""
    for path in map(str, paths):
        if any(char in path for char in SBATCH_UNSAFE):
            return path
    return None


def check_sbatch_paths(paths: Iterable[str | os.PathLike]) -> None:
    """A run about to submit to SLURM stops, before any job, at a path the plugin would
    hand to the shell unquoted."""
    unsafe = sbatch_unsafe_path(paths)
    if unsafe:
        raise UserError(
            f"the SLURM executor plugin cannot submit a job with the path {unsafe!r}: it puts "
            "paths into sbatch's command line inside double quotes, where a $ or a ` runs as a "
            "command and a \\, ' or \" breaks the line; move or rename it (locally, and "
            "with spaces or parentheses, it runs as it is)"
        )
