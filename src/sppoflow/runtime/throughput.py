"""How fast a stage did its work: the figures each job logs and benchmarks/stages.py prints.

Generated tokens/s for sample and eval_generate, judged pairs/s for score, trained tokens/s for
train, with the model utilisation (MFU) where the device's peak is known. The rates here count
the stage's own work (generating, judging, the training steps); a job's wall time, which adds
loading the model and the engine's start, is in its Snakemake timing file (benchmark: directive).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sppoflow.runtime.gpus import known_gpu

if TYPE_CHECKING:  # torch is imported where a device is asked about, so scripts start fast
    import torch

# the name job records parse (sppoflow.runtime.job_records), as earlier runs logged it
log = logging.getLogger("sppoflow.throughput")


def log_rate(stage: str, amount: int, unit: str, seconds: float, what: str) -> float:
    """Log ``stage: <amount> <unit> in <s> s: <rate> <unit>/s (<what>)``; return the rate."""
    per_second = amount / seconds if seconds > 0 else float("nan")
    log.info(
        "%s: %d %s in %.1f s: %.1f %s/s (%s)", stage, amount, unit, seconds, per_second,
        unit.split()[-1], what,
    )  # fmt: skip
    return per_second


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in FLOP/s, or None where it is not known (CPUs)."""
    import torch

    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    gpu = known_gpu(torch.cuda.get_device_name(device))
    return gpu.peak_bf16_tflops * 1e12 if gpu else None


def training_flops(parameters: int, tokens: int) -> float:
    """Forward and backward pass FLOPs of a decoder: 6 per parameter per token (attention's
    own quadratic part left out, as MFU figures usually do)."""
    return 6.0 * parameters * tokens


def mfu(parameters: int, tokens: int, seconds: float, device: torch.device, devices: int = 1):
    """Model FLOPs utilisation of a training run over ``devices`` GPUs, or None."""
    peak = peak_flops(device)
    if peak is None or seconds <= 0:
        return None
    return training_flops(parameters, tokens) / (seconds * devices * peak)
