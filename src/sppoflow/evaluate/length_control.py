"""Length-controlled win rate, in the manner of AlpacaEval 2's.

A judge that likes long answers makes a policy look better when it only got more verbose. The
length-controlled win rate fits the judge's verdicts with a logistic regression on the length
difference,

    logit P(round beats opponent on prompt i) = a + b * tanh(d_i / sd(d)),
    d_i = round's response tokens - opponent's response tokens,

and reports sigmoid(a): the win rate the regression predicts when the two responses are equally
long. The tanh bounds the pull of a few very long answers (as AlpacaEval does). Verdicts are
the outcomes (1 win, 1/2 tie, 0 loss) used as soft labels; b has a small ridge penalty so a
perfectly separable case stays finite. A bootstrap over prompts gives the 95% interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RIDGE = 1e-2  # on the length coefficient only, as a weak prior towards "length does not matter"


@dataclass(frozen=True)
class LengthControlled:
    win_rate: float  # sigmoid(a)
    ci_low: float
    ci_high: float
    length_coef: float  # b: > 0 means the judge prefers the longer response


def length_feature(tokens: np.ndarray, opponent_tokens: np.ndarray) -> np.ndarray:
    diff = np.asarray(tokens, dtype=np.float64) - np.asarray(opponent_tokens, dtype=np.float64)
    scale = diff.std()
    return np.tanh(diff / scale) if scale > 0 else np.zeros_like(diff)


def fit(x: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """(a, b) maximising the soft-label Bernoulli likelihood (Newton's method)."""
    design = np.column_stack([np.ones_like(x), x])
    penalty = np.diag([1e-6, RIDGE])  # the tiny one on a keeps a separable case finite
    theta = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        gradient = design.T @ (y - p) - penalty @ theta
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta += step
        if np.abs(step).max() < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def length_controlled_win_rate(
    outcome: np.ndarray,
    tokens: np.ndarray,
    opponent_tokens: np.ndarray,
    bootstrap: int = 500,
    seed: int = 0,
) -> LengthControlled:
    y = np.clip(np.asarray(outcome, dtype=np.float64), 0.0, 1.0)
    x = length_feature(tokens, opponent_tokens)
    a, b = fit(x, y)
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(bootstrap if len(y) > 1 else 0):
        rows = rng.integers(0, len(y), len(y))
        estimates.append(fit(x[rows], y[rows])[0])
    sigmoid = 1.0 / (1.0 + np.exp(-np.asarray(estimates or [a])))
    low, high = np.quantile(sigmoid, [0.025, 0.975])
    return LengthControlled(float(1.0 / (1.0 + np.exp(-a))), float(low), float(high), b)
