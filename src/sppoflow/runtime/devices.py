"""Pick the device and the floating-point precision a stage runs in."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from sppoflow.errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for, but torch sees no CUDA device")
    return torch.device(name)


# oneDNN's instruction-set caps below native bf16 (its ONEDNN_MAX_CPU_ISA names)
ONEDNN_CAPS_WITHOUT_BF16 = {
    "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
}  # fmt: skip


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 instructions (AVX512-BF16 or AMX) and oneDNN may use
    them: ONEDNN_MAX_CPU_ISA=AVX2 (an AVX2 laptop, emulated) caps it below them.

    Elsewhere bf16 matmuls are emulated and slower than fp32, so ``auto`` keeps fp32.
    """
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return False
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ONEDNN_CAPS_WITHOUT_BF16:
        return False
    flags = cpuinfo.read_text(errors="ignore")
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 where the hardware runs it natively, else fp16 on GPUs, fp32 on CPUs."""
    if name == "auto":
        if bf16_supported(device):
            return torch.bfloat16
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise UserError(f"unknown dtype '{name}' (choose auto, {', '.join(DTYPES)})")
    return DTYPES[name]
