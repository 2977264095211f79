"""Preference models (judges) for the score and evaluate stages, chosen by ``judge.backend``.

Each backend module has ``build(settings, folder, device, dtype)``; ``build_judge`` resolves
the model folder (embedded package, local folder or hub id) and the device once for all.
"""

from __future__ import annotations

import importlib
from dataclasses import replace

from sppoflow.errors import UserError, check_choice
from sppoflow.schema import config_section, declared
from sppoflow.score.judges.base import (
    Comparison,
    Judge,
    PairwiseJudge,
    PointwiseJudge,
    sigmoid,
)

BACKENDS = {
    "relevance": "sppoflow.score.judges.relevance",
    "pairrm": "sppoflow.score.judges.pairrm",
    "reward_model": "sppoflow.score.judges.reward_model",
    "llm_judge": "sppoflow.score.judges.llm_judge",
    "gpm": "sppoflow.score.judges.gpm",
}

__all__ = [
    "BACKENDS",
    "Comparison",
    "Judge",
    "JudgeSettings",
    "PairwiseJudge",
    "PointwiseJudge",
    "build_judge",
    "sigmoid",
]


@config_section("judge")
class JudgeSettings:
    backend: str = declared()
    model: str = declared()
    revision: str | None = declared()
    temperature: float | None = declared()
    batch_size: int = declared()
    max_batch_tokens: int | None = declared()
    max_length: int | None = declared()
    prompts_per_chunk: int = declared()
    template: str | None = declared()
    verdict_a: str = declared()
    verdict_b: str = declared()
    comparisons: str = declared()
    dtype: str = declared()
    device: str = declared()
    trust_remote_code: bool = declared()


def build_judge(settings: JudgeSettings) -> Judge:
    """The judge named by ``settings.backend``; unknown names are a one-line error."""
    from sppoflow.models.hub import local_folder
    from sppoflow.runtime.devices import resolve_device, resolve_dtype

    check_choice("judge.backend", settings.backend, BACKENDS)
    if settings.temperature is not None and settings.temperature <= 0:
        raise UserError(f"judge.temperature must be positive, got {settings.temperature}")
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    folder = local_folder(settings.model, settings.revision)
    module = importlib.import_module(BACKENDS[settings.backend])
    if settings.max_batch_tokens is None:
        # Big batches keep a GPU busy. On a CPU one long sequence of a large model already
        # saturates the cores and batching only adds padding and attention memory
        # (benchmarks/pairrm_throughput.py); small models set their own CPU budget.
        cpu_budget = getattr(module, "CPU_MAX_BATCH_TOKENS", 1)
        budget = 16384 if device.type == "cuda" else cpu_budget
        settings = replace(settings, max_batch_tokens=budget)
    return module.build(settings, folder, device, dtype)
