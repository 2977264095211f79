"""The preference-model interface: P(y_i > y_j | x) for the responses of a prompt.

Two families fit it:

* pairwise models (PairRM, an LLM judge) give a logit for an ordered pair, and are
  position-biased, so both orders are asked;
* pointwise scorers (reward models, the embedded relevance judge) give each response a score
  r, and P(y_i > y_j | x) = sigmoid((r_i - r_j) / temperature), so K passes per prompt suffice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sppoflow.errors import UserError
from sppoflow.runtime.flops import ForwardTokens


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def check_finite(values: np.ndarray, judge: str, prompts: Sequence[str], what: str) -> None:
    """A judge that returns NaN or inf (broken weights, fp16 overflow) stops the stage with
    one line, before anything is written."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.flatnonzero(bad.reshape(len(prompts), -1).any(axis=1))[0])
        raise UserError(
            f"judge {judge} returned {values.flat[np.flatnonzero(bad)[0]]} for {bad.sum()} of "
            f"{values.size} {what}, first for the prompt {prompts[first][:60]!r}: check its "
            "weights and precision (judge.dtype: float32)"
        )


@dataclass
class Comparison:
    """P(a > b | x) per prompt for two sets of responses (e.g. a round's against the base's)."""

    prob: np.ndarray  # order-debiased probability that the first response is preferred
    reward_a: np.ndarray | None = None  # pointwise rewards, where the judge has them
    reward_b: np.ndarray | None = None
    flipped: np.ndarray | None = None  # pairwise judges: verdict changes with the order


class Judge(ABC):
    """Base class of every judge the score and evaluate stages can use."""

    name: str = "preference model"

    meter: ForwardTokens | None = None  # set where the judge loads its model

    def log_compute(self, work: str, seconds: float) -> None:
        """Log the arithmetic of every forward pass since the model was loaded, against the
        device's peak (sppoflow.runtime.throughput); a judge without a model of its own (a
        test's stand-in) has none to log."""
        if self.meter is None:
            return
        from sppoflow.runtime.throughput import log_compute_on

        log_compute_on(work, self.meter.flops, seconds, self.device, self.dtype, self.meter.shapes)

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

    def planned_logits(
        self,
        prompts: Sequence[str],
        responses: Sequence[Sequence[str]],
        pairs: Sequence[Sequence[tuple[int, int]]],
    ) -> list[np.ndarray]:
        """The logit of P(y_i > y_j | x) for each ordered pair (i, j) of each prompt's plan
        (sppoflow.score.plans). A judge that scores each response once computes every pair
        and keeps the planned ones; a pairwise judge asks only those (PairwiseJudge)."""
        matrices = self.logit_matrices(prompts, responses)
        return [m[tuple(zip(*p, strict=True))] for m, p in zip(matrices, pairs, strict=True)]


class PointwiseJudge(Judge):
    """A scorer r(x, y); preferences are sigmoid((r_i - r_j) / temperature)."""

    def __init__(self, temperature: float = 1.0) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    @abstractmethod
    def scores(
        self, prompts: Sequence[str], responses: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """One score per response, for each prompt's responses."""

    def checked_scores(self, prompts, responses) -> list[np.ndarray]:
        scores = [np.asarray(x, dtype=np.float64) for x in self.scores(prompts, responses)]
        for prompt, s in zip(prompts, scores, strict=True):
            check_finite(s, self.name, [prompt], "rewards")
        return scores

    def logit_matrices(self, prompts, responses):
        return [
            (s[:, None] - s[None, :]) / self.temperature
            for s in self.checked_scores(prompts, responses)
        ]

    def compare(self, prompts, first, second):
        pairs = [[a, b] for a, b in zip(first, second, strict=True)]
        both = self.checked_scores(prompts, pairs)
        reward_a = np.array([s[0] for s in both], dtype=np.float64)
        reward_b = np.array([s[1] for s in both], dtype=np.float64)
        return Comparison(sigmoid((reward_a - reward_b) / self.temperature), reward_a, reward_b)


class PairwiseJudge(Judge):
    """A model of ordered pairs; every pair is asked in both orders."""

    @abstractmethod
    def pair_logits(
        self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]
    ) -> np.ndarray:
        """Logit of P(first[n] > second[n] | prompts[n]) for each n, in the order asked."""

    def logit_matrices(self, prompts, responses):
        every = [
            [(i, j) for i in range(len(g)) for j in range(len(g)) if i != j] for g in responses
        ]
        matrices = [np.zeros((len(g), len(g))) for g in responses]
        for matrix, pairs, logits in zip(
            matrices, every, self.planned_logits(prompts, responses, every), strict=True
        ):
            for (i, j), logit in zip(pairs, logits, strict=True):
                matrix[i, j] = logit
        return matrices

    def planned_logits(self, prompts, responses, pairs):
        index = [(n, i, j) for n, planned in enumerate(pairs) for i, j in planned]
        asked = [prompts[n] for n, _, _ in index]
        logits = self.pair_logits(
            asked,
            [responses[n][i] for n, i, _ in index],
            [responses[n][j] for n, _, j in index],
        )
        check_finite(logits, self.name, asked, "pair logits")
        result, start = [], 0
        for planned in pairs:
            result.append(np.asarray(logits[start : start + len(planned)], dtype=np.float64))
            start += len(planned)
        return result

    def compare(self, prompts, first, second):
        n = len(prompts)
        logits = self.pair_logits(
            list(prompts) * 2, list(first) + list(second), list(second) + list(first)
        )
        check_finite(logits, self.name, list(prompts) * 2, "pair logits")
        forward, backward = logits[:n], logits[n:]
        prob = (sigmoid(forward) + sigmoid(-backward)) / 2
        flipped = (forward > 0) == (backward > 0)
        return Comparison(prob, flipped=flipped)


class TransformersJudge:
    """What the judges built on a transformers checkpoint share: their tokenizer and model,
    loaded with the safe defaults (sppoflow.models.safe_loading), and their batching."""

    default_max_length = 2048

    def load(self, auto_class, folder, settings, device, dtype):
        """The tokenizer (kept) and the model (returned, on ``device``, in eval mode); the
        batching settings, unset max_length taking the judge's default."""
        import torch

        from sppoflow.models.safe_loading import load_pretrained, load_tokenizer

        self.batch_size = settings.batch_size
        self.max_batch_tokens = settings.max_batch_tokens
        self.max_length = settings.max_length or self.default_max_length
        self.device = torch.device(device)
        trust = settings.trust_remote_code
        self.tokenizer = load_tokenizer(folder, "judge.model", trust)
        model = load_pretrained(auto_class, folder, "judge.model", trust, dtype=dtype)
        self.dtype = dtype
        self.meter = ForwardTokens(model)
        return model.to(self.device).eval()
