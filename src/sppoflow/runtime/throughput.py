"""How fast a stage did its work: the figures each job logs and benchmarks/stages.py prints.

Generated tokens/s for sample and eval_generate, judged pairs/s for score and evaluate, trained
tokens/s for train; beside each, the work's arithmetic (sppoflow.runtime.flops), its FLOP/s
and their share of the device's peak (sppoflow.runtime.peak). The rates here count the stage's
own work (generating, judging, the reference pass, the training steps); a job's wall time,
which adds loading the model and the engine's start, is in its Snakemake timing file
(benchmark: directive).
"""

from __future__ import annotations

import logging

from sppoflow.runtime.flops import Shapes
from sppoflow.runtime.peak import Peak, device_peak

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


def log_compute(work: str, flops: float, seconds: float, peak: Peak | None) -> float | None:
    """Log ``<work> compute: <FLOPs> FLOP in <s> s: <rate> GFLOP/s, <share> of <peak> GFLOP/s
    (<where the peak comes from>)``; return the share of the peak, or None where unknown."""
    rate = flops / seconds if seconds > 0 else float("nan")
    share = rate / peak.flops if peak and seconds > 0 else None
    against = (
        f"{share:.1%} of {peak.flops / 1e9:.1f} GFLOP/s ({peak.source})"
        if share is not None and peak is not None
        else "peak unknown (no measured or listed peak for this device)"
    )
    log.info("%s compute: %.4g FLOP in %.1f s: %.1f GFLOP/s, %s", work, flops, seconds,
             rate / 1e9, against)  # fmt: skip
    return share


def log_compute_on(
    work: str, flops: float, seconds: float, device, dtype, shapes: Shapes, devices: int = 1
) -> float | None:
    """``log_compute`` against the peak of ``devices`` devices like ``device`` for these
    shapes at ``dtype`` (sppoflow.runtime.peak: looked up or measured after the work)."""
    return log_compute(work, flops, seconds, device_peak(device, dtype, shapes, devices))
