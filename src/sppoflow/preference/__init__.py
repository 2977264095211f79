"""Preference models (judges) for the score and evaluate stages, chosen by ``judge.backend``."""

from __future__ import annotations

from dataclasses import dataclass

from sppoflow.cli import setting
from sppoflow.errors import UserError, check_choice
from sppoflow.preference.base import (
    Comparison,
    PairwisePreferenceModel,
    PointwisePreferenceModel,
    PreferenceModel,
    sigmoid,
)

BACKENDS = ("relevance",)

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
    backend: str = setting("relevance", "preference model family", BACKENDS)
    model: str = setting("embedded:all-minilm-l6-v2", "judge model: embedded:<name> or a folder")
    tau: float = setting(0.05, "temperature of pointwise scores: P = sigmoid((r_i - r_j) / tau)")
    batch_size: int = setting(64, "sequences per forward pass")
    max_length: int = setting(256, "longest input, in tokens")
    dtype: str = setting("auto", "precision", ["auto", "float32", "bfloat16", "float16"])
    device: str = setting("auto", "torch device: auto, cpu, cuda, ...")


def build_judge(settings: JudgeSettings) -> PreferenceModel:
    """The judge named by ``settings.backend``; unknown names are a one-line error."""
    from sppoflow.devices import resolve_device, resolve_dtype

    check_choice("judge.backend", settings.backend, BACKENDS)
    if settings.tau <= 0:
        raise UserError(f"judge.tau must be positive, got {settings.tau}")
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    from sppoflow.preference.relevance import RelevanceJudge

    return RelevanceJudge(
        _model_folder(settings.model),
        tau=settings.tau,
        batch_size=settings.batch_size,
        max_length=settings.max_length,
        device=device,
        dtype=dtype,
    )


def _model_folder(reference: str) -> str:
    from pathlib import Path

    from sppoflow import embedded

    if embedded.is_embedded(reference):
        return str(embedded.embedded_model(reference)[1])
    if not Path(reference).is_dir():
        raise UserError(f"judge.model: folder {reference} not found")
    return reference
