"""Win, tie or loss per prompt, and means with 95% confidence intervals."""

from __future__ import annotations

import math

import numpy as np

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
