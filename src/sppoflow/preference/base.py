"""The preference-model interface: P(y_i > y_j | x) for the responses of a prompt.

Two families fit it:

* pairwise models (PairRM, an LLM judge) give a logit for an ordered pair, and are
  position-biased, so both orders are asked;
* pointwise scorers (reward models, the embedded relevance judge) give each response a score
  r, and P(y_i > y_j | x) = sigmoid((r_i - r_j) / tau), so K passes per prompt suffice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass
class Comparison:
    """P(a > b | x) per prompt for two sets of responses (e.g. a round's against the base's)."""

    prob: np.ndarray  # order-debiased probability that the first response is preferred
    score_a: np.ndarray | None = None  # pointwise scores, where the judge has them
    score_b: np.ndarray | None = None
    flipped: np.ndarray | None = None  # pairwise judges: verdict changes with the order


class PreferenceModel(ABC):
    """Base class of every judge the score and evaluate stages can use."""

    name: str = "preference model"

    @abstractmethod
    def logit_matrices(
        self, prompts: Sequence[str], responses: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """One K x K matrix per prompt: L[i, j] is the logit of P(y_i > y_j | x), L[i, i] = 0."""

    @abstractmethod
    def compare(
        self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]
    ) -> Comparison:
        """P(first > second | x) per prompt."""


class PointwisePreferenceModel(PreferenceModel):
    """A scorer r(x, y); preferences are sigmoid((r_i - r_j) / tau)."""

    def __init__(self, tau: float = 1.0) -> None:
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.tau = tau

    @abstractmethod
    def scores(
        self, prompts: Sequence[str], responses: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """One score per response, for each prompt's responses."""

    def logit_matrices(self, prompts, responses):
        return [
            (s[:, None] - s[None, :]) / self.tau
            for s in (np.asarray(x, dtype=np.float64) for x in self.scores(prompts, responses))
        ]

    def compare(self, prompts, first, second):
        both = self.scores(prompts, [[a, b] for a, b in zip(first, second, strict=True)])
        score_a = np.array([s[0] for s in both], dtype=np.float64)
        score_b = np.array([s[1] for s in both], dtype=np.float64)
        return Comparison(sigmoid((score_a - score_b) / self.tau), score_a, score_b)


class PairwisePreferenceModel(PreferenceModel):
    """A model of ordered pairs; every pair is asked in both orders."""

    @abstractmethod
    def pair_logits(
        self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]
    ) -> np.ndarray:
        """Logit of P(first[n] > second[n] | prompts[n]) for each n, in the order asked."""

    def logit_matrices(self, prompts, responses):
        index = [
            (n, i, j)
            for n, group in enumerate(responses)
            for i in range(len(group))
            for j in range(len(group))
            if i != j
        ]
        logits = self.pair_logits(
            [prompts[n] for n, _, _ in index],
            [responses[n][i] for n, i, _ in index],
            [responses[n][j] for n, _, j in index],
        )
        matrices = [np.zeros((len(g), len(g))) for g in responses]
        for (n, i, j), logit in zip(index, logits, strict=True):
            matrices[n][i, j] = logit
        return matrices

    def compare(self, prompts, first, second):
        n = len(prompts)
        logits = self.pair_logits(
            list(prompts) * 2, list(first) + list(second), list(second) + list(first)
        )
        forward, backward = logits[:n], logits[n:]
        prob = (sigmoid(forward) + sigmoid(-backward)) / 2
        flipped = (forward > 0) == (backward > 0)
        return Comparison(prob, flipped=flipped)


def build_pointwise(judge_type, settings, folder, device, dtype, default_tau, default_max_length):
    """A pointwise judge from the judge settings; unset tau and max_length take its defaults."""
    return judge_type(
        folder,
        tau=settings.tau or default_tau,
        batch_size=settings.batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        max_length=settings.max_length or default_max_length,
        device=device,
        dtype=dtype,
    )
