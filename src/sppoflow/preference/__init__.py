"""Preference models (judges) for the score and evaluate stages, chosen by ``judge.backend``.

Each backend module has ``build(settings, folder, device, dtype)``; ``build_judge`` resolves
the model folder (embedded package, local folder or hub id) and the device once for all.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace

from sppoflow.cli import setting
from sppoflow.errors import UserError, check_choice
from sppoflow.preference.base import (
    Comparison,
    PairwisePreferenceModel,
    PointwisePreferenceModel,
    PreferenceModel,
    sigmoid,
)

BACKENDS = {
    "relevance": "sppoflow.preference.relevance",
    "pairrm": "sppoflow.preference.pairrm",
    "reward_model": "sppoflow.preference.reward_model",
    "llm_judge": "sppoflow.preference.llm_judge",
}

__all__ = [
    "BACKENDS",
    "Comparison",
    "JudgeSettings",
    "PairwisePreferenceModel",
    "PointwisePreferenceModel",
    "PreferenceModel",
    "build_judge",
    "sigmoid",
]


@dataclass
class JudgeSettings:
    backend: str = setting("relevance", "preference model family", list(BACKENDS))
    model: str = setting(
        "embedded:all-minilm-l6-v2", "judge model: embedded:<name>, a local folder or a hub id"
    )
    revision: str | None = setting(None, "hub revision of the judge model")
    tau: float | None = setting(
        None, "pointwise judges: P = sigmoid((r_i - r_j) / tau); none: the backend's default"
    )
    batch_size: int = setting(32, "most sequences per forward pass")
    max_batch_tokens: int | None = setting(
        None,
        "most padded tokens per pass; none: 16384 on GPUs, one sequence on CPUs (relevance 4096)",
    )
    max_length: int | None = setting(None, "longest input in tokens; none: the backend's default")
    prompts_per_chunk: int = setting(
        256, "score stage: prompts judged together; a chunk is the unit of work of a shard"
    )
    template: str | None = setting(
        None, "llm_judge: prompt template file with {instruction}, {response_a}, {response_b}"
    )
    verdict_a: str = setting("A", "llm_judge: the token that means the first response is better")
    verdict_b: str = setting("B", "llm_judge: the token that means the second response is better")
    dtype: str = setting("auto", "precision", ["auto", "float32", "bfloat16", "float16"])
    device: str = setting("auto", "torch device: auto, cpu, cuda, ...")
    trust_remote_code: bool = setting(False, "run the judge model's own code (auto_map)")


def build_judge(settings: JudgeSettings) -> PreferenceModel:
    """The judge named by ``settings.backend``; unknown names are a one-line error."""
    from sppoflow.devices import resolve_device, resolve_dtype
    from sppoflow.preference.loading import resolve_judge_folder

    check_choice("judge.backend", settings.backend, BACKENDS)
    if settings.tau is not None and settings.tau <= 0:
        raise UserError(f"judge.tau must be positive, got {settings.tau}")
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    folder = resolve_judge_folder(settings.model, settings.revision)
    module = importlib.import_module(BACKENDS[settings.backend])
    if settings.max_batch_tokens is None:
        # Big batches keep a GPU busy. On a CPU one long sequence of a large model already
        # saturates the cores and batching only adds padding and attention memory
        # (benchmarks/pairrm_throughput.py); small models set their own CPU budget.
        cpu_budget = getattr(module, "CPU_MAX_BATCH_TOKENS", 1)
        budget = 16384 if device.type == "cuda" else cpu_budget
        settings = replace(settings, max_batch_tokens=budget)
    return module.build(settings, folder, device, dtype)
