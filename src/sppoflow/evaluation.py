"""The evaluate stage: a round's responses on held-out prompts against an opponent's.

The opponent is the base model (its responses generated once and reused) or the previous
round. The judge gives P(round > opponent | x) per prompt (both orders for pairwise judges);
a prompt is a win above 1/2, a tie at 1/2 (ties count half) and a loss below.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from sppoflow.errors import UserError
from sppoflow.length_control import length_controlled_win_rate
from sppoflow.preference import PreferenceModel

TIE_TOLERANCE = 1e-6
Z_95 = 1.959964


def outcomes(prob: np.ndarray) -> np.ndarray:
    """1 for a win, 0.5 for a tie, 0 for a loss."""
    prob = np.asarray(prob, dtype=np.float64)
    return np.where(np.abs(prob - 0.5) <= TIE_TOLERANCE, 0.5, (prob > 0.5).astype(np.float64))


def mean_with_ci(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and its 95% normal-approximation confidence interval (standard error of the mean)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    mean = float(values.mean())
    if n < 2:
        return mean, mean, mean
    half = Z_95 * float(values.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


WORD = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "me",
        "my",
        "of",
        "on",
        "or",
        "the",
        "this",
        "to",
        "what",
        "why",
        "with",
        "you",
        "your",
    ]
)


def prompt_overlap(prompt: str, response: str) -> float:
    """Share of the prompt's distinct content words that the response repeats."""
    words = set(WORD.findall(prompt.lower())) - STOP_WORDS
    if not words:
        return 0.0
    return len(words & set(WORD.findall(response.lower()))) / len(words)


def judge_against(
    judge: PreferenceModel,
    ours: pd.DataFrame,
    theirs: pd.DataFrame,
    opponent: str,
) -> pd.DataFrame:
    """EVAL_JUDGEMENTS rows for one opponent; both tables are samples tables with K = 1."""
    merged = ours.merge(theirs, on="prompt_id", suffixes=("", "_opp"), validate="one_to_one")
    if len(merged) != len(ours) or len(merged) != len(theirs):
        raise UserError(
            f"evaluation responses cover different prompts ({len(ours)} vs {len(theirs)} "
            f"against {opponent}); regenerate them from the same eval prompts"
        )
    prompts = merged["prompt"].tolist()
    comparison = judge.compare(
        prompts, merged["response"].tolist(), merged["response_opp"].tolist()
    )
    nan = np.full(len(merged), np.nan)
    return pd.DataFrame(
        {
            "prompt_id": merged["prompt_id"],
            "opponent": opponent,
            "prob": comparison.prob,
            "outcome": outcomes(comparison.prob),
            "tokens": merged["response_tokens"],
            "opponent_tokens": merged["response_tokens_opp"],
            "overlap": [
                prompt_overlap(p, r) for p, r in zip(prompts, merged["response"], strict=True)
            ],
            "opponent_overlap": [
                prompt_overlap(p, r) for p, r in zip(prompts, merged["response_opp"], strict=True)
            ],
            "score": comparison.score_a if comparison.score_a is not None else nan,
            "opponent_score": comparison.score_b if comparison.score_b is not None else nan,
            "order_flipped": comparison.flipped if comparison.flipped is not None else nan,
        }
    )


def summarise(judgements: pd.DataFrame, round_number: int, judge_name: str) -> dict:
    """Metrics per opponent: win rate and mean preference with 95% CIs, lengths."""
    metrics: dict = {"round": round_number, "judge": judge_name}
    for opponent, rows in judgements.groupby("opponent", sort=False):
        win_rate, win_low, win_high = mean_with_ci(rows["outcome"].to_numpy())
        prob, prob_low, prob_high = mean_with_ci(rows["prob"].to_numpy())
        lc = length_controlled_win_rate(
            rows["outcome"].to_numpy(),
            rows["tokens"].to_numpy(),
            rows["opponent_tokens"].to_numpy(),
        )
        metrics[f"vs_{opponent}"] = {
            "n_prompts": len(rows),
            "win_rate": win_rate,
            "win_rate_ci_low": win_low,
            "win_rate_ci_high": win_high,
            "lc_win_rate": lc.win_rate,
            "lc_win_rate_ci_low": lc.ci_low,
            "lc_win_rate_ci_high": lc.ci_high,
            "length_coef": lc.length_coef,
            "wins": int((rows["outcome"] == 1).sum()),
            "ties": int((rows["outcome"] == 0.5).sum()),
            "losses": int((rows["outcome"] == 0).sum()),
            "mean_prob": prob,
            "mean_prob_ci_low": prob_low,
            "mean_prob_ci_high": prob_high,
            "mean_tokens": float(rows["tokens"].mean()),
            "mean_opponent_tokens": float(rows["opponent_tokens"].mean()),
            "order_flip_rate": _finite_or_none(rows["order_flipped"].mean()),
        }
    return metrics


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a metric that does not apply is null."""
    return None if value is None or not math.isfinite(value) else float(value)
