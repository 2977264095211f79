"""What a device can do at most, in FLOP/s, for a model's matmuls: the figure a stage's
achieved rate is a share of.

On a GPU it is the data sheet's dense bf16 peak (sppoflow.runtime.gpus). On a CPU no table
holds it: the same chip runs fp32 and bf16 at rates 4-5x apart, with AVX2, AVX-512 or AMX, on
as many threads as the job has. So it is measured: the model's own matmul shapes, at the
job's precision and thread count, each timed for a share of about a second from the CPU's
caches, and the rates weighted as a forward pass weights them. A measurement is cached per
machine (CPU model, instruction sets, torch's kernel level and version), precision, thread
count and shapes, in ``$SPPO_CACHE_DIR`` (default ``~/.cache/sppoflow``) or not at all with
``SPPO_MEASURE_PEAK=0``. It draws its matrices from a generator of its own and only ever
reaches the job's log, so that it changes no output.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sppoflow.atomic import write_text_atomically
from sppoflow.runtime.flops import Shapes
from sppoflow.runtime.gpus import known_gpu

if TYPE_CHECKING:
    import torch

ROWS = 256  # tokens per matmul: a training micro-batch's or a judge batch's order of size
MEASURE_SECONDS = 1.0
# the instruction sets that decide a CPU's matmul rate
MATMUL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


@dataclass(frozen=True)
class Peak:
    flops: float  # FLOP/s, over every device the work ran on
    source: str  # where the figure comes from, as the log shows it


def cpu_model_and_flags() -> tuple[str, tuple[str, ...]]:
    """The CPU's model name and which of MATMUL_FLAGS it has (Linux; elsewhere the platform's
    processor name and no flags)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return platform.processor() or platform.machine(), ()
    fields: dict[str, str] = {}
    for line in cpuinfo.read_text(errors="ignore").splitlines():
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    model = fields.get("model name", platform.machine())
    return model, tuple(f for f in MATMUL_FLAGS if f in flags)


def kernel_level() -> str:
    """The instruction set torch's own kernels use, and the caps on oneDNN's (bf16 matmuls)
    and MKL's (fp32 matmuls): lower than the CPU's where ATEN_CPU_CAPABILITY,
    ONEDNN_MAX_CPU_ISA or MKL_ENABLE_INSTRUCTIONS caps them (an AVX2 laptop, emulated)."""
    import torch

    caps = [
        f"{name} {os.environ[variable]}"
        for name, variable in (("onednn", "ONEDNN_MAX_CPU_ISA"), ("mkl", "MKL_ENABLE_INSTRUCTIONS"))
        if os.environ.get(variable)
    ]
    return "/".join([torch.backends.cpu.get_cpu_capability(), *caps])


def cache_file() -> Path:
    root = os.environ.get("SPPO_CACHE_DIR") or Path.home() / ".cache" / "sppoflow"
    return Path(root) / "cpu_peaks.json"


def matmul_seconds(inp: int, out: int, rows: int, dtype: torch.dtype, budget_s: float) -> float:
    """Seconds of one ``rows`` x ``inp`` by ``inp`` x ``out`` matmul, the best of repeats
    within ``budget_s`` after a warm-up."""
    import torch

    generator = torch.Generator().manual_seed(0)  # the job's own random stream untouched
    weight = torch.randn(out, inp, generator=generator).to(dtype)
    x = torch.randn(rows, inp, generator=generator).to(dtype)
    with torch.inference_mode():
        torch.nn.functional.linear(x, weight)
        best, spent = float("inf"), 0.0
        while spent < budget_s or best == float("inf"):
            start = time.perf_counter()
            torch.nn.functional.linear(x, weight)
            took = time.perf_counter() - start
            best, spent = min(best, took), spent + took
    return best


def measure_cpu_peak(shapes: Shapes, dtype: torch.dtype, seconds: float | None = None) -> float:
    """FLOP/s of a forward pass's matmuls at ROWS tokens: each shape timed for its share of
    ``seconds`` (default MEASURE_SECONDS), the times weighted by how many layers have it."""
    budget = (seconds or MEASURE_SECONDS) / max(len(shapes), 1)
    flops = sum(2 * ROWS * inp * out * n for inp, out, n in shapes)
    spent = sum(n * matmul_seconds(inp, out, ROWS, dtype, budget) for inp, out, n in shapes)
    return flops / spent


def cpu_peak(shapes: Shapes, dtype: torch.dtype) -> Peak | None:
    """This machine's measured peak for ``shapes`` at ``dtype`` and torch's thread count, from
    the cache or measured now (and cached); None with SPPO_MEASURE_PEAK=0 or no shapes."""
    import torch

    if os.environ.get("SPPO_MEASURE_PEAK", "1") == "0" or not shapes:
        return None
    threads = torch.get_num_threads()
    model, flags = cpu_model_and_flags()
    precision = str(dtype).removeprefix("torch.")
    machine = f"{model} [{' '.join(flags)}] kernels {kernel_level()} torch {torch.__version__}"
    key = hashlib.sha256(json.dumps([machine, precision, threads, shapes]).encode()).hexdigest()
    source = f"measured: {precision} matmuls of the model's shapes on {threads} thread(s)"
    path = cache_file()
    cached = read_cache(path)
    if key in cached:
        return Peak(float(cached[key]["flops"]), source + ", cached")
    rate = measure_cpu_peak(shapes, dtype)
    cached[key] = {"flops": rate, "machine": machine, "precision": precision, "threads": threads}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps(cached, indent=1))
    except OSError:
        pass  # a read-only home: measured again next time, nothing else changes
    return Peak(rate, source)


def read_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def gpu_peak(device: torch.device) -> Peak | None:
    import torch

    name = torch.cuda.get_device_name(device)
    gpu = known_gpu(name)
    if gpu is None:
        return None
    return Peak(gpu.peak_bf16_tflops * 1e12, f"{gpu.name}'s dense bf16 peak, data sheet")


def device_peak(
    device: torch.device, dtype: torch.dtype, shapes: Shapes, devices: int = 1
) -> Peak | None:
    """The peak of ``devices`` devices like ``device`` for these matmuls, or None where it is
    not known (a GPU the table lacks, another accelerator, measuring turned off)."""
    import torch

    if device.type == "cuda" and torch.cuda.is_available():
        peak = gpu_peak(device)
    elif device.type == "cpu":
        peak = cpu_peak(shapes, dtype)
    else:
        peak = None
    if peak is None or devices == 1:
        return peak
    return Peak(peak.flops * devices, f"{devices} x {peak.source}")


@functools.cache
def precision_dtype(precision: str) -> torch.dtype:
    """The dtype a training precision (fp32, bf16, fp16) runs its matmuls in."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
