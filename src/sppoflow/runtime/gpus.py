"""The GPUs the workflow knows by name: their memory and dense bf16 peak, for the share of the
peak a stage's job logs (sppoflow.runtime.peak) and for the cost of a plan
(sppoflow.workflow.plan_cost). Importing it does not import torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gb: float
    peak_bf16_tflops: float  # dense tensor-core peak, SXM parts (the sparse figure is twice)


# From the vendors' data sheets. A name a scheduler uses (SPPO_SLURM_GPU_MODEL, e.g. "h100" or
# "a100-40") is matched case-insensitively, the longest name first ("l40s" before "l4").
GPUS = {
    gpu.name: gpu
    for gpu in (
        Gpu("B200", 192, 2250.0),
        Gpu("H200", 141, 989.0),
        Gpu("H100", 80, 989.0),
        Gpu("H800", 80, 989.0),
        Gpu("A100", 80, 312.0),
        Gpu("A100-40", 40, 312.0),
        Gpu("A800", 80, 312.0),
        Gpu("L40S", 48, 362.0),
        Gpu("L4", 24, 121.0),
        Gpu("A10G", 24, 70.0),
    )
}


def known_gpu(name: str | None) -> Gpu | None:
    """The GPU a device or scheduler name names (e.g. "NVIDIA H100 80GB HBM3", "a100-40"),
    or None."""
    if not name:
        return None
    upper = name.upper()
    for key in sorted(GPUS, key=len, reverse=True):
        if key in upper:
            return GPUS[key]
    return None
